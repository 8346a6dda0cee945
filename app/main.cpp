// `pgnotify listen [options] CHANNEL...`: one JSON line per event on stdout
// (DESIGN.md §4), logs on stderr; exit 0 on SIGINT/SIGTERM, 2 on usage errors.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/send.hpp>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/actors/conninfo.hpp>
#include <pgnotify/actors/log.hpp>
#include <pgnotify/actors/subscriber.hpp>
#include <pgnotify/messages/errors.hpp>
#include <pgnotify/messages/type_ids.hpp>

#include "json.hpp"

namespace {

constexpr int exit_usage = 2;
constexpr const char* usage =
    "usage: pgnotify listen [options] CHANNEL...\n"
    "\n"
    "Listens on every CHANNEL over one PostgreSQL connection and prints each event\n"
    "as one JSON line on stdout. Stops on SIGINT or SIGTERM.\n"
    "\n"
    "The connection comes from --uri or, without it, from the libpq environment\n"
    "(PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSERVICE).\n"
    "\n"
    "example:\n"
    "  pgnotify listen --uri=postgresql://localhost/app orders 'Weird \"Name\"'\n"
    "  psql -c \"NOTIFY orders, 'hello'\"\n";

struct config : caf::actor_system_config {
  config() {
    opt_group{custom_options_, "global"}
        .add<std::string>("uri,u", "libpq connection URI or key=value string")
        .add<std::string>("log-level", "trace, debug, info, warn, error or off (default: info)")
        .add<size_t>("bound", "notifications a slow consumer may lag before missing some");
  }
  std::string help() const { return std::string{usage} + "\n" + custom_options_.help_text(false); }
};

struct command_line {
  std::vector<std::string> options;
  std::vector<std::string> positional;
};

// CAF stops parsing options at the first positional argument; split them first
// so options may come anywhere ("--" ends the options).
command_line split(int argc, char** argv) {
  command_line result;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (!options_done && arg == "--")
      options_done = true;
    else if (!options_done && arg.size() > 1 && arg[0] == '-')
      result.options.push_back(std::move(arg));
    else
      result.positional.push_back(std::move(arg));
  }
  return result;
}

int fail_usage(const std::string& message) {
  std::cerr << "pgnotify: " << message << "\n" << usage;
  return exit_usage;
}

void print_line(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);  // a pipe sees every event at once
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals before CAF starts threads (they inherit the mask);
  // main receives them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto args = split(argc, argv);
  config cfg;
  for (const auto& opt : args.options)
    if (opt == "-h" || opt == "--help" || opt == "-?") {
      std::cout << cfg.help();
      return 0;
    }
  if (auto err = cfg.parse(args.options)) return fail_usage(caf::actor_system_config::render(err));
  if (args.positional.empty() || args.positional.front() != "listen")
    return fail_usage(args.positional.empty() ? "missing command"
                                              : "unknown command: " + args.positional.front());
  auto log_level = spdlog::level::from_str(caf::get_or(cfg, "log-level", std::string{"info"}));
  auto log = std::make_shared<spdlog::logger>(
      "pgnotify", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  log->set_level(log_level);
  pgnotify::set_logger(log);

  pgnotify::bus_settings settings;
  settings.conninfo = caf::get_or(cfg, "uri", std::string{});
  settings.channels.assign(args.positional.begin() + 1, args.positional.end());
  if (settings.channels.empty()) return fail_usage("listen needs at least one CHANNEL");
  if (auto bound = caf::get_if<size_t>(&cfg, "bound")) {
    if (*bound == 0 || *bound > UINT32_MAX) return fail_usage("--bound must be 1 to 4294967295");
    settings.default_bound = static_cast<uint32_t>(*bound);
  }
  pgnotify::add_message_types(cfg);

  std::atomic<int> exit_code{0};
  {
    caf::actor_system sys{cfg};
    auto bus = pgnotify::spawn_bus(sys, settings);
    if (!bus) return fail_usage(pgnotify::render(bus.error()));
    log->info("listening on {} channel(s) via {}", settings.channels.size(),
              pgnotify::redact_conninfo(settings.conninfo));
    pgnotify::subscriber_callbacks callbacks;
    callbacks.on_notification = [](const pgnotify::notification& n) {
      print_line(pgnotify::app::notification_event(n, std::chrono::system_clock::now()));
    };
    callbacks.on_lagged = [](const pgnotify::lagged& msg) {
      print_line(pgnotify::app::lagged_event(msg));
    };
    // Every generation is shown, the boot connect included, also when it
    // happened before the subscription was confirmed.
    callbacks.on_generation = [](uint64_t generation) {
      print_line(pgnotify::app::reconnected_event(generation));
    };
    callbacks.on_subscribed = [](uint64_t generation) {
      if (generation > 0) print_line(pgnotify::app::reconnected_event(generation));
    };
    callbacks.on_error = [&](const caf::error& err) {
      log->error("subscription refused: {}", pgnotify::render(err));
      exit_code = 1;
      kill(getpid(), SIGTERM);
    };
    auto sub = pgnotify::spawn_subscriber(sys, *bus, {settings.channels, std::nullopt}, callbacks);
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    log->info("stopping on signal {}", signal_number);
    caf::anon_send_exit(sub, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(*bus, caf::exit_reason::user_shutdown);
  }
  std::fflush(stdout);
  return exit_code;
}
