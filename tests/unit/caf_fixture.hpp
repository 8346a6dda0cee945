// A doctest fixture around CAF's deterministic test_coordinator: nothing runs
// until the test says so, and timers fire only when the test advances the clock.
// (CAF's own dsl.hpp macros crash outside CAF's test runner, so they are not used.)
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/others.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>

#include <pgnotify/messages/type_ids.hpp>

namespace pgnotify::test {

/// Records every message it receives, in order.
struct recorder_state {
  static inline const char* name = "recorder";
  std::string role;  ///< what it stands in for, for debugging
  std::vector<caf::message> messages;
};

inline caf::behavior recorder(caf::stateful_actor<recorder_state>* self, std::string role) {
  self->state.role = std::move(role);
  self->set_default_handler([=](caf::scheduled_actor*, caf::message_view& x) {
    self->state.messages.push_back(x.move_content_to_message());
    return caf::message{};
  });
  // A behavior needs one handler, or the actor terminates at once.
  return {[](caf::ok_atom) {}};
}

struct caf_fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  caf::scheduler::test_coordinator& sched;
  std::vector<caf::actor> to_stop;

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    add_message_types(c);
    c.set("scheduler.policy", caf::atom("testing"));
    c.set("logger.file-verbosity", caf::atom("quiet"));
    c.set("logger.console-verbosity", caf::atom("quiet"));
    return c;
  }

  caf_fixture()
      : sys(init(cfg)),
        self(sys, true),
        sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {}

  virtual ~caf_fixture() {
    // Actors with pending timers would keep ~actor_system waiting forever.
    for (auto& a : to_stop) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  template <class Handle>
  Handle stopped_at_exit(Handle h) {
    to_stop.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  caf::actor spawn_recorder(std::string role = "subscriber") {
    return stopped_at_exit(sys.spawn(recorder, std::move(role)));
  }

  std::vector<caf::message>& messages_of(const caf::actor& recorder_handle) {
    auto ptr = caf::actor_cast<caf::abstract_actor*>(recorder_handle);
    return dynamic_cast<caf::stateful_actor<recorder_state>&>(*ptr).state.messages;
  }

  /// The state of a local stateful actor; Base is Handle::base for typed actors.
  template <class State, class Base = caf::event_based_actor, class Handle>
  State& state_of(const Handle& h) {
    auto ptr = caf::actor_cast<caf::abstract_actor*>(h);
    return dynamic_cast<caf::stateful_actor<State, Base>&>(*ptr).state;
  }

  caf::actor_clock::time_point now() { return sched.clock().now(); }

  /// The payloads a recorder received in notification batches, in order.
  std::vector<std::string> payloads(const caf::actor& recorder_handle) {
    std::vector<std::string> result;
    for (auto& msg : messages_of(recorder_handle))
      if (msg.match_elements<notification_batch>())
        for (const auto& n : msg.get_as<notification_batch>(0)) result.emplace_back(n.payload);
    return result;
  }

  /// Pops the next message of the scoped actor without blocking (empty if none).
  caf::message next_message() {
    caf::message result;
    self->receive(
        caf::others >> [&](caf::message_view& x) -> caf::result<caf::message> {
          result = x.move_content_to_message();
          return caf::message{};
        },
        caf::after(std::chrono::seconds(0)) >> [] {});
    return result;
  }
};

}  // namespace pgnotify::test
