// What the benchmark programs measure about themselves: the monotonic clock
// (shared by client and sender, so their timestamps compare), this process's
// CPU time and resident memory, plus the one way they write to stdout.
#pragma once

#include <cstdint>
#include <string>

namespace pgnotify::bench {

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes on this machine.
uint64_t monotonic_ns();

/// CPU time this process has used so far (all threads), in microseconds.
struct cpu_usage {
  uint64_t user_us = 0;
  uint64_t system_us = 0;
  uint64_t total_us() const { return user_us + system_us; }
};
cpu_usage process_cpu();
cpu_usage operator-(const cpu_usage& later, const cpu_usage& earlier);

/// A field of /proc/self/status in KiB ("VmRSS", "VmHWM"); 0 if it is missing.
uint64_t proc_status_kib(const std::string& field);

/// Writes `line` and a newline to stdout and flushes: the driver reads stdout
/// line by line while the program still runs.
void print_line(const std::string& line);

}  // namespace pgnotify::bench
