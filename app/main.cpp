// The `pgnotify` program: listen, notify, channels, status (DESIGN.md §4).
// Exit codes: 0 done (or stopped by SIGINT/SIGTERM), 1 failed, 2 usage error,
// 3 gave up reconnecting (--max-retries).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <pqxx/pqxx>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/actors/log.hpp>
#include <pgnotify/actors/pg/conninfo.hpp>
#include <pgnotify/actors/subscriber.hpp>
#include <pgnotify/messages/channel_name.hpp>
#include <pgnotify/messages/errors.hpp>
#include <pgnotify/messages/type_ids.hpp>

#include "handshake_guard.hpp"
#include "json.hpp"
#include "options.hpp"
#include "remote.hpp"
#include "tls.hpp"

using namespace pgnotify;
using namespace pgnotify::app;

namespace {

/// Writes all of `text` to stdout with write(2): one call unless the kernel
/// takes it in parts. Blocks while stdout does (a reader that stopped reading);
/// meanwhile the registry counts what this process cannot take, up to the bound.
void write_stdout(std::string_view text) {
  while (!text.empty()) {
    auto written = ::write(STDOUT_FILENO, text.data(), text.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      static std::atomic<bool> reported{false};
      if (!reported.exchange(true))
        logger()->error("cannot write to stdout: {}", std::strerror(errno));
      return;
    }
    text.remove_prefix(static_cast<size_t>(written));
  }
}

/// One event, written at once: a pipe sees it immediately. stdout's stdio
/// buffer is never used, so nothing waits in it.
void print_line(std::string line) {
  line += '\n';
  write_stdout(line);
}

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

/// Records a failure unless a more specific exit code was set already.
void report_failure(std::atomic<int>& exit_status) {
  int unset = exit_ok;
  exit_status.compare_exchange_strong(unset, exit_failure);
}

/// Ends main's sigwait as if the user had pressed Ctrl-C.
void wake_main() {
  ::kill(::getpid(), SIGTERM);
}

/// The bus a command talks to: a new local one, or (--remote) the one a
/// `pgnotify serve` publishes. Only a bus this process owns is stopped at exit.
struct bus_handle {
  bus_actor bus;
  bool owned = false;
  void stop() {
    if (owned) caf::anon_send_exit(bus, caf::exit_reason::user_shutdown);
  }
};

bus_handle open_bus(caf::actor_system& sys, const app_settings& settings) {
  if (!settings.remote_host.empty()) {
    auto remote = connect_remote(sys, settings.remote_host, settings.remote_port,
                                 settings.tls.enabled(), settings.remote_timeout);
    logger()->info("using the bus at {}:{}{}", settings.remote_host, settings.remote_port,
                   settings.tls.enabled() ? " (mutual TLS)" : "");
    return {remote, false};
  }
  auto bus = spawn_bus(sys, settings.bus);
  if (!bus) throw usage_error(render(bus.error()));
  logger()->info("connecting to {} for {} channel(s)", redact_conninfo(settings.bus.conninfo),
                 settings.bus.channels.size());
  return {*bus, true};
}

// Watches the bus: reports when it gives up, and prints stats periodically.
caf::behavior watchdog(caf::event_based_actor* self, bus_actor bus, caf::timespan stats_interval,
                       std::atomic<int>* exit_status) {
  self->monitor(bus);
  self->set_down_handler([=](caf::down_msg& msg) {
    logger()->error("stopped: {}", render(msg.reason));
    // Giving up is the more telling code: it wins over a failure another part
    // (the subscriber losing its bus) may have reported first.
    if (msg.reason == make_error(errc::gave_up))
      *exit_status = exit_gave_up;
    else
      report_failure(*exit_status);
    wake_main();
    self->quit();
  });
  if (stats_interval > caf::timespan{0}) self->delayed_send(self, stats_interval, stats_atom_v);
  return {
      [=](stats_atom) {
        self->request(bus, caf::infinite, stats_atom_v).then([=](const bus_stats& stats) {
          self->request(bus, caf::infinite, status_atom_v).then([=](const bus_status& status) {
            auto line = stats_event(stats, status) + "\n";
            std::fwrite(line.data(), 1, line.size(), stderr);
          });
        });
        self->delayed_send(self, stats_interval, stats_atom_v);
      },
  };
}

int listen(app_config& cfg, const app_settings& settings) {
  if (settings.bus.channels.empty()) throw usage_error("listen needs at least one CHANNEL");
  for (const auto& channel : settings.bus.channels)
    if (auto err = validate_channel_name(channel)) throw usage_error(render(err));
  auto signals = stop_signals();
  std::atomic<int> exit_status{exit_ok};
  {
    caf::actor_system sys{cfg};
    auto own = settings;  // a bus of its own has listen's bound too
    own.bus.default_bound = settings.listen_bound;
    auto bus = open_bus(sys, own);
    subscriber_callbacks callbacks;
    // A batch is one write: per-line writes (or flushes) cannot keep up with a
    // burst, and the registry would count the rest as missed.
    callbacks.on_batch = [](const notification_batch& batch) {
      write_stdout(notification_lines(batch, std::chrono::system_clock::now()));
    };
    callbacks.on_lagged = [](const lagged& msg) { print_line(lagged_event(msg)); };
    // Every generation is shown, the boot connect included, also when it
    // happened before the subscription was confirmed.
    callbacks.on_generation = [](uint64_t g) { print_line(reconnected_event(g)); };
    callbacks.on_subscribed = [](uint64_t g) {
      if (g > 0) print_line(reconnected_event(g));
    };
    bool remote = !settings.remote_host.empty();
    callbacks.on_error = [&exit_status, remote](const caf::error& err) {
      bool unknown = err.category() == error_category &&
                     err.code() == static_cast<uint8_t>(errc::unknown_channel);
      logger()->error("subscription refused: {}{}", render(err),
                      remote && unknown ? " (the server serves only its own channels; "
                                          "`serve --dynamic-channels` admits others)"
                                        : "");
      report_failure(exit_status);
      wake_main();
    };
    auto sub =
        spawn_subscriber(sys, bus.bus, {settings.bus.channels, settings.listen_bound}, callbacks);
    auto dog = sys.spawn(watchdog, bus.bus, settings.stats_interval, &exit_status);
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    logger()->info("stopping");
    for (const auto& a : {sub, dog}) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    bus.stop();
  }  // ~actor_system: every actor has finished, every line is out (written, not buffered)
  return exit_status;
}

int notify(const app_settings& settings, const std::vector<std::string>& arguments) {
  if (arguments.size() != 2) throw usage_error("notify needs CHANNEL and PAYLOAD");
  const auto& channel = arguments[0];
  const auto& payload = arguments[1];
  if (auto err = validate_channel_name(channel)) throw usage_error(render(err));
  auto conninfo = prepare_conninfo(settings.bus.conninfo, settings.bus.connection);
  if (!conninfo) throw usage_error(render(conninfo.error()));
  // A one-shot blocking call (libpqxx): SIGINT/SIGTERM end it at once, as they
  // end any such command (exit 128 + N).
  auto signals = stop_signals();
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
  try {
    pqxx::connection conn{*conninfo};
    pqxx::nontransaction tx{conn};
    tx.exec_params("SELECT pg_notify($1, $2)", channel, payload);
  } catch (const std::exception& e) {
    logger()->error("notify failed: {}", e.what());
    return exit_failure;
  }
  return exit_ok;
}

int channels(const app_settings& settings) {
  auto names = settings.bus.channels;
  for (const auto& name : names)
    if (auto err = validate_channel_name(name)) throw usage_error(render(err));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  for (const auto& name : names) print_line(name);
  return exit_ok;
}

int status(app_config& cfg, app_settings settings) {
  settings.bus.max_failed_attempts = 0;
  bus_status result;
  bus_stats stats;
  std::vector<std::string> names;
  {
    caf::actor_system sys{cfg};
    auto bus = open_bus(sys, settings);
    {
      caf::scoped_actor self{sys};
      auto ignore = [](caf::error&) {};
      self->request(bus.bus, caf::infinite, channels_atom_v)
          .receive([&](std::vector<std::string>& x) { names = std::move(x); }, ignore);
      // The first attempt ends in listening or in backing off (connect_timeout
      // bounds it); SIGINT/SIGTERM end the wait at once.
      auto signals = stop_signals();
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      for (;;) {
        self->request(bus.bus, caf::infinite, status_atom_v)
            .receive([&](bus_status& x) { result = x; }, ignore);
        bool settled = result.generation > 0 || result.failed_attempts > 0;
        if (settled || std::chrono::steady_clock::now() > deadline) break;
        // No event announces a failed attempt: ask again in 20 ms, unless stopped.
        timespec period{0, 20'000'000};
        if (sigtimedwait(&signals, nullptr, &period) > 0) {
          logger()->info("stopping");
          break;
        }
      }
      self->request(bus.bus, caf::infinite, stats_atom_v)
          .receive([&](bus_stats& x) { stats = std::move(x); }, ignore);
    }
    bus.stop();
  }
  print_line(status_json(result, names, stats));
  return result.state == connection_state::listening ? exit_ok : exit_failure;
}

int serve(app_config& cfg, app_settings settings) {
  check_serve_settings(settings);
  settings.bus.dynamic_channels = settings.dynamic_channels;
  auto signals = stop_signals();
  std::atomic<int> exit_status{exit_ok};
  {
    caf::actor_system sys{cfg};
    auto bus = open_bus(sys, settings);
    // An empty address means every address (CAF's INADDR_ANY).
    auto* address = settings.bind_address.empty() ? nullptr : settings.bind_address.c_str();
    // CAF spins on a TLS handshake that waits for the peer (handshake_guard.hpp).
    if (settings.tls.enabled()) limit_tls_handshakes(settings.tls.handshake_timeout);
    auto port = settings.tls.enabled()
                    ? caf::openssl::publish(bus.bus, settings.port, address, true)
                    : sys.middleman().publish(bus.bus, settings.port, address, true);
    if (!port) {
      logger()->error("cannot publish on {}:{}: {}", settings.bind_address, settings.port,
                      sys.render(port.error()));
      bus.stop();
      return exit_failure;
    }
    // A stranger who sends nothing: the kernel keeps it from CAF for a while.
    if (settings.tls.enabled() && defer_accept(*port) == 0)
      logger()->warn("cannot make the kernel hold silent connections to port {}", *port);
    print_line(fmt::format(R"({{"event":"serving","port":{}}})", *port));
    auto dog = sys.spawn(watchdog, bus.bus, settings.stats_interval, &exit_status);
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    logger()->info("stopping");
    caf::anon_send_exit(dog, caf::exit_reason::user_shutdown);
    if (settings.tls.enabled()) {
      // CAF's actor system waits for every connection to drain, and one in an
      // unfinished TLS handshake never does: no new connections, then cut all.
      // (caf/openssl/unpublish.hpp does not compile in 0.17.6: asked directly.)
      caf::scoped_actor self{sys};
      self->request(sys.openssl_manager().actor_handle(), std::chrono::seconds(1),
                    caf::unpublish_atom_v, bus.bus.address(), *port)
          .receive([] {},
                   [&](caf::error& err) {
                     logger()->warn("cannot unpublish port {}: {}", *port, sys.render(err));
                   });
      shut_down_connections(*port, true);
    }
    bus.stop();
  }
  return exit_status;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals before any thread starts (CAF's inherit the mask);
  // `listen` receives them with sigwait.
  auto signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  app_config cfg;
  try {
    auto inv = parse_command_line(cfg, {argv + 1, argv + argc});
    if (inv.help) {
      std::cout << help_text(cfg, inv.command);
      return exit_ok;
    }
    const std::vector<std::string> commands{"listen", "notify", "channels", "status", "serve"};
    if (inv.command.empty()) throw usage_error("missing COMMAND");
    if (std::find(commands.begin(), commands.end(), inv.command) == commands.end())
      throw usage_error("unknown command '" + inv.command + "'");
    auto settings =
        read_settings(cfg, inv.command == "notify" ? std::vector<std::string>{} : inv.arguments);
    auto log = std::make_shared<spdlog::logger>(
        "pgnotify", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    log->set_level(settings.log_level);
    set_logger(log);
    add_message_types(cfg);
    cfg.load<caf::io::middleman>();  // for serve and --remote
    bool networked =
        inv.command == "serve" ||
        (!settings.remote_host.empty() && (inv.command == "listen" || inv.command == "status"));
    if (networked && settings.tls.enabled()) {
      // CAF would read these files at the first connection, and abort there.
      check_tls_files(settings.tls);
      if (!openssl_error_queue_is_emptied())
        logger()->warn(
            "OpenSSL's error queue is not emptied before CAF's TLS calls (unexpected linking): a "
            "peer that leaves or is refused may cut another connection, and serve cuts no "
            "stalled TLS handshake");
      cfg.load<caf::openssl::manager>();
      cfg.openssl_certificate = settings.tls.cert;
      cfg.openssl_key = settings.tls.key;
      cfg.openssl_cafile = settings.tls.ca;
    }
    // CAF's default work-stealing workers poll for work (1 % of a core when
    // idle, bench/RESULTS.md) and wake late after a pause; a shared queue
    // sleeps until there is work, which suits a mostly idle listener. (One
    // worker would cost less per notification, bench/RESULTS.md, but `listen`
    // writes stdout from a subscriber: a stalled reader would stall it all.)
    cfg.set("scheduler.policy", caf::atom("sharing"));
    if (inv.command == "listen") return listen(cfg, settings);
    if (inv.command == "serve") return serve(cfg, settings);
    if (inv.command == "notify") return notify(settings, inv.arguments);
    if (inv.command == "channels") return channels(settings);
    return status(cfg, settings);
  } catch (const usage_error& e) {
    std::cerr << "pgnotify: " << e.what() << "\n(see pgnotify --help)\n";
    return exit_usage;
  }
}
