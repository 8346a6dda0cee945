// A minimal CAF application on pgnotify: one subscriber actor per channel that
// prints what it gets and resyncs after a reconnect (NOTIFY is not replayed, so
// a real application would reload its state from the tables there).
//
//   resync_example URI COUNT CHANNEL...   exits after COUNT notifications
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/actors/subscriber.hpp>
#include <pgnotify/messages/errors.hpp>
#include <pgnotify/messages/type_ids.hpp>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: resync_example URI COUNT CHANNEL...\n";
    return 2;
  }
  caf::actor_system_config cfg;
  pgnotify::configure(cfg);  // message types and CAF's middleman
  caf::actor_system sys{cfg};

  pgnotify::bus_settings settings;
  settings.conninfo = argv[1];
  settings.channels.assign(argv + 3, argv + argc);
  auto bus = pgnotify::spawn_bus(sys, settings);
  if (!bus) {
    std::cerr << "cannot start: " << pgnotify::render(bus.error()) << "\n";
    return 2;
  }

  caf::scoped_actor main_actor{sys};
  auto done = caf::actor{main_actor};
  std::vector<caf::actor> subscribers;
  for (const auto& channel : settings.channels) {
    pgnotify::subscriber_callbacks on;
    on.on_subscribed = [channel](uint64_t generation) {
      std::cout << "subscribed " << channel << " at generation " << generation << std::endl;
    };
    on.on_notification = [done](const pgnotify::notification& n) {
      std::cout << "[" << n.channel << "] " << n.payload << std::endl;
      caf::anon_send(done, caf::ok_atom_v);
    };
    on.on_reconnected = [channel](uint64_t generation) {
      std::cout << "resync " << channel << ": reconnected, generation " << generation << std::endl;
    };
    on.on_lagged = [](const pgnotify::lagged& l) {
      std::cout << "missed " << l.missed << " on " << l.channel << std::endl;
    };
    subscribers.push_back(pgnotify::spawn_subscriber(sys, *bus, {{channel}, std::nullopt}, on));
  }

  for (int left = std::atoi(argv[2]); left > 0; --left) main_actor->receive([](caf::ok_atom) {});

  for (auto& s : subscribers) caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(*bus, caf::exit_reason::user_shutdown);
}
