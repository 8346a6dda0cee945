// The listener actor: owns the single database connection and drives libpq's
// non-blocking API from CAF's event loop (actors/pg/). It connects, LISTENs on
// every channel, hands what each socket read delivered to the registry, and
// when the connection drops it reconnects at once; backoff applies only
// between failed attempts. A new generation begins (reconnected{g} to the
// registry) once every LISTEN of a connection is acknowledged.
//
// Phases: connecting (libpq's connect steps, bounded by connect_timeout),
// subscribing (the LISTENs of a new connection are in flight), listening
// (reading, plus one command at a time: dynamic LISTEN/UNLISTEN and the health
// check, each with a deadline) and backing off (a delayed connect_atom). No
// call blocks, so shutdown takes effect at once in every phase.
#pragma once

#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "../messages/protocol.hpp"
#include "backoff.hpp"
#include "pg/connection.hpp"

namespace pgnotify {

/// A silently dead connection (a frozen backend, a half-open TCP connection)
/// is found by a periodic query that must answer within `timeout` and show every
/// channel LISTENed: detected at most interval + timeout after it died.
struct health_check_settings {
  caf::timespan interval = std::chrono::seconds(10);  ///< 0 disables the check
  caf::timespan timeout = std::chrono::seconds(5);    ///< also bounds LISTEN and UNLISTEN
};

struct listener_settings {
  std::vector<std::string> channels;  ///< validated names; grows and shrinks with dynamic channels
  backoff_settings backoff;
  health_check_settings health;
  /// Quit with errc::gave_up after this many failed attempts in a row; 0 = never give up.
  uint32_t max_failed_attempts = 0;
  /// At most this many notifications per message to the registry (and at
  /// most the registry's batch limit, see batch_limit_atom); libpq keeps the
  /// rest for the next turn, so other messages interleave.
  size_t max_batch = 1024;
  /// A connect (all of libpq's steps) that takes longer fails; 0 = no limit.
  caf::timespan connect_timeout = std::chrono::seconds(10);
  /// The generation before the first connect: 0 for a new bus, the last one
  /// for a listener that the bus restarted after a crash.
  uint64_t initial_generation = 0;
};

/// Spawns a listener that connects through `connect` and reports to `registry`.
listener_actor spawn_listener(caf::actor_system& sys, pg::connection_factory connect,
                              registry_actor registry, listener_settings settings);

}  // namespace pgnotify
