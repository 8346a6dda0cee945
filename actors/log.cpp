#include "log.hpp"

#include <atomic>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace pgnotify {

namespace {

std::shared_ptr<spdlog::logger>& current() {
  static auto instance = [] {
    auto result = std::make_shared<spdlog::logger>(
        "pgnotify", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    result->set_level(spdlog::level::info);
    return result;
  }();
  return instance;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger() {
  return std::atomic_load(&current());
}

void set_logger(std::shared_ptr<spdlog::logger> logger) {
  std::atomic_store(&current(), std::move(logger));
}

}  // namespace pgnotify
