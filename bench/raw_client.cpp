// The raw client: what a hand-written libpq loop costs, the ceiling pgnotify is
// measured against. One connection, LISTEN, then poll() on the socket,
// PQconsumeInput and PQnotifies until the workload is complete.
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "clients.hpp"
#include "json_line.hpp"
#include "measure.hpp"

namespace pgnotify::bench {

namespace {

struct connection_closer {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
using connection_ptr = std::unique_ptr<PGconn, connection_closer>;

struct result_clearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using result_ptr = std::unique_ptr<PGresult, result_clearer>;

int fail(const std::string& why) {
  fmt::print(stderr, "pgnotify-bench (raw): {}\n", why);
  print_line(json_line{}.add("error", why).str());
  return 1;
}

// libpq's messages end with a newline; the JSON line should not.
std::string last_error(PGconn* conn) {
  std::string text = PQerrorMessage(conn);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// Connects and LISTENs on `channel` (as a quoted identifier); returns once the
// server acknowledged the LISTEN, or an error.
std::optional<std::string> connect_and_listen(const std::string& uri, const std::string& channel,
                                              connection_ptr& out) {
  out.reset(PQconnectdb(uri.c_str()));
  if (PQstatus(out.get()) != CONNECTION_OK) return "connect: " + last_error(out.get());
  char* quoted = PQescapeIdentifier(out.get(), channel.data(), channel.size());
  if (quoted == nullptr) return "PQescapeIdentifier: " + last_error(out.get());
  std::string sql = fmt::format("LISTEN {}", quoted);
  PQfreemem(quoted);
  result_ptr result{PQexec(out.get(), sql.c_str())};
  if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) return "LISTEN: " + last_error(out.get());
  return std::nullopt;
}

// The receive loop: hands each notification to `on_notification` until it
// returns false. Fails after `patience` without any data, or if the connection breaks.
template <class OnNotification>
std::optional<std::string> receive_until(PGconn* conn, std::chrono::seconds patience,
                                         OnNotification on_notification) {
  pollfd socket{PQsocket(conn), POLLIN, 0};
  auto timeout_ms = static_cast<int>(std::chrono::milliseconds{patience}.count());
  for (;;) {
    int ready = ::poll(&socket, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return fmt::format("poll: {}", std::strerror(errno));
    if (ready == 0) return fmt::format("nothing received for {} s", patience.count());
    if (PQconsumeInput(conn) == 0) return "connection lost: " + last_error(conn);
    while (PGnotify* n = PQnotifies(conn)) {
      bool more = on_notification(*n);
      PQfreemem(n);
      if (!more) return std::nullopt;
    }
  }
}

// First and last receipt of a stream of `expected` notifications, with a check
// that the first and last payloads are the sender's first and last.
struct stream_tally {
  uint64_t expected = 0;
  uint64_t received = 0;
  uint64_t first_ns = 0;
  uint64_t last_ns = 0;
  bool payloads_ok = true;

  // True while more are expected.
  bool count(const char* payload) {
    if (received == 0) {
      first_ns = monotonic_ns();
      payloads_ok = payloads_ok && payload == sequence_payload(1);
    }
    if (++received < expected) return true;
    last_ns = monotonic_ns();
    payloads_ok = payloads_ok && payload == sequence_payload(expected);
    return false;
  }
};

json_line stream_line(uint64_t deliveries, const stream_tally& tally, const cpu_usage& cpu) {
  json_line line;
  line.add("received", deliveries)
      .add("first_ns", tally.first_ns)
      .add("last_ns", tally.last_ns)
      .add("payloads_ok", tally.payloads_ok)
      .add("cpu_us", cpu.total_us())
      .add("user_us", cpu.user_us)
      .add("sys_us", cpu.system_us);
  return line;
}

int run_stream(PGconn* conn, const settings& s) {
  auto rss_before = proc_status_kib("VmRSS");
  auto cpu_before = process_cpu();
  stream_tally tally{s.n};
  // w2: the raw equivalent of K subscribers is K counters bumped per notification.
  uint32_t counter_count = s.kind == workload::w2 ? s.k : 1;
  std::vector<uint64_t> counters(counter_count, 0);
  auto failure = receive_until(conn, s.patience, [&](const PGnotify& n) {
    for (auto& counter : counters) ++counter;
    return tally.count(n.extra);
  });
  auto cpu = process_cpu() - cpu_before;
  uint64_t deliveries = 0;
  for (auto counter : counters) deliveries += counter;
  auto line = stream_line(deliveries, tally, cpu);
  if (s.kind == workload::w4) {
    auto rss_after = proc_status_kib("VmRSS");
    line.add("rss_before_kib", rss_before)
        .add("rss_after_kib", rss_after)
        .add("hwm_kib", proc_status_kib("VmHWM"));
  }
  if (failure) return fail(*failure + " after " + line.str());
  print_line(line.str());
  return 0;
}

int run_latency(PGconn* conn, const settings& s) {
  auto cpu_before = process_cpu();
  std::vector<int64_t> latencies;
  latencies.reserve(s.n);
  auto failure = receive_until(conn, s.patience, [&](const PGnotify& n) {
    auto now = monotonic_ns();
    latencies.push_back(static_cast<int64_t>(now - std::strtoull(n.extra, nullptr, 10)));
    return latencies.size() < s.n;
  });
  auto cpu = process_cpu() - cpu_before;
  if (failure) return fail(fmt::format("{} after {} notifications", *failure, latencies.size()));
  print_line(json_line{}
                 .add("received", uint64_t{latencies.size()})
                 .add("lat_ns", latencies)
                 .add("cpu_us", cpu.total_us())
                 .str());
  return 0;
}

// Idle: wait on the socket as a real client would, and see what it costs.
int run_idle(PGconn* conn, const settings& s) {
  auto cpu_before = process_cpu();
  auto start = monotonic_ns();
  auto deadline = start + static_cast<uint64_t>(std::chrono::nanoseconds{s.idle_duration}.count());
  pollfd socket{PQsocket(conn), POLLIN, 0};
  for (auto now = start; now < deadline; now = monotonic_ns()) {
    int ready = ::poll(&socket, 1, static_cast<int>((deadline - now) / 1'000'000 + 1));
    if (ready > 0 && PQconsumeInput(conn) == 0) return fail("connection lost: " + last_error(conn));
    while (PGnotify* n = PQnotifies(conn)) PQfreemem(n);
  }
  auto cpu = process_cpu() - cpu_before;
  auto wall_us = (monotonic_ns() - start) / 1000;
  print_line(json_line{}
                 .add("seconds", static_cast<uint64_t>(s.idle_duration.count()))
                 .add("cpu_us", cpu.total_us())
                 .add("wall_us", wall_us)
                 .add("cpu_pct",
                      100.0 * static_cast<double>(cpu.total_us()) / static_cast<double>(wall_us))
                 .str());
  return 0;
}

}  // namespace

int run_raw_client(const settings& s) {
  if (s.kind == workload::w5)
    return fail("w5 measures pgnotify's subscriptions; the raw client has none");
  connection_ptr conn;
  if (auto failure = connect_and_listen(s.uri, s.channel, conn)) return fail(*failure);
  print_line("READY");
  switch (s.kind) {
    case workload::w3:
      return run_latency(conn.get(), s);
    case workload::idle:
      return run_idle(conn.get(), s);
    default:
      return run_stream(conn.get(), s);
  }
}

}  // namespace pgnotify::bench
