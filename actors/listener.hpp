// The listener actor: owns the single database connection. It connects, LISTENs
// on every channel, hands one received_notifications per socket read to the
// registry, and on any failure reconnects with backoff, LISTENs again and only
// then bumps the generation (reconnected{g} to the registry).
//
// States (behaviors): disconnected (connecting or backing off: waits for
// connect_atom) and listening (waits for readable_atom and health checks).
// Both answer status.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_clock.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "../messages/protocol.hpp"
#include "backoff.hpp"
#include "connection.hpp"

namespace pgnotify {

/// A silently dead connection (a frozen backend, a half-open TCP connection)
/// is found by a periodic query that must answer within `timeout` and show every
/// channel LISTENed: detected at most interval + timeout after it died.
struct health_check_settings {
  caf::timespan interval = std::chrono::seconds(10);  ///< 0 disables the check
  caf::timespan timeout = std::chrono::seconds(5);
};

struct listener_settings {
  std::vector<std::string> channels;  ///< validated names; grows and shrinks with dynamic channels
  backoff_settings backoff;
  health_check_settings health;
  /// Quit with errc::gave_up after this many failures in a row; 0 = never give up.
  uint32_t max_failed_attempts = 0;
  /// While the socket has more, the listener keeps reading until a batch holds
  /// this many notifications: bigger batches mean fewer messages per
  /// notification, but a batch above a subscriber's bound is cut for it.
  size_t max_batch = 256;
};

struct listener_state {
  static inline const char* name = "pgnotify.listener";

  connection_factory connect;
  registry_actor registry;
  listener_settings settings;
  std::unique_ptr<pgnotify::backoff> delays;
  std::unique_ptr<connection> conn;
  bus_status status;
  std::optional<caf::actor_clock::time_point> connected_at;
  caf::actor_clock::time_point retry_at;
  std::vector<notification> buffer;  ///< reused across reads
};

using listener_pointer = listener_actor::stateful_pointer<listener_state>;

/// Spawn detached in production (connecting blocks); tests spawn it under the
/// deterministic scheduler with a scripted connection_factory.
listener_actor::behavior_type listener(listener_pointer self, connection_factory connect,
                                       registry_actor registry, listener_settings settings);

}  // namespace pgnotify
