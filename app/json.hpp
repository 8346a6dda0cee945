// The JSON lines `pgnotify listen` prints (DESIGN.md §4).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <pgnotify/messages/protocol.hpp>

namespace pgnotify::app {

/// Appends `text` as a JSON string literal. Quotes, backslashes and control
/// characters are escaped; valid UTF-8 passes through; each byte that is not
/// part of valid UTF-8 becomes a lone surrogate \udc80-\udcff (the convention
/// of Python's "surrogateescape"), so no payload is ever lost or emitted raw:
/// json.loads(line)["payload"].encode("utf-8", "surrogateescape") gives back
/// the exact bytes.
void append_json_string(std::string& out, std::string_view text);

/// "2026-11-27T03:00:00.123456Z"
std::string utc_timestamp(std::chrono::system_clock::time_point when);

std::string notification_event(const notification& n, std::chrono::system_clock::time_point at);
/// A batch's lines, each ended by '\n', all with the time `at`: exactly the
/// notification_event lines, formatted into one string for one write.
std::string notification_lines(const notification_batch& batch,
                               std::chrono::system_clock::time_point at);
std::string reconnected_event(uint64_t generation);
std::string lagged_event(const lagged& msg);

/// {"event":"stats",...}: counters and connection state, for --stats-interval.
std::string stats_event(const bus_stats& stats, const bus_status& status);

/// The `pgnotify status` answer.
std::string status_json(const bus_status& status, const std::vector<std::string>& channels,
                        const bus_stats& stats);

}  // namespace pgnotify::app
