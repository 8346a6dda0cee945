#include "listener.hpp"

#include <algorithm>

#include <caf/timestamp.hpp>

#include "../messages/errors.hpp"
#include "log.hpp"

namespace pgnotify {

namespace {

listener_actor::behavior_type disconnected(listener_pointer self);
listener_actor::behavior_type listening(listener_pointer self);

bus_status current_status(listener_pointer self) {
  // retry_in is derived from retry_at, so it stays right as time passes.
  auto result = self->state.status;
  result.retry_in = result.state == connection_state::backing_off
                        ? std::max(caf::timespan{0}, self->state.retry_at - self->clock().now())
                        : caf::timespan{0};
  return result;
}

// Hands the buffered notifications to the registry.
void flush(listener_pointer self) {
  auto& st = self->state;
  if (st.buffer.empty()) return;
  auto size = st.buffer.size();
  self->send(st.registry, received_notifications{std::move(st.buffer)});
  st.buffer = {};
  st.buffer.reserve(size);  // the next read is likely as large
}

void fail(listener_pointer self, const std::string& what) {
  auto& st = self->state;
  if (st.conn) {
    // What the connection has read already arrived in this generation: hand it
    // on before reconnected{g + 1} can be announced.
    try {
      st.conn->receive(st.buffer, st.status.generation, SIZE_MAX);
    } catch (const std::exception&) {
      // The connection is failing anyway; what was read is in the buffer.
    }
    flush(self);
    st.conn.reset();
  }
  auto now = self->clock().now();
  if (st.connected_at && now - *st.connected_at >= st.settings.backoff.stable_after)
    st.delays->reset();
  st.connected_at.reset();
  st.status.failed_attempts += 1;
  auto limit = st.settings.max_failed_attempts;
  if (limit > 0 && st.status.failed_attempts >= limit) {
    logger()->error("pgnotify: {}; giving up after {} failed attempt(s)", what, limit);
    self->quit(
        make_error(errc::gave_up, fmt::format("after {} failed attempt(s): {}", limit, what)));
    return;
  }
  auto delay = st.delays->next();
  st.status.state = connection_state::backing_off;
  st.status.last_error = what;
  st.status.last_error_at = caf::make_timestamp();
  st.retry_at = now + delay;
  logger()->warn("pgnotify: {}; reconnecting in {} ms", what,
                 std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  self->delayed_send(self, delay, connect_atom_v);
  self->become(disconnected(self));
}

void schedule_health_check(listener_pointer self) {
  const auto& health = self->state.settings.health;
  if (health.interval > caf::timespan{0})
    self->delayed_send(self, health.interval, health_atom_v, self->state.status.generation);
}

// Hands whatever the connection has to the registry; false if the connection failed.
bool forward_notifications(listener_pointer self) {
  auto& st = self->state;
  try {
    st.conn->receive(st.buffer, st.status.generation, st.settings.max_batch);
  } catch (const std::exception& e) {
    fail(self, fmt::format("connection lost: {}", e.what()));
    return false;
  }
  flush(self);
  return true;
}

void check_health(listener_pointer self) {
  auto& st = self->state;
  connection::health health;
  try {
    health = st.conn->check_health(st.settings.health.timeout);
  } catch (const std::exception& e) {
    return fail(self, e.what());
  }
  st.status.queue_usage = health.queue_usage;
  auto& listening = health.listening;
  std::sort(listening.begin(), listening.end());
  auto wanted = st.settings.channels;
  std::sort(wanted.begin(), wanted.end());
  if (listening != wanted)
    return fail(self, fmt::format("health check: the server LISTENs on {} of {} channel(s)",
                                  listening.size(), wanted.size()));
  st.status.health_checks_passed += 1;
  // Notifications that arrived during the query were read off the socket by
  // libpq already, so the watcher will not report them: hand them on now.
  if (forward_notifications(self)) schedule_health_check(self);
}

void try_connect(listener_pointer self) {
  auto& st = self->state;
  st.status.state = connection_state::connecting;
  try {
    auto conn = st.connect();
    for (const auto& channel : st.settings.channels) conn->listen(channel);
    st.conn = std::move(conn);
  } catch (const std::exception& e) {
    return fail(self, e.what());
  }
  // Only now, with every LISTEN acknowledged, does a new generation begin.
  st.connected_at = self->clock().now();
  st.status.state = connection_state::listening;
  st.status.generation += 1;
  st.status.failed_attempts = 0;
  st.status.health_checks_passed = 0;
  logger()->info("pgnotify: connected, generation {}, listening on {} channel(s)",
                 st.status.generation, st.settings.channels.size());
  self->send(st.registry, reconnected{st.status.generation});
  st.conn->notify_when_readable(self);
  schedule_health_check(self);
  self->become(listening(self));
  // LISTEN reads what the server sent meanwhile into libpq's queue, where the
  // socket watcher cannot see it.
  forward_notifications(self);
}

// LISTEN on one more channel now if connected, else at the next connect.
caf::result<caf::ok_atom> add_channel(listener_pointer self, const std::string& channel) {
  auto& st = self->state;
  auto& wanted = st.settings.channels;
  if (std::find(wanted.begin(), wanted.end(), channel) != wanted.end()) return caf::ok_atom_v;
  if (st.conn) {
    try {
      st.conn->listen(channel);
    } catch (const std::exception& e) {
      std::string what = e.what();
      fail(self, what);
      return make_error(errc::not_connected, what);
    }
  }
  wanted.push_back(channel);
  if (st.conn) forward_notifications(self);  // what LISTEN read on the side
  return caf::ok_atom_v;
}

void remove_channel(listener_pointer self, const std::string& channel) {
  auto& st = self->state;
  auto& wanted = st.settings.channels;
  wanted.erase(std::remove(wanted.begin(), wanted.end(), channel), wanted.end());
  if (!st.conn) return;
  try {
    st.conn->unlisten(channel);
  } catch (const std::exception& e) {
    return fail(self, e.what());
  }
  forward_notifications(self);  // what UNLISTEN read on the side
}

caf::result<std::vector<std::string>> server_listening(listener_pointer self) {
  auto& st = self->state;
  if (!st.conn) return make_error(errc::not_connected, st.status.last_error);
  try {
    auto listening = st.conn->check_health(st.settings.health.timeout).listening;
    std::sort(listening.begin(), listening.end());
    return listening;
  } catch (const std::exception& e) {
    std::string what = e.what();
    fail(self, what);
    return make_error(errc::not_connected, what);
  }
}

listener_actor::behavior_type disconnected(listener_pointer self) {
  return {
      [=](connect_atom) { try_connect(self); },
      [=](readable_atom) {
        // From a connection that is gone already: nothing to read.
      },
      [=](health_atom, uint64_t) {
        // For a connection that is gone already.
      },
      [=](listen_atom, const std::string& channel) { return add_channel(self, channel); },
      [=](unlisten_atom, const std::string& channel) { remove_channel(self, channel); },
      [=](listening_atom) { return server_listening(self); },
      [=](status_atom) { return current_status(self); },
  };
}

listener_actor::behavior_type listening(listener_pointer self) {
  return {
      [=](connect_atom) {
        // A stale retry timer: already connected.
      },
      [=](readable_atom) {
        if (forward_notifications(self)) self->state.conn->notify_when_readable(self);
      },
      [=](health_atom, uint64_t generation) {
        // A tick scheduled for an earlier connection is stale.
        if (generation == self->state.status.generation) check_health(self);
      },
      [=](listen_atom, const std::string& channel) { return add_channel(self, channel); },
      [=](unlisten_atom, const std::string& channel) { remove_channel(self, channel); },
      [=](listening_atom) { return server_listening(self); },
      [=](status_atom) { return current_status(self); },
  };
}

}  // namespace

listener_actor::behavior_type listener(listener_pointer self, connection_factory connect,
                                       registry_actor registry, listener_settings settings) {
  auto& st = self->state;
  st.connect = std::move(connect);
  st.registry = std::move(registry);
  st.delays = std::make_unique<backoff>(settings.backoff);
  st.settings = std::move(settings);
  self->send(self, connect_atom_v);
  return disconnected(self);
}

}  // namespace pgnotify
