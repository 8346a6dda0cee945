// The readiness hook: tells the listener, through CAF's own event loop (the
// middleman's multiplexer), when the libpq socket is readable or writable. No
// thread of ours: the multiplexer thread calls handle_event, which only sends a
// message. See ../shared/notes/caf-0.17-event-loop-libpq-notes.md for the traps
// this class avoids (the numbers below refer to its pitfalls).
#pragma once

#include <cstdint>

#include <caf/actor.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/event_handler.hpp>

namespace pgnotify::pg {

class socket_watcher final : public caf::io::network::event_handler {
 public:
  using operation = caf::io::network::operation;

  /// Watches a duplicate of `socket` (the event handler closes the descriptor
  /// it watches, and libpq must be free to close its own: pitfalls 1 and 2).
  /// Throws std::system_error if the descriptor cannot be duplicated.
  socket_watcher(caf::io::network::default_multiplexer& mux, int socket, caf::actor listener);

  /// Any thread: report `op` once, tagged with `token`. The interest is
  /// dropped when it fires (epoll is level-triggered: pitfall 3).
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

  caf::actor listener_;
  uint64_t token_ = 0;  ///< multiplexer thread only, like everything below
  bool closing_ = false;
  int removals_left_ = 0;  ///< interests whose removal the loop will still report
};

}  // namespace pgnotify::pg
