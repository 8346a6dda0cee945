#include "socket_watcher.hpp"

#include <fcntl.h>

#include <cerrno>
#include <system_error>

#include <caf/send.hpp>

#include "../../messages/protocol.hpp"

namespace pgnotify::pg {

namespace {

int duplicate(int socket) {
  int copy = ::fcntl(socket, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw std::system_error(errno, std::generic_category(), "dup of the libpq socket");
  return copy;
}

}  // namespace

socket_watcher::socket_watcher(caf::io::network::default_multiplexer& mux, int socket,
                               caf::actor listener)
    : event_handler(mux, duplicate(socket)), listener_(std::move(listener)) {}

void socket_watcher::arm(operation op, uint64_t token) {
  // add/del are not thread-safe: only the multiplexer thread calls them (pitfall 4).
  backend().post([this, op, token] {
    if (closing_) return;
    token_ = token;
    backend().add(op, fd(), this);
  });
}

void socket_watcher::close() {
  backend().post([this] { close_now(); });
}

void socket_watcher::close_now() {
  closing_ = true;
  // The deletes also cancel an add still pending in this round.
  backend().del(operation::read, fd(), this);
  backend().del(operation::write, fd(), this);
  // eventbf() is what epoll has registered during this round: the loop reports
  // the removal of each of those interests at the end of the round, and only
  // then is it safe to free this object.
  auto registered = eventbf();
  removals_left_ = ((registered & caf::io::network::input_mask) != 0 ? 1 : 0) +
                   ((registered & caf::io::network::output_mask) != 0 ? 1 : 0);
  // Not registered at all: not in this round's results either.
  if (removals_left_ == 0) delete this;
}

void socket_watcher::handle_event(operation op) {
  if (closing_) return;
  if (op == operation::propagate_error) {
    // The loop drops both interests itself; the read finds the error.
    caf::anon_send(listener_, readable_atom_v, token_);
    return;
  }
  backend().del(op, fd(), this);
  if (op == operation::read)
    caf::anon_send(listener_, readable_atom_v, token_);
  else
    caf::anon_send(listener_, writable_atom_v, token_);
}

void socket_watcher::removed_from_loop(operation op) {
  (void)op;
  if (closing_ && --removals_left_ == 0) delete this;
}

void socket_watcher::graceful_shutdown() {
  close_now();
}

}  // namespace pgnotify::pg
