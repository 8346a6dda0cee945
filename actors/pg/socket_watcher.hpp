// The readiness hook: tells the listener, through CAF's own event loop (the
// middleman's multiplexer), when the libpq socket is readable or writable. No
// thread of ours: the multiplexer thread calls handle_event, which only sends a
// message. See ../shared/notes/caf-0.17-event-loop-libpq-notes.md for the traps
// this class avoids (the numbers below refer to its pitfalls).
//
// CAF's epoll is level-triggered and has no one-shot mode (pitfall 3), and its
// add/del may only be called on the multiplexer thread (pitfall 4), so
// re-arming through it costs a post, a pipe write and a wake-up of the
// multiplexer per read. Instead the socket sits in a private epoll set with
// EPOLLONESHOT, and CAF watches that set's descriptor, which is readable while
// an armed interest is ready. handle_event takes the event from the set (which
// disarms the socket); the listener re-arms with one epoll_ctl from its own
// thread, which epoll allows.
#pragma once

#include <cstdint>
#include <mutex>

#include <caf/actor.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/event_handler.hpp>

namespace pgnotify::pg {

class socket_watcher final : public caf::io::network::event_handler {
 public:
  using operation = caf::io::network::operation;

  /// Watches `socket` (libpq's; never closed here: when libpq closes it, the
  /// kernel drops it from the private set, so no call can fail on it,
  /// pitfall 2). Throws std::system_error if the set cannot be made.
  socket_watcher(caf::io::network::default_multiplexer& mux, int socket, caf::actor listener);

  /// Any thread: report `op` once, tagged with `token`.
  void arm(operation op, uint64_t token);

  /// Any thread: stop watching and free this object on the multiplexer thread
  /// once the loop no longer refers to it (pitfall 5). Do not touch it afterwards.
  void close();

  void handle_event(operation op) override;
  void removed_from_loop(operation op) override;
  void graceful_shutdown() override;

 private:
  ~socket_watcher() override = default;
  void close_now();
  void update_interest();  ///< with mtx_ held

  caf::actor listener_;
  int socket_;
  std::mutex mtx_;      ///< guards armed_ and token_ (arm runs on the listener's thread)
  uint32_t armed_ = 0;  ///< EPOLLIN and/or EPOLLOUT asked for and not yet reported
  uint64_t token_ = 0;
  bool closing_ = false;  ///< multiplexer thread only, like removals_left_
  int removals_left_ = 0;
};

}  // namespace pgnotify::pg
