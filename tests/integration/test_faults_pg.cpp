// The failure matrix of DESIGN.md §6, each case against the real server that
// scripts/test.sh started (these tests stop, restart and freeze it).
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <pgnotify/actors/log.hpp>

#include "pg_fixture.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::test;

namespace {

using wall_clock = std::chrono::system_clock;

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

/// SIGSTOPs a process for the lifetime of this object.
struct frozen_process {
  int pid;
  explicit frozen_process(int p) : pid(p) { REQUIRE(::kill(pid, SIGSTOP) == 0); }
  ~frozen_process() { ::kill(pid, SIGCONT); }
};

/// Stops the shared test server for the lifetime of this object.
struct stopped_server {
  std::string dir = env_or_throw("PGNOTIFY_PG_DIR");
  bool running = false;
  stopped_server() { run_script("pg-ctl.sh", dir + " stop"); }
  void start() {
    run_script("pg-ctl.sh", dir + " start");
    running = true;
  }
  ~stopped_server() {
    if (!running) run_script("pg-ctl.sh", dir + " start");
  }
};

/// Copies everything pgnotify logs, and restores the previous logger afterwards.
struct captured_log {
  std::ostringstream text;
  std::shared_ptr<spdlog::logger> previous = logger();
  captured_log() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
    auto log = std::make_shared<spdlog::logger>(
        "pgnotify",
        spdlog::sinks_init_list{sink, std::make_shared<spdlog::sinks::stderr_color_sink_mt>()});
    log->set_level(spdlog::level::info);
    set_logger(log);
  }
  ~captured_log() { set_logger(previous); }
};

}  // namespace

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: a frozen backend is found by the health check and replaced") {
  auto s = settings({"frozen"});
  s.health = {500ms, 500ms};
  start_bus(s);
  subscribe("frozen", "s");
  auto start = std::chrono::steady_clock::now();
  double detected_ms = 0;
  {
    frozen_process frozen{listener_pid()};
    wait_for_generation(2);
    detected_ms = ms_since(start);
  }
  // Detection within interval + timeout, then the first backoff step (500 ms).
  MESSAGE("frozen backend: reconnected after " << detected_ms << " ms");
  CHECK(detected_ms < 500 + 500 + 500 + 500);
  CHECK(status().last_error.find("health check failed") != std::string::npos);
  notify("frozen", "after");
  auto got = next_notification();
  CHECK(got.n.payload == "after");
  CHECK(got.n.generation == 2);
}

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: a terminated backend is replaced after the first backoff and LISTENs on "
                  "every channel again") {
  auto s = settings({"killed", "other", "Third One"});
  s.health = {100ms, 1s};
  start_bus(s);
  auto start = std::chrono::steady_clock::now();
  exec(fmt::format("SELECT pg_terminate_backend({})", listener_pid()));
  wait_for_generation(2);
  auto reconnect_ms = ms_since(start);
  MESSAGE("terminated backend: reconnected after " << reconnect_ms << " ms");
  CHECK(reconnect_ms >= 500);
  CHECK(reconnect_ms < 1500);
  // The health check compares the new backend's pg_listening_channels() with
  // the wanted set and reconnects on any difference: one that passes on
  // generation 2 proves that every channel is LISTENed again.
  bus_status st = status();
  for (int i = 0; i < 100 && st.health_checks_passed == 0; ++i) {
    std::this_thread::sleep_for(20ms);  // no message announces a health check
    st = status();
  }
  CHECK(st.health_checks_passed >= 1);
  CHECK(st.generation == 2);
}

TEST_CASE_FIXTURE(
    pg_fixture,
    "faults: a stopped server is retried with growing backoff and the generation waits") {
  auto s = settings({"restart"});
  start_bus(s);
  subscribe("restart", "s");
  {
    stopped_server down;
    // The drop, then attempts at +0.5 s and +1.5 s fail: the next delay has grown to 2 s.
    bus_status st;
    for (int i = 0; i < 200 && st.failed_attempts < 3; ++i) {
      std::this_thread::sleep_for(50ms);  // the server is down on purpose: nothing to await
      st = status();
    }
    CHECK(st.failed_attempts == 3);
    CHECK(st.generation == 1);
    CHECK(st.state == connection_state::backing_off);
    CHECK(st.retry_in > 1s);
    CHECK(st.retry_in <= 2s);
    down.start();
  }
  wait_for_generation(2);
  reconnect_admin();
  notify("restart", "back");
  CHECK(next_notification().n.payload == "back");
}

TEST_CASE_FIXTURE(pg_fixture, "faults: a fast server restart is survived") {
  start_channels({"restart2"});
  subscribe("restart2", "s");
  run_script("pg-ctl.sh", env_or_throw("PGNOTIFY_PG_DIR") + " restart");
  wait_for_generation(2);
  reconnect_admin();
  notify("restart2", "after restart");
  auto got = next_notification();
  CHECK(got.n.payload == "after restart");
  CHECK(got.n.generation == 2);
}

TEST_CASE("faults: a server that is down at start is waited for at generation 0") {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  stopped_server down;
  caf::actor_system sys{cfg};
  {
    caf::scoped_actor self{sys};
    bus_settings s;
    s.conninfo = server_uri();
    s.channels = {"late"};
    auto bus = spawn_bus(sys, s);
    REQUIRE(bus);
    uint64_t snapshot = 99;
    self->request(*bus, 5s, reconnects_atom_v, caf::actor{self})
        .receive([&](uint64_t g) { snapshot = g; }, [](caf::error&) {});
    CHECK(snapshot == 0);
    std::this_thread::sleep_for(5s);  // the scenario: the server comes up 5 s later
    bus_status st;
    self->request(*bus, 5s, status_atom_v)
        .receive([&](bus_status& x) { st = x; }, [](caf::error&) {});
    CHECK(st.generation == 0);
    CHECK(st.failed_attempts == 4);  // at 0, 0.5, 1.5 and 3.5 s; the next at 7.5 s
    CHECK(st.state == connection_state::backing_off);
    CHECK(st.last_error.find("Connection refused") != std::string::npos);
    down.start();
    uint64_t generation = 0;
    self->receive([&](const reconnected& r) { generation = r.generation; },
                  caf::after(10s) >> [] {});
    CHECK(generation == 1);
    caf::anon_send_exit(*bus, caf::exit_reason::user_shutdown);
  }
}

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: a dead subscriber is forgotten and the registry does not grow") {
  start_channels({"dies"});
  subscribe("dies", "survivor");
  for (int round = 0; round < 20; ++round) {
    subscribe("dies", "doomed");
    caf::anon_send_exit(helpers.back(), caf::exit_reason::kill);
    helpers.pop_back();
  }
  notify("dies", "x");
  CHECK(next_notification().tag == "survivor");
  auto stats = this->stats();
  CHECK(stats.subscriptions.size() == 1);
  CHECK(stats.delivered == 1);
}

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: a stalled subscriber stays bounded and learns exactly what it missed") {
  start_channels({"stall"});
  subscribe("stall", "fast", 100000);
  // The stalled subscriber: a blocking actor that reads nothing until told to.
  caf::scoped_actor stalled{sys};
  probe
      ->request(bus, patience, subscribe_atom_v, std::string{"stall"}, caf::actor{stalled},
                uint32_t{10})
      .receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(render(e)); });
  const int count = 5000;
  exec(fmt::format("SELECT pg_notify('stall', g::text) FROM generate_series(1, {}) g", count));
  for (int i = 1; i <= count; ++i) REQUIRE(next_notification().n.payload == std::to_string(i));
  auto stats = this->stats();
  REQUIRE(stats.subscriptions.size() == 2);
  for (const auto& sub : stats.subscriptions)
    if (sub.subscriber == stalled->address()) {
      CHECK(sub.in_flight == 10);
      CHECK(sub.missed == count - 10);
    }
  // It resumes: acks what it got, then hears how much it missed, then the stream goes on.
  std::vector<std::string> got;
  while (got.size() < 10) {
    stalled->receive(
        [&](const notification_batch& batch) {
          for (const auto& n : batch.notifications) got.push_back(n.payload);
          stalled->send(caf::actor_cast<caf::actor>(stalled->current_sender()), ack_atom_v,
                        std::string{"stall"}, static_cast<uint32_t>(batch.notifications.size()));
        },
        caf::after(patience) >> [] { FAIL("stalled subscriber got nothing"); });
  }
  CHECK(got.front() == "1");
  CHECK(got.back() == "10");
  uint64_t missed = 0;
  stalled->receive([&](const lagged& l) { missed = l.missed; },
                   caf::after(patience) >> [] { FAIL("no lagged"); });
  CHECK(missed == count - 10);
  notify("stall", "next");
  stalled->receive(
      [&](const notification_batch& batch) { CHECK(batch.notifications.at(0).payload == "next"); },
      caf::after(patience) >> [] { FAIL("stream did not continue"); });
}

TEST_CASE("faults: the bus stops within 200 ms in the middle of a 30 s backoff") {
  caf::actor_system_config cfg;
  add_message_types(cfg);
  std::chrono::steady_clock::time_point start;
  {
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys};
    bus_settings s;
    s.conninfo = "postgresql://postgres@127.0.0.1:1/postgres";  // refused at once
    s.channels = {"c"};
    s.backoff.initial = 30s;
    auto bus = spawn_bus(sys, s);
    REQUIRE(bus);
    bus_status st;
    while (st.state != connection_state::backing_off)
      self->request(*bus, 5s, status_atom_v)
          .receive([&](bus_status& x) { st = x; }, [](caf::error&) {});
    CHECK(st.retry_in > 29s);
    start = std::chrono::steady_clock::now();
    caf::anon_send_exit(*bus, caf::exit_reason::user_shutdown);
  }  // ~actor_system returns once every actor is gone, the detached listener included
  auto stop_ms = ms_since(start);
  MESSAGE("shutdown during a 30 s backoff took " << stop_ms << " ms");
  CHECK(stop_ms < 200);
}

TEST_CASE_FIXTURE(pg_fixture, "faults: a wrong password is a clear error and is never logged") {
  captured_log log;
  auto st = start_failing_bus(
      fmt::format("postgresql://pgnotify_pw:wrong-secret-123@127.0.0.1:{}/postgres",
                  env_or_throw("PGNOTIFY_PG_PORT")));
  CHECK(st.last_error.find("password authentication failed") != std::string::npos);
  CHECK(st.last_error.find("wrong-secret-123") == std::string::npos);
  caf::anon_send_exit(bus, caf::exit_reason::user_shutdown);
  bus = nullptr;
  CHECK(log.text.str().find("password authentication failed") != std::string::npos);
  CHECK(log.text.str().find("wrong-secret-123") == std::string::npos);
}

TEST_CASE_FIXTURE(pg_fixture, "faults: an unknown host is a clear error and is retried") {
  auto st = start_failing_bus("postgresql://postgres:pw-not-shown@no-such-host.invalid/postgres");
  CHECK(st.state == connection_state::backing_off);
  CHECK(st.last_error.find("no-such-host.invalid") != std::string::npos);
  CHECK(st.last_error.find("pw-not-shown") == std::string::npos);
}

TEST_CASE_FIXTURE(
    pg_fixture, "faults: a read-only standby that rejects LISTEN is a clear error and is retried") {
  auto standby = run_script("pg-standby.sh", env_or_throw("PGNOTIFY_PG_DIR"));
  struct remove_standby {
    std::string dir;
    ~remove_standby() { run_script("pg-stop.sh", dir); }
  } cleanup{standby};
  auto port = run_script("pg-env.sh", standby + " PGNOTIFY_STANDBY_PORT");
  auto st = start_failing_bus(fmt::format("postgresql://postgres@127.0.0.1:{}/postgres", port),
                              2);  // the first retry failed too
  CHECK(st.generation == 0);
  CHECK(st.last_error == "LISTEN failed: ERROR: cannot execute LISTEN during recovery");
}

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: a storm across repeated backend kills delivers everything sent while "
                  "connected exactly once") {
  exec("DROP TABLE IF EXISTS storm_log");
  exec("CREATE TABLE storm_log (id bigserial PRIMARY KEY, sent_at_us bigint NOT NULL)");
  start_channels({"storm"});

  // What the subscriber saw: (id, generation), in arrival order.
  struct receipts {
    std::mutex mtx;
    std::vector<std::pair<int64_t, uint64_t>> got;
  };
  auto seen = std::make_shared<receipts>();
  subscriber_callbacks cb;
  auto target = caf::actor{probe};
  cb.on_notification = [seen, target](const notification& n) {
    if (n.payload == "end") return caf::anon_send(target, caf::ok_atom_v);
    std::lock_guard<std::mutex> guard{seen->mtx};
    seen->got.emplace_back(std::stoll(n.payload), n.generation);
  };
  cb.on_subscribed = [target](uint64_t) { caf::anon_send(target, caf::ok_atom_v); };
  helpers.push_back(spawn_subscriber(sys, bus, subscriber_options{{"storm"}, 1u << 24}, cb));
  probe->receive([](caf::ok_atom) {}, caf::after(patience) >> [] { FAIL("subscribe timed out"); });

  auto now_us = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               wall_clock::now().time_since_epoch())
        .count();
  };
  // connected_from[g] / killed_at[g]: when generation g's connection was surely
  // LISTENing (after the announcement) and when the test killed it (server clock).
  std::map<uint64_t, int64_t> connected_from{{1, now_us()}}, killed_at;

  auto script = fmt::format("/tmp/pgnotify-storm-{}.sql", application_name);
  {
    std::ofstream out{script};
    out << "WITH x AS (INSERT INTO storm_log (sent_at_us) VALUES "
           "((extract(epoch FROM clock_timestamp()) * 1e6)::bigint) RETURNING id) "
           "SELECT pg_notify('storm', id::text) FROM x;\n";
  }
  struct remove_at_exit {
    std::string path;
    ~remove_at_exit() { std::remove(path.c_str()); }
  } remove_script{script};
  std::atomic<int> pgbench_status{-1};
  std::thread senders([&] {
    auto command = fmt::format(
        "/usr/lib/postgresql/15/bin/pgbench -n -c 4 -j 2 -T 6 -R 2000 -f '{}' -h 127.0.0.1 -p {} "
        "-U postgres postgres >/dev/null 2>&1",
        script, env_or_throw("PGNOTIFY_PG_PORT"));
    pgbench_status = std::system(command.c_str());
  });
  struct join_at_exit {
    std::thread& t;
    ~join_at_exit() {
      if (t.joinable()) t.join();
    }
  } join_senders{senders};
  const int kills = 4;
  for (uint64_t g = 1; g <= kills; ++g) {
    std::this_thread::sleep_for(1s);  // the scenario: traffic flows while connected
    auto pid = listener_pid();
    pqxx::nontransaction tx{*admin};
    auto row = tx.exec(fmt::format(
        "SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint, pg_terminate_backend({})",
        pid))[0];
    killed_at[g] = row[0].as<int64_t>();
    tx.commit();
    wait_for_generation(g + 1);
    connected_from[g + 1] = now_us();
  }
  senders.join();
  REQUIRE(pgbench_status == 0);
  notify("storm", "end");
  probe->receive([](caf::ok_atom) {}, caf::after(patience) >> [] { FAIL("end never arrived"); });

  std::map<int64_t, int64_t> sent;  // id -> sent_at_us
  for (const auto& row : pqxx::nontransaction{*admin}.exec("SELECT id, sent_at_us FROM storm_log"))
    sent[row[0].as<int64_t>()] = row[1].as<int64_t>();
  std::lock_guard<std::mutex> guard{seen->mtx};
  std::map<int64_t, int> deliveries;
  for (auto& [id, generation] : seen->got) {
    ++deliveries[id];
    REQUIRE(sent.count(id) == 1);
    // A connection cannot deliver what was committed after it was killed.
    if (killed_at.count(generation)) CHECK(sent[id] <= killed_at[generation] + 50'000);
  }
  auto duplicates = std::count_if(deliveries.begin(), deliveries.end(),
                                  [](const auto& d) { return d.second > 1; });
  // Sent well inside a connected window (20 ms after the announcement, 200 ms
  // before the kill) must have arrived; around the boundaries it may not.
  const int64_t after_connect = 20'000, before_kill = 200'000;
  size_t expected = 0, missing = 0;
  for (auto& [id, at] : sent) {
    bool inside = false;
    for (auto& [g, from] : connected_from) {
      auto until = killed_at.count(g) ? killed_at[g] : INT64_MAX;
      if (at >= from + after_connect && at <= until - before_kill) inside = true;
    }
    if (!inside) continue;
    ++expected;
    if (!deliveries.count(id)) ++missing;
  }
  MESSAGE("storm: sent " << sent.size() << ", delivered " << seen->got.size() << " (distinct "
                         << deliveries.size() << "), sent while surely connected " << expected
                         << ", of those missing " << missing << ", duplicates " << duplicates
                         << ", final generation " << status().generation);
  CHECK(sent.size() > 2000);
  CHECK(duplicates == 0);
  CHECK(missing == 0);
  CHECK(expected > sent.size() / 3);  // the windows above are not vacuous
  CHECK(status().generation == kills + 1);
}
