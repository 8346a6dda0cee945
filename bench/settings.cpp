#include "settings.hpp"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include <pgnotify/actors/bus.hpp>

namespace pgnotify::bench {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string{value} : fallback;
}

// An unsigned number from the environment, or `fallback` when it is unset.
std::optional<std::string> env_number(const char* name, uint64_t max, uint64_t fallback,
                                      uint64_t& out) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') {
    out = fallback;
    return std::nullopt;
  }
  char* end = nullptr;
  errno = 0;
  auto value = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || *text == '-' || value > max)
    return fmt::format("{}={} is not a number from 0 to {}", name, text, max);
  out = value;
  return std::nullopt;
}

std::optional<workload> parse_workload(const std::string& name) {
  if (name == "w1") return workload::w1;
  if (name == "w2") return workload::w2;
  if (name == "w3") return workload::w3;
  if (name == "w4") return workload::w4;
  if (name == "w5") return workload::w5;
  if (name == "idle") return workload::idle;
  return std::nullopt;
}

// The sizes issue 4 sets for each workload, used when N or K is not given.
uint64_t default_n(workload kind) {
  switch (kind) {
    case workload::w3:
      return 2'000;
    case workload::w4:
      return 1'000'000;
    case workload::idle:
      return 0;
    default:
      return 200'000;
  }
}

uint64_t default_k(workload kind) {
  switch (kind) {
    case workload::w2:
      return 100;
    case workload::w5:
      return 10'000;
    default:
      return 1;
  }
}

}  // namespace

std::string to_string(workload kind) {
  switch (kind) {
    case workload::w1:
      return "w1";
    case workload::w2:
      return "w2";
    case workload::w3:
      return "w3";
    case workload::w4:
      return "w4";
    case workload::w5:
      return "w5";
    case workload::idle:
      return "idle";
  }
  return "?";
}

std::optional<std::string> parse_settings(int argc, char** argv, settings& out) {
  std::string client = "pgnotify";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--client" && i + 1 < argc)
      client = argv[++i];
    else if (arg.rfind("--client=", 0) == 0)
      client = arg.substr(9);
    else if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos)
      out.caf_options.push_back(arg);
    else
      return "unknown argument: " + arg;
  }
  if (client == "pgnotify")
    out.client = client_kind::pgnotify;
  else if (client == "raw")
    out.client = client_kind::raw;
  else
    return "--client must be pgnotify or raw, not " + client;
  if (out.client == client_kind::raw && !out.caf_options.empty())
    return "CAF options (" + out.caf_options.front() + ") apply to the pgnotify client only";

  auto kind = parse_workload(env_or("WORKLOAD", "w1"));
  if (!kind) return "WORKLOAD must be w1, w2, w3, w4, w5 or idle";
  out.kind = *kind;
  auto subscriber = env_or("SUBSCRIBER", "helper");
  if (subscriber == "helper")
    out.subscriber = subscriber_kind::helper;
  else if (subscriber == "actor")
    out.subscriber = subscriber_kind::actor;
  else
    return "SUBSCRIBER must be helper or actor";
  out.uri = env_or("PGURI", "");
  out.channel = env_or("CHANNEL", "pgnotify_bench");
  if (out.channel.size() > 63) return "CHANNEL must be at most 63 bytes";

  constexpr uint64_t max_u32 = std::numeric_limits<uint32_t>::max();
  uint64_t n = 0, k = 0, bound = 0, channels = 0, idle = 0, patience = 0, max_batch = 0;
  for (auto err :
       {env_number("N", max_u32, default_n(out.kind), n),
        env_number("K", max_u32, default_k(out.kind), k),
        env_number("STALLED_BOUND", max_u32, 256, bound),
        env_number("MAX_BATCH", max_u32, bus_settings{}.max_batch, max_batch),
        env_number("CHANNELS", 100'000, 1'000, channels),
        env_number("IDLE_SECONDS", 3'600, 10, idle), env_number("TIMEOUT_S", 3'600, 120, patience)})
    if (err) return err;
  if (k == 0 || bound == 0 || patience == 0 || max_batch == 0)
    return "K, STALLED_BOUND, MAX_BATCH and TIMEOUT_S must be >= 1";
  out.max_batch = max_batch;
  if (n == 0 && out.kind != workload::idle) return "N must be >= 1";
  out.n = n;
  out.k = static_cast<uint32_t>(k);
  out.stalled_bound = static_cast<uint32_t>(bound);
  out.other_channels = static_cast<uint32_t>(channels);
  out.idle_duration = std::chrono::seconds{idle};
  out.patience = std::chrono::seconds{patience};
  return std::nullopt;
}

std::string sequence_payload(uint64_t sequence) {
  return fmt::format("{:0>64}", sequence);
}

}  // namespace pgnotify::bench
