// `--remote`: connecting to the bus a `pgnotify serve` publishes, with a
// deadline (CAF's blocking remote_actor has none), over plain TCP or mutual
// TLS, and refusing a server of another protocol version by name.
#pragma once

#include <set>
#include <string>

#include <caf/actor_system.hpp>

#include <pgnotify/messages/protocol.hpp>

namespace pgnotify::app {

/// "pgnotify protocol N" for a published actor's interface (as CAF reports it
/// to a connecting node): N from its protocol_atom, 1 for a pgnotify bus
/// without one, else "an unknown version".
std::string protocol_of(const std::set<std::string>& interface);

/// The bus published at host:port, through CAF's OpenSSL module if `tls`
/// (the actor system must have loaded it). Throws usage_error: the server
/// cannot be reached, refused the handshake (the message hints at the TLS
/// options), did not complete it within `timeout` (the pending connection is
/// shut down, or the actor system would wait for it at exit), publishes
/// nothing there, or speaks another protocol version.
bus_actor connect_remote(caf::actor_system& sys, const std::string& host, uint16_t port, bool tls,
                         caf::timespan timeout);

}  // namespace pgnotify::app
