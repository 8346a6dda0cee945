// The program's JSON lines: every payload escaped, nothing lost.
#include <doctest/doctest.h>

#include "json.hpp"

using namespace pgnotify;
using namespace pgnotify::app;

namespace {
std::string json(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}
}  // namespace

TEST_CASE("json: quotes and backslashes and control characters are escaped") {
  CHECK(json("") == R"("")");
  CHECK(json(R"(say "hi" \o/)") == R"("say \"hi\" \\o/")");
  CHECK(json("a\nb\rc\td\be\ff") == R"("a\nb\rc\td\be\ff")");
  CHECK(json(std::string("\x00\x01\x1f\x7f", 4)) == R"("\u0000\u0001\u001f\u007f")");
}

TEST_CASE("json: valid UTF-8 passes through and invalid bytes become lone surrogates") {
  CHECK(json("ünï ✓ 😀") == "\"ünï ✓ 😀\"");
  CHECK(json("a\xFF"
             "b") == R"("a\udcffb")");
  CHECK(json("\xC3") == R"("\udcc3")");                      // truncated sequence
  CHECK(json("\xED\xA0\x80") == R"("\udced\udca0\udc80")");  // encoded surrogate
}

TEST_CASE("json: event lines match DESIGN.md") {
  notification n{"c", "p", 123, 1};
  auto at = std::chrono::system_clock::time_point{std::chrono::microseconds{1795748400123456}};
  CHECK(
      notification_event(n, at) ==
      R"({"event":"notification","channel":"c","payload":"p","pid":123,"generation":1,"time":"2026-11-27T03:00:00.123456Z"})");
  CHECK(reconnected_event(2) == R"({"event":"reconnected","generation":2})");
  CHECK(lagged_event(lagged{"c", 17}) == R"({"event":"lagged","channel":"c","missed":17})");
}

TEST_CASE("json: a batch is its notification lines each ended by a newline") {
  auto at = std::chrono::system_clock::time_point{std::chrono::microseconds{1795748400123456}};
  auto batch = notification_batch::from_wire({{"c", "p", 123},
                                              {"Weird \"Name\"", "line\nbreak \xFF \u2713", -1},
                                              {"c", std::string(7999, 'x'), 2147483647}},
                                             18446744073709551615u);
  std::string expected;
  for (const auto& n : batch) expected += notification_event(n, at) + "\n";
  CHECK(notification_lines(batch, at) == expected);
  CHECK(notification_lines({}, at).empty());
}
