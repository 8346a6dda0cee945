// The program's settings: the shipped config file documents the real defaults,
// and the command line overrides the file.
#include <doctest/doctest.h>

#include "options.hpp"

using namespace std::chrono_literals;
using namespace pgnotify;
using namespace pgnotify::app;

namespace {
const std::string shipped_config = std::string{PGNOTIFY_SOURCE_DIR} + "/config/pgnotify.ini";
}

TEST_CASE("options: config/pgnotify.ini states exactly the built-in defaults") {
  app_config from_file;
  parse_command_line(from_file, {"listen", "--config=" + shipped_config, "c"});
  app_config from_nothing;
  parse_command_line(from_nothing, {"listen", "c"});
  auto file = read_settings(from_file, {"c"});
  auto builtin = read_settings(from_nothing, {"c"});
  CHECK(file.bus.default_bound == builtin.bus.default_bound);
  CHECK(file.listen_bound == builtin.listen_bound);
  CHECK(file.bus.max_batch == builtin.bus.max_batch);
  CHECK(file.bus.backoff.initial == builtin.bus.backoff.initial);
  CHECK(file.bus.backoff.max == builtin.bus.backoff.max);
  CHECK(file.bus.backoff.jitter == builtin.bus.backoff.jitter);
  CHECK(file.bus.backoff.stable_after == builtin.bus.backoff.stable_after);
  CHECK(file.bus.backoff.min_uptime == builtin.bus.backoff.min_uptime);
  CHECK(file.bus.health.interval == builtin.bus.health.interval);
  CHECK(file.bus.health.timeout == builtin.bus.health.timeout);
  CHECK(file.bus.max_failed_attempts == builtin.bus.max_failed_attempts);
  CHECK(file.stats_interval == builtin.stats_interval);
  CHECK(file.log_level == builtin.log_level);
  CHECK(file.bus.channels == std::vector<std::string>{"c"});
  CHECK(file.remote_timeout == builtin.remote_timeout);
  CHECK(file.port == builtin.port);
  CHECK(file.bind_address == builtin.bind_address);
  CHECK(file.dynamic_channels == builtin.dynamic_channels);
  CHECK(file.tls.handshake_timeout == builtin.tls.handshake_timeout);
  CHECK(!file.tls.enabled());
  // And the built-in defaults are the documented ones: listen's bound is the
  // program's, serve's (bus.default_bound) the library's.
  CHECK(builtin.listen_bound == 65536);
  CHECK(builtin.bus.default_bound == 256);
  CHECK(builtin.bus.max_batch == 1024);
  CHECK(builtin.bus.backoff.initial == caf::timespan{500ms});
  CHECK(builtin.bus.backoff.max == caf::timespan{30s});
}

TEST_CASE("options: the command line overrides the file and both forms of value work") {
  app_config cfg;
  auto inv = parse_command_line(cfg, {"--config", shipped_config, "listen", "--bound", "9",
                                      "--backoff-max=2s", "--channels=x,y", "--max-batch=64", "a"});
  CHECK(inv.command == "listen");
  CHECK(inv.arguments == std::vector<std::string>{"a"});
  auto s = read_settings(cfg, inv.arguments);
  CHECK(s.bus.default_bound == 9);  // a given bound is listen's and serve's
  CHECK(s.listen_bound == 9);
  CHECK(s.bus.max_batch == 64);
  CHECK(s.bus.backoff.max == caf::timespan{2s});
  CHECK(s.bus.channels == std::vector<std::string>{"a", "x", "y"});
}

TEST_CASE("options: mistakes name what is wrong") {
  auto message = [](std::vector<std::string> args) -> std::string {
    try {
      app_config cfg;
      auto inv = parse_command_line(cfg, args);
      read_settings(cfg, inv.arguments);
    } catch (const usage_error& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK(message({"listen", "--nope=1"}) == "unknown option --nope");
  CHECK(message({"listen", "--bound=-3"}) == "bad value for --bound: '-3' (expected uint64)");
  CHECK(message({"listen", "--bound=0"}) == "bound must be 1 to 4294967295");
  CHECK(message({"listen", "--max-batch=0"}) == "max-batch must be at least 1");
  CHECK(message({"listen", "--backoff-jitter=2"}) == "backoff-jitter must be 0 to 1");
  CHECK(message({"listen", "--log-level=loud"}) == "bad value for log-level: 'loud'");
  CHECK(message({"listen", "--uri"}) == "option --uri needs a value");
  CHECK(message({"listen", "-x"}) == "unknown option -x");
  CHECK(message({"listen", "--config=/nonexistent.ini"}).find("cannot read config file") == 0);
}

TEST_CASE("options: a flag takes no separate value and serve's options are read") {
  app_config cfg;
  auto inv = parse_command_line(
      cfg, {"serve", "--dynamic-channels", "a", "--bind=0.0.0.0", "--tls-cert=c.pem", "--tls-key",
            "k.pem", "--tls-ca=ca.pem", "--tls-handshake-timeout=2s"});
  CHECK(inv.arguments == std::vector<std::string>{"a"});  // not the flag's value
  auto s = read_settings(cfg, inv.arguments);
  CHECK(s.dynamic_channels);
  CHECK(s.bind_address == "0.0.0.0");
  CHECK(s.tls.enabled());
  CHECK(s.tls.cert == "c.pem");
  CHECK(s.tls.key == "k.pem");
  CHECK(s.tls.ca == "ca.pem");
  CHECK(s.tls.handshake_timeout == caf::timespan{2s});
  CHECK_NOTHROW(check_serve_settings(s));
  app_config off;
  parse_command_line(off, {"serve", "--dynamic-channels=false", "a"});
  CHECK(!read_settings(off, {"a"}).dynamic_channels);
}

TEST_CASE("options: loopback is 127.0.0.0/8 and ::1 and localhost") {
  for (auto address : {"127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "localhost", "LocalHost",
                       "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"})
    CHECK_MESSAGE(is_loopback(address), address);
  for (auto address :
       {"0.0.0.0", "::", "", "10.0.0.1", "128.0.0.1", "126.255.255.255", "192.168.1.1", "::2",
        "fe80::1", "::ffff:10.0.0.1", "localhost.", "example.org", "127.1", " 127.0.0.1"})
    CHECK_MESSAGE(!is_loopback(address), address);
}

TEST_CASE("options: serve refuses a non-loopback bind without TLS and names the TLS options") {
  auto message = [](std::vector<std::string> args) -> std::string {
    try {
      app_config cfg;
      auto inv = parse_command_line(cfg, args);
      check_serve_settings(read_settings(cfg, inv.arguments));
    } catch (const usage_error& e) {
      return e.what();
    }
    return "no error";
  };
  for (auto bind : {"--bind=0.0.0.0", "--bind=::", "--bind=", "--bind=10.1.2.3"}) {
    auto text = message({"serve", bind, "c"});
    CHECK_MESSAGE(text.find("is not a loopback address") != std::string::npos, text);
    CHECK_MESSAGE(text.find("--tls-cert, --tls-key and --tls-ca") != std::string::npos, text);
  }
  CHECK(message({"serve", "--bind=127.0.0.2", "c"}) == "no error");
  CHECK(message({"serve", "--bind=localhost", "c"}) == "no error");
  CHECK(message({"serve", "c"}) == "no error");
  CHECK(message({"serve"}) == "serve needs at least one CHANNEL, or --dynamic-channels");
  CHECK(message({"serve", "--dynamic-channels"}) == "no error");
  CHECK(message({"serve", "--tls-cert=c.pem", "--tls-ca=ca.pem", "c"}) ==
        "mutual TLS needs all of --tls-cert, --tls-key and --tls-ca (missing: --tls-key)");
  CHECK(message({"listen", "--tls-key=k.pem", "c"}) ==
        "mutual TLS needs all of --tls-cert, --tls-key and --tls-ca (missing: --tls-cert, "
        "--tls-ca)");
  CHECK(message({"serve", "--tls-handshake-timeout=0s", "c"}) ==
        "tls-handshake-timeout must be positive");
  CHECK(message({"listen", "--remote-timeout=0s", "c"}) == "remote-timeout must be positive");
}
