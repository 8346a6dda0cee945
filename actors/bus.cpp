#include "bus.hpp"

#include <algorithm>
#include <memory>

#include <fmt/format.h>
#include <caf/io/middleman.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "../messages/channel_name.hpp"
#include "../messages/errors.hpp"
#include "../messages/type_ids.hpp"
#include "listener.hpp"
#include "log.hpp"
#include "pg/pq_connection.hpp"
#include "registry_state.hpp"

namespace pgnotify {

namespace {

struct bus_state {
  static inline const char* name = "pgnotify.bus";
  registry_actor registry;
  listener_actor listener;  ///< null while a crashed listener waits for its restart
  pg::connection_factory connect;
  listener_settings listener_config;
  std::unique_ptr<backoff> restart_delays;
  uint32_t restarts = 0;
  std::string crash;  ///< why the last listener crashed
  caf::timestamp crashed_at;
  caf::actor_clock::time_point restart_at;
};

using bus_pointer = bus_actor::stateful_pointer<bus_state>;

void start_listener(bus_pointer self, listener_settings config) {
  auto& st = self->state;
  st.listener = spawn_listener(self->system(), st.connect, st.registry, std::move(config));
  self->link_to(st.listener);
  // Before any request the bus delegates: messages from one sender stay in order.
  self->send(st.registry, st.listener);
}

// A restarted listener LISTENs on what the registry has now (dynamic channels
// included) and continues its generations.
void restart_listener(bus_pointer self) {
  auto& st = self->state;
  if (st.listener) return;  // not from a crash: nothing to restart
  self->request(st.registry, caf::infinite, channels_atom_v)
      .then([=](std::vector<std::string>& channels) {
        self->request(self->state.registry, caf::infinite, stats_atom_v)
            .then([=](const bus_stats& stats) mutable {
              auto config = self->state.listener_config;
              config.channels = std::move(channels);
              config.initial_generation = stats.generation;
              logger()->info("pgnotify: restarting the listener (restart {})",
                             self->state.restarts);
              start_listener(self, std::move(config));
            });
      });
}

void on_exit_message(bus_pointer self, caf::exit_msg& msg) {
  auto& st = self->state;
  bool from_listener = st.listener && msg.source == st.listener.address();
  if (!from_listener || msg.reason == make_error(errc::gave_up)) return self->quit(msg.reason);
  // The listener crashed: the bus, the registry and every subscription stay.
  st.listener = nullptr;
  st.restarts += 1;
  st.crash = "listener crashed: " + render(msg.reason);
  st.crashed_at = caf::make_timestamp();
  auto delay = st.restart_delays->next();
  st.restart_at = self->clock().now() + delay;
  logger()->error("pgnotify: {}; restarting it in {} ms", st.crash,
                  std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  self->delayed_send(self, delay, restart_atom_v);
}

// The status while no listener runs: waiting to restart one.
bus_status restart_status(bus_pointer self, uint64_t generation) {
  auto& st = self->state;
  bus_status result;
  result.state = connection_state::backing_off;
  result.generation = generation;
  result.last_error = st.crash;
  result.last_error_at = st.crashed_at;
  result.retry_in = std::max(caf::timespan{0}, st.restart_at - self->clock().now());
  result.listener_restarts = st.restarts;
  return result;
}

caf::result<bus_status> status(bus_pointer self) {
  auto promise = self->make_response_promise<bus_status>();
  auto& st = self->state;
  auto fail = [=](caf::error& err) mutable { promise.deliver(std::move(err)); };
  if (!st.listener) {
    self->request(st.registry, caf::infinite, stats_atom_v)
        .then(
            [=](const bus_stats& stats) mutable {
              promise.deliver(restart_status(self, stats.generation));
            },
            fail);
    return promise;
  }
  self->request(st.listener, caf::infinite, status_atom_v)
      .then(
          [=](bus_status& reply) mutable {
            reply.listener_restarts = self->state.restarts;
            promise.deliver(std::move(reply));
          },
          fail);
  return promise;
}

caf::result<std::vector<std::string>> listening(bus_pointer self) {
  auto& st = self->state;
  if (!st.listener) return make_error(errc::not_connected, st.crash);
  auto promise = self->make_response_promise<std::vector<std::string>>();
  self->request(st.listener, caf::infinite, listening_atom_v)
      .then([=](std::vector<std::string>& reply) mutable { promise.deliver(std::move(reply)); },
            [=](caf::error& err) mutable { promise.deliver(std::move(err)); });
  return promise;
}

// Nodes of protocol 1 and 2 subscribe without naming a version (and CAF lets
// a protocol 1 node connect to a newer bus): a subscribe from another node, or
// of an actor on another node (which decodes the batches), must name it. This
// is for compatibility, not access control.
caf::error unversioned_remote(bus_pointer self, const caf::actor& who) {
  const auto& sender = self->current_sender();
  bool remote =
      (sender != nullptr && sender->node() != self->node()) || (who && who.node() != self->node());
  if (!remote) return caf::none;
  return make_error(errc::protocol_mismatch,
                    fmt::format("this bus speaks pgnotify protocol {}; the subscribing node "
                                "named no version, so it speaks protocol 1 or 2: upgrade it",
                                protocol_version));
}

bus_actor::behavior_type bus(bus_pointer self, registry_settings registry_config,
                             listener_settings listener_config, pg::connection_factory connect) {
  auto& st = self->state;
  st.connect = std::move(connect);
  st.listener_config = listener_config;
  st.restart_delays = std::make_unique<backoff>(listener_config.backoff);
  registry_config.supervisor = self->address();
  st.registry = self->spawn<caf::linked>(registry, std::move(registry_config));
  self->set_exit_handler([=](caf::exit_msg& msg) { on_exit_message(self, msg); });
  start_listener(self, std::move(listener_config));
  auto reg = st.registry;
  return {
      [=](subscribe_atom, std::string& channel, caf::actor& who) -> caf::result<caf::ok_atom> {
        if (auto err = unversioned_remote(self, who)) return err;
        return self->delegate(reg, subscribe_atom_v, std::move(channel), std::move(who));
      },
      [=](subscribe_atom, std::string& channel, caf::actor& who,
          uint32_t bound) -> caf::result<caf::ok_atom> {
        if (auto err = unversioned_remote(self, who)) return err;
        return self->delegate(reg, subscribe_atom_v, std::move(channel), std::move(who), bound);
      },
      [=](subscribe_atom, std::string& channel, caf::actor& who, uint32_t bound,
          uint32_t version) -> caf::result<caf::ok_atom> {
        if (version != protocol_version)
          return make_error(errc::protocol_mismatch,
                            fmt::format("this bus speaks pgnotify protocol {}, the subscribing "
                                        "node protocol {}",
                                        protocol_version, version));
        if (bound == 0)
          return self->delegate(reg, subscribe_atom_v, std::move(channel), std::move(who));
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
      [=](protocol_atom) { return protocol_version; },
      [=](restart_atom) { restart_listener(self); },
      // Asked and answered by the bus rather than delegated, so that the
      // listener stays unknown to remote nodes.
      [=](status_atom) { return status(self); },
      [=](listening_atom) { return listening(self); },
  };
}

}  // namespace

void configure(caf::actor_system_config& cfg) {
  add_message_types(cfg);
  cfg.load<caf::io::middleman>();
}

caf::expected<bus_actor> spawn_bus(caf::actor_system& sys, bus_settings settings,
                                   pg::connection_factory connect) {
  for (const auto& channel : settings.channels)
    if (auto err = validate_channel_name(channel)) return err;
  if (settings.default_bound == 0)
    return make_error(errc::invalid_argument, "default_bound must be at least 1");
  auto channels = settings.channels;
  std::sort(channels.begin(), channels.end());
  channels.erase(std::unique(channels.begin(), channels.end()), channels.end());
  listener_settings listener_config{channels,
                                    settings.backoff,
                                    settings.health,
                                    settings.max_failed_attempts,
                                    settings.max_batch,
                                    connect_timeout_of(settings.conninfo),
                                    0};
  return sys.spawn(
      bus, registry_settings{channels, settings.default_bound, settings.dynamic_channels, {}},
      std::move(listener_config), std::move(connect));
}

caf::expected<bus_actor> spawn_bus(caf::actor_system& sys, bus_settings settings) {
  auto conninfo = prepare_conninfo(settings.conninfo, settings.connection);
  if (!conninfo) return std::move(conninfo.error());
  // The connection's socket is watched by the middleman's event loop.
  auto* mux = sys.has_middleman()
                  ? dynamic_cast<caf::io::network::default_multiplexer*>(&sys.middleman().backend())
                  : nullptr;
  if (mux == nullptr)
    return make_error(errc::invalid_argument,
                      "pgnotify needs CAF's middleman with its default network backend: call "
                      "pgnotify::configure(cfg) (or cfg.load<caf::io::middleman>()) before "
                      "creating the actor system");
  settings.conninfo = *conninfo;
  auto connect = [conninfo = *conninfo, mux,
                  lookup = settings.host_lookup](const listener_actor& listener) {
    return std::unique_ptr<pg::connection>{
        new pg::pq_connection(conninfo, *mux, caf::actor_cast<caf::actor>(listener), lookup)};
  };
  return spawn_bus(sys, std::move(settings), connect);
}

}  // namespace pgnotify
