#include "backoff.hpp"

#include <algorithm>

namespace pgnotify {

backoff::backoff(const backoff_settings& settings)
    : settings_(settings), delay_(settings.initial), rng_(std::random_device{}()) {}

caf::timespan backoff::next() {
  auto delay = delay_;
  delay_ = std::min(delay_ * 2, settings_.max);
  if (settings_.jitter <= 0) return delay;
  auto jitter = std::clamp(settings_.jitter, 0.0, 1.0);
  std::uniform_real_distribution<double> factor(1.0 - jitter, 1.0);
  return std::chrono::duration_cast<caf::timespan>(delay * factor(rng_));
}

}  // namespace pgnotify
