// Strangers on the TLS port. CAF 0.17's OpenSSL module spins on a connection
// whose TLS handshake does not complete: BASP queues its greeting at once, the
// socket is writable, and every write attempt ends in SSL_accept wanting to
// read, so the event loop polls it in a busy loop (100 % of a core) for as long
// as the peer stays, and the actor system cannot stop before it leaves
// (notes/caf-0.17-openssl-notes.md, pitfall 2). CAF offers no handshake
// timeout or hook, so `serve` bounds this from outside: it finds such
// connections in /proc and shuts them down, and CAF then closes them as it
// closes any broken connection. Linux only.
#pragma once

#include <cstddef>
#include <cstdint>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/timespan.hpp>

namespace pgnotify::app {

/// Spawns an actor that looks at this process's TCP connections accepted on
/// `port` a few times per `timeout` and shuts down each one on which CAF's
/// event loop has waited to write, while the socket could take data and nothing
/// was sent, for `timeout`: a TLS handshake that did not finish (a legitimate
/// one spins too, for one round trip). Each is logged with its peer. Stop it
/// with an exit message.
caf::actor spawn_handshake_guard(caf::actor_system& sys, uint16_t port, caf::timespan timeout);

/// Shuts down (shutdown(2), on a duplicate of the descriptor: the socket stays
/// CAF's to close) every TCP connection of this process whose local port
/// (`local_port` true) or peer port is `port`. Returns how many.
size_t shut_down_connections(uint16_t port, bool local_port);

}  // namespace pgnotify::app
