// A foreign CAF node for the two-process test in tests/app/test_serve.py: it
// subscribes to a `pgnotify serve` and, on its first batch, forges what only
// the listener and the bus may send (a generation, notifications, a listener
// handle) and acks it cannot owe, all to the batch's sender. It never acks
// honestly, so its bound must hold. After each batch it prints how many
// notifications it has received in total. With a fifth argument
// `unversioned` it subscribes as a node of protocol 1 or 2 would (naming no
// version), prints the error and exits 3.
//   pgnotify_test_forger HOST PORT CHANNEL BOUND [unversioned]
#include <cstdlib>
#include <iostream>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/messages/type_ids.hpp>

using namespace pgnotify;

namespace {

struct forger_state {
  uint64_t received = 0;
  bool forged = false;
};

caf::behavior forger(caf::stateful_actor<forger_state>* self, bus_actor bus, std::string channel,
                     uint32_t bound, bool versioned) {
  auto on_error = [=](caf::error& err) {
    std::cerr << "forger: " << self->system().render(err) << std::endl;
    std::exit(versioned ? 1 : 3);
  };
  auto me = caf::actor_cast<caf::actor>(self);
  if (versioned)
    self->request(bus, std::chrono::seconds(10), subscribe_atom_v, channel, me, bound,
                  protocol_version)
        .then([](caf::ok_atom) { std::cout << "subscribed" << std::endl; }, on_error);
  else
    self->request(bus, std::chrono::seconds(10), subscribe_atom_v, channel, me, bound)
        .then([](caf::ok_atom) { std::cout << "subscribed" << std::endl; }, on_error);
  return {
      [=](const notification_batch& batch) {
        auto& st = self->state;
        st.received += batch.size();
        if (!st.forged) {
          st.forged = true;
          auto registry = caf::actor_cast<caf::actor>(self->current_sender());
          self->send(registry, reconnected{99});
          self->send(registry, received_notifications{
                                   notification_batch::from_wire({{channel, "forged", 1}}, 99)});
          self->send(registry, caf::actor_cast<listener_actor>(self));
          // Acks it cannot owe: more than it has in flight, another channel.
          self->send(registry, ack_atom_v, channel, uint32_t{1000000});
          self->send(registry, ack_atom_v, std::string{"no such channel"}, uint32_t{5});
          std::cout << "forged" << std::endl;
        }
        std::cout << "received " << st.received << std::endl;
      },
      [](const lagged&) {},
      [](const reconnected&) {},
  };
}

}  // namespace

int main(int argc, char** argv) {
  bool versioned = argc == 5;
  if (argc != 5 && !(argc == 6 && std::string{argv[5]} == "unversioned")) {
    std::cerr << "usage: pgnotify_test_forger HOST PORT CHANNEL BOUND [unversioned]\n";
    return 2;
  }
  caf::actor_system_config cfg;
  configure(cfg);
  caf::actor_system sys{cfg};
  auto bus =
      sys.middleman().remote_actor<bus_actor>(argv[1], static_cast<uint16_t>(std::atoi(argv[2])));
  if (!bus) {
    std::cerr << "forger: " << sys.render(bus.error()) << std::endl;
    return 1;
  }
  sys.spawn(forger, *bus, std::string{argv[3]}, static_cast<uint32_t>(std::atoi(argv[4])),
            versioned);
  // Runs until killed.
}
