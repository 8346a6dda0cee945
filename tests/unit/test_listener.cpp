// The listener's state machine against a scripted connection, on CAF's
// deterministic scheduler: given this connection behaviour, when this message
// arrives, then these messages leave.
#include <doctest/doctest.h>

#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include <pgnotify/actors/listener.hpp>
#include <pgnotify/messages/errors.hpp>

#include "caf_fixture.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::test;

namespace {

// What the scripted server does, shared by the test and every fake connection.
struct script {
  int refuse_connects = 0;          ///< the next N connects throw
  std::string refuse_listen_on;     ///< LISTEN on this channel throws (once)
  bool drop_on_next_read = false;   ///< the next receive throws
  std::vector<notification> inbox;  ///< delivered by the next receive
  bool health_check_hangs = false;  ///< the next health check times out
  std::optional<std::vector<std::string>> listening_override;  ///< what the server claims
  int health_checks = 0;
  std::vector<caf::actor_clock::time_point> connect_attempts;
  std::vector<std::string> listens;  ///< successful LISTENs, in order, all connections
  std::vector<std::string> unlistens;
  int arms = 0;
};

class scripted_connection final : public connection {
 public:
  explicit scripted_connection(std::shared_ptr<script> s) : script_(std::move(s)) {}
  void listen(const std::string& channel) override {
    if (channel == script_->refuse_listen_on) {
      script_->refuse_listen_on.clear();
      throw std::runtime_error("LISTEN failed: cannot execute LISTEN during recovery");
    }
    script_->listens.push_back(channel);
  }
  void unlisten(const std::string& channel) override { script_->unlistens.push_back(channel); }
  void receive(std::vector<notification>& out, uint64_t generation, size_t) override {
    if (script_->drop_on_next_read) {
      script_->drop_on_next_read = false;
      throw std::runtime_error("server closed the connection unexpectedly");
    }
    for (auto& n : script_->inbox) {
      n.generation = generation;
      out.push_back(n);
    }
    script_->inbox.clear();
  }
  void notify_when_readable(const listener_actor&) override { ++script_->arms; }
  health check_health(caf::timespan timeout) override {
    ++script_->health_checks;
    if (script_->health_check_hangs) {
      script_->health_check_hangs = false;
      throw std::runtime_error(
          fmt::format("health check failed: no answer within {} ms",
                      std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()));
    }
    if (script_->listening_override) return {*script_->listening_override, 0.25};
    return {script_->listens, 0.25};  // good enough: one connection at a time here
  }

 private:
  std::shared_ptr<script> script_;
};

struct listener_fixture : caf_fixture {
  std::shared_ptr<script> server = std::make_shared<script>();
  caf::actor registry_stub = spawn_recorder("registry");
  listener_actor lis;

  void start(std::vector<std::string> channels, backoff_settings backoff = {},
             health_check_settings health = {0s, 0s}) {
    auto clock = &sched.clock();
    auto connect = [s = server, clock]() -> std::unique_ptr<connection> {
      s->connect_attempts.push_back(clock->now());
      if (s->refuse_connects > 0) {
        --s->refuse_connects;
        throw std::runtime_error("could not connect to server: Connection refused");
      }
      return std::make_unique<scripted_connection>(s);
    };
    lis =
        stopped_at_exit(sys.spawn(listener, connect, caf::actor_cast<registry_actor>(registry_stub),
                                  listener_settings{std::move(channels), backoff, health}));
    sched.run();
  }

  /// The generations the registry was told about, in order.
  std::vector<uint64_t> generations() {
    std::vector<uint64_t> result;
    for (auto& msg : messages_of(registry_stub))
      if (msg.match_elements<reconnected>())
        result.push_back(msg.get_as<reconnected>(0).generation);
    return result;
  }

  bus_status status() {
    self->send(lis, status_atom_v);
    sched.run();
    bus_status result;
    self->receive([&](bus_status& s) { result = s; }, caf::after(0s) >> [] { FAIL("no status"); });
    return result;
  }

  /// Fires the next pending timer and runs everything it triggers.
  void fire_next_timer() {
    REQUIRE(sched.trigger_timeout());
    sched.run();
  }

  std::vector<caf::timespan> gaps_between_attempts() {
    std::vector<caf::timespan> result;
    for (size_t i = 1; i < server->connect_attempts.size(); ++i)
      result.push_back(server->connect_attempts[i] - server->connect_attempts[i - 1]);
    return result;
  }
};

}  // namespace

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: connects at once and LISTENs on every channel before generation 1") {
  start({"a", "b"});
  CHECK(server->connect_attempts.size() == 1);
  CHECK(server->listens == std::vector<std::string>{"a", "b"});
  CHECK(generations() == std::vector<uint64_t>{1});
  CHECK(server->arms == 1);
  auto st = status();
  CHECK(st.state == connection_state::listening);
  CHECK(st.generation == 1);
}

TEST_CASE_FIXTURE(listener_fixture, "listener: backoff is 500 ms doubling to a 30 s cap") {
  server->refuse_connects = 10;
  start({"a"});
  CHECK(status().state == connection_state::backing_off);
  CHECK(status().last_error == "could not connect to server: Connection refused");
  for (int i = 0; i < 10; ++i) fire_next_timer();
  using ms = std::chrono::milliseconds;
  std::vector<caf::timespan> expected{ms(500),   ms(1000),  ms(2000),  ms(4000),  ms(8000),
                                      ms(16000), ms(30000), ms(30000), ms(30000), ms(30000)};
  CHECK(gaps_between_attempts() == expected);
  // The eleventh attempt succeeded: generation 1, never before.
  CHECK(generations() == std::vector<uint64_t>{1});
  CHECK(status().state == connection_state::listening);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a timer shorter than the backoff does not reconnect") {
  server->refuse_connects = 1;
  start({"a"});
  CHECK(sched.clock().advance_time(499ms) == 0);
  sched.run();
  CHECK(server->connect_attempts.size() == 1);
  CHECK(sched.clock().advance_time(1ms) == 1);
  sched.run();
  CHECK(server->connect_attempts.size() == 2);
  CHECK(generations() == std::vector<uint64_t>{1});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a failed LISTEN is a failed connect with no generation") {
  server->refuse_listen_on = "b";
  start({"a", "b"});
  CHECK(generations().empty());
  auto st = status();
  CHECK(st.state == connection_state::backing_off);
  CHECK(st.generation == 0);
  CHECK(st.last_error == "LISTEN failed: cannot execute LISTEN during recovery");
  fire_next_timer();
  CHECK(server->listens == std::vector<std::string>{"a", "a", "b"});
  CHECK(generations() == std::vector<uint64_t>{1});
}

TEST_CASE_FIXTURE(listener_fixture, "listener: one batch per read stamped with the generation") {
  start({"a", "b"});
  server->inbox = {{"a", "1", 7, 0}, {"b", "2", 7, 0}, {"a", "3", 7, 0}};
  self->send(lis, readable_atom_v);
  sched.run();
  std::vector<notification> got;
  int batches = 0;
  for (auto& msg : messages_of(registry_stub))
    if (msg.match_elements<received_notifications>()) {
      ++batches;
      for (auto& n : msg.get_as<received_notifications>(0).notifications) got.push_back(n);
    }
  CHECK(batches == 1);
  REQUIRE(got.size() == 3);
  CHECK(got[0].payload == "1");
  CHECK(got[1].channel == "b");
  CHECK(got[2].payload == "3");
  for (auto& n : got) CHECK(n.generation == 1);
  CHECK(server->arms == 2);  // re-armed after the read
  // A read that brings nothing sends nothing.
  self->send(lis, readable_atom_v);
  sched.run();
  CHECK(messages_of(registry_stub).size() == 2);  // reconnected{1} + one batch
}

TEST_CASE_FIXTURE(
    listener_fixture,
    "listener: a drop reconnects after 500 ms and LISTENs again before generation 2") {
  start({"a", "b"});
  server->drop_on_next_read = true;
  self->send(lis, readable_atom_v);
  sched.run();
  CHECK(status().state == connection_state::backing_off);
  CHECK(status().retry_in == caf::timespan{500ms});
  CHECK(generations() == std::vector<uint64_t>{1});
  CHECK(sched.clock().advance_time(500ms) == 1);
  sched.run();
  CHECK(server->listens == std::vector<std::string>{"a", "b", "a", "b"});
  CHECK(generations() == std::vector<uint64_t>{1, 2});
  // Stale readable and connect messages change nothing.
  self->send(lis, connect_atom_v);
  sched.run();
  CHECK(server->connect_attempts.size() == 2);
  CHECK(generations() == std::vector<uint64_t>{1, 2});
  server->inbox = {{"a", "after", 1, 0}};
  self->send(lis, readable_atom_v);
  sched.run();
  auto& last = messages_of(registry_stub).back();
  REQUIRE(last.match_elements<received_notifications>());
  CHECK(last.get_as<received_notifications>(0).notifications.at(0).generation == 2);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: backoff resets only after the connection stayed up") {
  backoff_settings backoff;
  backoff.stable_after = 10s;
  server->refuse_connects = 3;  // 500, 1000, 2000, then connected
  start({"a"}, backoff);
  for (int i = 0; i < 3; ++i) fire_next_timer();
  REQUIRE(generations() == std::vector<uint64_t>{1});
  // Up for 9.999 s only: the next delay keeps growing (4000 ms).
  sched.clock().advance_time(9999ms);
  server->drop_on_next_read = true;
  self->send(lis, readable_atom_v);
  sched.run();
  CHECK(status().retry_in == caf::timespan{4000ms});
  fire_next_timer();
  REQUIRE(generations() == std::vector<uint64_t>{1, 2});
  // Up for 10 s: back to 500 ms.
  sched.clock().advance_time(10s);
  server->drop_on_next_read = true;
  self->send(lis, readable_atom_v);
  sched.run();
  CHECK(status().retry_in == caf::timespan{500ms});
}

TEST_CASE_FIXTURE(listener_fixture, "listener: stops at once in the middle of a 30 s backoff") {
  server->refuse_connects = 100;
  start({"a"});
  for (int i = 0; i < 7; ++i) fire_next_timer();
  REQUIRE(status().retry_in == caf::timespan{30s});
  self->monitor(lis);
  auto before = now();
  caf::anon_send_exit(lis, caf::exit_reason::user_shutdown);
  sched.run();
  bool down = false;
  self->receive([&](caf::down_msg& msg) { down = msg.reason == caf::exit_reason::user_shutdown; },
                caf::after(0s) >> [] {});
  CHECK(down);
  CHECK(now() == before);  // no simulated time had to pass
}

TEST_CASE_FIXTURE(listener_fixture, "listener: gives up after the configured number of failures") {
  server->refuse_connects = 100;
  auto clock = &sched.clock();
  auto connect = [s = server, clock]() -> std::unique_ptr<connection> {
    s->connect_attempts.push_back(clock->now());
    throw std::runtime_error("could not connect to server: Connection refused");
  };
  lis = sys.spawn(listener, connect, caf::actor_cast<registry_actor>(registry_stub),
                  listener_settings{{"a"}, {}, {0s, 0s}, 3});
  self->monitor(lis);
  sched.run();
  fire_next_timer();
  fire_next_timer();
  CHECK(server->connect_attempts.size() == 3);
  caf::error reason;
  self->receive([&](caf::down_msg& msg) { reason = msg.reason; },
                caf::after(0s) >> [] { FAIL("the listener did not quit"); });
  CHECK(reason == make_error(errc::gave_up));
  CHECK(render(reason) ==
        "gave_up: after 3 failed attempt(s): could not connect to server: Connection refused");
  CHECK(sched.clock().schedule().empty());
}

TEST_CASE_FIXTURE(listener_fixture, "listener: a health check without an answer reconnects") {
  start({"a"}, {}, {10s, 5s});
  CHECK(sched.clock().advance_time(9999ms) == 0);
  sched.run();
  CHECK(server->health_checks == 0);
  server->health_check_hangs = true;
  CHECK(sched.clock().advance_time(1ms) == 1);
  sched.run();
  CHECK(server->health_checks == 1);
  auto st = status();
  CHECK(st.state == connection_state::backing_off);
  CHECK(st.last_error == "health check failed: no answer within 5000 ms");
  CHECK(sched.clock().advance_time(500ms) == 1);
  sched.run();
  CHECK(generations() == std::vector<uint64_t>{1, 2});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a health check that finds a LISTEN missing reconnects") {
  start({"a", "b"}, {}, {10s, 5s});
  server->listening_override = std::vector<std::string>{"a"};
  sched.clock().advance_time(10s);
  sched.run();
  CHECK(status().last_error == "health check: the server LISTENs on 1 of 2 channel(s)");
  server->listening_override = std::vector<std::string>{"b", "a"};  // order does not matter
  fire_next_timer();
  CHECK(generations() == std::vector<uint64_t>{1, 2});
  sched.clock().advance_time(10s);
  sched.run();
  CHECK(server->health_checks == 2);
  CHECK(status().state == connection_state::listening);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: notifications read during a health check are handed on") {
  start({"a"}, {}, {10s, 5s});
  server->inbox = {{"a", "queued during the check", 9, 0}};
  sched.clock().advance_time(10s);
  sched.run();
  auto& last = messages_of(registry_stub).back();
  REQUIRE(last.match_elements<received_notifications>());
  CHECK(last.get_as<received_notifications>(0).notifications.at(0).payload ==
        "queued during the check");
  CHECK(status().queue_usage == 0.25);
  CHECK(status().health_checks_passed == 1);
  // And the checks go on.
  sched.clock().advance_time(10s);
  sched.run();
  CHECK(server->health_checks == 2);
}

TEST_CASE_FIXTURE(listener_fixture, "listener: a health tick of an earlier connection is ignored") {
  start({"a"}, {}, {10s, 5s});
  sched.clock().advance_time(1s);
  server->drop_on_next_read = true;
  self->send(lis, readable_atom_v);
  sched.run();
  sched.clock().advance_time(500ms);  // reconnect at 1.5 s: its first check is due at 11.5 s
  sched.run();
  REQUIRE(generations() == std::vector<uint64_t>{1, 2});
  sched.clock().advance_time(8500ms);  // 10 s: the first connection's tick fires
  sched.run();
  CHECK(server->health_checks == 0);
  sched.clock().advance_time(1500ms);  // 11.5 s
  sched.run();
  CHECK(server->health_checks == 1);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: the status counts failed attempts until a connect succeeds") {
  server->refuse_connects = 3;
  start({"a"});
  CHECK(status().failed_attempts == 1);
  fire_next_timer();
  fire_next_timer();
  CHECK(status().failed_attempts == 3);
  CHECK(status().retry_in == caf::timespan{2000ms});
  fire_next_timer();
  CHECK(status().failed_attempts == 0);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: dynamic channels are LISTENed at once and UNLISTENed on request") {
  start({"fixed"});
  caf::ok_atom ok;
  self->send(lis, listen_atom_v, std::string{"new"});
  sched.run();
  self->receive([&](caf::ok_atom x) { ok = x; }, caf::after(0s) >> [] { FAIL("no reply"); });
  CHECK(server->listens == std::vector<std::string>{"fixed", "new"});
  self->send(lis, listen_atom_v, std::string{"new"});  // again: nothing to do
  sched.run();
  self->receive([](caf::ok_atom) {}, caf::after(0s) >> [] { FAIL("no reply"); });
  CHECK(server->listens.size() == 2);
  self->send(lis, unlisten_atom_v, std::string{"new"});
  sched.run();
  CHECK(server->unlistens == std::vector<std::string>{"new"});
  // A reconnect LISTENs on exactly the current set.
  server->drop_on_next_read = true;
  self->send(lis, readable_atom_v);
  sched.run();
  self->send(lis, listen_atom_v, std::string{"while down"});  // answered at once, LISTENed later
  sched.run();
  self->receive([](caf::ok_atom) {}, caf::after(0s) >> [] { FAIL("no reply"); });
  fire_next_timer();
  CHECK(server->listens == std::vector<std::string>{"fixed", "new", "fixed", "while down"});
  CHECK(generations() == std::vector<uint64_t>{1, 2});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: notifications read during LISTEN are handed on after reconnected") {
  server->inbox = {{"a", "sent while LISTEN ran", 3, 0}};
  start({"a"});
  auto& msgs = messages_of(registry_stub);
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0].match_elements<reconnected>());
  REQUIRE(msgs[1].match_elements<received_notifications>());
  CHECK(msgs[1].get_as<received_notifications>(0).notifications.at(0).generation == 1);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: what a failing connection read goes out before the next generation") {
  start({"a", "b"}, {}, {10s, 5s});
  server->listening_override = std::vector<std::string>{"a"};  // the check will fail
  server->inbox = {{"b", "read by the health check", 3, 0}};
  sched.clock().advance_time(10s);
  sched.run();
  server->listening_override.reset();
  fire_next_timer();
  std::vector<std::string> order;
  for (auto& msg : messages_of(registry_stub))
    if (msg.match_elements<reconnected>())
      order.push_back("reconnected " + std::to_string(msg.get_as<reconnected>(0).generation));
    else if (msg.match_elements<received_notifications>())
      for (auto& n : msg.get_as<received_notifications>(0).notifications)
        order.push_back(n.payload + " @" + std::to_string(n.generation));
  CHECK(order ==
        std::vector<std::string>{"reconnected 1", "read by the health check @1", "reconnected 2"});
}
