// How an application tests its own actors against the bus without PostgreSQL:
// CAF's deterministic test coordinator plus pgnotify's scripted server. Here
// the application's subscriber must resync after a reconnect and count what
// it received. Exits 0 when every check holds.
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/actors/pg/scripted_connection.hpp>
#include <pgnotify/actors/subscriber.hpp>
#include <pgnotify/messages/type_ids.hpp>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::cout << (ok ? "ok      " : "FAILED  ") << what << "\n";
  failures += ok ? 0 : 1;
}

}  // namespace

int main() {
  caf::actor_system_config cfg;
  pgnotify::add_message_types(cfg);  // no middleman needed: the scripted server has no socket
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.console-verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());

  auto server = std::make_shared<pgnotify::pg::scripted_server>();
  pgnotify::bus_settings settings;
  settings.channels = {"orders"};
  auto bus = pgnotify::spawn_bus(sys, settings, server->factory());
  if (!bus) return 1;

  // The application's subscriber, as it would be in production.
  auto received = std::make_shared<std::vector<std::string>>();
  auto resyncs = std::make_shared<int>(0);
  pgnotify::subscriber_callbacks on;
  on.on_notification = [received](const pgnotify::notification& n) {
    received->emplace_back(n.payload);  // a view into its batch: copied
  };
  on.on_reconnected = [resyncs](uint64_t) { ++*resyncs; };
  auto sub = pgnotify::spawn_subscriber(sys, *bus, {{"orders"}, std::nullopt}, on);
  sched.run();  // connects, LISTENs, subscribes

  server->notify("orders", "41");
  sched.run();
  check(*received == std::vector<std::string>{"41"}, "a notification reaches the subscriber");

  // The connection drops after it had lasted: the bus reconnects at once.
  sched.clock().advance_time(std::chrono::seconds(1));
  server->drop();
  sched.run();
  check(*resyncs == 1, "the subscriber resyncs after the reconnect");
  server->notify("orders", "42");
  sched.run();
  check(*received == std::vector<std::string>{"41", "42"}, "the stream goes on");

  for (const auto& actor : {sub, caf::actor_cast<caf::actor>(*bus)})
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  sched.run();
  return failures == 0 ? 0 : 1;
}
