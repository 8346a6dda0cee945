#include "listener.hpp"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <caf/actor_clock.hpp>
#include <caf/timestamp.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "../messages/errors.hpp"
#include "log.hpp"

namespace pgnotify {

namespace {

enum class phase { backing_off, connecting, subscribing, listening };

/// One command for the server; one is in flight at a time, each with a deadline.
struct command {
  enum class kind { subscribe, listen, unlisten, health, listening };
  kind what;
  std::string sql;
  std::vector<std::string> channels;  ///< subscribe: all of them; listen, unlisten: one
  caf::typed_response_promise<caf::ok_atom> listen_reply;                 ///< kind::listen
  caf::typed_response_promise<std::vector<std::string>> listening_reply;  ///< kind::listening
};

const char* describe(command::kind what) {
  switch (what) {
    case command::kind::subscribe:
    case command::kind::listen:
      return "LISTEN";
    case command::kind::unlisten:
      return "UNLISTEN";
    case command::kind::health:
      return "health check";
    case command::kind::listening:
      return "pg_listening_channels()";
  }
  return "command";
}

struct listener_state {
  static inline const char* name = "pgnotify.listener";

  pg::connection_factory connect;
  registry_actor registry;
  listener_settings settings;
  std::unique_ptr<pgnotify::backoff> delays;
  std::unique_ptr<pg::connection> conn;
  phase now = phase::backing_off;
  uint64_t attempt = 0;  ///< numbers connections: readiness and deadlines carry it
  bus_status status;
  caf::actor_clock::time_point connected_at;
  caf::actor_clock::time_point retry_at;
  notification_batch::builder buffer;  ///< read, not yet handed to the registry
  /// The registry's smallest bound (batch_limit_atom): a read hands on at
  /// most min(settings.max_batch, batch_limit).
  uint32_t batch_limit = std::numeric_limits<uint32_t>::max();
  std::deque<command> commands;  ///< the front one is in flight if command_in_flight
  bool command_in_flight = false;
  uint64_t commands_sent = 0;         ///< numbers commands for their deadlines (0: the connect)
  std::vector<std::string> listened;  ///< acknowledged by the server on this connection
};

using listener_pointer = listener_actor::stateful_pointer<listener_state>;

std::string quoted(const std::string& identifier) {
  std::string result = "\"";
  for (char c : identifier) {
    if (c == '"') result += '"';
    result += c;
  }
  return result + '"';
}

long long milliseconds(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

bool contains(const std::vector<std::string>& xs, const std::string& x) {
  return std::find(xs.begin(), xs.end(), x) != xs.end();
}

void erase(std::vector<std::string>& xs, const std::string& x) {
  xs.erase(std::remove(xs.begin(), xs.end(), x), xs.end());
}

std::vector<std::string> sorted(std::vector<std::string> xs) {
  std::sort(xs.begin(), xs.end());
  return xs;
}

bus_status current_status(listener_pointer self) {
  // retry_in is derived from retry_at, so it stays right as time passes.
  auto result = self->state.status;
  result.retry_in = result.state == connection_state::backing_off
                        ? std::max(caf::timespan{0}, self->state.retry_at - self->clock().now())
                        : caf::timespan{0};
  return result;
}

// Hands the buffered notifications to the registry, in the current generation:
// what was read while the LISTENs of a new connection were in flight is handed
// on once their acknowledgement has begun the generation it belongs to.
void hand_on(listener_pointer self) {
  auto& st = self->state;
  if (st.buffer.empty()) return;
  self->send(st.registry, received_notifications{st.buffer.finish(st.status.generation)});
}

// The commands of a lost connection: a LISTEN stays wanted (the next
// connection LISTENs on it), a question about the server has no answer.
void settle_commands(listener_pointer self, const std::string& why) {
  auto& st = self->state;
  for (auto& cmd : st.commands) {
    if (cmd.listen_reply.pending()) cmd.listen_reply.deliver(caf::ok_atom_v);
    if (cmd.listening_reply.pending())
      cmd.listening_reply.deliver(make_error(errc::not_connected, why));
  }
  st.commands.clear();
  st.command_in_flight = false;
  st.listened.clear();
}

void retry_after(listener_pointer self, caf::timespan delay) {
  auto& st = self->state;
  st.now = phase::backing_off;
  st.status.state = connection_state::backing_off;
  st.retry_at = self->clock().now() + delay;
  if (delay > caf::timespan{0})
    self->delayed_send(self, delay, connect_atom_v);
  else
    self->send(self, connect_atom_v);
}

// Every failure ends here: the connection is closed (what it read first goes
// out in its generation), then replaced at once if it had lasted, or after the
// next backoff delay if it never got going.
void drop_connection(listener_pointer self, const std::string& what) {
  auto& st = self->state;
  auto now = self->clock().now();
  bool was_listening = st.conn && st.now == phase::listening;
  if (st.conn) {
    st.conn->read(st.buffer, SIZE_MAX);
    if (was_listening)
      hand_on(self);
    else
      st.buffer.clear();  // a failed attempt: its generation never began
    st.conn.reset();
  }
  settle_commands(self, what);
  st.status.last_error = what;
  st.status.last_error_at = caf::make_timestamp();
  auto uptime = now - st.connected_at;
  if (was_listening && uptime >= st.settings.backoff.stable_after) st.delays->reset();
  if (was_listening && uptime >= st.settings.backoff.min_uptime) {
    logger()->warn("pgnotify: {}; reconnecting now", what);
    st.status.failed_attempts = 0;
    return retry_after(self, caf::timespan{0});
  }
  st.status.failed_attempts += 1;
  auto limit = st.settings.max_failed_attempts;
  if (limit > 0 && st.status.failed_attempts >= limit) {
    logger()->error("pgnotify: {}; giving up after {} failed attempt(s)", what, limit);
    self->quit(
        make_error(errc::gave_up, fmt::format("after {} failed attempt(s): {}", limit, what)));
    return;
  }
  auto delay = st.delays->next();
  logger()->warn("pgnotify: {}; reconnecting in {} ms", what, milliseconds(delay));
  retry_after(self, delay);
}

void schedule_health_check(listener_pointer self) {
  const auto& health = self->state.settings.health;
  if (health.interval > caf::timespan{0})
    self->delayed_send(self, health.interval, health_atom_v, self->state.attempt);
}

// Writes what libpq buffered; waits for writability if the socket is full.
void flush_output(listener_pointer self) {
  auto& st = self->state;
  switch (st.conn->flush()) {
    case 0:
      return;
    case 1:
      return st.conn->await(pg::readiness::writable, st.attempt);
    default:
      return drop_connection(self, "connection lost: " + st.conn->error_message());
  }
}

void send_next_command(listener_pointer self) {
  auto& st = self->state;
  if (!st.conn || st.command_in_flight || st.commands.empty()) return;
  auto& cmd = st.commands.front();
  if (!st.conn->send_command(cmd.sql))
    return drop_connection(
        self, fmt::format("{} failed: {}", describe(cmd.what), st.conn->error_message()));
  st.command_in_flight = true;
  st.commands_sent += 1;
  auto timeout = st.settings.health.timeout;
  if (timeout > caf::timespan{0})
    self->delayed_send(self, timeout, deadline_atom_v, st.attempt, st.commands_sent);
  flush_output(self);
}

void enqueue(listener_pointer self, command cmd) {
  self->state.commands.push_back(std::move(cmd));
  send_next_command(self);
}

// Every LISTEN of this connection is acknowledged: a new generation begins.
void begin_generation(listener_pointer self) {
  auto& st = self->state;
  st.now = phase::listening;
  st.connected_at = self->clock().now();
  st.status.state = connection_state::listening;
  st.status.generation += 1;
  st.status.failed_attempts = 0;
  st.status.health_checks_passed = 0;
  logger()->info("pgnotify: connected, generation {}, listening on {} channel(s)",
                 st.status.generation, st.listened.size());
  self->send(st.registry, reconnected{st.status.generation});
  hand_on(self);  // what arrived during the LISTENs, after reconnected{g}
  schedule_health_check(self);
}

void subscribe(listener_pointer self) {
  auto& st = self->state;
  st.now = phase::subscribing;
  // From now on one read request is always outstanding.
  st.conn->await(pg::readiness::readable, st.attempt);
  if (st.settings.channels.empty()) return begin_generation(self);
  std::string sql;
  for (const auto& channel : st.settings.channels) sql += "LISTEN " + quoted(channel) + ";";
  st.commands.push_front(command{command::kind::subscribe, sql, st.settings.channels, {}, {}});
  send_next_command(self);
}

void step_connect(listener_pointer self) {
  auto& st = self->state;
  switch (st.conn->continue_connect()) {
    case pg::connect_progress::wait_readable:
      return st.conn->await(pg::readiness::readable, st.attempt);
    case pg::connect_progress::wait_writable:
      return st.conn->await(pg::readiness::writable, st.attempt);
    case pg::connect_progress::failed:
      return drop_connection(self, st.conn->error_message());
    case pg::connect_progress::done:
      return subscribe(self);
  }
}

void begin_connect(listener_pointer self) {
  auto& st = self->state;
  st.attempt += 1;
  st.now = phase::connecting;
  st.status.state = connection_state::connecting;
  try {
    st.conn = st.connect(self);
  } catch (const std::exception& e) {
    return drop_connection(self, e.what());
  }
  if (st.settings.connect_timeout > caf::timespan{0})
    self->delayed_send(self, st.settings.connect_timeout, deadline_atom_v, st.attempt, uint64_t{0});
  step_connect(self);
}

void check_health(listener_pointer self, const pg::command_result& result) {
  auto& st = self->state;
  if (result.columns.size() != 2 || result.columns[1].size() != 1)
    return drop_connection(self, "health check failed: unexpected answer");
  auto listening = sorted(result.columns[0]);
  if (listening != sorted(st.listened))
    return drop_connection(self,
                           fmt::format("health check: the server LISTENs on {} of {} channel(s)",
                                       listening.size(), st.listened.size()));
  st.status.queue_usage = std::strtod(result.columns[1][0].c_str(), nullptr);
  st.status.health_checks_passed += 1;
  schedule_health_check(self);
}

void finish_command(listener_pointer self, pg::command_result result) {
  auto& st = self->state;
  auto cmd = std::move(st.commands.front());
  st.commands.pop_front();
  st.command_in_flight = false;
  const auto& error = result.error;
  switch (cmd.what) {
    case command::kind::subscribe:
      if (!error.empty()) return drop_connection(self, "LISTEN failed: " + error);
      st.listened = cmd.channels;
      begin_generation(self);
      break;
    case command::kind::listen:
      if (!error.empty()) {
        // The server refused this channel (the connection is fine): not wanted.
        logger()->warn("pgnotify: LISTEN {} failed: {}", quoted(cmd.channels[0]), error);
        erase(st.settings.channels, cmd.channels[0]);
        cmd.listen_reply.deliver(make_error(errc::listen_failed, error));
      } else {
        st.listened.push_back(cmd.channels[0]);
        cmd.listen_reply.deliver(caf::ok_atom_v);
      }
      break;
    case command::kind::unlisten:
      if (!error.empty()) return drop_connection(self, "UNLISTEN failed: " + error);
      erase(st.listened, cmd.channels[0]);
      break;
    case command::kind::health:
      if (!error.empty()) return drop_connection(self, "health check failed: " + error);
      check_health(self, result);
      break;
    case command::kind::listening:
      if (!error.empty() || result.columns.empty())
        cmd.listening_reply.deliver(make_error(errc::not_connected, error));
      else
        cmd.listening_reply.deliver(sorted(result.columns[0]));
      break;
  }
  send_next_command(self);
}

void read_input(listener_pointer self) {
  auto& st = self->state;
  auto bytes_before = st.buffer.bytes();
  auto outcome = st.conn->read(st.buffer, std::min<size_t>(st.settings.max_batch, st.batch_limit));
  if (outcome.lost) return drop_connection(self, "connection lost: " + st.conn->error_message());
  bool burst = st.buffer.bytes() - bytes_before >= pg::burst_bytes;
  if (outcome.finished) {
    finish_command(self, std::move(*outcome.finished));
    if (!st.conn) return;
  }
  if (st.now == phase::listening) hand_on(self);
  // During a burst, read again without waiting for the socket: the listener
  // never sleeps and nobody has to wake it. The self-sent message queues
  // behind the listener's other messages (commands, status), which it does not
  // starve; with CAF's default scheduler.max-throughput (unlimited) it runs in
  // this same turn, so a burst is read up before the registry runs. After a
  // read of a few, wait for the socket: a read now would find nothing, and
  // would delay the subscribers (latency). libpq or OpenSSL may also hold
  // input that the socket will not report again.
  if (burst || outcome.more || st.conn->has_pending_input())
    self->send(self, readable_atom_v, st.attempt);
  else
    st.conn->await(pg::readiness::readable, st.attempt);
}

void on_readiness(listener_pointer self, uint64_t attempt, bool readable) {
  auto& st = self->state;
  if (attempt != st.attempt || !st.conn) return;  // about an earlier connection
  if (st.now == phase::connecting) return step_connect(self);
  if (readable)
    read_input(self);
  else
    flush_output(self);
}

void on_deadline(listener_pointer self, uint64_t attempt, uint64_t command_number) {
  auto& st = self->state;
  if (attempt != st.attempt || !st.conn) return;
  if (command_number == 0) {
    if (st.now == phase::connecting)
      drop_connection(self, fmt::format("connect failed: no answer within {} ms",
                                        milliseconds(st.settings.connect_timeout)));
    return;
  }
  if (st.command_in_flight && command_number == st.commands_sent)
    drop_connection(
        self, fmt::format("{} failed: no answer within {} ms", describe(st.commands.front().what),
                          milliseconds(st.settings.health.timeout)));
}

bool connected(const listener_state& st) {
  return st.conn && (st.now == phase::subscribing || st.now == phase::listening);
}

// LISTEN on one more channel: now if connected (the reply follows the server's
// acknowledgement), else at the next connect (the reply comes at once).
caf::result<caf::ok_atom> add_channel(listener_pointer self, const std::string& channel) {
  auto& st = self->state;
  if (contains(st.settings.channels, channel)) return caf::ok_atom_v;
  st.settings.channels.push_back(channel);
  if (!connected(st)) return caf::ok_atom_v;
  auto reply = self->make_response_promise<caf::ok_atom>();
  enqueue(self, command{command::kind::listen, "LISTEN " + quoted(channel), {channel}, reply, {}});
  return reply;
}

void remove_channel(listener_pointer self, const std::string& channel) {
  auto& st = self->state;
  erase(st.settings.channels, channel);
  if (connected(st))
    enqueue(self,
            command{command::kind::unlisten, "UNLISTEN " + quoted(channel), {channel}, {}, {}});
}

caf::result<std::vector<std::string>> server_listening(listener_pointer self) {
  auto& st = self->state;
  if (!connected(st)) return make_error(errc::not_connected, st.status.last_error);
  auto reply = self->make_response_promise<std::vector<std::string>>();
  enqueue(self, command{command::kind::listening, "SELECT pg_listening_channels()", {}, {}, reply});
  return reply;
}

listener_actor::behavior_type listener(listener_pointer self, pg::connection_factory connect,
                                       registry_actor registry, listener_settings settings) {
  auto& st = self->state;
  st.connect = std::move(connect);
  st.registry = std::move(registry);
  st.delays = std::make_unique<backoff>(settings.backoff);
  st.status.generation = settings.initial_generation;
  st.settings = std::move(settings);
  self->send(self, connect_atom_v);
  return {
      [=](connect_atom) {
        if (self->state.now == phase::backing_off) begin_connect(self);
      },
      [=](readable_atom, uint64_t attempt) { on_readiness(self, attempt, true); },
      [=](writable_atom, uint64_t attempt) { on_readiness(self, attempt, false); },
      [=](deadline_atom, uint64_t attempt, uint64_t command_number) {
        on_deadline(self, attempt, command_number);
      },
      [=](health_atom, uint64_t attempt) {
        auto& st = self->state;
        if (attempt != st.attempt || st.now != phase::listening) return;  // stale tick
        enqueue(self, command{command::kind::health,
                              "SELECT pg_listening_channels(); "
                              "SELECT pg_notification_queue_usage()",
                              {},
                              {},
                              {}});
      },
      [=](listen_atom, const std::string& channel) { return add_channel(self, channel); },
      [=](unlisten_atom, const std::string& channel) { remove_channel(self, channel); },
      [=](batch_limit_atom, uint32_t limit) { self->state.batch_limit = std::max(limit, 1u); },
      [=](listening_atom) { return server_listening(self); },
      [=](status_atom) { return current_status(self); },
  };
}

}  // namespace

listener_actor spawn_listener(caf::actor_system& sys, pg::connection_factory connect,
                              registry_actor registry, listener_settings settings) {
  return sys.spawn(listener, std::move(connect), std::move(registry), std::move(settings));
}

}  // namespace pgnotify
