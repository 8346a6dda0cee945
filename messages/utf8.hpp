// UTF-8 well-formedness (RFC 3629: no overlongs, no surrogates, at most U+10FFFF).
#pragma once

#include <cstddef>
#include <string_view>

namespace pgnotify {

/// The length (1 to 4) of the well-formed UTF-8 sequence starting at `text[pos]`,
/// or 0 if the bytes there are not one.
size_t utf8_sequence_length(std::string_view text, size_t pos);

bool is_valid_utf8(std::string_view text);

}  // namespace pgnotify
