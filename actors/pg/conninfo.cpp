#include "conninfo.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "../../messages/errors.hpp"

namespace pgnotify {

namespace {

struct parsed_options {
  std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options{nullptr, &PQconninfoFree};
  std::string error;
};

parsed_options parse(const std::string& conninfo) {
  parsed_options result;
  char* error = nullptr;
  result.options.reset(PQconninfoParse(conninfo.c_str(), &error));
  if (error) {
    result.error = error;
    PQfreemem(error);
    while (!result.error.empty() && result.error.back() == '\n') result.error.pop_back();
  } else if (!result.options) {
    result.error = "out of memory";
  }
  return result;
}

// libpq's parse errors quote the offending input, for a URI all of it, which
// may hold a password: keep quoted keywords ("port"), drop quoted input.
std::string without_quoted_input(const std::string& message) {
  std::string result;
  size_t pos = 0;
  while (pos < message.size()) {
    auto open = message.find('"', pos);
    auto close = open == std::string::npos ? open : message.find('"', open + 1);
    if (close == std::string::npos) break;
    auto quoted = message.substr(open + 1, close - open - 1);
    bool is_keyword = quoted.find_first_not_of("abcdefghijklmnopqrstuvwxyz_=") == std::string::npos;
    result += message.substr(pos, open - pos);
    is_keyword = is_keyword || quoted.size() == 1;  // "]", ":" and the like
    result += is_keyword ? '"' + quoted + '"' : std::string{"(input withheld)"};
    pos = close + 1;
  }
  return result + message.substr(std::min(pos, message.size()));
}

// libpq's key=value quoting: single quotes, with \ and ' escaped by a backslash.
void append_setting(std::string& out, const std::string& key, const std::string& value) {
  if (!out.empty()) out += ' ';
  out += key;
  out += "='";
  for (char c : value) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  out += '\'';
}

}  // namespace

caf::expected<std::string> prepare_conninfo(const std::string& conninfo,
                                            const connection_defaults& defaults) {
  auto parsed = parse(conninfo);
  if (!parsed.options)
    return make_error(errc::invalid_argument,
                      "bad connection string: " + without_quoted_input(parsed.error));
  const std::vector<std::pair<std::string, std::string>> wanted{
      {"connect_timeout", std::to_string(defaults.connect_timeout_s)},
      {"keepalives", "1"},
      {"keepalives_idle", std::to_string(defaults.keepalives_idle_s)},
      {"keepalives_interval", std::to_string(defaults.keepalives_interval_s)},
      {"keepalives_count", std::to_string(defaults.keepalives_count)},
      {"tcp_user_timeout", std::to_string(defaults.tcp_user_timeout_ms)},
      {"application_name", defaults.application_name},
      // LISTEN works on a primary only: a multi-host URI lands there.
      {"target_session_attrs", "read-write"},
  };
  std::string result;
  for (auto* opt = parsed.options.get(); opt->keyword; ++opt) {
    std::string key = opt->keyword;
    if (opt->val) {
      append_setting(result, key, opt->val);
      continue;
    }
    bool from_environment = opt->envvar && std::getenv(opt->envvar);
    if (from_environment) continue;
    for (const auto& [wanted_key, value] : wanted)
      if (key == wanted_key) append_setting(result, key, value);
  }
  return result;
}

caf::timespan connect_timeout_of(const std::string& conninfo) {
  auto parsed = parse(conninfo);
  const char* value = nullptr;
  if (parsed.options)
    for (auto* opt = parsed.options.get(); opt->keyword; ++opt)
      if (std::string{opt->keyword} == "connect_timeout") value = opt->val;
  if (value == nullptr) value = std::getenv("PGCONNECT_TIMEOUT");
  if (value == nullptr) return caf::timespan{0};
  // libpq's reading: an integer; below 2 s means 2 s, 0 or garbage means none.
  auto seconds = std::atoi(value);
  if (seconds <= 0) return caf::timespan{0};
  return std::chrono::seconds(std::max(seconds, 2));
}

std::string redact_conninfo(const std::string& conninfo) {
  auto parsed = parse(conninfo);
  if (!parsed.options) return "(unparsable connection string)";
  std::string result;
  for (auto* opt = parsed.options.get(); opt->keyword; ++opt)
    // libpq marks secrets (password, sslpassword) with the display character '*'.
    if (opt->val && !(opt->dispchar && opt->dispchar[0] == '*'))
      append_setting(result, opt->keyword, opt->val);
  return result.empty() ? "(libpq defaults)" : result;
}

}  // namespace pgnotify
