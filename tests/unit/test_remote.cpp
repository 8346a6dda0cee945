// `--remote` refuses a server of another protocol version and says which one
// it speaks: two actor systems in this process, connected over loopback TCP.
#include <doctest/doctest.h>

#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <pgnotify/messages/type_ids.hpp>

#include "options.hpp"
#include "remote.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::app;

namespace {

// What a version 1 bus looked like from outside (no protocol atom) and what a
// later version might: each keeps one of pgnotify's signatures.
using bus_v1 = caf::typed_actor<
    caf::replies_to<unsubscribe_atom, std::string, caf::actor>::with<caf::ok_atom>>;
using protocol_v4_atom = caf::atom_constant<caf::atom("pgnotify4")>;
using bus_v4 = caf::typed_actor<
    caf::replies_to<protocol_v4_atom>::with<uint32_t>,
    caf::replies_to<unsubscribe_atom, std::string, caf::actor>::with<caf::ok_atom>>;

// (An argument: CAF 0.17 spawns a function without any through a null
// pointer, which UBSan reports.)
bus_v1::behavior_type fake_v1(bus_v1::pointer, int) {
  return {[](unsubscribe_atom, const std::string&, const caf::actor&) { return caf::ok_atom_v; }};
}

bus_v4::behavior_type fake_v4(bus_v4::pointer, int) {
  return {[](protocol_v4_atom) { return uint32_t{4}; },
          [](unsubscribe_atom, const std::string&, const caf::actor&) { return caf::ok_atom_v; }};
}

struct node {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  node() {
    add_message_types(cfg);
    cfg.load<caf::io::middleman>();
    sys = std::make_unique<caf::actor_system>(cfg);
  }
};

template <class Handle>
std::string refusal(const Handle& server_actor, node& server) {
  auto port = server.sys->middleman().publish(server_actor, 0, "127.0.0.1");
  REQUIRE(port);
  node client;
  try {
    connect_remote(*client.sys, "127.0.0.1", *port, false, 5s);
  } catch (const usage_error& e) {
    return e.what();
  }
  return "connected";
}

}  // namespace

TEST_CASE("remote: a server of protocol 1 or 4 is refused and the message names both versions") {
  node server;
  auto v1 = server.sys->spawn(fake_v1, 0);
  auto text = refusal(v1, server);
  CHECK_MESSAGE(text.find("the server speaks pgnotify protocol 1, this program pgnotify protocol " +
                          std::to_string(protocol_version)) != std::string::npos,
                text);
  auto v4 = server.sys->spawn(fake_v4, 0);
  text = refusal(v4, server);
  CHECK_MESSAGE(text.find("the server speaks pgnotify protocol 4, this program pgnotify protocol " +
                          std::to_string(protocol_version)) != std::string::npos,
                text);
  caf::anon_send_exit(v1, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(v4, caf::exit_reason::user_shutdown);
}

TEST_CASE("remote: the protocol atom carries protocol_version and CAF shows it in interfaces") {
  CHECK(caf::to_string(protocol_atom::value) == "pgnotify" + std::to_string(protocol_version));
  node n;
  auto own = n.sys->message_types<bus_actor>();
  CHECK(protocol_of(own) == "pgnotify protocol " + std::to_string(protocol_version));
  CHECK(protocol_of({"caf::replies_to<unsubscrib,@str,@actor>::with<ok>"}) ==
        "pgnotify protocol 1");
  CHECK(protocol_of({"caf::replies_to<ping>::with<pong>"}) == "an unknown version");
  CHECK(protocol_of({}) == "an unknown version");
}
