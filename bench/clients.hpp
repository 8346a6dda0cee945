// The two clients of a workload. Each connects and LISTENs, prints READY, then
// receives and prints exactly one JSON line; the return value is the exit code.
// On failure the JSON line carries an "error" field and the code is 1.
#pragma once

#include "settings.hpp"

namespace pgnotify::bench {

/// A plain libpq poll()/PQconsumeInput/PQnotifies loop: the ceiling.
int run_raw_client(const settings& s);

/// pgnotify's bus and subscriber actors, as an application would use them.
int run_pgnotify_client(const settings& s);

}  // namespace pgnotify::bench
