// pgnotify-bench: one client of a benchmark workload (DESIGN.md §5, issue 4).
//   WORKLOAD=w1 N=200000 CHANNEL=c PGURI=postgresql://... pgnotify-bench [--client pgnotify|raw]
// stdout carries READY and then one JSON line, nothing else; logs go to stderr.
#include <fmt/format.h>

#include "clients.hpp"

int main(int argc, char** argv) {
  pgnotify::bench::settings settings;
  if (auto problem = pgnotify::bench::parse_settings(argc, argv, settings)) {
    fmt::print(stderr,
               "pgnotify-bench: {}\n"
               "usage: [PGURI=...] [WORKLOAD=w1|w2|w3|w4|w5|idle] [N=...] [K=...] [CHANNEL=...]\n"
               "       pgnotify-bench [--client pgnotify|raw] [--CAF.OPTION=VALUE...]\n",
               *problem);
    return 2;
  }
  if (settings.client == pgnotify::bench::client_kind::raw)
    return pgnotify::bench::run_raw_client(settings);
  return pgnotify::bench::run_pgnotify_client(settings);
}
