#include "remote.hpp"

#include <cctype>

#include <fmt/format.h>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/scoped_actor.hpp>

#include "handshake_guard.hpp"
#include "options.hpp"

namespace pgnotify::app {

std::string protocol_of(const std::set<std::string>& interface) {
  // CAF writes an atom of a signature as its text: caf::replies_to<pgnotify3>::with<@u32>
  const std::string marker = "caf::replies_to<pgnotify";
  for (const auto& signature : interface) {
    if (signature.compare(0, marker.size(), marker) != 0) continue;
    auto end = signature.find('>', marker.size());
    auto number = signature.substr(marker.size(), end - marker.size());
    if (!number.empty() &&
        std::all_of(number.begin(), number.end(), [](unsigned char c) { return std::isdigit(c); }))
      return "pgnotify protocol " + number;
  }
  // Version 1 had no marker; its bus is recognised by pgnotify's own atom.
  if (interface.count("caf::replies_to<unsubscrib,@str,@actor>::with<ok>") > 0)
    return "pgnotify protocol 1";
  return "an unknown version";
}

bus_actor connect_remote(caf::actor_system& sys, const std::string& host, uint16_t port, bool tls,
                         caf::timespan timeout) {
  auto where = fmt::format("--remote={}:{}", host, port);
  auto manager = tls ? sys.openssl_manager().actor_handle() : sys.middleman().actor_handle();
  caf::strong_actor_ptr found;
  std::set<std::string> interface;
  caf::error failure;
  {
    caf::scoped_actor self{sys};
    self->request(manager, timeout, caf::connect_atom_v, host, port)
        .receive(
            [&](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>& ifs) {
              found = std::move(ptr);
              interface = std::move(ifs);
            },
            [&](caf::error& err) { failure = std::move(err); });
  }
  if (failure) {
    // A server that never finishes the handshake leaves the connection
    // pending, and CAF's actor system would wait for it at exit.
    if (failure == caf::sec::request_timeout) shut_down_connections(port, false);
    std::string hint;
    if (failure == caf::sec::disconnect_during_handshake)
      hint = tls ? " (the server refused this side's certificate, this side refused the server's, "
                   "or the server does not use TLS)"
                 : " (does the server require TLS? --tls-cert, --tls-key, --tls-ca)";
    else if (failure == caf::sec::cannot_connect_to_node && tls)
      hint = " (does the server use TLS?)";
    else if (failure == caf::sec::request_timeout)
      hint = fmt::format(" (no answer within {} ms)",
                         std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
    throw usage_error(fmt::format("cannot reach {}: {}{}", where, sys.render(failure), hint));
  }
  if (!found) throw usage_error(fmt::format("{}: nothing is published on that port", where));
  if (!sys.assignable<bus_actor>(interface))
    throw usage_error(fmt::format("{}: the server speaks {}, this program pgnotify protocol {}",
                                  where, protocol_of(interface), protocol_version));
  return caf::actor_cast<bus_actor>(std::move(found));
}

}  // namespace pgnotify::app
