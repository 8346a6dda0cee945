// The program's command line and configuration file. Every setting is a CAF
// config option in the "pgnotify" category: `key = value` under `[pgnotify]` in
// the file (config/pgnotify.ini documents each one), `--key=VALUE` or
// `--key VALUE` on the command line, which wins. Values are type-checked by
// CAF; unlike CAF's own parser, a bad or unknown key is an error, not ignored.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <spdlog/common.h>
#include <caf/actor_system_config.hpp>

#include <pgnotify/actors/bus.hpp>

namespace pgnotify::app {

enum exit_code : int { exit_ok = 0, exit_failure = 1, exit_usage = 2, exit_gave_up = 3 };

/// A mistake in the command line or the configuration file: exit 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// `listen`'s bound unless `bound` is set, not the library's 256 (which `serve`
/// keeps for remote subscribers that ask for none); config/pgnotify.ini explains
/// it: stdout takes a burst in large writes, so only a stdout that really stalls
/// makes `listen` miss notifications, and memory stays bounded meanwhile.
constexpr uint32_t listen_default_bound = 65536;

struct app_config : caf::actor_system_config {
  app_config();
  const caf::config_option_set& options() const { return custom_options_; }
};

struct invocation {
  std::string command;                 ///< listen, notify, channels, status or serve
  std::vector<std::string> arguments;  ///< what follows the command
  bool help = false;
};

/// Reads the configuration file (--config) and then the command line into
/// cfg.content. Throws usage_error naming the offending option or key.
invocation parse_command_line(app_config& cfg, const std::vector<std::string>& args);

/// Mutual TLS through CAF's OpenSSL module (`serve`, `--remote`): this side's
/// certificate chain and key, and the CA file a peer's certificate must chain
/// to. All three or none.
struct tls_settings {
  std::string cert;
  std::string key;
  std::string ca;
  /// `serve`: a TLS handshake that has waited this long for the peer (since
  /// this side last sent to it) is cut (app/handshake_guard.hpp): CAF spins on
  /// it meanwhile.
  caf::timespan handshake_timeout = std::chrono::milliseconds(500);
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

/// Everything the commands need, validated. Throws usage_error.
struct app_settings {
  /// bus.default_bound is `bound`, else the library's default (for `serve`).
  bus_settings bus;
  /// `listen`'s subscription (and its own bus): `bound`, else listen_default_bound.
  uint32_t listen_bound = listen_default_bound;
  /// `--remote=HOST:PORT`: use the bus a `pgnotify serve` publishes there.
  std::string remote_host;
  uint16_t remote_port = 0;
  /// How long connecting to --remote (TCP and both handshakes) may take.
  caf::timespan remote_timeout = std::chrono::seconds(10);
  /// `serve`: where to publish the bus (port 0: any free port, printed).
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;
  /// `serve`: remote subscribers may subscribe to channels it was not given.
  bool dynamic_channels = false;
  tls_settings tls;
  spdlog::level::level_enum log_level = spdlog::level::info;
  caf::timespan stats_interval{0};
};

app_settings read_settings(const app_config& cfg, std::vector<std::string> channels);

/// True for an address that only this machine can reach: 127.0.0.0/8, ::1
/// (also as ::ffff:127.x.y.z) and `localhost`. Not 0.0.0.0, ::, the empty
/// address (all of them) or any other name.
bool is_loopback(const std::string& address);

/// `serve`'s rules: a non-loopback --bind needs TLS; without --dynamic-channels
/// there must be channels to serve. Throws usage_error.
void check_serve_settings(const app_settings& settings);

/// Usage of one command (or of all, for an empty or unknown command).
std::string help_text(const app_config& cfg, const std::string& command);

}  // namespace pgnotify::app
