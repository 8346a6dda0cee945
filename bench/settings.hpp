// What one run of pgnotify-bench does: the client, the workload and its sizes,
// read from the command line and the environment (DESIGN.md §5).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pgnotify::bench {

enum class client_kind { pgnotify, raw };

/// How the pgnotify client's counting subscribers are built.
enum class subscriber_kind {
  helper,  ///< pgnotify::spawn_subscriber with an on_notification callback
  actor,   ///< an actor of the bench's own that speaks the protocol
};

enum class workload {
  w1,    ///< N notifications to one subscriber
  w2,    ///< N notifications to each of K subscribers
  w3,    ///< N single notifications carrying their send time: latency
  w4,    ///< w1 plus a stalled subscriber: bounded memory, exact missed count
  w5,    ///< K subscribers over many channels: subscribe cost, delivery unaffected
  idle,  ///< connected, no traffic: CPU use
};

struct settings {
  client_kind client = client_kind::pgnotify;
  workload kind = workload::w1;
  subscriber_kind subscriber = subscriber_kind::helper;  ///< SUBSCRIBER=helper|actor
  std::string uri;               ///< PGURI; empty means the PG* environment variables
  std::string channel;           ///< CHANNEL: the channel the sender notifies
  uint64_t n = 0;                ///< N: notifications the sender sends
  uint32_t k = 0;                ///< K: subscribers (w2: of the channel, w5: of the other channels)
  uint32_t stalled_bound = 256;  ///< STALLED_BOUND (w4)
  /// MAX_BATCH: bus_settings::max_batch of the pgnotify client (parse_settings
  /// sets the library's default).
  uint64_t max_batch = 0;
  uint32_t other_channels = 1000;          ///< CHANNELS (w5): channels besides CHANNEL
  std::chrono::seconds idle_duration{10};  ///< IDLE_SECONDS (idle)
  std::chrono::seconds patience{120};      ///< TIMEOUT_S: longest wait for progress
  /// Other `--key=value` arguments: CAF options for the pgnotify client's actor
  /// system (say --scheduler.policy=sharing), to compare scheduler settings.
  std::vector<std::string> caf_options;
};

/// Parses `--client pgnotify|raw` (or `--client=...`), CAF options and the environment.
/// Returns an explanation on a usage error.
std::optional<std::string> parse_settings(int argc, char** argv, settings& out);

std::string to_string(workload kind);

/// The payload the sender gives its `sequence`-th notification (1-based): the
/// number, zero-padded to 64 digits, as `lpad(g::text, 64, '0')` makes it.
std::string sequence_payload(uint64_t sequence);

}  // namespace pgnotify::bench
