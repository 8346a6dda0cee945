// The subscriber helper against a real registry, on the deterministic scheduler.
#include <doctest/doctest.h>

#include <pgnotify/actors/registry_state.hpp>
#include <pgnotify/actors/subscriber.hpp>

#include "caf_fixture.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::test;

namespace {

// Lives in a shared_ptr: the helper's callbacks may outlive the test body.
struct seen {
  std::vector<std::string> payloads;
  std::vector<uint64_t> reconnects;
  std::vector<uint64_t> generations;
  std::vector<lagged> lags;
  std::vector<uint64_t> subscribed;
  std::vector<caf::error> errors;
};

struct subscriber_fixture : caf_fixture {
  // The scoped actor plays the bus and the listener.
  registry_actor reg =
      stopped_at_exit(sys.spawn(registry, registry_settings{{"a"}, 256, false, self->address()}));

  subscriber_fixture() {
    self->send(reg, caf::actor_cast<listener_actor>(caf::actor{self}));
    sched.run();
  }

  std::pair<caf::actor, std::shared_ptr<seen>> spawn_helper(std::vector<std::string> channels,
                                                            std::optional<uint32_t> bound = {}) {
    auto log = std::make_shared<seen>();
    subscriber_callbacks cb;
    cb.on_notification = [log](const notification& n) { log->payloads.emplace_back(n.payload); };
    cb.on_reconnected = [log](uint64_t g) { log->reconnects.push_back(g); };
    cb.on_generation = [log](uint64_t g) { log->generations.push_back(g); };
    cb.on_lagged = [log](const lagged& l) { log->lags.push_back(l); };
    cb.on_subscribed = [log](uint64_t g) { log->subscribed.push_back(g); };
    cb.on_error = [log](const caf::error& e) { log->errors.push_back(e); };
    auto helper = stopped_at_exit(
        spawn_subscriber(sys, reg, subscriber_options{std::move(channels), bound}, cb));
    sched.run();
    return {helper, log};
  }

  void generation(uint64_t g) {
    self->send(reg, reconnected{g});
    sched.run();
  }

  // What the registry counts as sent and not acked (its stats collect local acks).
  subscription_stats subscription() {
    self->send(reg, stats_atom_v);
    sched.run();
    bus_stats result;
    self->receive([&](bus_stats& st) { result = std::move(st); },
                  caf::after(0s) >> [] { FAIL("no stats"); });
    REQUIRE(result.subscriptions.size() == 1);
    return result.subscriptions[0];
  }

  void deliver(int first, int count) {
    notification_batch::builder batch;
    for (int i = first; i < first + count; ++i) batch.add("a", std::to_string(i), 1);
    self->send(reg, received_notifications{batch.finish(1)});
    sched.run();
  }
};

}  // namespace

TEST_CASE("subscriber: is_reconnect never counts the boot connect") {
  CHECK_FALSE(is_reconnect(0, 1));
  CHECK(is_reconnect(0, 2));
  CHECK_FALSE(is_reconnect(2, 2));
  CHECK(is_reconnect(2, 3));
  CHECK_FALSE(is_reconnect(3, 2));
}

TEST_CASE_FIXTURE(subscriber_fixture,
                  "subscriber: an early subscriber resyncs on 2 but not on the boot connect") {
  auto [helper, log] = spawn_helper({"a"});
  CHECK(log->subscribed == std::vector<uint64_t>{0});
  generation(1);
  CHECK(log->reconnects.empty());
  generation(2);
  CHECK(log->reconnects == std::vector<uint64_t>{2});
  CHECK(log->generations == std::vector<uint64_t>{1, 2});
}

TEST_CASE_FIXTURE(subscriber_fixture,
                  "subscriber: a late subscriber resyncs on the next generation only") {
  generation(1);
  generation(2);
  auto [helper, log] = spawn_helper({"a"});
  CHECK(log->subscribed == std::vector<uint64_t>{2});
  generation(3);
  CHECK(log->reconnects == std::vector<uint64_t>{3});
  CHECK(log->generations == std::vector<uint64_t>{3});
}

TEST_CASE_FIXTURE(subscriber_fixture, "subscriber: unpacks batches in order and acks them") {
  auto [helper, log] = spawn_helper({"a"}, 5);
  for (int i = 0; i < 20; ++i) deliver(i * 3, 3);
  std::vector<std::string> expected;
  for (int i = 0; i < 60; ++i) expected.push_back(std::to_string(i));
  CHECK(log->payloads == expected);  // bound 5 < 60: only acks can make this pass
  CHECK(log->lags.empty());
  CHECK(subscription().in_flight == 0);
}

TEST_CASE_FIXTURE(subscriber_fixture,
                  "subscriber: on_batch gets whole batches instead of on_notification") {
  auto batches = std::make_shared<std::vector<std::vector<std::string>>>();
  auto singles = std::make_shared<size_t>(0);
  subscriber_callbacks cb;
  cb.on_notification = [singles](const notification&) { ++*singles; };
  cb.on_batch = [batches](const notification_batch& batch) {
    auto& payloads = batches->emplace_back();
    for (const auto& n : batch) payloads.emplace_back(n.payload);
  };
  auto helper = stopped_at_exit(spawn_subscriber(sys, reg, subscriber_options{{"a"}, 5}, cb));
  sched.run();
  for (int i = 0; i < 4; ++i) deliver(i * 3, 3);
  CHECK(*singles == 0);
  CHECK(*batches == std::vector<std::vector<std::string>>{
                        {"0", "1", "2"}, {"3", "4", "5"}, {"6", "7", "8"}, {"9", "10", "11"}});
  // Each batch is acked once on_batch returns: bound 5 < 12 lost nothing.
  auto sub = subscription();
  CHECK(sub.in_flight == 0);
  CHECK(sub.missed == 0);
}

TEST_CASE_FIXTURE(subscriber_fixture,
                  "subscriber: an unknown channel is reported and the helper quits") {
  auto [helper, log] = spawn_helper({"a", "nope"});
  REQUIRE(log->errors.size() == 1);
  CHECK(log->subscribed.empty());
  self->monitor(helper);
  sched.run();
  bool down = false;
  self->receive([&](caf::down_msg&) { down = true; }, caf::after(0s) >> [] {});
  CHECK(down);
}

TEST_CASE_FIXTURE(
    subscriber_fixture,
    "subscriber: one ack covers the batches up to an eighth of the bound and the rest "
    "once the mailbox is empty") {
  auto [helper, log] = spawn_helper({"a"}, 40);
  // Batches from a stand-in registry that records the acks: three arrive
  // before the helper runs, then one more alone.
  auto acks = spawn_recorder("registry");
  auto batch_of = [](int first) {
    notification_batch::builder out;
    for (int i = first; i < first + 3; ++i) out.add("a", std::to_string(i), 1);
    return out.finish(1);
  };
  for (int i = 0; i < 3; ++i) caf::send_as(acks, helper, batch_of(i * 3));
  sched.run();
  caf::send_as(acks, helper, batch_of(9));
  sched.run();
  std::vector<uint32_t> counts;
  for (auto& msg : messages_of(acks)) {
    REQUIRE(msg.match_elements<ack_atom, std::string, uint32_t>());
    CHECK(msg.get_as<std::string>(1) == "a");
    counts.push_back(msg.get_as<uint32_t>(2));
  }
  // 3 + 3 reach an eighth of the bound (5); the third batch is acked when nothing is
  // left to process; so is the lone fourth.
  CHECK(counts == std::vector<uint32_t>{6, 3, 3});
  CHECK(log->payloads.size() == 12);
}

TEST_CASE_FIXTURE(subscriber_fixture,
                  "subscriber: on the registry's node it acks each batch into its local acks "
                  "and sends a message only when asked") {
  auto [helper, log] = spawn_helper({"a"}, 40);
  auto acks = spawn_recorder("registry");
  auto counter = std::make_shared<local_acks>();
  auto batch_of = [&](int first) {
    notification_batch::builder out;
    for (int i = first; i < first + 3; ++i) out.add("a", std::to_string(i), 1);
    return out.finish(1).with_acks(counter);
  };
  caf::send_as(acks, helper, batch_of(0));
  caf::send_as(acks, helper, batch_of(3));
  sched.run();
  CHECK(messages_of(acks).empty());
  CHECK(counter->take() == 6);
  CHECK(counter->take_and_wait() == 0);  // as a registry that waits to report a loss
  caf::send_as(acks, helper, batch_of(6));
  caf::send_as(acks, helper, batch_of(9));
  sched.run();
  REQUIRE(messages_of(acks).size() == 1);  // asked once, told once
  auto& msg = messages_of(acks).front();
  REQUIRE(msg.match_elements<ack_atom, std::string, uint32_t>());
  CHECK(msg.get_as<std::string>(1) == "a");
  CHECK(msg.get_as<uint32_t>(2) == 0);
  CHECK(counter->take() == 6);
  CHECK(log->payloads.size() == 12);
}

TEST_CASE_FIXTURE(subscriber_fixture,
                  "subscriber: what is left unacked behind other messages is acked after them") {
  auto [helper, log] = spawn_helper({"a"}, 40);
  auto acks = spawn_recorder("registry");
  notification_batch::builder out;
  for (int i = 0; i < 3; ++i) out.add("a", std::to_string(i), 1);
  // A batch below an eighth of the bound, and behind it a message that is not a
  // batch: nothing else will come to make the helper ack.
  caf::send_as(acks, helper, out.finish(1));
  caf::send_as(acks, helper, reconnected{2});
  sched.run();
  REQUIRE(messages_of(acks).size() == 1);
  auto& msg = messages_of(acks).front();
  REQUIRE(msg.match_elements<ack_atom, std::string, uint32_t>());
  CHECK(msg.get_as<uint32_t>(2) == 3);
  CHECK(log->reconnects == std::vector<uint64_t>{2});
}
