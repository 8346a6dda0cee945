#include "json.hpp"

#include <ctime>

#include <fmt/format.h>

#include <pgnotify/messages/utf8.hpp>

namespace pgnotify::app {

namespace {

/// Printable ASCII other than '"' and '\\': copied as it is.
bool plain(unsigned char c) {
  return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (size_t pos = 0; pos < text.size();) {
    // Runs of plain characters (most payloads are nothing else) go in at once.
    auto run = pos;
    while (run < text.size() && plain(static_cast<unsigned char>(text[run]))) ++run;
    if (run > pos) {
      out.append(text.data() + pos, run - pos);
      pos = run;
      continue;
    }
    auto c = static_cast<unsigned char>(text[pos]);
    if (c >= 0x80) {
      auto length = utf8_sequence_length(text, pos);
      if (length > 0) {
        out.append(text.substr(pos, length));
        pos += length;
      } else {
        out += "\\udc";
        out += hex[c >> 4];
        out += hex[c & 0xF];
        ++pos;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++pos;
  }
  out += '"';
}

std::string utc_timestamp(std::chrono::system_clock::time_point when) {
  auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(when);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(when - seconds).count();
  std::time_t t = std::chrono::system_clock::to_time_t(seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, micros);
}

namespace {

template <class Integer>
void append_int(std::string& out, Integer value) {
  fmt::format_int digits{value};
  out.append(digits.data(), digits.size());
}

void append_notification_event(std::string& out, const notification& n,
                               std::string_view timestamp) {
  out += R"({"event":"notification","channel":)";
  append_json_string(out, n.channel);
  out += R"(,"payload":)";
  append_json_string(out, n.payload);
  // Appended piece by piece: a format string per line costs more than the rest.
  out += R"(,"pid":)";
  append_int(out, n.backend_pid);
  out += R"(,"generation":)";
  append_int(out, n.generation);
  out += R"(,"time":")";
  out += timestamp;
  out += R"("})";
}

}  // namespace

std::string notification_event(const notification& n, std::chrono::system_clock::time_point at) {
  std::string out;
  append_notification_event(out, n, utc_timestamp(at));
  return out;
}

std::string notification_lines(const notification_batch& batch,
                               std::chrono::system_clock::time_point at) {
  auto timestamp = utc_timestamp(at);
  std::string out;
  // Most payloads are short: one reservation usually covers the whole batch.
  size_t estimate = 0;
  for (const auto& n : batch) estimate += 128 + n.channel.size() + n.payload.size();
  out.reserve(estimate);
  for (const auto& n : batch) {
    append_notification_event(out, n, timestamp);
    out += '\n';
  }
  return out;
}

std::string reconnected_event(uint64_t generation) {
  return fmt::format(R"({{"event":"reconnected","generation":{}}})", generation);
}

std::string lagged_event(const lagged& msg) {
  std::string out = R"({"event":"lagged","channel":)";
  append_json_string(out, msg.channel);
  out += fmt::format(R"(,"missed":{}}})", msg.missed);
  return out;
}

std::string stats_event(const bus_stats& stats, const bus_status& status) {
  return fmt::format(
      R"({{"event":"stats","received":{},"delivered":{},"missed":{},"reconnects":{},)"
      R"("generation":{},"state":"{}","queue_usage":{},"subscriptions":{}}})",
      stats.received, stats.delivered, stats.missed,
      stats.generation > 0 ? stats.generation - 1 : 0, status.generation, to_string(status.state),
      status.queue_usage, stats.subscriptions.size());
}

std::string status_json(const bus_status& status, const std::vector<std::string>& channels,
                        const bus_stats& stats) {
  std::string out = fmt::format(R"({{"state":"{}","generation":{},"channels":[)",
                                to_string(status.state), status.generation);
  for (size_t i = 0; i < channels.size(); ++i) {
    if (i > 0) out += ',';
    append_json_string(out, channels[i]);
  }
  out += R"(],"last_error":)";
  append_json_string(out, status.last_error);
  out += fmt::format(
      R"(,"failed_attempts":{},"subscriptions":{},"received":{},"delivered":{},"missed":{},)"
      R"("rejected_messages":{},"bad_acks":{},"in_flight":[)",
      status.failed_attempts, stats.subscriptions.size(), stats.received, stats.delivered,
      stats.missed, stats.rejected_messages, stats.bad_acks);
  for (size_t i = 0; i < stats.subscriptions.size(); ++i)
    out += fmt::format("{}{}", i > 0 ? "," : "", stats.subscriptions[i].in_flight);
  out += "]}";
  return out;
}

}  // namespace pgnotify::app
