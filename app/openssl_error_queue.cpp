// CAF 0.17's OpenSSL module never empties OpenSSL's per-thread error queue:
// the only call that would (session::get_ssl_error) sits inside CAF_LOG_INFO,
// which Debian's build compiles out. OpenSSL 3 queues an error whenever a TLS
// peer goes away without close_notify (every CAF node does) or fails its
// handshake (a refused stranger), and the next SSL_get_error on that thread -
// for any connection, say a subscriber's read that merely wants more data -
// reports it: CAF then closes that innocent connection. One `status --remote`
// that ended, or one refused stranger, cut a subscriber of `serve`.
//
// OpenSSL requires the queue to be empty before each TLS I/O call, so the
// program does that for CAF: these definitions preempt libssl's for every
// library in the process (the executable's symbols come first), empty the
// queue and call libssl's own. libpq empties it itself; doing it again is
// harmless. Compiled into the program only: the library does not change
// OpenSSL's behaviour for its users.
//
// SSL_accept does one more thing: CAF calls it at every turn of its spin on a
// TLS handshake that waits for the peer, so that is where `serve` cuts one
// that is overdue (handshake_guard.hpp).
#include <dlfcn.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "handshake_guard.hpp"
#include "tls.hpp"

namespace {

template <class Function>
Function* libssl(const char* name) {
  auto* found = reinterpret_cast<Function*>(dlsym(RTLD_NEXT, name));
  if (found == nullptr) abort();  // libssl is linked: cannot happen
  return found;
}

}  // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static auto* real = libssl<int(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto* real = libssl<int(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static auto* real = libssl<int(SSL*)>("SSL_accept");
  ERR_clear_error();
  // A connection shut down here makes libssl's call fail (the peer "left").
  pgnotify::app::cut_overdue_tls_handshake(SSL_get_fd(ssl));
  return real(ssl);
}

int SSL_connect(SSL* ssl) {
  static auto* real = libssl<int(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

}  // extern "C"

namespace pgnotify::app {

bool openssl_error_queue_is_emptied() {
  // What libcaf_openssl's calls resolve to: the first definition in the
  // global scope. Not ours if the program was linked in an unexpected way.
  return dlsym(RTLD_DEFAULT, "SSL_read") == reinterpret_cast<void*>(&SSL_read) &&
         dlsym(RTLD_DEFAULT, "SSL_accept") == reinterpret_cast<void*>(&SSL_accept);
}

}  // namespace pgnotify::app
