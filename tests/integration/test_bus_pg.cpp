// The bus end to end against a real PostgreSQL 15.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <numeric>
#include <thread>

#include "pg_fixture.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::test;

TEST_CASE_FIXTURE(pg_fixture, "pg: payloads arrive byte-exact") {
  start_channels({"payloads"});
  subscribe("payloads", "s");
  std::string big(7999, 'x');
  for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
  const std::vector<std::string> payloads{"",
                                          "plain",
                                          big,
                                          "ünïcødé ✓ 😀",
                                          R"(quotes ' " and \ backslash)",
                                          "line\nbreak\ttab",
                                          R"({"json": [1, 2.5, null], "nested": {"k": "v"}})"};
  for (const auto& p : payloads) notify("payloads", p);
  for (const auto& p : payloads) {
    auto got = next_notification();
    CHECK(got.n.channel == "payloads");
    CHECK(got.n.payload.size() == p.size());
    CHECK(got.n.payload == p);
    CHECK(got.n.generation == 1);
    CHECK(got.n.backend_pid > 0);
  }
}

TEST_CASE_FIXTURE(pg_fixture, "pg: two channels reach their own subscribers only") {
  start_channels({"one", "two"});
  subscribe("one", "first");
  subscribe("two", "second");
  notify("one", "1");
  notify("two", "2");
  notify("one", "3");
  std::vector<std::string> first, second;
  for (int i = 0; i < 3; ++i) {
    auto got = next_notification();
    (got.tag == "first" ? first : second).push_back(got.n.channel + ":" + got.n.payload);
  }
  CHECK(first == std::vector<std::string>{"one:1", "one:3"});
  CHECK(second == std::vector<std::string>{"two:2"});
}

TEST_CASE_FIXTURE(pg_fixture,
                  "pg: three subscribers of one channel each receive every notification in order") {
  start_channels({"fan"});
  const int count = 3000;
  for (auto tag : {"a", "b", "c"}) subscribe("fan", tag, count);
  exec(fmt::format("SELECT pg_notify('fan', g::text) FROM generate_series(1, {}) g", count));
  std::map<std::string, std::vector<int>> seen;
  for (int i = 0; i < 3 * count; ++i) {
    auto got = next_notification();
    seen[got.tag].push_back(std::stoi(got.n.payload));
  }
  std::vector<int> expected(count);
  std::iota(expected.begin(), expected.end(), 1);
  CHECK(seen["a"] == expected);
  CHECK(seen["b"] == expected);
  CHECK(seen["c"] == expected);
}

TEST_CASE_FIXTURE(
    pg_fixture,
    "pg: a terminated backend is replaced - generation 2 and every channel LISTENed again") {
  start_channels({"k1", "k2"});
  subscribe("k1", "s1");
  subscribe("k2", "s2");
  auto old_pid = listener_pid();
  exec(fmt::format("SELECT pg_terminate_backend({})", old_pid));
  wait_for_generation(2);
  CHECK(listener_pid() != old_pid);
  CHECK(status().state == connection_state::listening);
  CHECK(status().last_error.find("connection") != std::string::npos);
  notify("k1", "after-1");
  notify("k2", "after-2");
  std::map<std::string, owned_notification> got;
  for (int i = 0; i < 2; ++i) {
    auto n = next_notification();
    got[n.tag] = n.n;
  }
  CHECK(got["s1"].payload == "after-1");
  CHECK(got["s1"].generation == 2);
  CHECK(got["s2"].payload == "after-2");
  CHECK(got["s2"].generation == 2);
}

TEST_CASE_FIXTURE(pg_fixture,
                  "pg: a hostile channel name is LISTENed on exactly without SQL injection") {
  exec("CREATE TABLE IF NOT EXISTS t (id int)");
  const std::string hostile = R"(Weird "Name"; DROP TABLE t; --)";
  start_channels({hostile, "Mixed Case"});
  subscribe(hostile, "h");
  subscribe("Mixed Case", "m");
  notify(hostile, "via pg_notify");
  exec("NOTIFY " + admin->quote_name(hostile) + ", 'via NOTIFY'");
  notify("mixed case", "lowercase twin: not ours");
  notify("Mixed Case", "exact case");
  // Each subscriber's stream is ordered; the two streams interleave freely.
  std::map<std::string, std::vector<std::string>> got;
  for (int i = 0; i < 3; ++i) {
    auto n = next_notification();
    got[n.tag].push_back(n.n.channel + " <- " + n.n.payload);
  }
  CHECK(got["h"] ==
        std::vector<std::string>{hostile + " <- via pg_notify", hostile + " <- via NOTIFY"});
  CHECK(got["m"] == std::vector<std::string>{"Mixed Case <- exact case"});
  pqxx::nontransaction tx{*admin};
  CHECK(tx.exec("SELECT count(*) FROM pg_tables WHERE tablename = 't'")[0][0].as<int>() == 1);
}

TEST_CASE_FIXTURE(pg_fixture, "pg: bad settings are refused before anything connects") {
  auto bad_channel = spawn_bus(sys, settings({"ok", std::string(64, 'x')}));
  REQUIRE(!bad_channel);
  CHECK(bad_channel.error() == make_error(errc::invalid_channel));
  auto s = settings({"ok"});
  s.conninfo = "host=localhost port";
  auto bad_uri = spawn_bus(sys, s);
  REQUIRE(!bad_uri);
  CHECK(bad_uri.error() == make_error(errc::invalid_argument));
}

TEST_CASE_FIXTURE(
    pg_fixture,
    "pg: a server that is not there is retried and the status says why without the password") {
  // Port 1 on loopback: connection refused at once.
  auto st = start_failing_bus("postgresql://postgres:hunter2@127.0.0.1:1/postgres");
  CHECK(st.state == connection_state::backing_off);
  CHECK(st.generation == 0);
  CHECK(st.last_error.find("refused") != std::string::npos);
  CHECK(st.last_error.find("hunter2") == std::string::npos);
}

TEST_CASE_FIXTURE(pg_fixture, "pg: dynamic channels follow their subscribers on the server") {
  auto s = settings({"always"});
  s.dynamic_channels = true;
  start_bus(s);
  // What the server says the bus's connection LISTENs on.
  auto listening = [&] {
    std::vector<std::string> result;
    probe->request(bus, patience, listening_atom_v)
        .receive([&](std::vector<std::string>& x) { result = x; },
                 [](caf::error& e) { FAIL(render(e)); });
    return result;
  };
  // Requests are causally ordered after what the registry did before replying.
  auto subscriptions = [&] { return stats().subscriptions.size(); };
  using names = std::vector<std::string>;
  CHECK(listening() == names{"always"});
  subscribe("Dyn One", "first");
  CHECK(listening() == names{"Dyn One", "always"});
  notify("Dyn One", "hello");
  CHECK(next_notification().n.payload == "hello");
  subscribe("Dyn One", "second");
  caf::anon_send_exit(helpers[0], caf::exit_reason::kill);
  await_condition([&] { return subscriptions() == 1; }, "the DOWN to be handled");
  CHECK(listening() == names{"Dyn One", "always"});
  // A reconnect LISTENs on exactly the current set.
  exec(fmt::format("SELECT pg_terminate_backend({})", listener_pid()));
  wait_for_generation(2);
  CHECK(listening() == names{"Dyn One", "always"});
  caf::anon_send_exit(helpers[1], caf::exit_reason::kill);
  await_condition([&] { return subscriptions() == 0; }, "the DOWN to be handled");
  CHECK(listening() == names{"always"});
  // Unsubscribing (rather than dying) UNLISTENs too.
  subscribe("Dyn Two", "third");
  CHECK(listening() == names{"Dyn Two", "always"});
  probe->request(bus, patience, unsubscribe_atom_v, std::string{"Dyn Two"}, helpers[2])
      .receive([](caf::ok_atom) {}, [](caf::error& e) { FAIL(render(e)); });
  CHECK(listening() == names{"always"});
}

TEST_CASE_FIXTURE(pg_fixture, "pg: a burst followed by silence arrives completely at once") {
  start_channels({"burst"});
  const int count = 20000;
  // The subscriber checks each notification itself and reports once, at the end.
  struct progress {
    int next = 1;
    bool in_order = true;
  };
  auto seen = std::make_shared<progress>();
  subscriber_callbacks cb;
  auto target = caf::actor{probe};
  cb.on_notification = [seen, target](const notification& n) {
    // Payloads alternate between 10 and 7,000 bytes and carry their number.
    auto size = seen->next % 2 == 0 ? 7000u : 10u;
    seen->in_order = seen->in_order && n.payload.size() == size &&
                     std::stoi(std::string{n.payload}) == seen->next;
    if (seen->next++ == count) caf::anon_send(target, caf::ok_atom_v);
  };
  cb.on_lagged = [target](const lagged&) { caf::anon_send(target, caf::error{}); };
  cb.on_subscribed = [target](uint64_t) { caf::anon_send(target, caf::ok_atom_v); };
  helpers.push_back(spawn_subscriber(sys, bus, subscriber_options{{"burst"}, count}, cb));
  probe->receive([](caf::ok_atom) {}, caf::after(patience) >> [] { FAIL("subscribe timed out"); });
  auto start = std::chrono::steady_clock::now();
  exec(
      fmt::format("SELECT pg_notify('burst', lpad(g::text, CASE WHEN g % 2 = 0 THEN 7000 ELSE 10 "
                  "END, '0')) FROM generate_series(1, {}) g",
                  count));
  auto committed = std::chrono::steady_clock::now();
  // Nothing is sent after the burst: no later traffic wakes the reader.
  probe->receive([](caf::ok_atom) {}, [](caf::error&) { FAIL("the subscriber lagged"); },
                 caf::after(patience) >> [] { FAIL("the burst did not arrive completely"); });
  auto done = std::chrono::steady_clock::now();
  CHECK(seen->in_order);
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  MESSAGE("burst of " << count << " (10 and 7,000 bytes): committed in " << ms(committed - start)
                      << " ms, all received " << ms(done - committed) << " ms after the commit");
  if (limits_checked) CHECK(done - committed < 1s);
}

TEST_CASE_FIXTURE(pg_fixture, "pg: the bus starts no thread of its own") {
  auto before = threads_of_this_process();
  start_channels({"threads"});
  subscribe("threads", "s");
  notify("threads", "x");
  CHECK(next_notification().n.payload == "x");
  exec(fmt::format("SELECT pg_terminate_backend({})", listener_pid()));
  wait_for_generation(2);
  auto after = threads_of_this_process();
  MESSAGE("threads: " << before << " before the bus, " << after << " with it");
  CHECK(after == before);
}
