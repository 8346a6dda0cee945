// The registry's fan-out, bounds, lag accounting and bookkeeping, on CAF's
// deterministic scheduler, with recorders standing in for subscribers.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <ostream>
#include <random>
#include <set>

#include <caf/actor_proxy.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/make_actor.hpp>
#include <caf/node_id.hpp>
#include <caf/send.hpp>

#include <pgnotify/actors/listener.hpp>
#include <pgnotify/actors/pg/scripted_connection.hpp>
#include <pgnotify/actors/registry_state.hpp>
#include <pgnotify/messages/errors.hpp>

#include "caf_fixture.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::test;

namespace pgnotify {

// For doctest's messages.
std::ostream& operator<<(std::ostream& out, const registry_tables& t) {
  return out << "{channels " << t.channels << ", subscriptions " << t.subscriptions
             << ", pending_listens " << t.pending_listens << ", pending_subscribes "
             << t.pending_subscribes << ", pending_replies " << t.pending_replies << ", cancelled "
             << t.cancelled << ", monitored " << t.monitored << ", reconnect_subscribers "
             << t.reconnect_subscribers << "}";
}

}  // namespace pgnotify

namespace {

/// The tables of a registry that keeps nothing about anyone: only its channels.
registry_tables at_rest(uint64_t channels) {
  registry_tables result;
  result.channels = channels;
  return result;
}

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
    notification_batch::builder batch;
    for (int i = first; i < first + count; ++i) batch.add(channel, std::to_string(i), 42);
    self->send(reg, received_notifications{batch.finish(1)});
    sched.run();
  }

  void ack(const caf::actor& who, const std::string& channel, uint32_t count) {
    caf::send_as(who, reg, ack_atom_v, channel, count);
    sched.run();
  }

  /// Acks the `index`th message of recorder `who`, a batch, as a subscriber on
  /// the registry's node does (pgnotify::ack): into the batch's local_acks, and
  /// with (ack_atom, channel, 0) only if the registry asks for it. Returns
  /// whether it did.
  bool ack_locally(const caf::actor& who, size_t index) {
    auto& msg = messages_of(who).at(index);
    REQUIRE(msg.match_elements<notification_batch>());
    const auto& batch = msg.get_as<notification_batch>(0);
    REQUIRE(batch.acks() != nullptr);
    if (!batch.acks()->add(static_cast<uint32_t>(batch.size()))) return false;
    ack(who, std::string{batch.front().channel}, 0);
    return true;
  }

  /// A subscriber with bound 4 that received "0".."2" and "3" of two batches
  /// and missed "4".."6": lagging, not yet told.
  caf::actor laggard() {
    auto slow = spawn_recorder();
    subscribe("a", slow, 4);
    deliver("a", 0, 3);
    deliver("a", 3, 4);
    return slow;
  }

  std::vector<lagged> lags(const caf::actor& who) {
    std::vector<lagged> result;
    for (auto& msg : messages_of(who))
      if (msg.match_elements<lagged>()) result.push_back(msg.get_as<lagged>(0));
    return result;
  }

  bus_stats stats() { return *ask<bus_stats>(stats_atom_v); }

  registry_tables tables() { return stats().tables; }
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

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: all subscribers share one batch buffer and each acks on its own") {
  auto s1 = spawn_recorder(), s2 = spawn_recorder();
  subscribe("a", s1);
  subscribe("a", s2);
  deliver("a", 0, 10);
  auto& m1 = messages_of(s1).back();
  auto& m2 = messages_of(s2).back();
  REQUIRE(m1.match_elements<notification_batch>());
  REQUIRE(m2.match_elements<notification_batch>());
  const auto& b1 = m1.get_as<notification_batch>(0);
  const auto& b2 = m2.get_as<notification_batch>(0);
  CHECK(b1.front().payload.data() == b2.front().payload.data());  // one copy of the text
  REQUIRE(b1.acks() != nullptr);                                  // both are on the registry's node
  REQUIRE(b2.acks() != nullptr);
  CHECK(b1.acks() != b2.acks());
}

TEST_CASE_FIXTURE(registry_fixture, "registry: a mixed read is split by channel in order") {
  auto sa = spawn_recorder(), sb = spawn_recorder();
  subscribe("a", sa);
  subscribe("b", sb);
  auto mixed = notification_batch::from_wire(
      {{"a", "1", 1}, {"b", "2", 1}, {"a", "3", 1}, {"zzz", "4", 1}, {"b", "5", 1}}, 1);
  self->send(reg, received_notifications{mixed});
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
  auto expected = at_rest(2);
  expected.subscriptions = 1;
  expected.monitored = 1;
  CHECK(tables() == expected);
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

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: a subscriber on its node acks without messages and a lagging one "
                  "asks once it has caught up") {
  auto slow = spawn_recorder(), fast = spawn_recorder();
  subscribe("a", slow, 4);
  subscribe("a", fast, 4);
  deliver("a", 0, 3);  // slow: 3 in flight
  CHECK_FALSE(ack_locally(fast, 0));
  deliver("a", 3, 4);  // slow: room for 1 -> gets "3", misses 4,5,6
  CHECK_FALSE(ack_locally(fast, 1));
  deliver("a", 7, 3);  // slow: lagging -> misses 7,8,9
  CHECK_FALSE(ack_locally(fast, 2));
  // Bound 4 < 10, and no ack message: the registry collected fast's local acks.
  CHECK(payloads(fast) == range(0, 10));
  CHECK(payloads(slow) == range(0, 4));
  CHECK(ack_locally(slow, 0));  // the registry waits for word: one in flight
  CHECK(lags(slow).empty());
  CHECK(ack_locally(slow, 1));  // caught up
  REQUIRE(lags(slow).size() == 1);
  CHECK(lags(slow)[0].missed == 6);
  deliver("a", 10, 2);
  CHECK(payloads(slow) == std::vector<std::string>{"0", "1", "2", "3", "10", "11"});
  CHECK_FALSE(ack_locally(slow, 3));  // no longer lagging: no message
  CHECK_FALSE(ack_locally(fast, 3));
  auto st = stats();
  CHECK(st.missed == 6);
  CHECK(st.bad_acks == 0);
  for (const auto& sub : st.subscriptions) CHECK(sub.in_flight == 0);
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: a cancelled subscription on the registry's node is settled by "
                  "its local acks") {
  auto s = spawn_recorder();
  subscribe("a", s, 8);
  deliver("a", 0, 3);
  deliver("a", 3, 2);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s));
  auto cancelled = at_rest(2);
  cancelled.cancelled = 1;
  cancelled.monitored = 1;
  CHECK(tables() == cancelled);
  CHECK(ack_locally(s, 0));  // the registry asked to hear of it
  CHECK(tables() == cancelled);
  CHECK(ack_locally(s, 1));
  CHECK(tables() == at_rest(2));
  CHECK(stats().bad_acks == 0);
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: a re-subscription takes over the local acks of what is in flight") {
  auto s = spawn_recorder();
  subscribe("a", s, 4);
  deliver("a", 0, 3);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s));
  subscribe("a", s, 4);
  deliver("a", 3, 3);  // room for 1: 3 are still in flight
  CHECK(payloads(s) == range(0, 4));
  CHECK(ack_locally(s, 0));  // lagging: the registry asked
  CHECK(ack_locally(s, 1));
  REQUIRE(lags(s).size() == 1);
  CHECK(lags(s)[0].missed == 2);
  CHECK(stats().bad_acks == 0);
}

TEST_CASE("registry: local_acks answers each request for word once and take stops waiting") {
  local_acks acks;
  CHECK_FALSE(acks.add(2));  // nobody waits
  CHECK(acks.take_and_wait() == 2);
  CHECK(acks.add(1));        // asked: tell
  CHECK_FALSE(acks.add(1));  // told once
  CHECK(acks.take_and_wait() == 2);
  CHECK(acks.take() == 0);  // stops waiting
  CHECK_FALSE(acks.add(3));
  CHECK(acks.take() == 3);
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: a refused ack by message does not make a lagging subscriber on "
                  "its node miss its word") {
  auto slow = laggard();  // the registry waits for its word
  ack(slow, "a", 100);    // refused (bad ack): it must still wait for word
  CHECK(ack_locally(slow, 0));
  CHECK(ack_locally(slow, 1));
  REQUIRE(lags(slow).size() == 1);
  CHECK(lags(slow)[0].missed == 3);
  CHECK(stats().bad_acks == 1);  // last: the stats collect local acks themselves
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: a laggard on its node that caught up without word gets lagged "
                  "and then the next batch whole") {
  auto slow = laggard();
  // Processed and acked locally; the word it would send has not arrived yet.
  for (size_t i = 0; i < 2; ++i) {
    const auto& batch = messages_of(slow).at(i).get_as<notification_batch>(0);
    batch.acks()->add(static_cast<uint32_t>(batch.size()));
  }
  deliver("a", 7, 2);
  REQUIRE(messages_of(slow).size() == 4);
  CHECK(messages_of(slow)[2].match_elements<lagged>());
  CHECK(lags(slow)[0].missed == 3);
  CHECK(payloads(slow) == std::vector<std::string>{"0", "1", "2", "3", "7", "8"});
  CHECK(stats().missed == 3);
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: a local ack for more than is in flight is a bad ack that frees "
                  "only what is in flight") {
  auto s = spawn_recorder();
  subscribe("a", s, 4);
  deliver("a", 0, 3);
  const auto& batch = messages_of(s).at(0).get_as<notification_batch>(0);
  CHECK_FALSE(batch.acks()->add(10));
  auto st = stats();
  CHECK(st.bad_acks == 1);
  REQUIRE(st.subscriptions.size() == 1);
  CHECK(st.subscriptions[0].in_flight == 0);
  deliver("a", 3, 4);  // the bound is whole again, not overdrawn
  CHECK(payloads(s) == range(0, 7));
  CHECK(stats().subscriptions[0].in_flight == 4);
}

TEST_CASE_FIXTURE(registry_fixture, "registry: memory stays bounded while a subscriber stalls") {
  auto stalled = sys.spawn(recorder, std::string{"stalled"});
  auto healthy = spawn_recorder();
  subscribe("a", stalled, 8);
  subscribe("a", healthy, 16);
  auto steady = at_rest(2);
  steady.subscriptions = 2;
  steady.monitored = 2;
  auto in_flight = [](const bus_stats& st, const caf::actor& who) {
    for (const auto& sub : st.subscriptions)
      if (sub.subscriber == who.address()) return sub.in_flight;
    FAIL("no subscription");
    return uint32_t{0};
  };
  for (int i = 0; i < 1000; ++i) {
    deliver("a", i * 10, 10);
    ack(healthy, "a", 10);
    if (i % 100 == 50) {
      // It unsubscribes and subscribes again, still stalled: its unacked
      // notifications are kept as one cancelled entry, then count again.
      CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, stalled));
      auto cancelled = steady;
      cancelled.subscriptions = 1;
      cancelled.cancelled = 1;
      CHECK(tables() == cancelled);
      subscribe("a", stalled, 8);
    }
    auto st = stats();
    // The registry's tables and each subscriber's in-flight count stay where
    // they are, and the stalled subscriber holds one batch of 8, however much
    // arrives.
    REQUIRE(st.tables == steady);
    REQUIRE(in_flight(st, stalled) == 8);
    REQUIRE(in_flight(st, healthy) == 0);
    REQUIRE(messages_of(stalled).size() == 1);
    REQUIRE(st.missed == static_cast<uint64_t>(i + 1) * 10 - 8);
  }
  CHECK(payloads(stalled) == range(0, 8));
  CHECK(payloads(healthy).size() == 10'000);
  caf::anon_send_exit(stalled, caf::exit_reason::kill);
  sched.run();
  steady.subscriptions = 1;
  steady.monitored = 1;
  CHECK(tables() == steady);
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
  registry_actor reg;
  listener_actor lis;

  explicit dynamic_fixture(std::vector<std::string> fixed = {"fixed"}) {
    reg =
        stopped_at_exit(sys.spawn(registry, registry_settings{fixed, 256, true, self->address()}));
    listener_settings settings;
    settings.channels = std::move(fixed);
    settings.health = {0s, 0s};
    lis = stopped_at_exit(spawn_listener(sys, server->factory(), reg, settings));
    self->send(reg, lis);
    sched.run();
  }

  caf::expected<caf::ok_atom> subscribe(const std::string& channel, const caf::actor& who,
                                        uint32_t bound = 256) {
    self->send(reg, subscribe_atom_v, channel, who, bound);
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

  bus_stats stats() {
    self->send(reg, stats_atom_v);
    sched.run();
    bus_stats result;
    self->receive([&](bus_stats& x) { result = std::move(x); },
                  caf::after(0s) >> [] { FAIL("no reply"); });
    return result;
  }

  registry_tables tables() { return stats().tables; }

  /// Replies to requests sent meanwhile, in arrival order: "ok" or the error's code.
  std::vector<std::string> replies(size_t n) {
    std::vector<std::string> result;
    for (size_t i = 0; i < n; ++i)
      self->receive(
          [&](caf::ok_atom) { result.push_back("ok"); },
          [&](caf::error& e) { result.push_back(to_string(static_cast<errc>(e.code()))); },
          caf::after(0s) >> [] { FAIL("no reply"); });
    return result;
  }

  void ack(const caf::actor& who, const std::string& channel, uint32_t count) {
    caf::send_as(who, reg, ack_atom_v, channel, count);
    sched.run();
  }

  std::vector<std::string> listening() {
    auto result = server->listening();
    std::sort(result.begin(), result.end());
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
  // Late acks of a cancelled subscription are settled and then forgotten;
  // meanwhile the subscriber stays monitored.
  deliver("a", 5, 2);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s));
  auto cancelled = at_rest(2);
  cancelled.cancelled = 1;
  cancelled.monitored = 1;
  CHECK(tables() == cancelled);
  ack(s, "a", 1);
  CHECK(tables() == cancelled);
  ack(s, "a", 1);
  CHECK(tables() == at_rest(2));
  CHECK(stats().bad_acks == 0);
}

TEST_CASE_FIXTURE(registry_fixture, "registry: the stats with the table sizes cross the network") {
  auto s = spawn_recorder();
  subscribe("a", s);
  auto st = stats();
  REQUIRE(st.tables.subscriptions == 1);
  std::vector<char> buffer;
  caf::binary_serializer sink{sys, buffer};
  REQUIRE(!sink(caf::make_message(st)));
  caf::message copy;
  caf::binary_deserializer source{sys, buffer};
  REQUIRE(!source(copy));
  REQUIRE(copy.match_elements<bus_stats>());
  CHECK(copy.get_as<bus_stats>(0).tables == st.tables);
  CHECK(copy.get_as<bus_stats>(0).subscriptions.size() == 1);
}

TEST_CASE_FIXTURE(registry_fixture,
                  "registry: unsubscribing with notifications unacked and then dying leaves "
                  "nothing") {
  auto doomed = sys.spawn(recorder, std::string{"doomed"});
  subscribe("a", doomed, 4);
  subscribe("b", doomed, 4);
  deliver("a", 0, 3);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, doomed));
  auto expected = at_rest(2);
  expected.subscriptions = 1;
  expected.cancelled = 1;
  expected.monitored = 1;
  CHECK(tables() == expected);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"b"}, doomed));
  expected.subscriptions = 0;
  CHECK(tables() == expected);  // still monitored: its cancelled subscription is kept
  caf::anon_send_exit(doomed, caf::exit_reason::kill);
  sched.run();
  CHECK(tables() == at_rest(2));
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
  CHECK(tables() == at_rest(1));
}

TEST_CASE_FIXTURE(
    registry_fixture,
    "registry: internal messages from anyone but the listener and the bus are dropped") {
  auto honest = spawn_recorder(), forger = spawn_recorder();
  subscribe("a", honest);
  self->send(reg, reconnects_atom_v, honest);
  sched.run();
  while (!next_message().empty()) {
    // The scoped actor (the bus, the listener) drops the reply and the batch limit.
  }
  // The forger sends what only the listener may send, and a listener handle.
  caf::anon_send(reg, reconnected{99});
  caf::send_as(forger, reg,
               received_notifications{notification_batch::from_wire({{"a", "made up", 1}}, 99)});
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

TEST_CASE_FIXTURE(dynamic_fixture,
                  "registry: an unsubscribe while a LISTEN is pending cancels only that actor's "
                  "subscribe") {
  auto a = spawn_recorder(), b = spawn_recorder(), c = spawn_recorder();
  // b has no pending subscribe on "news": its unsubscribe records nothing.
  self->send(reg, subscribe_atom_v, std::string{"news"}, a);
  self->send(reg, unsubscribe_atom_v, std::string{"news"}, b);
  // c subscribes, unsubscribes and subscribes again before the LISTEN lands.
  self->send(reg, subscribe_atom_v, std::string{"news"}, c);
  self->send(reg, unsubscribe_atom_v, std::string{"news"}, c);
  self->send(reg, subscribe_atom_v, std::string{"news"}, c);
  sched.run();
  CHECK(replies(5) == std::vector<std::string>(5, "ok"));
  CHECK(server_log() == std::vector<std::string>{"LISTEN fixed", "LISTEN news"});  // once
  auto expected = at_rest(2);
  expected.subscriptions = 2;
  expected.monitored = 2;
  CHECK(tables() == expected);
  // The channel goes, then b subscribes while a new LISTEN is pending: it is
  // subscribed (nothing of its earlier unsubscribe is left to cancel it).
  unsubscribe("news", a);
  unsubscribe("news", c);
  CHECK(server_log().back() == "UNLISTEN news");
  REQUIRE(subscribe("news", b));
  server->notify("news", "hello");
  sched.run();
  CHECK(payloads(b) == std::vector<std::string>{"hello"});
  CHECK(payloads(a).empty());
  CHECK(payloads(c).empty());
  expected.subscriptions = 1;
  expected.monitored = 1;
  CHECK(tables() == expected);
  CHECK(listening() == std::vector<std::string>{"fixed", "news"});
}

TEST_CASE_FIXTURE(dynamic_fixture,
                  "registry: a failed LISTEN answers every subscribe waiting for it and leaves "
                  "nothing") {
  auto a = spawn_recorder(), b = spawn_recorder();
  server->refuse_listen_on = "refused";
  self->send(reg, subscribe_atom_v, std::string{"refused"}, a);
  self->send(reg, subscribe_atom_v, std::string{"refused"}, b);
  sched.run();
  CHECK(replies(2) == std::vector<std::string>(2, "listen_failed"));
  CHECK(tables() == at_rest(1));
  CHECK(channels() == std::vector<std::string>{"fixed"});
  CHECK(listening() == std::vector<std::string>{"fixed"});
  // The next subscribe asks again, and the server accepts this time.
  REQUIRE(subscribe("refused", b));
  CHECK(listening() == std::vector<std::string>{"fixed", "refused"});
  auto expected = at_rest(2);
  expected.subscriptions = 1;
  expected.monitored = 1;
  CHECK(tables() == expected);
}

TEST_CASE_FIXTURE(dynamic_fixture,
                  "registry: a subscriber that dies while its LISTEN is pending leaves nothing") {
  auto doomed = sys.spawn(recorder, std::string{"doomed"});
  self->send(reg, subscribe_atom_v, std::string{"news"}, doomed);
  caf::anon_send_exit(doomed, caf::exit_reason::kill);
  sched.run();
  CHECK(replies(1) == std::vector<std::string>{"ok"});  // the requester is still answered
  CHECK(tables() == at_rest(1));
  CHECK(server_log().back() == "UNLISTEN news");
  CHECK(listening() == std::vector<std::string>{"fixed"});
}

TEST_CASE_FIXTURE(dynamic_fixture,
                  "registry: a dynamic channel's re-subscription still counts what is unacked") {
  auto s = spawn_recorder();
  REQUIRE(subscribe("news", s, 4));
  for (auto payload : {"1", "2", "3"}) server->notify("news", payload);
  sched.run();
  REQUIRE(payloads(s).size() == 3);
  unsubscribe("news", s);  // the channel is UNLISTENed; the 3 unacked are kept
  CHECK(server_log().back() == "UNLISTEN news");
  auto cancelled = at_rest(1);
  cancelled.cancelled = 1;
  cancelled.monitored = 1;
  CHECK(tables() == cancelled);
  REQUIRE(subscribe("news", s, 4));  // LISTENed again; starts with 3 in flight
  for (auto payload : {"4", "5"}) server->notify("news", payload);
  sched.run();
  CHECK(payloads(s) == std::vector<std::string>{"1", "2", "3", "4"});
  ack(s, "news", 3);
  ack(s, "news", 1);
  REQUIRE(messages_of(s).back().match_elements<lagged>());
  CHECK(messages_of(s).back().get_as<lagged>(0).missed == 1);
  auto active = at_rest(2);
  active.subscriptions = 1;
  active.monitored = 1;
  CHECK(tables() == active);
  CHECK(stats().bad_acks == 0);
}

namespace {

/// What CAF's middleman makes of an actor on another node: a proxy. This one
/// records what is sent to it; kill_proxy is the remote actor's death.
class remote_actor final : public caf::actor_proxy {
 public:
  explicit remote_actor(caf::actor_config& cfg) : caf::actor_proxy(cfg) {}

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit*) override {
    received.push_back(what->move_content_to_message());
  }
  bool add_backlink(caf::abstract_actor*) override { return false; }
  bool remove_backlink(caf::abstract_actor*) override { return false; }
  void kill_proxy(caf::execution_unit* ctx, caf::error reason) override {
    cleanup(std::move(reason), ctx);
  }

  std::vector<caf::message> received;
};

struct remote_fixture : registry_fixture {
  caf::actor_config proxy_config;
  caf::actor_id next_id = 1'000'000;
  caf::node_id node_a = *caf::make_node_id(101, "0101010101010101010101010101010101010101");
  caf::node_id node_b = *caf::make_node_id(202, "0202020202020202020202020202020202020202");
  std::vector<caf::actor> remotes;

  caf::actor remote_on(const caf::node_id& node) {
    auto ptr =
        caf::make_actor<remote_actor, caf::strong_actor_ptr>(next_id++, node, &sys, proxy_config);
    remotes.push_back(caf::actor_cast<caf::actor>(std::move(ptr)));
    return remotes.back();
  }

  remote_actor& proxy(const caf::actor& who) {
    return dynamic_cast<remote_actor&>(*caf::actor_cast<caf::abstract_actor*>(who));
  }

  void kill(const caf::actor& who) {
    proxy(who).kill_proxy(nullptr, caf::exit_reason::remote_link_unreachable);
    sched.run();
  }

  /// `sender` asks the registry to unsubscribe `who` from "a"; returns the reply.
  caf::message unsubscribe_from(const caf::actor& sender, const caf::actor& who) {
    caf::send_as(sender, reg, unsubscribe_atom_v, std::string{"a"}, who);
    sched.run();
    REQUIRE(!proxy(sender).received.empty());
    return proxy(sender).received.back();
  }

  ~remote_fixture() override {
    for (auto& r : remotes) proxy(r).kill_proxy(nullptr, caf::exit_reason::user_shutdown);
    sched.run();
  }
};

bool refused(const caf::message& reply) {
  return reply.match_elements<caf::error>() &&
         reply.get_as<caf::error>(0) == make_error(errc::invalid_argument);
}

}  // namespace

TEST_CASE_FIXTURE(remote_fixture,
                  "registry: subscribers on other nodes share one batch message without local "
                  "acks") {
  auto r1 = remote_on(node_a), r2 = remote_on(node_b);
  auto local = spawn_recorder();
  subscribe("a", r1);
  subscribe("a", r2);
  subscribe("a", local);
  deliver("a", 0, 5);
  REQUIRE(proxy(r1).received.size() == 1);
  REQUIRE(proxy(r2).received.size() == 1);
  const auto& m1 = proxy(r1).received[0];
  const auto& m2 = proxy(r2).received[0];
  REQUIRE(m1.match_elements<notification_batch>());
  CHECK(&m1.get_as<notification_batch>(0) == &m2.get_as<notification_batch>(0));
  CHECK(m1.get_as<notification_batch>(0).acks() == nullptr);
  CHECK(messages_of(local).back().get_as<notification_batch>(0).acks() != nullptr);
  // Their acks are messages, as before; word without a count from another node
  // that the registry did not wait for is a bad ack, as before.
  caf::send_as(r1, reg, ack_atom_v, std::string{"a"}, uint32_t{5});
  caf::send_as(r2, reg, ack_atom_v, std::string{"b"}, uint32_t{0});
  sched.run();
  auto st = stats();
  CHECK(st.bad_acks == 1);
  for (const auto& sub : st.subscriptions)
    if (sub.subscriber == r1.address()) CHECK(sub.in_flight == 0);
}

TEST_CASE_FIXTURE(remote_fixture,
                  "registry: the listener's batch limit is the smallest bound and at least the "
                  "default for another node") {
  // The scoped actor plays the listener: what the registry has sent it so far.
  auto limits = [&] {
    std::vector<uint32_t> result;
    for (auto msg = next_message(); !msg.empty(); msg = next_message())
      if (msg.match_elements<batch_limit_atom, uint32_t>())
        result.push_back(msg.get_as<uint32_t>(1));
    return result;
  };
  constexpr auto none = std::numeric_limits<uint32_t>::max();
  auto s1 = spawn_recorder(), s2 = spawn_recorder();
  subscribe("a", s1, 300);
  subscribe("b", s2, 100);
  subscribe("b", s1, 300);  // a second subscription with the same bound
  CHECK(limits() == std::vector<uint32_t>{300, 100});
  // Another node's subscriber counts at least the default bound (256 here),
  // however small its own.
  auto remote = remote_on(node_a);
  subscribe("a", remote, 1);
  CHECK(limits().empty());
  subscribe("a", s1, 50);  // a new bound for an active subscription
  CHECK(limits() == std::vector<uint32_t>{50});
  REQUIRE(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, s1));
  CHECK(limits() == std::vector<uint32_t>{100});
  caf::anon_send_exit(s2, caf::exit_reason::kill);
  sched.run();
  CHECK(limits() == std::vector<uint32_t>{256});  // s1 on "b" (300) and the remote one
  REQUIRE(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"b"}, s1));
  CHECK(limits().empty());
  kill(remote);
  CHECK(limits() == std::vector<uint32_t>{none});
  // A new listener (one the bus restarted) hears the limit at once.
  subscribe("a", s1, 7);
  CHECK(limits() == std::vector<uint32_t>{7});
  self->send(reg, caf::actor_cast<listener_actor>(caf::actor{self}));
  sched.run();
  CHECK(limits() == std::vector<uint32_t>{7});
}

TEST_CASE_FIXTURE(remote_fixture, "registry: a remote node may unsubscribe only its own actors") {
  auto a1 = remote_on(node_a), a2 = remote_on(node_a), b1 = remote_on(node_b);
  auto local = spawn_recorder();
  REQUIRE(node_a != self->node());
  subscribe("a", a1);
  subscribe("a", local);
  // Another node's actor, or a local one: refused, and nothing changes.
  CHECK(refused(unsubscribe_from(b1, a1)));
  CHECK(refused(unsubscribe_from(a1, local)));
  // Without a sender there is no node to compare: refused too.
  caf::anon_send(reg, unsubscribe_atom_v, std::string{"a"}, local);
  sched.run();
  auto st = stats();
  CHECK(st.subscriptions.size() == 2);
  CHECK(st.refused_unsubscribes == 3);
  // An actor of its own node: yes, itself or another.
  CHECK(unsubscribe_from(a2, a1).match_elements<caf::ok_atom>());
  CHECK(stats().subscriptions.size() == 1);
  subscribe("a", a1);
  CHECK(unsubscribe_from(a1, a1).match_elements<caf::ok_atom>());
  // A local caller (a supervisor, the application) may unsubscribe anyone.
  subscribe("a", b1);
  CHECK(ask<caf::ok_atom>(unsubscribe_atom_v, std::string{"a"}, b1));
  CHECK(stats().subscriptions.size() == 1);
  CHECK(stats().refused_unsubscribes == 3);
}

TEST_CASE_FIXTURE(remote_fixture,
                  "registry: a remote subscriber is monitored like a local one and forgotten when "
                  "it is gone") {
  auto remote = remote_on(node_a);
  subscribe("a", remote, 4);
  subscribe("b", remote, 4);
  deliver("a", 0, 3);
  REQUIRE(proxy(remote).received.size() == 1);  // one batch
  caf::send_as(remote, reg, ack_atom_v, std::string{"a"}, uint32_t{1});
  CHECK(unsubscribe_from(remote, remote).match_elements<caf::ok_atom>());  // 2 unacked on "a"
  auto expected = at_rest(2);
  expected.subscriptions = 1;
  expected.cancelled = 1;
  expected.monitored = 1;
  CHECK(tables() == expected);
  kill(remote);
  CHECK(tables() == at_rest(2));
}

namespace {

// The churn test's world: a registry in dynamic mode with two fixed channels,
// a real listener on a scripted server.
struct churn_fixture : dynamic_fixture {
  churn_fixture() : dynamic_fixture({"f1", "f2"}) {}
};

/// What the test knows of one slot's actor.
struct slot {
  caf::actor handle;
  size_t seen = 0;                          ///< its messages counted so far
  std::map<std::string, uint32_t> unacked;  ///< received, not yet acked, per channel
  /// Per channel, the local acks of the last batch (the recorder keeps it alive).
  std::map<std::string, local_acks*> acks;
  std::set<std::string> subscribed;  ///< as the replies so far say
  bool reconnects = false;
};

}  // namespace

TEST_CASE_FIXTURE(churn_fixture,
                  "registry: 100,000 random subscribes, unsubscribes, deaths, acks and "
                  "deliveries leave nothing behind") {
  const std::vector<std::string> fixed{"f1", "f2"};
  const std::vector<std::string> dynamic{"d1", "d2", "d3", "d4", "d5",
                                         "d6", "d7", "d8", "d9", "d10"};
  std::vector<std::string> all = fixed;
  all.insert(all.end(), dynamic.begin(), dynamic.end());
  std::mt19937 rng{20261127};
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<slot> slots(32);  // each holds a live recorder; a death refills it
  auto fresh = [&] { return sys.spawn(recorder, std::string{"churned"}); };
  for (auto& s : slots) s.handle = fresh();
  // Counts the batches a slot's actor has received since the last look.
  auto look = [&](slot& s) {
    auto& messages = messages_of(s.handle);
    for (; s.seen < messages.size(); ++s.seen)
      if (messages[s.seen].match_elements<notification_batch>()) {
        const auto& items = messages[s.seen].get_as<notification_batch>(0);
        std::string channel{items.front().channel};
        s.unacked[channel] += static_cast<uint32_t>(items.size());
        s.acks[channel] = items.acks();
      }
  };
  // What the registry must hold now that everything sent has been handled.
  auto check_books = [&](const std::string& when) {
    INFO(when);
    std::set<std::string> wanted(fixed.begin(), fixed.end());
    std::set<std::pair<std::string, caf::actor_addr>> model;
    registry_tables expected;
    for (auto& s : slots) {
      look(s);
      bool kept = s.reconnects;
      for (const auto& channel : s.subscribed) {
        model.emplace(channel, s.handle.address());
        wanted.insert(channel);
        kept = true;
      }
      for (const auto& [channel, count] : s.unacked)
        if (count > 0) {
          kept = true;
          if (s.subscribed.count(channel) == 0) expected.cancelled += 1;
        }
      expected.monitored += kept ? 1 : 0;
      expected.reconnect_subscribers += s.reconnects ? 1 : 0;
    }
    expected.channels = wanted.size();
    expected.subscriptions = model.size();
    auto st = stats();
    REQUIRE(st.tables == expected);
    std::set<std::pair<std::string, caf::actor_addr>> held;
    std::map<caf::actor_addr, const slot*> by_address;
    for (const auto& s : slots) by_address[s.handle.address()] = &s;
    for (const auto& sub : st.subscriptions) {
      held.emplace(sub.channel, sub.subscriber);
      // Its in-flight count is exactly what it received and did not ack.
      const auto& unacked = by_address.at(sub.subscriber)->unacked;
      auto i = unacked.find(sub.channel);
      REQUIRE(sub.in_flight == (i == unacked.end() ? 0 : i->second));
    }
    REQUIRE(held == model);
    REQUIRE(listening() == std::vector<std::string>(wanted.begin(), wanted.end()));
    REQUIRE(st.bad_acks == 0);
    // The registry counts exactly the live subscriptions' bounds, and last told
    // the listener the smallest.
    std::map<uint32_t, size_t> bounds;
    for (const auto& sub : st.subscriptions) ++bounds[sub.bound];
    const auto& books = state_of<registry_state, registry_actor::base>(reg);
    REQUIRE(books.bounds == bounds);
    REQUIRE(books.batch_limit ==
            (bounds.empty() ? std::numeric_limits<uint32_t>::max() : bounds.begin()->first));
  };

  const int operations = 100'000;
  int done = 0, next_checkpoint = 10'000;
  std::map<std::string, int> counts;
  while (done < operations) {
    // A few operations at once, half of them on one channel, so that many
    // meet a LISTEN under way; the replies are read afterwards, in the order
    // of the requests.
    std::vector<std::function<void()>> on_replies;
    auto focus = all[pick(all.size())];
    auto channel_for = [&](const slot& s, bool leaving) {
      // Most unsubscribes leave a channel the actor is on, so that dynamic
      // channels empty and come back often.
      if (leaving && !s.subscribed.empty() && pick(10) < 8)
        return *std::next(s.subscribed.begin(), pick(s.subscribed.size()));
      return pick(2) == 0 ? focus : all[pick(all.size())];
    };
    for (size_t n = 1 + pick(6); n > 0 && done < operations; --n, ++done) {
      auto index = pick(slots.size());
      auto& s = slots[index];
      auto roll = pick(100);
      if (roll < 22) {
        ++counts["subscribe"];
        auto channel = channel_for(s, false);
        auto bound = static_cast<uint32_t>(1 + pick(12));
        if (pick(40) == 0) server->refuse_listen_on = channel;  // its next LISTEN fails
        auto reply = self->request(reg, caf::infinite, subscribe_atom_v, channel, s.handle, bound);
        on_replies.push_back([&slots, &counts, index, channel, reply]() mutable {
          reply.receive([&](caf::ok_atom) { slots[index].subscribed.insert(channel); },
                        [&](caf::error& err) {
                          REQUIRE(err == make_error(errc::listen_failed));
                          ++counts["failed subscribe"];
                          slots[index].subscribed.erase(channel);
                        });
        });
      } else if (roll < 50) {
        ++counts["unsubscribe"];
        auto channel = channel_for(s, true);
        auto reply = self->request(reg, caf::infinite, unsubscribe_atom_v, channel, s.handle);
        on_replies.push_back([&slots, index, channel, reply]() mutable {
          reply.receive([&](caf::ok_atom) {},
                        [&](caf::error& err) {
                          // A dynamic channel nobody subscribes to is not registered.
                          REQUIRE(err == make_error(errc::unknown_channel));
                          REQUIRE(channel[0] == 'd');
                        });
          slots[index].subscribed.erase(channel);
        });
      } else if (roll < 57) {
        ++counts["kill"];
        caf::anon_send_exit(s.handle, caf::exit_reason::kill);
        s.handle = fresh();
        s.seen = 0;
        s.unacked.clear();
        s.acks.clear();
        on_replies.push_back([&slots, index] {
          slots[index].subscribed.clear();
          slots[index].reconnects = false;
        });
      } else if (roll < 60) {
        ++counts["reconnects"];
        auto reply = self->request(reg, caf::infinite, reconnects_atom_v, s.handle);
        on_replies.push_back([&slots, index, reply]() mutable {
          reply.receive([&](uint64_t) { slots[index].reconnects = true; },
                        [&](caf::error& err) { FAIL(to_string(err)); });
        });
      } else if (roll < 82) {
        ++counts["ack"];
        look(s);
        std::vector<std::string> owing;
        for (const auto& [channel, count] : s.unacked)
          if (count > 0) owing.push_back(channel);
        if (owing.empty()) continue;
        auto channel = owing[pick(owing.size())];
        auto count = static_cast<uint32_t>(1 + pick(s.unacked[channel]));
        s.unacked[channel] -= count;
        // Half by message, half as a subscriber on the registry's node acks
        // (pgnotify::ack): into the last batch's local acks, which a cancelled
        // or re-made subscription still shares, and a message only if asked.
        if (pick(2) == 0)
          caf::send_as(s.handle, reg, ack_atom_v, channel, count);
        else if (s.acks.at(channel)->add(count))
          caf::send_as(s.handle, reg, ack_atom_v, channel, uint32_t{0});
      } else {
        ++counts["deliver"];
        auto channel = channel_for(s, false);
        for (size_t k = 1 + pick(4); k > 0; --k) server->notify(channel, std::to_string(done));
      }
    }
    sched.run();
    // Every request must have been answered by now: a missing reply blocks its
    // receive below and fails the test by its timeout. (Counting the scoped
    // actor's mailbox would be quicker, but CAF 0.17's mailbox().size() on a
    // blocking actor is undefined behaviour, which UBSan reports.)
    for (auto& f : on_replies) f();
    if (done >= next_checkpoint) {
      check_books("after " + std::to_string(done) + " operations");
      next_checkpoint += 10'000;
    }
  }
  MESSAGE("churn: " << counts["subscribe"] << " subscribes, " << counts["unsubscribe"]
                    << " unsubscribes, " << counts["kill"] << " deaths, " << counts["ack"]
                    << " acks, " << counts["deliver"] << " deliveries, " << counts["reconnects"]
                    << " reconnect subscriptions; " << counts["failed subscribe"]
                    << " subscribes failed with their LISTEN, " << server->listens.size()
                    << " LISTENs, " << server->unlistens.size() << " UNLISTENs; "
                    << stats().delivered << " notifications delivered, " << stats().missed
                    << " missed");
  // Everyone dies: nothing is left but the fixed channels, LISTENed.
  for (auto& s : slots) caf::anon_send_exit(s.handle, caf::exit_reason::kill);
  sched.run();
  auto st = stats();
  CHECK(st.tables == at_rest(fixed.size()));
  CHECK(state_of<registry_state, registry_actor::base>(reg).bounds.empty());
  CHECK(listening() == fixed);
  CHECK(channels() == fixed);
  CHECK(st.bad_acks == 0);
  CHECK(st.refused_unsubscribes == 0);
  CHECK(st.rejected_messages == 0);
}
