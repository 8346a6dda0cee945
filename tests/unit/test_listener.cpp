// The listener's state machine against a scripted server (actors/pg/scripted_connection.hpp),
// on CAF's deterministic scheduler: given this connection behaviour, when this
// event happens, then these messages leave.
#include <doctest/doctest.h>

#include <limits>
#include <optional>
#include <stdexcept>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/actors/listener.hpp>
#include <pgnotify/actors/pg/scripted_connection.hpp>
#include <pgnotify/messages/errors.hpp>

#include "caf_fixture.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::test;

namespace {

struct listener_fixture : caf_fixture {
  std::shared_ptr<pg::scripted_server> server = std::make_shared<pg::scripted_server>();
  caf::actor registry_stub = spawn_recorder("registry");
  listener_actor lis;

  listener_fixture() { server->clock = &sched.clock(); }

  /// Defaults for these tests: no health check and no deadlines unless asked,
  /// so that the only timers are the ones a test is about.
  static listener_settings settings_for(std::vector<std::string> channels) {
    listener_settings settings;
    settings.channels = std::move(channels);
    settings.health = {0s, 0s};
    settings.connect_timeout = 0s;
    return settings;
  }

  void start(listener_settings settings) {
    lis = stopped_at_exit(spawn_listener(sys, server->factory(),
                                         caf::actor_cast<registry_actor>(registry_stub),
                                         std::move(settings)));
    sched.run();
  }

  void start(std::vector<std::string> channels) { start(settings_for(std::move(channels))); }

  /// The generations the registry was told about, in order.
  std::vector<uint64_t> generations() {
    std::vector<uint64_t> result;
    for (auto& msg : messages_of(registry_stub))
      if (msg.match_elements<reconnected>())
        result.push_back(msg.get_as<reconnected>(0).generation);
    return result;
  }

  /// What the registry was told, in order: "reconnected g" and "payload @g".
  std::vector<std::string> registry_log() {
    std::vector<std::string> result;
    for (auto& msg : messages_of(registry_stub))
      if (msg.match_elements<reconnected>())
        result.push_back("reconnected " + std::to_string(msg.get_as<reconnected>(0).generation));
      else if (msg.match_elements<received_notifications>())
        for (const auto& n : msg.get_as<received_notifications>(0).notifications)
          result.push_back(std::string{n.payload} + " @" + std::to_string(n.generation));
    return result;
  }

  size_t batches() {
    size_t result = 0;
    for (auto& msg : messages_of(registry_stub))
      result += msg.match_elements<received_notifications>() ? 1 : 0;
    return result;
  }

  bus_status status() {
    self->send(lis, status_atom_v);
    sched.run();
    bus_status result;
    self->receive([&](bus_status& s) { result = s; }, caf::after(0s) >> [] { FAIL("no status"); });
    return result;
  }

  void advance(caf::timespan t) {
    sched.clock().advance_time(t);
    sched.run();
  }

  std::vector<caf::timespan> gaps_between_attempts() {
    std::vector<caf::timespan> result;
    for (size_t i = 1; i < server->connect_attempts.size(); ++i)
      result.push_back(server->connect_attempts[i] - server->connect_attempts[i - 1]);
    return result;
  }

  /// A bus on channel "a" over the scripted server, connected.
  std::optional<bus_actor> start_bus() {
    bus_settings settings;
    settings.channels = {"a"};
    settings.health = {0s, 0s};
    auto bus = spawn_bus(sys, settings, server->factory());
    REQUIRE(bus);
    stopped_at_exit(*bus);
    sched.run();
    return *bus;
  }

  caf::error await_down() {
    caf::error reason;
    self->receive([&](caf::down_msg& msg) { reason = msg.reason; },
                  caf::after(0s) >> [] { FAIL("the actor did not quit"); });
    return reason;
  }
};

}  // namespace

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: connects at once and LISTENs on every channel before generation 1") {
  start({"a", "Weird \"Name\"; DROP TABLE t; --"});
  CHECK(server->connect_attempts.size() == 1);
  // One command, every name a quoted identifier.
  CHECK(server->commands ==
        std::vector<std::string>{R"(LISTEN "a";LISTEN "Weird ""Name""; DROP TABLE t; --";)"});
  CHECK(server->listens == std::vector<std::string>{"a", "Weird \"Name\"; DROP TABLE t; --"});
  CHECK(generations() == std::vector<uint64_t>{1});
  auto st = status();
  CHECK(st.state == connection_state::listening);
  CHECK(st.generation == 1);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: backoff between failed connects is 500 ms doubling to a 30 s cap") {
  server->refuse_connects = 10;
  start({"a"});
  CHECK(status().state == connection_state::backing_off);
  CHECK(status().last_error == "could not connect to server: Connection refused");
  for (int i = 0; i < 10; ++i) {
    REQUIRE(sched.trigger_timeout());
    sched.run();
  }
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
  CHECK(st.last_error == "LISTEN failed: ERROR: cannot execute LISTEN during recovery");
  advance(500ms);
  CHECK(server->listens == std::vector<std::string>{"a", "a", "b"});
  CHECK(generations() == std::vector<uint64_t>{1});
}

TEST_CASE_FIXTURE(listener_fixture, "listener: one batch per read stamped with the generation") {
  start({"a", "b"});
  auto asked = server->read_requests;
  server->notify("a", "1");
  server->notify("b", "2");
  server->notify("a", "3");
  sched.run();
  CHECK(batches() == 1);
  CHECK(registry_log() == std::vector<std::string>{"reconnected 1", "1 @1", "2 @1", "3 @1"});
  CHECK(server->read_requests == asked + 1);  // asked the event loop again after the read
  // A readiness that brings nothing sends nothing.
  self->send(lis, readable_atom_v, uint64_t{1});
  sched.run();
  CHECK(batches() == 1);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a read hands on at most max_batch and reads on without the socket") {
  auto settings = settings_for({"a"});
  settings.max_batch = 2;
  start(settings);
  for (auto payload : {"1", "2", "3", "4", "5"}) server->notify("a", payload);
  sched.run();
  CHECK(batches() == 3);
  CHECK(registry_log() ==
        std::vector<std::string>{"reconnected 1", "1 @1", "2 @1", "3 @1", "4 @1", "5 @1"});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a read hands on at most the registry's batch limit") {
  auto settings = settings_for({"a"});
  settings.max_batch = 3;
  start(settings);
  self->send(lis, batch_limit_atom_v, uint32_t{2});  // the smallest bound is 2
  for (auto payload : {"1", "2", "3", "4", "5"}) server->notify("a", payload);
  sched.run();
  CHECK(batches() == 3);
  // No subscriber: max_batch alone limits a read (3 + 3, not 2 + 2 + 2).
  self->send(lis, batch_limit_atom_v, std::numeric_limits<uint32_t>::max());
  for (auto payload : {"6", "7", "8", "9", "10", "11"}) server->notify("a", payload);
  sched.run();
  CHECK(batches() == 5);
  // A limit of 0 reads one at a time (it must not read nothing, forever).
  self->send(lis, batch_limit_atom_v, uint32_t{0});
  for (auto payload : {"12", "13"}) server->notify("a", payload);
  sched.run();
  CHECK(batches() == 7);
  CHECK(registry_log().back() == "13 @1");
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: data decrypted inside TLS is read before waiting for the socket") {
  start({"a"});
  // One TLS record brings both; the socket reports it once.
  server->notify("a", "in the socket");
  server->notify_inside_tls("a", "inside OpenSSL");
  sched.run();
  CHECK(registry_log() ==
        std::vector<std::string>{"reconnected 1", "in the socket @1", "inside OpenSSL @1"});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a connection that lasted is replaced at once and LISTENs again") {
  start({"a", "b"});
  advance(1s);
  server->notify("a", "before");
  server->drop();
  sched.run();  // no simulated time passes
  CHECK(server->connect_attempts.size() == 2);
  CHECK(server->listens == std::vector<std::string>{"a", "b", "a", "b"});
  CHECK(registry_log() == std::vector<std::string>{"reconnected 1", "before @1", "reconnected 2"});
  auto st = status();
  CHECK(st.state == connection_state::listening);
  CHECK(st.failed_attempts == 0);
  CHECK(st.last_error == "connection lost: server closed the connection unexpectedly");
  // Stale readiness and connect messages change nothing.
  self->send(lis, readable_atom_v, uint64_t{1});
  self->send(lis, connect_atom_v);
  sched.run();
  CHECK(server->connect_attempts.size() == 2);
  server->notify("a", "after");
  sched.run();
  CHECK(registry_log().back() == "after @2");
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a connection that drops right after it was made is a failed attempt") {
  start({"a"});
  advance(249ms);  // below min_uptime (250 ms)
  server->drop();
  sched.run();
  CHECK(server->connect_attempts.size() == 1);
  auto st = status();
  CHECK(st.state == connection_state::backing_off);
  CHECK(st.failed_attempts == 1);
  CHECK(st.retry_in == caf::timespan{500ms});
  advance(500ms);
  CHECK(generations() == std::vector<uint64_t>{1, 2});
  // It drops at once again: the delay grows.
  server->drop();
  sched.run();
  CHECK(status().retry_in == caf::timespan{1000ms});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: the delay resets only after a connection stayed up stable_after") {
  server->refuse_connects = 3;  // 500, 1000, 2000, then connected
  start({"a"});
  advance(500ms);
  advance(1000ms);
  advance(2000ms);
  REQUIRE(generations() == std::vector<uint64_t>{1});
  // Up 9.999 s, dropped, replaced at once; its next failure waits 4000 ms.
  advance(9999ms);
  server->refuse_connects = 1;
  server->drop();
  sched.run();
  CHECK(status().retry_in == caf::timespan{4000ms});
  advance(4000ms);
  REQUIRE(generations() == std::vector<uint64_t>{1, 2});
  // Up 10 s: the next failure waits 500 ms again.
  advance(10s);
  server->refuse_connects = 1;
  server->drop();
  sched.run();
  CHECK(status().retry_in == caf::timespan{500ms});
}

TEST_CASE_FIXTURE(listener_fixture, "listener: stops at once in the middle of a 30 s backoff") {
  server->refuse_connects = 100;
  start({"a"});
  for (auto delay : {500ms, 1000ms, 2000ms, 4000ms, 8000ms, 16000ms}) advance(delay);
  REQUIRE(status().retry_in == caf::timespan{30s});
  self->monitor(lis);
  caf::anon_send_exit(lis, caf::exit_reason::user_shutdown);
  sched.run();
  CHECK(await_down() == caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a connect the server never answers fails at connect_timeout") {
  server->connects_hang = true;
  auto settings = settings_for({"a"});
  settings.connect_timeout = 10s;
  start(settings);
  CHECK(status().state == connection_state::connecting);
  advance(9999ms);
  CHECK(status().state == connection_state::connecting);
  server->connects_hang = false;
  advance(1ms);
  auto st = status();
  CHECK(st.state == connection_state::backing_off);
  CHECK(st.last_error == "connect failed: no answer within 10000 ms");
  advance(500ms);
  CHECK(generations() == std::vector<uint64_t>{1});
}

TEST_CASE_FIXTURE(listener_fixture, "listener: stops at once while connecting") {
  server->connects_hang = true;
  start({"a"});
  REQUIRE(status().state == connection_state::connecting);
  self->monitor(lis);
  caf::anon_send_exit(lis, caf::exit_reason::user_shutdown);
  sched.run();
  CHECK(await_down() == caf::exit_reason::user_shutdown);
  CHECK_FALSE(server->has_connection());  // closed with the actor
}

TEST_CASE_FIXTURE(listener_fixture, "listener: gives up after the configured number of failures") {
  server->refuse_connects = 100;
  auto settings = settings_for({"a"});
  settings.max_failed_attempts = 3;
  start(settings);
  self->monitor(lis);
  advance(500ms);
  advance(1000ms);
  CHECK(server->connect_attempts.size() == 3);
  auto reason = await_down();
  CHECK(reason == make_error(errc::gave_up));
  CHECK(render(reason) ==
        "gave_up: after 3 failed attempt(s): could not connect to server: Connection refused");
  CHECK(sched.clock().schedule().empty());
}

TEST_CASE_FIXTURE(listener_fixture, "listener: a health check without an answer reconnects") {
  auto settings = settings_for({"a"});
  settings.health = {10s, 5s};
  start(settings);
  advance(9999ms);
  CHECK(server->commands.size() == 1);
  server->next_command_hangs = true;
  advance(1ms);
  CHECK(server->commands.size() == 2);
  advance(4999ms);
  CHECK(status().state == connection_state::listening);
  advance(1ms);
  // The connection had lasted: replaced at once.
  CHECK(status().last_error == "health check failed: no answer within 5000 ms");
  CHECK(generations() == std::vector<uint64_t>{1, 2});
  CHECK(status().state == connection_state::listening);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: a health check that finds a LISTEN missing reconnects") {
  auto settings = settings_for({"a", "b"});
  settings.health = {10s, 5s};
  start(settings);
  server->listening_override = std::vector<std::string>{"a"};
  advance(10s);
  CHECK(status().last_error == "health check: the server LISTENs on 1 of 2 channel(s)");
  CHECK(generations() == std::vector<uint64_t>{1, 2});
  server->listening_override = std::vector<std::string>{"b", "a"};  // order does not matter
  advance(10s);
  auto st = status();
  CHECK(st.health_checks_passed == 1);
  CHECK(st.queue_usage == 0.25);
  CHECK(generations() == std::vector<uint64_t>{1, 2});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: notifications that arrive during a health check are handed on") {
  auto settings = settings_for({"a"});
  settings.health = {10s, 5s};
  start(settings);
  server->next_command_hangs = true;
  advance(10s);
  server->notify("a", "during the check");
  server->answer_hanging_command();
  sched.run();
  CHECK(registry_log() == std::vector<std::string>{"reconnected 1", "during the check @1"});
  CHECK(status().health_checks_passed == 1);
  advance(10s);  // and the checks go on
  CHECK(status().health_checks_passed == 2);
}

TEST_CASE_FIXTURE(listener_fixture, "listener: a health tick of an earlier connection is ignored") {
  auto settings = settings_for({"a"});
  settings.health = {10s, 5s};
  start(settings);
  advance(1s);
  server->drop();  // replaced at 1 s: its first check is due at 11 s
  sched.run();
  REQUIRE(generations() == std::vector<uint64_t>{1, 2});
  auto commands = server->commands.size();
  advance(9s);  // 10 s: the first connection's tick fires
  CHECK(server->commands.size() == commands);
  advance(1s);  // 11 s
  CHECK(server->commands.size() == commands + 1);
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: the status counts failed attempts until a connect succeeds") {
  server->refuse_connects = 3;
  start({"a"});
  CHECK(status().failed_attempts == 1);
  advance(500ms);
  advance(1000ms);
  CHECK(status().failed_attempts == 3);
  CHECK(status().retry_in == caf::timespan{2000ms});
  advance(1000ms);
  CHECK(status().retry_in == caf::timespan{1000ms});
  advance(1000ms);
  CHECK(status().failed_attempts == 0);
}

TEST_CASE_FIXTURE(
    listener_fixture,
    "listener: dynamic channels are LISTENed once acknowledged and UNLISTENed on request") {
  start({"fixed"});
  server->next_command_hangs = true;
  self->send(lis, listen_atom_v, std::string{"new"});
  sched.run();
  self->receive([](caf::ok_atom) { FAIL("replied before the server acknowledged"); },
                caf::after(0s) >> [] {});
  server->answer_hanging_command();
  sched.run();
  self->receive([](caf::ok_atom) {}, caf::after(0s) >> [] { FAIL("no reply"); });
  CHECK(server->listens == std::vector<std::string>{"fixed", "new"});
  self->send(lis, listen_atom_v, std::string{"new"});  // again: nothing to do
  sched.run();
  self->receive([](caf::ok_atom) {}, caf::after(0s) >> [] { FAIL("no reply"); });
  CHECK(server->listens.size() == 2);
  self->send(lis, unlisten_atom_v, std::string{"new"});
  sched.run();
  CHECK(server->unlistens == std::vector<std::string>{"new"});
  // A refused LISTEN is an error for the asker; the connection stays.
  server->refuse_listen_on = "refused";
  self->send(lis, listen_atom_v, std::string{"refused"});
  sched.run();
  self->receive([](caf::ok_atom) { FAIL("refused LISTEN replied ok"); },
                [](caf::error& err) { CHECK(err == make_error(errc::listen_failed)); },
                caf::after(0s) >> [] { FAIL("no reply"); });
  CHECK(generations() == std::vector<uint64_t>{1});
  // A reconnect LISTENs on exactly the current set.
  server->connects_hang = true;
  advance(1s);
  server->drop();
  sched.run();
  self->send(lis, listen_atom_v, std::string{"while connecting"});  // answered at once
  sched.run();
  self->receive([](caf::ok_atom) {}, caf::after(0s) >> [] { FAIL("no reply"); });
  server->connects_hang = false;
  self->send(lis, writable_atom_v, uint64_t{2});  // the server answers at last
  sched.run();
  CHECK(server->listening() == std::vector<std::string>{"fixed", "while connecting"});
  CHECK(generations() == std::vector<uint64_t>{1, 2});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: notifications read during the LISTENs follow reconnected") {
  start({"a"});
  advance(1s);
  server->next_command_hangs = true;  // the LISTEN of the next connection
  server->drop();
  sched.run();
  server->notify("a", "sent while LISTEN ran");
  server->answer_hanging_command();
  sched.run();
  CHECK(registry_log() ==
        std::vector<std::string>{"reconnected 1", "reconnected 2", "sent while LISTEN ran @2"});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "listener: what a failing connection read goes out before the next generation") {
  start({"a"});
  advance(1s);
  server->notify("a", "read just before the drop");
  server->drop();
  sched.run();
  CHECK(registry_log() ==
        std::vector<std::string>{"reconnected 1", "read just before the drop @1", "reconnected 2"});
}

TEST_CASE_FIXTURE(listener_fixture, "listener: the server's view of the LISTENs on request") {
  start({"b", "a"});
  self->send(lis, listening_atom_v);
  sched.run();
  std::vector<std::string> listening;
  self->receive([&](std::vector<std::string>& x) { listening = x; },
                caf::after(0s) >> [] { FAIL("no reply"); });
  CHECK(listening == std::vector<std::string>{"a", "b"});
}

// -- the bus supervises the listener ---------------------------------------------

TEST_CASE_FIXTURE(listener_fixture,
                  "bus: a crashed listener is restarted and every subscription survives") {
  auto bus = start_bus();
  auto sub = spawn_recorder();
  self->send(*bus, subscribe_atom_v, std::string{"a"}, sub);
  self->send(*bus, reconnects_atom_v, sub);
  sched.run();
  auto ask_status = [&] {
    self->send(*bus, status_atom_v);
    sched.run();
    bus_status result;
    self->receive([&](bus_status& s) { result = s; }, [](caf::error&) { FAIL("no status"); },
                  caf::after(0s) >> [] { FAIL("no status"); });
    return result;
  };
  REQUIRE(ask_status().generation == 1);
  server->next_read_throws = true;
  server->notify("a", "lost with the crash");
  sched.run();
  auto crashed = ask_status();
  CHECK(crashed.state == connection_state::backing_off);
  CHECK(crashed.listener_restarts == 1);
  CHECK(crashed.retry_in == caf::timespan{500ms});
  CHECK(crashed.last_error.find("listener crashed") == 0);
  advance(500ms);
  auto restarted = ask_status();
  CHECK(restarted.state == connection_state::listening);
  CHECK(restarted.generation == 2);
  CHECK(restarted.listener_restarts == 1);
  server->notify("a", "after the restart");
  sched.run();
  std::vector<std::string> seen;
  for (auto& msg : messages_of(sub)) {
    if (msg.match_elements<reconnected>())
      seen.push_back("reconnected " + std::to_string(msg.get_as<reconnected>(0).generation));
    if (msg.match_elements<notification_batch>())
      for (const auto& n : msg.get_as<notification_batch>(0)) seen.emplace_back(n.payload);
  }
  CHECK(seen == std::vector<std::string>{"reconnected 2", "after the restart"});
}

TEST_CASE_FIXTURE(listener_fixture,
                  "bus: a subscribe that names another protocol version is refused naming both") {
  auto bus = start_bus();
  auto sub = spawn_recorder();
  auto subscribe = [&](uint32_t version) {
    self->send(caf::actor_cast<caf::actor>(*bus), subscribe_atom_v, std::string{"a"}, sub,
               uint32_t{0}, version);
    sched.run();
    caf::error result;
    self->receive([](caf::ok_atom) {}, [&](caf::error& err) { result = std::move(err); },
                  caf::after(0s) >> [] { FAIL("no reply"); });
    return result;
  };
  auto err = subscribe(protocol_version - 1);
  REQUIRE(err);
  auto text = render(err);
  CHECK_MESSAGE(text.find("protocol_mismatch") != std::string::npos, text);
  CHECK_MESSAGE(text.find("this bus speaks pgnotify protocol " + std::to_string(protocol_version) +
                          ", the subscribing node protocol " +
                          std::to_string(protocol_version - 1)) != std::string::npos,
                text);
  // The same version subscribes; bound 0 is the bus's default bound.
  CHECK(!subscribe(protocol_version));
  server->notify("a", "x");
  sched.run();
  CHECK(payloads(sub) == std::vector<std::string>{"x"});
  self->send(*bus, stats_atom_v);
  sched.run();
  bus_stats stats;
  self->receive([&](bus_stats& x) { stats = std::move(x); },
                caf::after(0s) >> [] { FAIL("no stats"); });
  REQUIRE(stats.subscriptions.size() == 1);
  CHECK(stats.subscriptions[0].bound == bus_settings{}.default_bound);
}

TEST_CASE_FIXTURE(caf_fixture, "bus: without CAF's middleman spawn_bus says what to do") {
  bus_settings settings;
  settings.conninfo = "postgresql://127.0.0.1/postgres";
  auto bus = spawn_bus(sys, settings);
  REQUIRE_FALSE(bus);
  CHECK(bus.error() == make_error(errc::invalid_argument));
  CHECK(render(bus.error()).find("pgnotify::configure(cfg)") != std::string::npos);
}
