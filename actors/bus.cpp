#include "bus.hpp"

#include <algorithm>

#include "../messages/channel_name.hpp"
#include "../messages/errors.hpp"
#include "listener.hpp"
#include "pq_connection.hpp"
#include "registry.hpp"

namespace pgnotify {

namespace {

template <class Reply, class Request>
caf::result<Reply> ask_listener(bus_actor::pointer self, const listener_actor& lis, Request req) {
  auto promise = self->make_response_promise<Reply>();
  self->request(lis, caf::infinite, req)
      .then([=](Reply& reply) mutable { promise.deliver(std::move(reply)); },
            [=](caf::error& err) mutable { promise.deliver(std::move(err)); });
  return promise;
}

bus_actor::behavior_type bus(bus_actor::pointer self, registry_settings registry_config,
                             listener_settings listener_config, connection_factory connect) {
  auto reg = self->spawn<caf::linked>(registry, std::move(registry_config));
  // Detached: connecting and LISTEN block, and must not stall CAF's workers.
  auto lis = self->spawn<caf::detached + caf::linked>(listener, std::move(connect), reg,
                                                      std::move(listener_config));
  // Before any request the bus delegates: messages from one sender stay in order.
  self->send(reg, lis);
  return {
      [=](subscribe_atom, std::string& channel, caf::actor& who) {
        return self->delegate(reg, subscribe_atom_v, std::move(channel), std::move(who));
      },
      [=](subscribe_atom, std::string& channel, caf::actor& who, uint32_t bound) {
        return self->delegate(reg, subscribe_atom_v, std::move(channel), std::move(who), bound);
      },
      [=](unsubscribe_atom, std::string& channel, caf::actor& who) {
        return self->delegate(reg, unsubscribe_atom_v, std::move(channel), std::move(who));
      },
      [=](reconnects_atom, caf::actor& who) {
        return self->delegate(reg, reconnects_atom_v, std::move(who));
      },
      [=](channels_atom) { return self->delegate(reg, channels_atom_v); },
      [=](stats_atom) { return self->delegate(reg, stats_atom_v); },
      // Asked and answered by the bus rather than delegated: a reply from the
      // detached listener to a remote node would make it known remotely, and a
      // late remote reference kept ~actor_system waiting for its thread.
      [=](status_atom) { return ask_listener<bus_status>(self, lis, status_atom_v); },
      [=](listening_atom) {
        return ask_listener<std::vector<std::string>>(self, lis, listening_atom_v);
      },
  };
}

}  // namespace

caf::expected<bus_actor> spawn_bus(caf::actor_system& sys, bus_settings settings,
                                   connection_factory connect) {
  for (const auto& channel : settings.channels)
    if (auto err = validate_channel_name(channel)) return err;
  if (settings.default_bound == 0)
    return make_error(errc::invalid_argument, "default_bound must be at least 1");
  auto channels = settings.channels;
  std::sort(channels.begin(), channels.end());
  channels.erase(std::unique(channels.begin(), channels.end()), channels.end());
  return sys.spawn(bus,
                   registry_settings{channels, settings.default_bound, settings.dynamic_channels},
                   listener_settings{channels, settings.backoff, settings.health,
                                     settings.max_failed_attempts, settings.max_batch},
                   std::move(connect));
}

caf::expected<bus_actor> spawn_bus(caf::actor_system& sys, bus_settings settings) {
  auto conninfo = prepare_conninfo(settings.conninfo, settings.connection);
  if (!conninfo) return std::move(conninfo.error());
  // LISTEN and UNLISTEN get the health check's deadline.
  auto connect = [conninfo = *conninfo,
                  timeout = settings.health.timeout]() -> std::unique_ptr<connection> {
    return std::make_unique<pq_connection>(conninfo, timeout);
  };
  return spawn_bus(sys, std::move(settings), connect);
}

}  // namespace pgnotify
