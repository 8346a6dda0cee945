#include "errors.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace pgnotify {

std::string to_string(errc x) {
  switch (x) {
    case errc::invalid_channel:
      return "invalid_channel";
    case errc::unknown_channel:
      return "unknown_channel";
    case errc::invalid_argument:
      return "invalid_argument";
    case errc::gave_up:
      return "gave_up";
    case errc::not_connected:
      return "not_connected";
    case errc::listen_failed:
      return "listen_failed";
    case errc::protocol_mismatch:
      return "protocol_mismatch";
  }
  return "unknown_error";
}

caf::error make_error(errc x) {
  return {static_cast<uint8_t>(x), error_category};
}

caf::error make_error(errc x, std::string detail) {
  return {static_cast<uint8_t>(x), error_category, caf::make_message(std::move(detail))};
}

std::string render(const caf::error& x) {
  if (!x) return "no error";
  if (x.category() != error_category) return caf::to_string(x);
  auto text = to_string(static_cast<errc>(x.code()));
  const auto& ctx = x.context();
  if (ctx.match_elements<std::string>()) {
    text += ": ";
    text += ctx.get_as<std::string>(0);
  }
  return text;
}

}  // namespace pgnotify
