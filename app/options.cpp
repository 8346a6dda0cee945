#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <caf/config_value.hpp>
#include <caf/settings.hpp>

#include <pgnotify/messages/errors.hpp>

namespace pgnotify::app {

namespace {

constexpr const char* category = "pgnotify";

std::string str(caf::string_view x) {
  return {x.data(), x.size()};
}

// The defaults live in the library's settings structs (except listen's bound,
// in options.hpp); config/pgnotify.ini repeats them for the reader, and a test
// keeps the two equal.
const bus_settings library_defaults{};

const caf::config_option* lookup(const app_config& cfg, const std::string& key) {
  return cfg.options().qualified_name_lookup(category, key);
}

void store(app_config& cfg, const caf::config_option& opt, caf::config_value value) {
  caf::put(cfg.content, opt.full_name(), std::move(value));
}

void load_config_file(app_config& cfg, const std::string& path) {
  auto parsed = caf::actor_system_config::parse_config_file(path.c_str());
  if (!parsed)
    throw usage_error(
        fmt::format("cannot read config file {}: {}", path, caf::to_string(parsed.error())));
  for (auto& [section, content] : *parsed) {
    auto keys = caf::get_if<caf::settings>(&content);
    if (section != category || keys == nullptr)
      throw usage_error(fmt::format("{}: unknown section '{}' (settings go under [{}])", path,
                                    section, category));
    for (auto& [key, value] : *keys) {
      auto found = lookup(cfg, key);
      if (found == nullptr) throw usage_error(fmt::format("{}: unknown key '{}'", path, key));
      const auto& opt = *found;
      if (auto err = opt.check(value))
        throw usage_error(fmt::format("{}: bad value for {}: {} (expected {})", path, key,
                                      caf::to_string(value), str(opt.type_name())));
      store(cfg, opt, value);
    }
  }
}

}  // namespace

app_config::app_config() {
  opt_group{custom_options_, category}
      .add<std::string>("uri",
                        "libpq connection URI or key=value string (default: PG* environment)")
      .add<std::vector<std::string>>("channels", "channels to LISTEN on besides the ones given")
      .add<size_t>("bound", "notifications a consumer may lag before missing some (listen 65536)")
      .add<size_t>("max-batch", "at most this many notifications per batch (one write)")
      .add<caf::timespan>("backoff-initial", "first reconnect delay")
      .add<caf::timespan>("backoff-max", "longest reconnect delay")
      .add<double>("backoff-jitter", "0 to 1: delays are drawn from [(1 - j) * d, d]")
      .add<caf::timespan>("min-uptime", "a connection that drops sooner is a failed attempt")
      .add<caf::timespan>("stable-after", "a connection up this long resets the delay")
      .add<caf::timespan>("health-interval", "how often the connection is checked (0: never)")
      .add<caf::timespan>("health-timeout", "how long a health check may take")
      .add<size_t>("max-retries", "give up (exit 3) after this many failures in a row (0: never)")
      .add<caf::timespan>("stats-interval", "print stats as JSON on stderr this often (0: never)")
      .add<std::string>("log-level", "trace, debug, info, warn, error, critical or off")
      .add<std::string>("remote", "HOST:PORT of a `pgnotify serve` to use instead of a connection")
      .add<caf::timespan>("remote-timeout", "how long connecting to --remote may take")
      .add<uint16_t>("port", "serve: the port to publish the bus on (0: any free port)")
      .add<std::string>("bind", "serve: the address to publish on (default 127.0.0.1)")
      .add<bool>("dynamic-channels", "serve: remote subscribers may LISTEN on any channel")
      .add<std::string>("tls-cert", "serve, --remote: this side's certificate chain (PEM)")
      .add<std::string>("tls-key", "serve, --remote: the certificate's private key (PEM)")
      .add<std::string>("tls-ca", "serve, --remote: the CA certificates a peer's must chain to")
      .add<caf::timespan>("tls-handshake-timeout",
                          "serve: a TLS handshake waiting that long for the peer is cut");
}

invocation parse_command_line(app_config& cfg, const std::vector<std::string>& args) {
  invocation result;
  std::string config_file;
  std::vector<std::pair<const caf::config_option*, std::string>> given;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& arg = args[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      (result.command.empty() ? result.command : result.arguments.emplace_back()) = arg;
      continue;
    }
    if (arg == "--") {
      options_done = true;
    } else if (arg == "-h" || arg == "--help") {
      result.help = true;
    } else if (arg.rfind("--", 0) == 0) {
      auto eq = arg.find('=');
      auto name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      const caf::config_option* opt = nullptr;
      if (name != "config" && (opt = lookup(cfg, name)) == nullptr)
        throw usage_error(fmt::format("unknown option --{}", name));
      std::string value;
      if (eq != std::string::npos)
        value = arg.substr(eq + 1);
      else if (opt != nullptr && opt->type_name() == "boolean")
        value = "true";  // a flag: `--dynamic-channels` takes no separate value
      else if (i + 1 < args.size())
        value = args[++i];
      else
        throw usage_error(fmt::format("option --{} needs a value", name));
      if (opt == nullptr)
        config_file = value;
      else
        given.emplace_back(opt, value);
    } else {
      throw usage_error(fmt::format("unknown option {}", arg));
    }
  }
  // The file first: the command line overrides it.
  if (!config_file.empty()) load_config_file(cfg, config_file);
  for (auto& [opt, text] : given) {
    auto value = opt->parse(text);
    if (!value)
      throw usage_error(fmt::format("bad value for --{}: '{}' (expected {})", str(opt->long_name()),
                                    text, str(opt->type_name())));
    store(cfg, *opt, std::move(*value));
  }
  return result;
}

app_settings read_settings(const app_config& cfg, std::vector<std::string> channels) {
  auto key = [](const char* name) { return fmt::format("{}.{}", category, name); };
  app_settings result;
  auto& bus = result.bus;
  bus.conninfo = caf::get_or(cfg, key("uri"), std::string{});
  auto configured = caf::get_or(cfg, key("channels"), std::vector<std::string>{});
  channels.insert(channels.end(), configured.begin(), configured.end());
  bus.channels = std::move(channels);
  if (auto bound = caf::get_if<size_t>(&cfg, key("bound"))) {
    if (*bound == 0 || *bound > UINT32_MAX) throw usage_error("bound must be 1 to 4294967295");
    bus.default_bound = result.listen_bound = static_cast<uint32_t>(*bound);
  }
  bus.max_batch = caf::get_or(cfg, key("max-batch"), library_defaults.max_batch);
  if (bus.max_batch == 0) throw usage_error("max-batch must be at least 1");
  auto& backoff = bus.backoff;
  backoff.initial = caf::get_or(cfg, key("backoff-initial"), library_defaults.backoff.initial);
  backoff.max = caf::get_or(cfg, key("backoff-max"), library_defaults.backoff.max);
  backoff.jitter = caf::get_or(cfg, key("backoff-jitter"), library_defaults.backoff.jitter);
  backoff.stable_after =
      caf::get_or(cfg, key("stable-after"), library_defaults.backoff.stable_after);
  backoff.min_uptime = caf::get_or(cfg, key("min-uptime"), library_defaults.backoff.min_uptime);
  if (backoff.initial <= caf::timespan{0}) throw usage_error("backoff-initial must be positive");
  if (backoff.max < backoff.initial)
    throw usage_error("backoff-max must be at least backoff-initial");
  if (backoff.jitter < 0 || backoff.jitter > 1) throw usage_error("backoff-jitter must be 0 to 1");
  bus.health.interval = caf::get_or(cfg, key("health-interval"), library_defaults.health.interval);
  bus.health.timeout = caf::get_or(cfg, key("health-timeout"), library_defaults.health.timeout);
  if (bus.health.interval < caf::timespan{0} || bus.health.timeout <= caf::timespan{0})
    throw usage_error("health-interval must not be negative and health-timeout must be positive");
  auto retries = caf::get_or(cfg, key("max-retries"), size_t{0});
  if (retries > UINT32_MAX) throw usage_error("max-retries must be at most 4294967295");
  bus.max_failed_attempts = static_cast<uint32_t>(retries);
  result.stats_interval = caf::get_or(cfg, key("stats-interval"), caf::timespan{0});
  auto remote = caf::get_or(cfg, key("remote"), std::string{});
  if (!remote.empty()) {
    auto colon = remote.rfind(':');
    int port = colon == std::string::npos ? 0 : std::atoi(remote.c_str() + colon + 1);
    if (colon == 0 || port <= 0 || port > 65535)
      throw usage_error(fmt::format("bad value for --remote: '{}' (expected HOST:PORT)", remote));
    result.remote_host = remote.substr(0, colon);
    result.remote_port = static_cast<uint16_t>(port);
  }
  // `result` still holds the default here (a temporary app_settings{} would make
  // GCC 12 -O3 warn that its strings may be used uninitialized: -Werror).
  result.remote_timeout = caf::get_or(cfg, key("remote-timeout"), result.remote_timeout);
  if (result.remote_timeout <= caf::timespan{0})
    throw usage_error("remote-timeout must be positive");
  result.port = caf::get_or(cfg, key("port"), uint16_t{0});
  result.bind_address = caf::get_or(cfg, key("bind"), std::string{"127.0.0.1"});
  result.dynamic_channels = caf::get_or(cfg, key("dynamic-channels"), false);
  auto& tls = result.tls;
  tls.handshake_timeout = caf::get_or(cfg, key("tls-handshake-timeout"), tls.handshake_timeout);
  if (tls.handshake_timeout <= caf::timespan{0})
    throw usage_error("tls-handshake-timeout must be positive");
  tls.cert = caf::get_or(cfg, key("tls-cert"), std::string{});
  tls.key = caf::get_or(cfg, key("tls-key"), std::string{});
  tls.ca = caf::get_or(cfg, key("tls-ca"), std::string{});
  if (tls.enabled()) {
    std::vector<std::string> missing;
    if (tls.cert.empty()) missing.emplace_back("--tls-cert");
    if (tls.key.empty()) missing.emplace_back("--tls-key");
    if (tls.ca.empty()) missing.emplace_back("--tls-ca");
    if (!missing.empty())
      throw usage_error(
          fmt::format("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca (missing: {})",
                      fmt::join(missing, ", ")));
  }
  auto level = caf::get_or(cfg, key("log-level"), std::string{"info"});
  result.log_level = spdlog::level::from_str(level);
  if (result.log_level == spdlog::level::off && level != "off")
    throw usage_error(fmt::format("bad value for log-level: '{}'", level));
  return result;
}

bool is_loopback(const std::string& address) {
  if (strcasecmp(address.c_str(), "localhost") == 0) return true;
  in_addr v4;
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, address.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

void check_serve_settings(const app_settings& settings) {
  if (!settings.tls.enabled() && !is_loopback(settings.bind_address))
    throw usage_error(fmt::format(
        "--bind='{}' is not a loopback address: serving other machines needs mutual TLS "
        "(--tls-cert, --tls-key and --tls-ca); without them serve binds to 127.0.0.0/8, ::1 or "
        "localhost only",
        settings.bind_address));
  if (settings.bus.channels.empty() && !settings.dynamic_channels)
    throw usage_error("serve needs at least one CHANNEL, or --dynamic-channels");
}

std::string help_text(const app_config& cfg, const std::string& command) {
  std::string text;
  if (command == "listen") {
    text =
        "usage: pgnotify listen [options] CHANNEL...\n\n"
        "Listens on every CHANNEL (and the configured ones) over one connection and prints\n"
        "each event as one JSON line on stdout; logs go to stderr. Runs until SIGINT or\n"
        "SIGTERM (exit 0); exits 3 if --max-retries is reached.\n\n"
        "examples:\n"
        "  pgnotify listen --uri=postgresql://app@db/app orders 'Weird \"Name\"'\n"
        "  pgnotify listen --config=config/pgnotify.ini --stats-interval=10s orders\n";
  } else if (command == "notify") {
    text =
        "usage: pgnotify notify [options] CHANNEL PAYLOAD\n\n"
        "Sends one notification with pg_notify(CHANNEL, PAYLOAD) (bound parameters: any\n"
        "payload below 8000 bytes is sent as it is).\n\n"
        "example:\n"
        "  pgnotify notify --uri=postgresql://app@db/app orders '{\"id\": 42}'\n";
  } else if (command == "channels") {
    text =
        "usage: pgnotify channels [options] [CHANNEL...]\n\n"
        "Prints the channels `listen` would LISTEN on (the given ones plus the configured\n"
        "ones, validated and de-duplicated), one per line; exit 2 if one is invalid.\n\n"
        "example:\n"
        "  pgnotify channels --config=config/pgnotify.ini\n";
  } else if (command == "status") {
    text =
        "usage: pgnotify status [options] [CHANNEL...]\n\n"
        "Connects once, LISTENs on the channels and prints the resulting status as JSON;\n"
        "exit 0 if it is listening, 1 if not (the reason is in last_error).\n\n"
        "example:\n"
        "  pgnotify status --uri=postgresql://app@db/app orders\n";
  } else if (command == "serve") {
    text =
        "usage: pgnotify serve [options] [CHANNEL...]\n\n"
        "Runs a bus and publishes it with CAF's middleman, so that actors in other\n"
        "processes subscribe to it (`pgnotify listen --remote=HOST:PORT`). It serves\n"
        "exactly its channels (a remote subscriber may ask for any other only with\n"
        "--dynamic-channels). It binds to 127.0.0.1 unless --bind says otherwise; any\n"
        "address but loopback needs mutual TLS (--tls-cert, --tls-key, --tls-ca; the\n"
        "clients give theirs to `listen --remote` and `status --remote`). Prints\n"
        "{\"event\":\"serving\",\"port\":P} once it is published; stops on SIGINT/SIGTERM.\n\n"
        "examples:\n"
        "  pgnotify serve --uri=postgresql://app@db/app --port=4242 orders\n"
        "  pgnotify listen --remote=127.0.0.1:4242 orders\n\n"
        "  pgnotify serve --uri=postgresql://app@db/app --bind=0.0.0.0 --port=4242 \\\n"
        "      --tls-cert=server.pem --tls-key=server.key --tls-ca=ca.pem orders\n"
        "  pgnotify listen --remote=db-host:4242 --tls-cert=client.pem --tls-key=client.key \\\n"
        "      --tls-ca=ca.pem orders\n";
  } else {
    text =
        "usage: pgnotify COMMAND [options] [ARGUMENTS]\n\n"
        "commands:\n"
        "  listen CHANNEL...        print every notification on these channels as JSON lines\n"
        "  notify CHANNEL PAYLOAD   send one notification\n"
        "  channels [CHANNEL...]    print the channels listen would use\n"
        "  status [CHANNEL...]      connect once and print the connection status as JSON\n"
        "  serve [CHANNEL...]       publish a bus for other processes (listen --remote)\n\n"
        "`pgnotify COMMAND --help` shows examples. The connection comes from --uri or the\n"
        "libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSERVICE).\n";
  }
  text += "\noptions (also settable in the [pgnotify] section of the --config file):\n";
  text += fmt::format("  {:<28} {}\n", "--config=FILE", "read settings from FILE first");
  for (const auto& opt : cfg.options())
    if (opt.category() == category)
      text += fmt::format("  {:<28} {}\n",
                          fmt::format("--{}=<{}>", str(opt.long_name()), str(opt.type_name())),
                          str(opt.description()));
  text += fmt::format("  {:<28} {}\n", "-h, --help", "this text");
  return text;
}

}  // namespace pgnotify::app
