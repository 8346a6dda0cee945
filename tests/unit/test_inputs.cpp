// Pure functions that guard the edges: channel names, UTF-8, connection strings,
// the backoff sequence with jitter, error rendering.
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <pgnotify/actors/backoff.hpp>
#include <pgnotify/actors/pg/conninfo.hpp>
#include <pgnotify/messages/channel_name.hpp>
#include <pgnotify/messages/errors.hpp>
#include <pgnotify/messages/utf8.hpp>

using namespace std::chrono_literals;
using namespace pgnotify;

TEST_CASE("channel names: hostile but valid names are accepted as they are") {
  for (std::string name :
       std::vector<std::string>{"plain", "UPPER", "with space", "quote\"inside", "it's",
                                "Weird \"Name\"; DROP TABLE t; --", "ünïcødé ✓", "\xF0\x9F\x90\x98",
                                std::string(63, 'x')})
    CHECK_MESSAGE(!validate_channel_name(name), name);
}

TEST_CASE("channel names: invalid names are refused with a reason") {
  CHECK(render(validate_channel_name("")) == "invalid_channel: channel name is empty");
  CHECK(render(validate_channel_name(std::string(64, 'x'))) ==
        "invalid_channel: channel name is 64 bytes long; at most 63 are allowed");
  // 21 three-byte characters = 63 bytes is fine; 22 = 66 bytes is not.
  std::string euros;
  for (int i = 0; i < 21; ++i) euros += "€";
  CHECK(!validate_channel_name(euros));
  CHECK(validate_channel_name(euros + "€") == make_error(errc::invalid_channel));
  CHECK(render(validate_channel_name(std::string("a\0b", 3))) ==
        "invalid_channel: channel name contains a NUL byte");
  CHECK(render(validate_channel_name("bad\xFF")) ==
        "invalid_channel: channel name is not valid UTF-8");
}

TEST_CASE("utf8: well-formed sequences only") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("ascii"));
  CHECK(is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));  // é € 😀
  CHECK_FALSE(is_valid_utf8("\xC0\xAF"));                        // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xE0\x80\xAF"));                    // overlong
  CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));                    // surrogate U+D800
  CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));                // above U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xE2\x82"));                        // truncated
  CHECK_FALSE(is_valid_utf8("\x80"));                            // lone continuation
  CHECK(utf8_sequence_length("a\xE2\x82\xAC", 1) == 3);
}

TEST_CASE("conninfo: defaults are added while explicit settings and secrets are kept") {
  auto prepared =
      prepare_conninfo("postgresql://alice:s3cr%27et@db.example:6543/app?connect_timeout=3");
  REQUIRE(prepared);
  CHECK(prepared->find("host='db.example'") != std::string::npos);
  CHECK(prepared->find("port='6543'") != std::string::npos);
  CHECK(prepared->find("password='s3cr\\'et'") != std::string::npos);
  CHECK(prepared->find("connect_timeout='3'") != std::string::npos);
  CHECK(prepared->find("keepalives_idle='10'") != std::string::npos);
  CHECK(prepared->find("tcp_user_timeout='20000'") != std::string::npos);
  CHECK(prepared->find("application_name='pgnotify'") != std::string::npos);
}

TEST_CASE("conninfo: environment variables win over our defaults") {
  setenv("PGCONNECT_TIMEOUT", "7", 1);
  auto prepared = prepare_conninfo("");
  unsetenv("PGCONNECT_TIMEOUT");
  REQUIRE(prepared);
  CHECK(prepared->find("connect_timeout") == std::string::npos);
  CHECK(prepared->find("keepalives='1'") != std::string::npos);
}

TEST_CASE("conninfo: a bad string is a clear error and redaction drops the password") {
  auto bad = prepare_conninfo("host=localhost port");
  REQUIRE(!bad);
  CHECK(bad.error() == make_error(errc::invalid_argument));
  CHECK(render(bad.error()).find("bad connection string: missing \"=\" after \"port\"") !=
        std::string::npos);
  // libpq quotes a malformed URI in its message: the password must not follow.
  for (std::string malformed :
       {"postgresql://alice:hunter2@[::1/app", "postgresql://alice:hunter2@db:5432/app?x=%zz",
        "postgresql://alice:hunter2@db/app?x=%hu"}) {
    auto refused = prepare_conninfo(malformed);
    REQUIRE(!refused);
    CHECK_MESSAGE(render(refused.error()).find("hunter2") == std::string::npos,
                  render(refused.error()));
    CHECK(render(refused.error()).find("bad connection string") != std::string::npos);
  }
  auto uri = redact_conninfo("postgresql://alice:hunter2@db/app");
  CHECK(uri.find("hunter2") == std::string::npos);
  CHECK(uri.find("user='alice'") != std::string::npos);
  auto kv = redact_conninfo("host=db password='hunter2' user=bob");
  CHECK(kv.find("hunter2") == std::string::npos);
  CHECK(kv.find("user='bob'") != std::string::npos);
  CHECK(redact_conninfo("postgresql://a:hunter2@db:notaport/x").find("hunter2") ==
        std::string::npos);
}

TEST_CASE("backoff: jitter stays within (1 - j) * d to d and keeps doubling") {
  backoff_settings settings;
  settings.jitter = 0.5;
  backoff delays{settings};
  caf::timespan nominal = 500ms;
  for (int i = 0; i < 12; ++i) {
    auto d = delays.next();
    CHECK(d <= nominal);
    CHECK(d >= nominal / 2);
    nominal = std::min<caf::timespan>(nominal * 2, 30s);
  }
  delays.reset();
  CHECK(delays.next() <= caf::timespan{500ms});
}
