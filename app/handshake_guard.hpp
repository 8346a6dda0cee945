// Strangers on the TLS port. CAF 0.17's OpenSSL module spins on a connection
// whose TLS handshake waits for the peer. BASP queues its greeting as soon as
// CAF accepts a connection, so the socket is registered for writing (EPOLLOUT,
// level-triggered: io::network::default_multiplexer). Each write event ends in
// SSL_accept (openssl::session::do_some), which wants to read; do_some reports
// that as a successful write of 0 bytes (rw_state::success), so
// io::network::stream keeps the registration while its greeting is unsent,
// and the writable socket wakes epoll_wait again at once: 100 % of a core for
// as long as the peer stays silent, and the actor system cannot stop before
// the connection goes (notes/caf-0.17-openssl-notes.md, pitfall 2). A good
// handshake spins too, for one round trip. CAF offers no handshake timeout or
// hook, so `serve` bounds this itself (Linux only):
// - the kernel holds a new connection until its first byte arrives
//   (TCP_DEFER_ACCEPT on CAF's listening socket): a TLS client speaks first,
//   a silent stranger reaches CAF only when the kernel stops waiting;
// - the program's own SSL_accept (openssl_error_queue.cpp), which CAF calls at
//   every turn of the spin, shuts down a connection whose handshake is overdue
//   before calling OpenSSL's. It runs on CAF's thread, inside CAF's call, on
//   the descriptor CAF is using (which cannot be closed or reused meanwhile),
//   and shutdown(2) changes no state of CAF's: OpenSSL's SSL_accept then fails
//   as if the peer had left, and CAF closes the connection as it closes any
//   broken one. (CAF's epoll registration is left alone: CAF keeps its own
//   copy of it.) No polling: nothing runs while no handshake waits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <caf/timespan.hpp>

namespace pgnotify::app {

/// How long the kernel holds a connection that has sent nothing before CAF
/// accepts it anyway (TCP_DEFER_ACCEPT counts in SYN-ACK retransmissions: the
/// first one is after 1 s).
constexpr std::chrono::seconds first_byte_wait{1};

/// How long a connection that CAF accepted before its peer sent anything may
/// stay silent (at most `timeout`). A TLS client sends its ClientHello right
/// behind the TCP handshake, and the kernel has held a silent one for
/// `first_byte_wait` already: this only covers a ClientHello still in flight
/// when the kernel accepted anyway (with SYN cookies, under a SYN flood).
constexpr std::chrono::milliseconds first_byte_grace{50};

/// From now on (call before publishing), the program's SSL_accept cuts a TLS
/// handshake in which the peer has sent nothing for `first_byte_grace`, or in
/// which this side has sent nothing for `timeout` (the peer, having had this
/// side's last flight that long, has not answered), and logs it with the peer.
void limit_tls_handshakes(caf::timespan timeout);

/// Called by the program's SSL_accept on CAF's thread, before OpenSSL's, with
/// the connection's descriptor: shuts the connection down (shutdown(2)) if its
/// handshake is overdue (limit_tls_handshakes).
void cut_overdue_tls_handshake(int fd);

/// Makes the kernel hold connections to this process's listening TCP sockets
/// on `port` until their first byte arrives, or `first_byte_wait` passed
/// (TCP_DEFER_ACCEPT). Returns how many listening sockets it changed.
size_t defer_accept(uint16_t port);

/// Shuts down (shutdown(2), on a duplicate of the descriptor: the socket stays
/// CAF's to close) every TCP connection of this process whose local port
/// (`local_port` true) or peer port is `port`. Returns how many.
size_t shut_down_connections(uint16_t port, bool local_port);

}  // namespace pgnotify::app
