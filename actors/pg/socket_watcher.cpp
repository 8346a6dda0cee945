#include "socket_watcher.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <caf/send.hpp>

#include "../../messages/protocol.hpp"

namespace pgnotify::pg {

namespace {

// The private set, with `socket` in it, disarmed.
int make_set(int socket) {
  int set = ::epoll_create1(EPOLL_CLOEXEC);
  if (set < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  epoll_event event{};
  event.events = EPOLLONESHOT;
  if (::epoll_ctl(set, EPOLL_CTL_ADD, socket, &event) != 0) {
    auto err = errno;
    ::close(set);
    throw std::system_error(err, std::generic_category(), "epoll_ctl(ADD) of the libpq socket");
  }
  return set;
}

}  // namespace

socket_watcher::socket_watcher(caf::io::network::default_multiplexer& mux, int socket,
                               caf::actor listener)
    : event_handler(mux, make_set(socket)), listener_(std::move(listener)), socket_(socket) {
  // CAF watches the set for as long as this object lives.
  backend().post([this] {
    if (!closing_) backend().add(operation::read, fd(), this);
  });
}

void socket_watcher::update_interest() {
  epoll_event event{};
  event.events = armed_ | EPOLLONESHOT;
  // Fails only once libpq has closed the socket; its next read reports that.
  ::epoll_ctl(fd(), EPOLL_CTL_MOD, socket_, &event);
}

void socket_watcher::arm(operation op, uint64_t token) {
  std::lock_guard<std::mutex> guard{mtx_};
  token_ = token;
  armed_ |= op == operation::write ? EPOLLOUT : (EPOLLIN | EPOLLRDHUP);
  update_interest();
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

void socket_watcher::handle_event(operation) {
  if (closing_) return;
  // Taking the event disarms the socket (one-shot), so the set stops being
  // readable and CAF's level-triggered loop does not spin.
  epoll_event event{};
  if (::epoll_wait(fd(), &event, 1, 0) != 1) return;
  // A hang-up or an error is reported as whatever was asked for: the next read
  // or connect step finds out what happened.
  bool trouble = (event.events & (EPOLLHUP | EPOLLERR)) != 0;
  bool readable, writable;
  uint64_t token;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    token = token_;
    readable = (armed_ & EPOLLIN) != 0 && (trouble || (event.events & (EPOLLIN | EPOLLRDHUP)));
    writable = (armed_ & EPOLLOUT) != 0 && (trouble || (event.events & EPOLLOUT));
    armed_ &= ~((readable ? (EPOLLIN | EPOLLRDHUP) : 0u) | (writable ? EPOLLOUT : 0u));
    if (armed_ != 0) update_interest();  // what did not fire stays asked for
  }
  if (readable) caf::anon_send(listener_, readable_atom_v, token);
  if (writable) caf::anon_send(listener_, writable_atom_v, token);
}

void socket_watcher::removed_from_loop(operation) {
  if (closing_ && --removals_left_ == 0) delete this;
}

void socket_watcher::graceful_shutdown() {
  close_now();
}

}  // namespace pgnotify::pg
