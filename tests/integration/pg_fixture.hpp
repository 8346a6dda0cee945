// Integration tests run against the real PostgreSQL that scripts/test.sh starts;
// PGNOTIFY_TEST_URI says where. Without it every test fails loudly.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <pqxx/pqxx>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/actors/subscriber.hpp>
#include <pgnotify/messages/errors.hpp>
#include <pgnotify/messages/type_ids.hpp>

namespace pgnotify::test {

#ifdef PGNOTIFY_SANITIZED
/// ASan's quarantine and LeakSanitizer distort time and memory: the sanitizer
/// build checks behaviour, the release build also checks the limits.
constexpr bool limits_checked = false;
#else
constexpr bool limits_checked = true;
#endif

/// Runs one of the project's scripts (scripts/NAME ARGS) and returns its stdout
/// without the trailing newline; throws if it fails.
inline std::string run_script(const std::string& name, const std::string& args) {
  auto command = fmt::format("bash '{}/scripts/{}' {}", PGNOTIFY_SOURCE_DIR, name, args);
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  char buffer[4096];
  while (auto n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  if (::pclose(pipe) != 0) throw std::runtime_error("failed: " + command);
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

/// The threads of this process, as the kernel counts them.
inline size_t threads_of_this_process() {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)entry;
    ++count;
  }
  return count;
}

inline std::string env_or_throw(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0')
    throw std::runtime_error(
        fmt::format("{} is not set: run the tests with scripts/test.sh", name));
  return value;
}

/// "sslmode=require" when the test runs over TLS, else "sslmode=disable".
inline std::string sslmode() {
  const char* transport = std::getenv("PGNOTIFY_TEST_TRANSPORT");
  return transport != nullptr && std::string{transport} == "tls" ? "sslmode=require"
                                                                 : "sslmode=disable";
}

/// The test server over plain TCP, or over TLS (sslmode=require) when the
/// test runs with PGNOTIFY_TEST_TRANSPORT=tls.
inline std::string server_uri() {
  const char* transport = std::getenv("PGNOTIFY_TEST_TRANSPORT");
  bool tls = transport != nullptr && std::string{transport} == "tls";
  const char* uri = std::getenv(tls ? "PGNOTIFY_TEST_TLS_URI" : "PGNOTIFY_TEST_URI");
  if (uri == nullptr || *uri == '\0')
    throw std::runtime_error(
        "PGNOTIFY_TEST_URI is not set: run the tests with scripts/test.sh, which starts a "
        "throwaway PostgreSQL and sets it");
  return uri;
}

/// A notification copied out of its batch (a notification views into it).
struct owned_notification {
  std::string channel;
  std::string payload;
  int32_t backend_pid = 0;
  uint64_t generation = 0;
};

/// What a forwarding subscriber tells the probe: which subscriber, and what.
struct tagged_notification {
  std::string tag;
  owned_notification n;
};

struct pg_fixture {
  static constexpr auto patience = std::chrono::seconds(15);

  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor probe;
  std::string uri = server_uri();
  /// Unique per test, so the test can find its listener's backend.
  std::string application_name = fmt::format("pgnotify-test-{}", std::random_device{}());
  std::unique_ptr<pqxx::connection> admin = std::make_unique<pqxx::connection>(uri);
  bus_actor bus;
  std::vector<caf::actor> helpers;

  static caf::actor_system_config& init(caf::actor_system_config& c) {
    configure(c);
    c.set("logger.console-verbosity", caf::atom("quiet"));
    return c;
  }

  pg_fixture() : sys(init(cfg)), probe(sys) {}

  ~pg_fixture() {
    for (auto& h : helpers) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    if (bus) caf::anon_send_exit(bus, caf::exit_reason::user_shutdown);
  }

  bus_settings settings(std::vector<std::string> channels) {
    bus_settings s;
    s.conninfo = uri;
    s.channels = std::move(channels);
    s.connection.application_name = application_name;
    return s;
  }

  /// Spawns the bus and waits until it is LISTENing (generation 1).
  void start_bus(bus_settings s) {
    auto spawned = spawn_bus(sys, std::move(s));
    if (!spawned) throw std::runtime_error("spawn_bus: " + render(spawned.error()));
    bus = *spawned;
    uint64_t generation = 0;
    probe->request(bus, patience, reconnects_atom_v, caf::actor{probe})
        .receive([&](uint64_t g) { generation = g; },
                 [](caf::error& e) { throw std::runtime_error(render(e)); });
    if (generation == 0) wait_for_generation(1);
  }

  void start_channels(std::vector<std::string> channels) {
    start_bus(settings(std::move(channels)));
  }

  /// Waits for reconnected{g} at the probe (which subscribed to reconnects).
  void wait_for_generation(uint64_t wanted) {
    for (;;) {
      uint64_t got = 0;
      probe->receive(
          [&](const reconnected& r) { got = r.generation; },
          caf::after(patience) >>
              [&] { throw std::runtime_error(fmt::format("no reconnected{{{}}}", wanted)); });
      if (got >= wanted) {
        if (got != wanted) throw std::runtime_error(fmt::format("generation {} skipped", wanted));
        return;
      }
    }
  }

  /// A subscriber helper that forwards each notification to the probe as (tag, n).
  void subscribe(const std::string& channel, const std::string& tag,
                 std::optional<uint32_t> bound = {}) {
    subscriber_callbacks cb;
    auto target = caf::actor{probe};
    cb.on_notification = [target, tag](const notification& n) {
      caf::anon_send(target, tag, std::string{n.channel}, std::string{n.payload}, n.backend_pid,
                     n.generation);
    };
    cb.on_lagged = [target](const lagged& l) { caf::anon_send(target, l); };
    cb.on_subscribed = [target](uint64_t) { caf::anon_send(target, caf::ok_atom_v); };
    cb.on_error = [target](const caf::error& e) { caf::anon_send(target, e); };
    helpers.push_back(spawn_subscriber(sys, bus, subscriber_options{{channel}, bound}, cb));
    probe->receive([](caf::ok_atom) {},
                   [](const caf::error& e) { throw std::runtime_error(render(e)); },
                   caf::after(patience) >> [] { throw std::runtime_error("subscribe timed out"); });
  }

  tagged_notification next_notification() {
    tagged_notification result;
    probe->receive(
        [&](std::string& tag, std::string& channel, std::string& payload, int32_t pid,
            uint64_t generation) {
          result = {tag, {channel, payload, pid, generation}};
        },
        [](const lagged& l) {
          throw std::runtime_error(fmt::format("unexpected lagged: {}", l.missed));
        },
        caf::after(patience) >> [] { throw std::runtime_error("no notification"); });
    return result;
  }

  void notify(const std::string& channel, const std::string& payload) {
    pqxx::nontransaction tx{*admin};
    tx.exec_params("SELECT pg_notify($1, $2)", channel, payload);
  }

  /// The scenario of a connection that has lasted: only after min_uptime is a
  /// drop replaced at once rather than counted as a failed attempt.
  void advance_past_min_uptime() {
    std::this_thread::sleep_for(backoff_settings{}.min_uptime + std::chrono::milliseconds(10));
  }

  /// After a server restart the old admin connection is dead.
  void reconnect_admin() { admin = std::make_unique<pqxx::connection>(uri); }

  void exec(const std::string& sql) {
    pqxx::nontransaction tx{*admin};
    tx.exec(sql);
  }

  /// The pid of this test's listener backend (by its application_name; the
  /// newest, as a killed backend may linger for a moment).
  int listener_pid() {
    pqxx::nontransaction tx{*admin};
    auto rows = tx.exec_params(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
        "ORDER BY backend_start DESC LIMIT 1",
        application_name);
    if (rows.empty()) throw std::runtime_error("no listener backend found");
    return rows[0][0].as<int>();
  }

  /// Waits until `holds()` (which asks the bus: a round trip each time) is
  /// true; throws after `patience`. For states no message announces, such as a
  /// failed attempt.
  template <class Predicate>
  void await_condition(Predicate holds, const std::string& what) {
    auto deadline = std::chrono::steady_clock::now() + patience;
    while (!holds()) {
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("timed out waiting for " + what);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the poll's period
    }
  }

  /// Spawns a bus on a connection string that cannot work and returns its
  /// status once `failures` attempts have failed.
  bus_status start_failing_bus(const std::string& conninfo, uint32_t failures = 1) {
    auto s = settings({"c"});
    s.conninfo = conninfo;
    auto spawned = spawn_bus(sys, s);
    if (!spawned) throw std::runtime_error("spawn_bus: " + render(spawned.error()));
    bus = *spawned;
    bus_status st;
    await_condition([&] { return (st = status()).failed_attempts >= failures; },
                    fmt::format("{} failed attempt(s)", failures));
    return st;
  }

  bus_stats stats() {
    bus_stats result;
    probe->request(bus, patience, stats_atom_v)
        .receive([&](bus_stats& x) { result = std::move(x); },
                 [](caf::error& e) { throw std::runtime_error(render(e)); });
    return result;
  }

  bus_status status() {
    bus_status result;
    probe->request(bus, patience, status_atom_v)
        .receive([&](bus_status& s) { result = s; },
                 [](caf::error& e) { throw std::runtime_error(render(e)); });
    return result;
  }
};

}  // namespace pgnotify::test
