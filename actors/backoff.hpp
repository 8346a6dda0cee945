// The reconnect delay sequence: initial, doubling, capped, optionally jittered.
#pragma once

#include <chrono>
#include <random>

#include <caf/timespan.hpp>

namespace pgnotify {

struct backoff_settings {
  caf::timespan initial = std::chrono::milliseconds(500);
  caf::timespan max = std::chrono::seconds(30);
  /// A connection that drops after being up at least this long is replaced at
  /// once; one that drops sooner counts as a failed attempt and waits for the
  /// next delay, so a server that accepts and drops at once is not hammered.
  caf::timespan min_uptime = std::chrono::milliseconds(250);
  /// A connection that stayed up this long resets the delay to `initial`; after
  /// a shorter one, the next failed attempt keeps the delay growing.
  caf::timespan stable_after = std::chrono::seconds(10);
  /// 0 = exact delays. j in (0, 1]: each delay is drawn from [(1 - j) * d, d],
  /// so that many clients of one restarted server do not reconnect in lockstep.
  double jitter = 0.0;
};

class backoff {
 public:
  explicit backoff(const backoff_settings& settings);

  /// The delay to wait now; the one after it doubles (up to the cap).
  caf::timespan next();

  void reset() { delay_ = settings_.initial; }

 private:
  backoff_settings settings_;
  caf::timespan delay_;
  std::minstd_rand rng_;
};

}  // namespace pgnotify
