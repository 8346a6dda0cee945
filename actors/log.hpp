// pgnotify's logger: spdlog, named "pgnotify", writing to stderr unless the
// application installs its own (stdout may carry the application's data).
#pragma once

#include <memory>

#include <spdlog/logger.h>

namespace pgnotify {

/// The logger every pgnotify actor writes to.
std::shared_ptr<spdlog::logger> logger();

/// Replaces it, e.g. to change the sink or the level (set_level works in place too).
void set_logger(std::shared_ptr<spdlog::logger> logger);

}  // namespace pgnotify
