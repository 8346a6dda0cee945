// The registry's fan-out, bounds, lag accounting and bookkeeping, on CAF's
// deterministic scheduler, with recorders standing in for subscribers.
#include <doctest/doctest.h>

#include <algorithm>

#include <caf/send.hpp>

#include <pgnotify/actors/listener.hpp>
#include <pgnotify/actors/pg/scripted_connection.hpp>
#include <pgnotify/actors/registry.hpp>
#include <pgnotify/messages/errors.hpp>

#include "caf_fixture.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::test;

namespace {

struct registry_fixture : caf_fixture {
  // The scoped actor plays the bus and the listener.
  registry_actor reg = stopped_at_exit(
      sys.spawn(registry, registry_settings{{"a", "b"}, 256, false, self->address()}));

  registry_fixture() {
    self->send(reg, caf::actor_cast<listener_actor>(caf::actor{self}));
    sched.run();
  }

  /// Sends a request from the scoped actor and returns the reply (or the error).
  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    self->send(reg, std::forward<Ts>(xs)...);
    sched.run();
    caf::expected<T> result{caf::sec::request_timeout};
    self->receive([&](T& x) { result = std::move(x); }, [&](caf::error& e) { result = e; },
                  caf::after(0s) >> [] { FAIL("no reply"); });
    return result;
  }

  void subscribe(const std::string& channel, const caf::actor& who, uint32_t bound = 256) {
    auto reply = ask<caf::ok_atom>(subscribe_atom_v, channel, who, bound);
    REQUIRE(reply);
  }

  /// One socket read with notifications "<channel>:<first>" ... on `channel`.
  void deliver(const std::string& channel, int first, int count) {
    received_notifications batch;
    for (int i = first; i < first + count; ++i)
      batch.notifications.push_back({channel, std::to_string(i), 42, 1});
    self->send(reg, std::move(batch));
    sched.run();
  }

  void ack(const caf::actor& who, const std::string& channel, uint32_t count) {
    caf::send_as(who, reg, ack_atom_v, channel, count);
    sched.run();
  }

  /// The payloads a recorder received in batches, in order.
  std::vector<std::string> payloads(const caf::actor& who) {
    std::vector<std::string> result;
    for (auto& msg : messages_of(who))
      if (msg.match_elements<notification_batch>())
        for (auto& n : msg.get_as<notification_batch>(0).notifications) result.push_back(n.payload);
    return result;
  }

  std::vector<lagged> lags(const caf::actor& who) {
    std::vector<lagged> result;
    for (auto& msg : messages_of(who))
      if (msg.match_elements<lagged>()) result.push_back(msg.get_as<lagged>(0));
    return result;
  }

  bus_stats stats() { return *ask<bus_stats>(stats_atom_v); }
};

std::vector<std::string> range(int first, int count) {
  std::vector<std::string> result;
  for (int i = first; i < first + count; ++i) result.push_back(std::to_string(i));
  return result;
}

}  // namespace

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: every subscriber of a channel gets every notification in order") {
  auto s1 = spawn_recorder(), s2 = spawn_recorder(), s3 = spawn_recorder(),
       other = spawn_recorder();
  subscribe("a", s1);
  subscribe("a", s2);
  subscribe("a", s3);
  subscribe("b", other);
  deliver("a", 0, 3);
  deliver("a", 3, 2);
  for (auto& s : {s1, s2, s3}) CHECK(payloads(s) == range(0, 5));
  CHECK(payloads(other).empty());
  CHECK(stats().delivered == 15);
}

TEST_CASE_FIXTURE(registry_fixture, "registry: all subscribers share one batch message") {
  auto s1 = spawn_recorder(), s2 = spawn_recorder();
  subscribe("a", s1);
  subscribe("a", s2);
  deliver("a", 0, 10);
  auto& m1 = messages_of(s1).back();
  auto& m2 = messages_of(s2).back();
  REQUIRE(m1.match_elements<notification_batch>());
  CHECK(&m1.get_as<notification_batch>(0) == &m2.get_as<notification_batch>(0));
}

TEST_CASE_FIXTURE(registry_fixture, "registry: a mixed read is split by channel in order") {
  auto sa = spawn_recorder(), sb = spawn_recorder();
  subscribe("a", sa);
  subscribe("b", sb);
  received_notifications mixed;
  mixed.notifications = {
      {"a", "1", 1, 1}, {"b", "2", 1, 1}, {"a", "3", 1, 1}, {"zzz", "4", 1, 1}, {"b", "5", 1, 1}};
  self->send(reg, std::move(mixed));
  sched.run();
  CHECK(payloads(sa) == std::vector<std::string>{"1", "3"});
  CHECK(payloads(sb) == std::vector<std::string>{"2", "5"});
  CHECK(stats().received == 5);
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: unknown and invalid channels are refused with typed errors") {
  auto s = spawn_recorder();
  auto unknown = ask<caf::ok_atom>(subscribe_atom_v, std::string{"c"}, s);
  REQUIRE(!unknown);
  CHECK(unknown.error() == make_error(errc::unknown_channel));
  CHECK(render(unknown.error()) == "unknown_channel: not one of the bus's channels: c");
  for (std::string bad : {std::string{}, std::string(64, 'x'), std::string("a\0b", 3)}) {
    auto invalid = ask<caf::ok_atom>(subscribe_atom_v, bad, s);
    REQUIRE(!invalid);
    CHECK(invalid.error() == make_error(errc::invalid_channel));
  }
  auto zero_bound = ask<caf::ok_atom>(subscribe_atom_v, std::string{"a"}, s, uint32_t{0});
  REQUIRE(!zero_bound);
  CHECK(zero_bound.error() == make_error(errc::invalid_argument));
  auto unsub = ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"nope"}, s);
  REQUIRE(!unsub);
  CHECK(unsub.error() == make_error(errc::unknown_channel));
  // Nothing was registered by the refused requests.
  CHECK(stats().subscriptions.empty());
  CHECK(*ask<std::vector<std::string>>(channels_atom_v) == std::vector<std::string>{"a", "b"});
}

TEST_CASE_FIXTURE(registry_fixture, "registry: unsubscribe is idempotent and stops delivery") {
  auto s = spawn_recorder();
  subscribe("a", s);
  subscribe("a", s);  // again: still one subscription
  CHECK(stats().subscriptions.size() == 1);
  deliver("a", 0, 1);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s));
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s));
  deliver("a", 1, 1);
  CHECK(payloads(s) == range(0, 1));
  CHECK(stats().subscriptions.empty());
}

TEST_CASE_FIXTURE(registry_fixture, "registry: a dead subscriber is forgotten") {
  auto alive = spawn_recorder();
  auto doomed = sys.spawn(recorder, std::string{"doomed"});
  subscribe("a", alive);
  subscribe("a", doomed);
  subscribe("b", doomed);
  CHECK(*ask<uint64_t>(reconnects_atom_v, doomed) == 0);
  CHECK(stats().subscriptions.size() == 3);
  caf::anon_send_exit(doomed, caf::exit_reason::kill);
  sched.run();
  CHECK(stats().subscriptions.size() == 1);
  CHECK(state_of<registry_state, registry_actor::base>(reg).monitored.size() == 1);
  CHECK(state_of<registry_state, registry_actor::base>(reg).reconnect_subscribers.empty());
  deliver("a", 0, 2);
  CHECK(payloads(alive) == range(0, 2));
}

TEST_CASE_FIXTURE(
    registry_fixture,
    "registry: a stalled subscriber gets lagged with the exact count while others get everything") {
  auto slow = spawn_recorder(), fast = spawn_recorder();
  subscribe("a", slow, 4);
  subscribe("a", fast, 100);
  deliver("a", 0, 3);  // slow: 3 in flight
  deliver("a", 3, 4);  // slow: room for 1 -> gets "3", misses 4,5,6
  deliver("a", 7, 3);  // slow: lagging -> misses 7,8,9
  CHECK(payloads(slow) == range(0, 4));
  CHECK(lags(slow).empty());  // not before it has caught up
  CHECK(payloads(fast) == range(0, 10));
  ack(slow, "a", 3);
  CHECK(lags(slow).empty());  // one still in flight
  ack(slow, "a", 1);
  REQUIRE(lags(slow).size() == 1);
  CHECK(lags(slow)[0].channel == "a");
  CHECK(lags(slow)[0].missed == 6);
  deliver("a", 10, 2);  // the stream continues right after the lagged message
  CHECK(payloads(slow) == std::vector<std::string>{"0", "1", "2", "3", "10", "11"});
  CHECK(messages_of(slow)[2].match_elements<lagged>());
  auto st = stats();
  CHECK(st.missed == 6);
  CHECK(st.delivered == 4 + 2 + 12);
}

TEST_CASE_FIXTURE(registry_fixture, "registry: memory stays bounded while a subscriber stalls") {
  auto stalled = spawn_recorder();
  subscribe("a", stalled, 8);
  for (int i = 0; i < 100; ++i) deliver("a", i * 10, 10);
  CHECK(payloads(stalled).size() == 8);
  auto st = stats();
  REQUIRE(st.subscriptions.size() == 1);
  CHECK(st.subscriptions[0].in_flight == 8);
  CHECK(st.subscriptions[0].missed == 992);
}

TEST_CASE_FIXTURE(registry_fixture, "registry: reconnected is broadcast and stamps the snapshot") {
  auto early = spawn_recorder();
  CHECK(*ask<uint64_t>(reconnects_atom_v, early) == 0);
  self->send(reg, reconnected{1});
  sched.run();
  auto late = spawn_recorder();
  CHECK(*ask<uint64_t>(reconnects_atom_v, late) == 1);
  self->send(reg, reconnected{2});
  sched.run();
  auto gens = [&](const caf::actor& who) {
    std::vector<uint64_t> result;
    for (auto& msg : messages_of(who))
      if (msg.match_elements<reconnected>())
        result.push_back(msg.get_as<reconnected>(0).generation);
    return result;
  };
  CHECK(gens(early) == std::vector<uint64_t>{1, 2});
  CHECK(gens(late) == std::vector<uint64_t>{2});
  CHECK(stats().generation == 2);
}

namespace {

// A registry in dynamic mode, wired to a real listener on a scripted connection.
struct dynamic_fixture : caf_fixture {
  std::shared_ptr<pg::scripted_server> server = std::make_shared<pg::scripted_server>();

  /// The commands the server received, without quotes: "LISTEN news".
  std::vector<std::string> server_log() const {
    std::vector<std::string> result;
    for (auto command : server->commands) {
      command.erase(std::remove(command.begin(), command.end(), '"'), command.end());
      if (!command.empty() && command.back() == ';') command.pop_back();
      result.push_back(command);
    }
    return result;
  }
  registry_actor reg = stopped_at_exit(
      sys.spawn(registry, registry_settings{{"fixed"}, 256, true, self->address()}));
  listener_actor lis;

  dynamic_fixture() {
    listener_settings settings;
    settings.channels = {"fixed"};
    settings.health = {0s, 0s};
    lis = stopped_at_exit(spawn_listener(sys, server->factory(), reg, settings));
    self->send(reg, lis);
    sched.run();
  }

  caf::expected<caf::ok_atom> subscribe(const std::string& channel, const caf::actor& who) {
    self->send(reg, subscribe_atom_v, channel, who);
    sched.run();
    caf::expected<caf::ok_atom> result{caf::sec::request_timeout};
    self->receive([&](caf::ok_atom x) { result = x; }, [&](caf::error& e) { result = e; },
                  caf::after(0s) >> [] { FAIL("no reply"); });
    return result;
  }

  void unsubscribe(const std::string& channel, const caf::actor& who) {
    self->send(reg, unsubscribe_atom_v, channel, who);
    sched.run();
    self->receive([](caf::ok_atom) {}, caf::after(0s) >> [] { FAIL("no reply"); });
  }

  std::vector<std::string> channels() {
    self->send(reg, channels_atom_v);
    sched.run();
    std::vector<std::string> result;
    self->receive([&](std::vector<std::string>& x) { result = x; },
                  caf::after(0s) >> [] { FAIL("no reply"); });
    return result;
  }
};

}  // namespace

TEST_CASE_FIXTURE(dynamic_fixture,
                  "registry: a dynamic channel is LISTENed on its first subscriber and UNLISTENed "
                  "after its last") {
  auto a = spawn_recorder(), b = spawn_recorder();
  REQUIRE(subscribe("news", a));
  CHECK(server_log() == std::vector<std::string>{"LISTEN fixed", "LISTEN news"});
  REQUIRE(subscribe("news", b));
  CHECK(server_log().size() == 2);  // already LISTENed
  CHECK(channels() == std::vector<std::string>{"fixed", "news"});
  unsubscribe("news", a);
  CHECK(server_log().size() == 2);  // b is still there
  unsubscribe("news", b);
  CHECK(server_log().back() == "UNLISTEN news");
  CHECK(channels() == std::vector<std::string>{"fixed"});
  // The permanent channel stays when its subscriber leaves.
  REQUIRE(subscribe("fixed", a));
  unsubscribe("fixed", a);
  CHECK(server_log().back() == "UNLISTEN news");
  CHECK(channels() == std::vector<std::string>{"fixed"});
  // Invalid names are still refused before anything reaches the server.
  auto invalid = subscribe(std::string(64, 'x'), a);
  REQUIRE(!invalid);
  CHECK(invalid.error() == make_error(errc::invalid_channel));
}

TEST_CASE_FIXTURE(dynamic_fixture,
                  "registry: the death of a dynamic channel's last subscriber UNLISTENs it") {
  auto doomed = sys.spawn(recorder, std::string{"doomed"});
  REQUIRE(subscribe("short-lived", doomed));
  caf::anon_send_exit(doomed, caf::exit_reason::kill);
  sched.run();
  CHECK(server_log().back() == "UNLISTEN short-lived");
  CHECK(channels() == std::vector<std::string>{"fixed"});
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: a re-subscription still counts what the old one has not acked") {
  auto s = spawn_recorder();
  subscribe("a", s, 4);
  deliver("a", 0, 3);  // 3 in flight
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s));
  subscribe("a", s, 4);
  REQUIRE(stats().subscriptions.size() == 1);
  CHECK(stats().subscriptions[0].in_flight == 3);
  deliver("a", 3, 2);  // room for 1 only
  CHECK(payloads(s) == range(0, 4));
  ack(s, "a", 3);  // the old batch
  ack(s, "a", 1);
  REQUIRE(lags(s).size() == 1);
  CHECK(lags(s)[0].missed == 1);
  // Late acks of a cancelled subscription are settled and then forgotten.
  deliver("a", 5, 2);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s));
  CHECK(state_of<registry_state, registry_actor::base>(reg).unacked_after_unsubscribe.size() == 1);
  ack(s, "a", 2);
  CHECK(state_of<registry_state, registry_actor::base>(reg).unacked_after_unsubscribe.empty());
}

TEST_CASE_FIXTURE(dynamic_fixture,
                  "registry: unsubscribing while the subscribe waits for its LISTEN cancels it") {
  auto a = spawn_recorder();
  // Both requests reach the registry before the listener answers the LISTEN.
  self->send(reg, subscribe_atom_v, std::string{"news"}, a);
  self->send(reg, unsubscribe_atom_v, std::string{"news"}, a);
  sched.run();
  int replies = 0;
  for (int i = 0; i < 2; ++i)
    self->receive([&](caf::ok_atom) { ++replies; }, caf::after(0s) >> [] {});
  CHECK(replies == 2);
  CHECK(server_log() == std::vector<std::string>{"LISTEN fixed", "LISTEN news", "UNLISTEN news"});
  CHECK(channels() == std::vector<std::string>{"fixed"});
  CHECK(state_of<registry_state, registry_actor::base>(reg).cancelled_while_pending.empty());
}

TEST_CASE_FIXTURE(
    registry_fixture,
    "registry: internal messages from anyone but the listener and the bus are dropped") {
  auto honest = spawn_recorder(), forger = spawn_recorder();
  subscribe("a", honest);
  self->send(reg, reconnects_atom_v, honest);
  sched.run();
  next_message();
  // The forger sends what only the listener may send, and a listener handle.
  caf::anon_send(reg, reconnected{99});
  caf::send_as(forger, reg, received_notifications{{{"a", "made up", 1, 99}}});
  caf::send_as(forger, reg, caf::actor_cast<listener_actor>(forger));
  sched.run();
  CHECK(messages_of(honest).empty());
  auto st = stats();
  CHECK(st.rejected_messages == 3);
  CHECK(st.generation == 0);
  // The real listener still gets through.
  deliver("a", 1, 1);
  CHECK(messages_of(honest).size() == 1);
}

TEST_CASE_FIXTURE(registry_fixture, "registry: a bad ack frees no credit and is counted") {
  auto sub = spawn_recorder(), stranger = spawn_recorder();
  subscribe("a", sub, 10);
  deliver("a", 1, 10);    // sub is at its bound
  ack(sub, "a", 11);      // more than in flight
  ack(sub, "b", 10);      // a channel it is not subscribed to
  ack(stranger, "a", 5);  // no subscription at all
  deliver("a", 11, 5);
  auto st = stats();
  CHECK(st.bad_acks == 3);
  REQUIRE(st.subscriptions.size() == 1);
  CHECK(st.subscriptions[0].in_flight == 10);
  CHECK(st.subscriptions[0].missed == 5);  // the bound held
  ack(sub, "a", 10);                       // the honest ack settles it, and lagged follows
  CHECK(messages_of(sub).back().match_elements<lagged>());
}
