#include "channel_name.hpp"

#include <fmt/format.h>

#include "errors.hpp"
#include "utf8.hpp"

namespace pgnotify {

caf::error validate_channel_name(std::string_view name) {
  auto reject = [&](std::string_view why) {
    return make_error(errc::invalid_channel, fmt::format("channel name {}", why));
  };
  if (name.empty()) return reject("is empty");
  if (name.size() > max_channel_bytes)
    return reject(
        fmt::format("is {} bytes long; at most {} are allowed", name.size(), max_channel_bytes));
  if (name.find('\0') != std::string_view::npos) return reject("contains a NUL byte");
  if (!is_valid_utf8(name)) return reject("is not valid UTF-8");
  return caf::none;
}

}  // namespace pgnotify
