// The failure matrix of DESIGN.md §6, each case against the real server that
// scripts/test.sh started (these tests stop, restart and freeze it).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <caf/event_based_actor.hpp>

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

/// A TCP server that accepts connections (the kernel completes the handshake)
/// and never answers: libpq's connect waits for its reply forever.
struct silent_server {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  uint16_t port = 0;
  silent_server() {
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port = ntohs(address.sin_port);
  }
  ~silent_server() { ::close(fd); }
  std::string uri() const {
    return fmt::format("postgresql://postgres@127.0.0.1:{}/postgres?{}", port, sslmode());
  }
};

/// Brings a bus of its own actor system into some state (`reach`), stops it and
/// returns how long stopping took, until ~actor_system returned.
template <class Reach>
double shutdown_ms(bus_settings s, Reach reach) {
  caf::actor_system_config cfg;
  pg_fixture::init(cfg);
  std::chrono::steady_clock::time_point start;
  {
    caf::actor_system sys{cfg};
    auto bus = spawn_bus(sys, s);
    REQUIRE(bus);
    {
      caf::scoped_actor self{sys};
      auto status = [&] {
        bus_status st;
        self->request(*bus, 5s, status_atom_v)
            .receive([&](bus_status& x) { st = x; }, [](caf::error&) {});
        return st;
      };
      reach(self, *bus, status);
    }
    start = std::chrono::steady_clock::now();
    caf::anon_send_exit(*bus, caf::exit_reason::user_shutdown);
  }
  return ms_since(start);
}

/// Polls the status until `holds` or a deadline; for states no message announces.
template <class Status, class Predicate>
bus_status await_status(Status status, Predicate holds) {
  auto deadline = std::chrono::steady_clock::now() + 15s;
  auto st = status();
  while (!holds(st)) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(5ms);  // the poll's period
    st = status();
  }
  return st;
}

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
  // Found within interval + timeout; the connection had lasted: no backoff.
  MESSAGE("frozen backend: replaced after " << detected_ms << " ms");
  if (limits_checked) CHECK(detected_ms < 500 + 500 + 300);
  CHECK(status().last_error.find("health check failed") != std::string::npos);
  notify("frozen", "after");
  auto got = next_notification();
  CHECK(got.n.payload == "after");
  CHECK(got.n.generation == 2);
}

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: a terminated backend is replaced at once and LISTENs on every channel "
                  "again") {
  start_channels({"killed", "other", "Third One"});
  advance_past_min_uptime();
  auto start = std::chrono::steady_clock::now();
  exec(fmt::format("SELECT pg_terminate_backend({})", listener_pid()));
  wait_for_generation(2);
  auto reconnect_ms = ms_since(start);
  MESSAGE("terminated backend: LISTENing again after " << reconnect_ms << " ms");
  if (limits_checked) CHECK(reconnect_ms < 250);
  std::vector<std::string> listening;
  probe->request(bus, patience, listening_atom_v)
      .receive([&](std::vector<std::string>& x) { listening = x; },
               [](caf::error& e) { FAIL(render(e)); });
  CHECK(listening == std::vector<std::string>{"Third One", "killed", "other"});
  CHECK(status().failed_attempts == 0);
}

TEST_CASE_FIXTURE(
    pg_fixture,
    "faults: a stopped server is retried with growing backoff and the generation waits") {
  start_channels({"restart"});
  subscribe("restart", "s");
  advance_past_min_uptime();
  {
    stopped_server down;
    // The drop is replaced at once and fails, then +0.5 s and +1.5 s fail too:
    // the next delay has grown to 2 s.
    auto st = await_status([&] { return status(); },
                           [](const bus_status& x) { return x.failed_attempts >= 3; });
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
  auto got = next_notification();
  CHECK(got.n.payload == "back");
  CHECK(got.n.generation == 2);
}

TEST_CASE("faults: a server that is down at start is waited for at generation 0") {
  caf::actor_system_config cfg;
  pg_fixture::init(cfg);
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
    auto status = [&] {
      bus_status st;
      self->request(*bus, 5s, status_atom_v)
          .receive([&](bus_status& x) { st = x; }, [](caf::error&) {});
      return st;
    };
    auto st = await_status(status, [](const bus_status& x) { return x.failed_attempts >= 2; });
    CHECK(st.generation == 0);
    CHECK(st.state == connection_state::backing_off);
    CHECK(st.retry_in > 500ms);  // grown from 500 ms
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
  // The probe's reconnect subscription and the survivor's subscription.
  const auto baseline = stats().tables;
  CHECK(baseline.subscriptions == 1);
  CHECK(baseline.monitored == 2);
  const int rounds = 20;
  for (int round = 0; round < rounds; ++round) {
    // A subscriber that stalls: a blocking actor that never reads its
    // mailbox, so it acks nothing. It dies at the end of this scope.
    std::optional<caf::scoped_actor> doomed_actor{std::in_place, sys};
    caf::actor doomed = *doomed_actor;
    probe->request(bus, patience, subscribe_atom_v, std::string{"dies"}, doomed, uint32_t{4})
        .receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(render(e)); });
    // Two notifications in flight to it when it dies: the survivor has them,
    // so the registry has sent them to both.
    for (int i = 0; i < 2; ++i) notify("dies", fmt::format("{}-{}", round, i));
    for (int i = 0; i < 2; ++i) REQUIRE(next_notification().tag == "survivor");
    auto st = stats();
    auto doomed_sub = std::find_if(st.subscriptions.begin(), st.subscriptions.end(),
                                   [&](const auto& sub) { return sub.subscriber == doomed; });
    REQUIRE(doomed_sub != st.subscriptions.end());
    CHECK(doomed_sub->in_flight == 2);
    if (round % 2 == 1) {
      // Every other one unsubscribes first: its subscription is cancelled, and
      // kept (and the actor monitored) while the two are unacked.
      probe->request(bus, patience, unsubscribe_atom_v, std::string{"dies"}, doomed)
          .receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(render(e)); });
      auto cancelled = baseline;
      cancelled.cancelled += 1;
      cancelled.monitored += 1;
      CHECK(stats().tables == cancelled);
    }
    doomed = nullptr;
    doomed_actor.reset();
    await_condition([&] { return stats().tables == baseline; },
                    fmt::format("the registry's tables back at their baseline (round {})", round));
  }
  notify("dies", "x");
  CHECK(next_notification().tag == "survivor");
  auto stats = this->stats();
  CHECK(stats.subscriptions.size() == 1);
  CHECK(stats.tables == baseline);
  // The survivor got every notification; each doomed subscriber its two.
  CHECK(stats.delivered == rounds * 2 * 2 + 1);
  CHECK(stats.missed == 0);
  CHECK(stats.bad_acks == 0);
}

namespace {

// A subscriber of the churn test: acks every batch at once, or never (its
// notifications stay in flight, so unsubscribing cancels rather than ends).
caf::behavior churn_subscriber(caf::event_based_actor* self, bool acks) {
  return {
      [=](const notification_batch& batch) {
        if (acks && !batch.empty())
          self->send(caf::actor_cast<ack_handle>(self->current_sender()), ack_atom_v,
                     std::string{batch.front().channel}, static_cast<uint32_t>(batch.size()));
      },
      [](const lagged&) {},
      [](const reconnected&) {},
  };
}

}  // namespace

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: churn against the real server leaves nothing behind and the "
                  "connection LISTENs on exactly the channels that are wanted") {
  // The short run of the registry's churn test (tests/unit/test_registry.cpp
  // has 100,000 operations on the scripted server): seeded random subscribes,
  // unsubscribes, kills and notifications on fixed and dynamic channels.
  const std::vector<std::string> fixed{"churn_f0", "churn_f1"};
  const std::vector<std::string> dynamic{"churn_d0", "churn_d1", "churn_d2", "Churn \"d3\""};
  auto s = settings(fixed);
  s.dynamic_channels = true;
  start_bus(s);
  const auto baseline = stats().tables;
  std::mt19937 rng{20261128};
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>{0, n - 1}(rng); };
  struct member {
    caf::actor handle;
    bool acks = true;
    std::set<std::string> channels;  ///< the model: what it is subscribed to
  };
  std::vector<member> members(12);
  auto fresh = [&](member& m) {
    m.acks = pick(3) != 0;
    m.handle = sys.spawn(churn_subscriber, m.acks);
    m.channels.clear();
  };
  for (auto& m : members) fresh(m);
  auto random_channel = [&] {
    auto i = pick(fixed.size() + dynamic.size());
    return i < fixed.size() ? fixed[i] : dynamic[i - fixed.size()];
  };
  // What the connection must LISTEN on: the fixed channels and every dynamic
  // channel that a live member subscribes to.
  auto wanted = [&] {
    std::set<std::string> result(fixed.begin(), fixed.end());
    for (const auto& m : members) result.insert(m.channels.begin(), m.channels.end());
    return std::vector<std::string>(result.begin(), result.end());
  };
  auto listening = [&] {
    std::vector<std::string> result;
    probe->request(bus, patience, listening_atom_v)
        .receive([&](std::vector<std::string>& names) { result = std::move(names); },
                 [](caf::error& e) { throw std::runtime_error(render(e)); });
    std::sort(result.begin(), result.end());
    return result;
  };
  // Once everything sent has been handled: the tables hold exactly the live
  // subscriptions, nothing pending, nobody's acked notification in flight,
  // and the server agrees on the LISTEN set.
  uint64_t most_cancelled = 0, most_channels = 0;  // the paths the run went through
  auto settled = [&] {
    auto st = stats();
    most_cancelled = std::max(most_cancelled, st.tables.cancelled);
    most_channels = std::max(most_channels, st.tables.channels);
    size_t subscriptions = 0;
    for (const auto& m : members) subscriptions += m.channels.size();
    auto want = wanted();
    bool acked =
        std::all_of(st.subscriptions.begin(), st.subscriptions.end(), [&](const auto& sub) {
          auto m = std::find_if(members.begin(), members.end(), [&](const member& x) {
            return x.handle.address() == sub.subscriber;
          });
          return m != members.end() && (!m->acks || sub.in_flight == 0);
        });
    return acked && st.tables.subscriptions == subscriptions && st.tables.pending_listens == 0 &&
           st.tables.pending_subscribes == 0 && st.tables.pending_replies == 0 &&
           st.tables.channels == want.size() && st.bad_acks == 0 && listening() == want;
  };
  const int operations = 2000;
  for (int op = 1; op <= operations; ++op) {
    auto& m = members[pick(members.size())];
    auto action = pick(20);
    if (action < 7) {
      auto channel = random_channel();
      probe->request(bus, patience, subscribe_atom_v, channel, m.handle)
          .receive([&](caf::ok_atom) { m.channels.insert(channel); },
                   [](caf::error& e) { FAIL(render(e)); });
    } else if (action < 12) {
      auto channel = random_channel();
      bool fixed_channel = std::count(fixed.begin(), fixed.end(), channel) > 0;
      bool live = fixed_channel ||
                  std::any_of(members.begin(), members.end(),
                              [&](const member& x) { return x.channels.count(channel) > 0; });
      probe->request(bus, patience, unsubscribe_atom_v, channel, m.handle)
          .receive([&](caf::ok_atom) {},
                   // A dynamic channel nobody subscribes to is not registered;
                   // one whose last subscriber was just killed may still be
                   // (the registry hears of deaths asynchronously), so only a
                   // channel that is surely live must not be unknown.
                   [&](caf::error& e) {
                     CHECK_MESSAGE(!live, render(e));
                     CHECK_MESSAGE(!fixed_channel, render(e));
                     CHECK(e.category() == error_category);
                     CHECK(e.code() == static_cast<uint8_t>(errc::unknown_channel));
                   });
      m.channels.erase(channel);
    } else if (action < 15) {
      caf::anon_send_exit(m.handle, caf::exit_reason::kill);
      fresh(m);
    } else {
      notify(random_channel(), std::to_string(op));
    }
    if (op % 500 == 0)
      await_condition(settled, fmt::format("the registry and the server settled (op {})", op));
  }
  CHECK(most_cancelled > 0);                     // unsubscribed with notifications in flight
  CHECK(most_channels > baseline.channels + 1);  // several dynamic channels at once
  for (auto& m : members) {
    caf::anon_send_exit(m.handle, caf::exit_reason::kill);
    m.channels.clear();
  }
  await_condition([&] { return stats().tables == baseline && listening() == wanted(); },
                  "every table back at its baseline and only the fixed channels LISTENed");
  CHECK(stats().subscriptions.empty());
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
          for (const auto& n : batch) got.emplace_back(n.payload);
          stalled->send(caf::actor_cast<caf::actor>(stalled->current_sender()), ack_atom_v,
                        std::string{"stall"}, static_cast<uint32_t>(batch.size()));
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
      [&](const notification_batch& batch) {
        REQUIRE(!batch.empty());
        CHECK(batch[0].payload == "next");
      },
      caf::after(patience) >> [] { FAIL("stream did not continue"); });
}

TEST_CASE("faults: the bus stops at once in every state") {
  bus_settings s;
  s.channels = {"c"};
  SUBCASE("in the middle of a 30 s backoff") {
    s.conninfo = "postgresql://postgres@127.0.0.1:1/postgres?" + sslmode();  // refused at once
    s.backoff.initial = 30s;
    auto ms = shutdown_ms(s, [](auto&, auto&, auto status) {
      auto st = await_status(
          status, [](const bus_status& x) { return x.state == connection_state::backing_off; });
      CHECK(st.retry_in > 29s);
    });
    MESSAGE("stopped during a 30 s backoff in " << ms << " ms");
    if (limits_checked) CHECK(ms < 100);
  }
  SUBCASE("while connecting to a server that accepts and never answers") {
    silent_server silent;
    s.conninfo = silent.uri();
    auto ms = shutdown_ms(s, [](auto&, auto&, auto status) {
      CHECK(status().state == connection_state::connecting);
    });
    MESSAGE("stopped while connecting in " << ms << " ms");
    if (limits_checked) CHECK(ms < 100);
  }
  SUBCASE("while a query waits for a frozen backend") {
    s.conninfo = server_uri();
    s.connection.application_name = fmt::format("pgnotify-frozen-{}", std::random_device{}());
    pqxx::connection admin{server_uri()};
    std::unique_ptr<frozen_process> frozen;
    auto ms = shutdown_ms(s, [&](auto& self, auto& bus, auto status) {
      await_status(status, [](const bus_status& x) { return x.generation == 1; });
      auto pid = pqxx::nontransaction{admin}
                     .exec_params("SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                                  s.connection.application_name)[0][0]
                     .template as<int>();
      frozen = std::make_unique<frozen_process>(pid);
      self->send(bus, listening_atom_v);  // its query waits for the frozen backend
      CHECK(status().state == connection_state::listening);  // after the query went out
    });
    MESSAGE("stopped while a query waited in " << ms << " ms");
    if (limits_checked) CHECK(ms < 100);
  }
}

TEST_CASE_FIXTURE(pg_fixture, "faults: a wrong password is a clear error and is never logged") {
  captured_log log;
  auto st = start_failing_bus(
      fmt::format("postgresql://pgnotify_pw:wrong-secret-123@127.0.0.1:{}/postgres?{}",
                  env_or_throw("PGNOTIFY_PG_PORT"), sslmode()));
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

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: a read-only standby is refused with a clear error and is retried") {
  auto standby = run_script("pg-standby.sh", env_or_throw("PGNOTIFY_PG_DIR"));
  struct remove_standby {
    std::string dir;
    ~remove_standby() { run_script("pg-stop.sh", dir); }
  } cleanup{standby};
  auto port = run_script("pg-env.sh", standby + " PGNOTIFY_STANDBY_PORT");
  auto st = start_failing_bus(
      fmt::format("postgresql://postgres@127.0.0.1:{}/postgres?{}", port, sslmode()),
      2);  // the first retry failed too
  CHECK(st.generation == 0);
  // libpq is asked for target_session_attrs=read-write: a standby, where LISTEN
  // cannot work, is refused before any LISTEN is sent.
  CHECK(st.last_error.find("session is read-only") != std::string::npos);
}

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: four backend kills under a 2,000/s stream lose almost nothing") {
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
    seen->got.emplace_back(std::stoll(std::string{n.payload}), n.generation);
  };
  cb.on_subscribed = [target](uint64_t) { caf::anon_send(target, caf::ok_atom_v); };
  helpers.push_back(spawn_subscriber(sys, bus, subscriber_options{{"storm"}, 1u << 24}, cb));
  probe->receive([](caf::ok_atom) {}, caf::after(patience) >> [] { FAIL("subscribe timed out"); });

  auto now_us = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               wall_clock::now().time_since_epoch())
        .count();
  };
  // Each kill's window: from the kill (server clock) to reconnected{g + 1} (wall clock).
  std::vector<std::pair<int64_t, int64_t>> deaf;

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
  std::vector<double> deaf_ms;
  for (uint64_t g = 1; g <= kills; ++g) {
    std::this_thread::sleep_for(1s);  // the scenario: traffic flows for a second between kills
    auto pid = listener_pid();
    pqxx::nontransaction tx{*admin};
    auto row = tx.exec(fmt::format(
        "SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint, pg_terminate_backend({})",
        pid))[0];
    auto killed_at = row[0].as<int64_t>();
    tx.commit();
    wait_for_generation(g + 1);
    auto back_at = now_us();
    deaf.emplace_back(killed_at, back_at);
    deaf_ms.push_back((back_at - killed_at) / 1000.0);
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
  }
  auto duplicates = std::count_if(deliveries.begin(), deliveries.end(),
                                  [](const auto& d) { return d.second > 1; });
  // A notification can only be missing if it was sent while the listener was
  // deaf: between a kill and the next reconnected (with 50 ms for commit and
  // clock differences on either side).
  size_t missing = 0, missing_outside = 0;
  for (auto& [id, at] : sent) {
    if (deliveries.count(id)) continue;
    ++missing;
    bool inside = std::any_of(deaf.begin(), deaf.end(), [at = at](const auto& w) {
      return at >= w.first - 50'000 && at <= w.second + 50'000;
    });
    if (!inside) ++missing_outside;
  }
  MESSAGE("storm: sent " << sent.size() << ", delivered " << seen->got.size() << " (distinct "
                         << deliveries.size() << "), missing " << missing << " ("
                         << 100.0 * missing / std::max<size_t>(1, sent.size())
                         << " %), outside a kill window " << missing_outside << ", duplicates "
                         << duplicates << ", final generation " << status().generation);
  for (size_t i = 0; i < deaf_ms.size(); ++i)
    MESSAGE("kill " << i + 1 << ": LISTENing again after " << deaf_ms[i] << " ms");
  CHECK(sent.size() > 8000);
  CHECK(duplicates == 0);
  CHECK(missing_outside == 0);
  // At most 2 % over plain TCP. Over TLS each reconnect also shakes hands, which
  // roughly doubles the deaf window on this 2-core machine under pgbench's load
  // (measured 16-34 ms against 10-14 ms): at most 4 % there.
  const size_t percent_allowed = sslmode() == "sslmode=require" ? 4 : 2;
  CHECK(missing * 100 <= sent.size() * percent_allowed);
  CHECK(status().generation == kills + 1);
}

namespace {

/// A host lookup the test controls: each call waits until the gate opens, then
/// returns `addresses`. Shared with the lookup's thread, which may outlive the test.
struct lookup_gate {
  std::mutex mtx;
  std::condition_variable cv;
  bool open = false;
  int entered = 0;
  int left = 0;
  std::vector<std::string> hosts;  ///< what was asked
  std::vector<std::string> addresses{"127.0.0.1"};

  std::vector<std::string> pass(const std::string& host) {
    std::unique_lock<std::mutex> lock{mtx};
    hosts.push_back(host);
    ++entered;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
    ++left;
    cv.notify_all();
    return addresses;
  }
  void release() {
    std::lock_guard<std::mutex> guard{mtx};
    open = true;
    cv.notify_all();
  }
  bool await_count(const int& counter, int wanted) {
    std::unique_lock<std::mutex> lock{mtx};
    return cv.wait_for(lock, 5s, [&] { return counter >= wanted; });
  }
};

/// The test server under a host name (key=value form, as prepared).
std::string named_conninfo(const std::string& host) {
  return fmt::format("host={} port={} user=postgres dbname=postgres {}", host,
                     env_or_throw("PGNOTIFY_PG_PORT"), sslmode());
}

}  // namespace

TEST_CASE_FIXTURE(pg_fixture, "faults: a host name is resolved off the workers and connects") {
  auto s = settings({"named"});
  s.conninfo = named_conninfo("localhost");  // getaddrinfo on the lookup's own thread
  start_bus(s);
  subscribe("named", "s");
  notify("named", "by name");
  auto got = next_notification();
  CHECK(got.n.payload == "by name");
  CHECK(got.n.generation == 1);
}

TEST_CASE_FIXTURE(pg_fixture,
                  "faults: every address of a host name is tried in turn like libpq does") {
  auto gate = std::make_shared<lookup_gate>();
  gate->release();
  // 127.0.0.2 is refused (the server listens on 127.0.0.1 only): the next one is tried.
  gate->addresses = {"127.0.0.2", "127.0.0.1"};
  auto s = settings({"named"});
  s.conninfo = named_conninfo("db.pgnotify.invalid");  // libpq itself could not resolve it
  s.host_lookup = [gate](const std::string& host) { return gate->pass(host); };
  start_bus(s);
  subscribe("named", "s");
  notify("named", "second address");
  CHECK(next_notification().n.payload == "second address");
  std::lock_guard<std::mutex> guard{gate->mtx};
  CHECK(gate->hosts == std::vector<std::string>{"db.pgnotify.invalid"});
}

TEST_CASE("faults: the bus stops at once while a host name is being resolved") {
  auto gate = std::make_shared<lookup_gate>();
  bus_settings s;
  s.channels = {"c"};
  s.conninfo = named_conninfo("db.pgnotify.invalid");
  s.host_lookup = [gate](const std::string& host) { return gate->pass(host); };
  auto threads_before = threads_of_this_process();
  auto ms = shutdown_ms(s, [&](auto&, auto&, auto status) {
    REQUIRE(gate->await_count(gate->entered, 1));  // the lookup blocks
    CHECK(status().state == connection_state::connecting);
  });
  MESSAGE("stopped while resolving in " << ms << " ms");
  if (limits_checked) CHECK(ms < 100);
  // The abandoned lookup finishes on its own, and its thread ends.
  {
    std::lock_guard<std::mutex> guard{gate->mtx};
    CHECK(gate->left == 0);
  }
  gate->release();
  CHECK(gate->await_count(gate->left, 1));
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (threads_of_this_process() > threads_before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  CHECK(threads_of_this_process() == threads_before);
}

TEST_CASE_FIXTURE(pg_fixture, "faults: a host name that cannot be resolved fails the attempt") {
  auto s = settings({"c"});
  s.conninfo = named_conninfo("db.pgnotify.invalid");
  s.host_lookup = [](const std::string&) -> std::vector<std::string> {
    throw std::runtime_error("Name or service not known");
  };
  auto spawned = spawn_bus(sys, s);
  REQUIRE(spawned);
  bus = *spawned;
  bus_status st;
  await_condition([&] { return (st = status()).failed_attempts >= 1; }, "a failed attempt");
  CHECK(st.state == connection_state::backing_off);
  CHECK(st.generation == 0);
  CHECK(st.last_error ==
        "could not translate host name \"db.pgnotify.invalid\" to address: Name or service not "
        "known");
}
