// pgnotify's error codes, as CAF errors of the category "pgnotify".
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace pgnotify {

enum class errc : uint8_t {
  invalid_channel = 1,  ///< empty, over 63 bytes, NUL, or not UTF-8
  unknown_channel,      ///< valid, but not one of the bus's channels
  invalid_argument,     ///< e.g. a subscription bound of 0
  gave_up,              ///< the listener reached its limit of failed attempts
  not_connected,        ///< the request needs a connection and there is none now
  listen_failed,        ///< the server refused LISTEN on a dynamic channel
  protocol_mismatch,    ///< a node of another pgnotify protocol version
};

constexpr caf::atom_value error_category = caf::atom("pgnotify");

std::string to_string(errc x);

caf::error make_error(errc x);

/// An error whose rendering includes `detail` (say, the offending channel name).
caf::error make_error(errc x, std::string detail);

/// Renders any CAF error for a human; pgnotify errors read "invalid_channel: <detail>".
std::string render(const caf::error& x);

}  // namespace pgnotify
