// The one JSON line a client prints at the end: a flat object built field by field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgnotify::bench {

class json_line {
 public:
  json_line& add(std::string_view key, uint64_t value);
  json_line& add(std::string_view key, double value);
  json_line& add(std::string_view key, bool value);
  json_line& add(std::string_view key, std::string_view text);
  // Without it a string literal would pick the bool overload.
  json_line& add(std::string_view key, const char* text) {
    return add(key, std::string_view{text});
  }
  json_line& add(std::string_view key, const std::vector<int64_t>& values);

  /// The object, without a trailing newline.
  std::string str() const { return "{" + fields_ + "}"; }

 private:
  void key(std::string_view name);
  std::string fields_;
};

}  // namespace pgnotify::bench
