#include "json_line.hpp"

#include <fmt/format.h>

namespace pgnotify::bench {

namespace {

// Error messages may quote libpq or the server: escape what JSON requires.
std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\')
      out += {'\\', static_cast<char>(c)};
    else if (c < 0x20)
      out += fmt::format("\\u{:04x}", c);
    else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

}  // namespace

void json_line::key(std::string_view name) {
  if (!fields_.empty()) fields_ += ',';
  fields_ += quoted(name);
  fields_ += ':';
}

json_line& json_line::add(std::string_view name, uint64_t value) {
  key(name);
  fields_ += std::to_string(value);
  return *this;
}

json_line& json_line::add(std::string_view name, double value) {
  key(name);
  fields_ += fmt::format("{:.3f}", value);
  return *this;
}

json_line& json_line::add(std::string_view name, bool value) {
  key(name);
  fields_ += value ? "true" : "false";
  return *this;
}

json_line& json_line::add(std::string_view name, std::string_view text) {
  key(name);
  fields_ += quoted(text);
  return *this;
}

json_line& json_line::add(std::string_view name, const std::vector<int64_t>& values) {
  key(name);
  fields_ += fmt::format("[{}]", fmt::join(values, ","));
  return *this;
}

}  // namespace pgnotify::bench
