// Which channel names the bus accepts, checked before any SQL is built.
#pragma once

#include <string_view>

#include <caf/error.hpp>

namespace pgnotify {

/// PostgreSQL identifiers are at most NAMEDATALEN - 1 bytes. LISTEN silently
/// truncates a longer name while pg_notify() rejects it, so they could never match.
constexpr size_t max_channel_bytes = 63;

/// No error when `name` can be LISTENed on exactly as given: 1 to 63 bytes of
/// valid UTF-8 without NUL. Otherwise an errc::invalid_channel error that says why.
/// Quotes, spaces, uppercase and any other characters are fine: names are
/// always sent as quoted identifiers.
caf::error validate_channel_name(std::string_view name);

}  // namespace pgnotify
