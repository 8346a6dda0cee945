// pgnotify-bench-sender: sends a workload's N distinct notifications on CHANNEL
// (DESIGN.md §5) and prints the CLOCK_MONOTONIC ns at which its last commit returned.
//   w3:   one at a time, 1 ms apart, each payload its send time (CLOCK_MONOTONIC ns)
//   else: SELECT pg_notify(ch, lpad(g::text, 64, '0')) FROM generate_series(a, b) g,
//         1,000 per statement, each statement its own transaction, g = 1..N
// Environment: PGURI (empty: PG* variables), WORKLOAD, N, CHANNEL.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "measure.hpp"

namespace {

constexpr uint64_t per_statement = 1'000;
constexpr uint64_t w3_interval_ns = 1'000'000;

struct connection_closer {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};

struct result_clearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using result_ptr = std::unique_ptr<PGresult, result_clearer>;

std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// Runs `sql` with text parameters; exits with the server's message on failure.
void exec(PGconn* conn, const char* sql, std::initializer_list<const char*> params) {
  result_ptr result{PQexecParams(conn, sql, static_cast<int>(params.size()), nullptr,
                                 params.begin(), nullptr, nullptr, 0)};
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    fmt::print(stderr, "pgnotify-bench-sender: {}", PQerrorMessage(conn));
    std::exit(1);
  }
}

// The client's defaults (bench/settings.cpp), for N unset: issue 4's sizes.
const char* default_count(const std::string& workload) {
  if (workload == "w3") return "2000";
  if (workload == "w4") return "1000000";
  if (workload == "idle") return "0";
  return "200000";
}

void sleep_until(uint64_t deadline_ns) {
  timespec ts{static_cast<time_t>(deadline_ns / 1'000'000'000),
              static_cast<long>(deadline_ns % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
  }
}

}  // namespace

int main() {
  using pgnotify::bench::monotonic_ns;
  auto workload = env_or("WORKLOAD", "w1");
  auto channel = env_or("CHANNEL", "pgnotify_bench");
  uint64_t count = std::strtoull(env_or("N", default_count(workload)).c_str(), nullptr, 10);
  std::unique_ptr<PGconn, connection_closer> conn{PQconnectdb(env_or("PGURI", "").c_str())};
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    fmt::print(stderr, "pgnotify-bench-sender: connect: {}", PQerrorMessage(conn.get()));
    return 1;
  }
  if (workload == "w3") {
    // Absolute deadlines: the 1 ms spacing does not drift with the statement time.
    auto next = monotonic_ns();
    for (uint64_t i = 0; i < count; ++i, next += w3_interval_ns) {
      sleep_until(next);
      auto payload = std::to_string(monotonic_ns());
      exec(conn.get(), "SELECT pg_notify($1, $2)", {channel.c_str(), payload.c_str()});
    }
  } else {
    for (uint64_t first = 1; first <= count; first += per_statement) {
      auto last = std::to_string(std::min(count, first + per_statement - 1));
      auto from = std::to_string(first);
      exec(conn.get(),
           "SELECT pg_notify($1, lpad(g::text, 64, '0')) FROM generate_series($2::bigint, "
           "$3::bigint) g",
           {channel.c_str(), from.c_str(), last.c_str()});
    }
  }
  fmt::print("{}\n", monotonic_ns());
  return 0;
}
