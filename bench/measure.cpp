#include "measure.hpp"

#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace pgnotify::bench {

namespace {

uint64_t to_us(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1'000'000 + static_cast<uint64_t>(tv.tv_usec);
}

}  // namespace

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

cpu_usage process_cpu() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return {to_us(usage.ru_utime), to_us(usage.ru_stime)};
}

cpu_usage operator-(const cpu_usage& later, const cpu_usage& earlier) {
  return {later.user_us - earlier.user_us, later.system_us - earlier.system_us};
}

uint64_t proc_status_kib(const std::string& field) {
  std::ifstream status{"/proc/self/status"};
  std::string line;
  while (std::getline(status, line)) {
    if (line.compare(0, field.size(), field) != 0 || line.size() <= field.size() ||
        line[field.size()] != ':')
      continue;
    std::istringstream value{line.substr(field.size() + 1)};
    uint64_t kib = 0;
    value >> kib;
    return kib;
  }
  return 0;
}

void print_line(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace pgnotify::bench
