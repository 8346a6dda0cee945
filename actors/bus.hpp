// The bus: the user's entry point. spawn_bus validates the settings, spawns the
// registry and the listener, and returns a typed handle; stop it with
// caf::anon_send_exit(bus, exit_reason::user_shutdown). The bus supervises the
// listener: one that exits abnormally (a bug, an unexpected exception; not
// giving up after max_failed_attempts) is restarted after the backoff, the
// generation continues, and the registry and every subscription survive.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "../messages/protocol.hpp"
#include "backoff.hpp"
#include "listener.hpp"
#include "pg/connection.hpp"
#include "pg/conninfo.hpp"

namespace pgnotify {

struct bus_settings {
  /// A libpq connection string or URI; empty means the PG* environment variables.
  std::string conninfo;
  /// The fixed channel set (duplicates are ignored). Empty is a valid, idle bus.
  std::vector<std::string> channels;
  backoff_settings backoff;
  health_check_settings health;
  /// The bus quits with errc::gave_up after this many failures in a row; 0 = never.
  uint32_t max_failed_attempts = 0;
  /// At most this many notifications per batch, and no more than the smallest
  /// bound of a subscriber (one on another node counts at least default_bound),
  /// so that a burst does not cut a subscriber that keeps up: what a read
  /// brought beyond it follows in further batches at once. Larger batches mean
  /// fewer messages per notification; raise the bounds too for throughput.
  size_t max_batch = 1024;
  connection_defaults connection;
  /// Notifications a subscriber may have unacked before it starts missing some.
  uint32_t default_bound = 256;
  /// Off: subscribing to a channel not in `channels` is unknown_channel. On: it
  /// LISTENs on it (the reply comes once the server acknowledged), and the last
  /// subscriber leaving or dying UNLISTENs it; `channels` stay LISTENed always.
  bool dynamic_channels = false;
  /// For tests: resolves one host name to numeric addresses (throws
  /// std::exception with the reason); runs on the lookup's own short-lived
  /// thread, never on CAF's. Empty = getaddrinfo.
  std::function<std::vector<std::string>(const std::string& host)> host_lookup;
};

/// Prepares an actor system configuration for pgnotify: registers its message
/// types (add_message_types) and loads CAF's middleman, whose event loop drives
/// the connection. Call it once, instead of both of those.
void configure(caf::actor_system_config& cfg);

/// Spawns a bus connected to PostgreSQL. The connection runs on CAF's event
/// loop: the actor system must have loaded the middleman
/// (cfg.load<caf::io::middleman>()) with its default network backend. Errors
/// (before anything is spawned): invalid_channel for a bad channel name,
/// invalid_argument for a connection string libpq cannot parse, a
/// default_bound of 0 or a system without the middleman.
caf::expected<bus_actor> spawn_bus(caf::actor_system& sys, bus_settings settings);

/// The same with another way to connect: for tests (see pg/scripted_connection.hpp).
caf::expected<bus_actor> spawn_bus(caf::actor_system& sys, bus_settings settings,
                                   pg::connection_factory connect);

}  // namespace pgnotify
