// The pgnotify client: a bus and subscriber actors, as an application uses them.
// The main thread drives each workload through a scoped_actor, the "probe",
// that the subscribers report to.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <pgnotify/actors/bus.hpp>
#include <pgnotify/actors/subscriber.hpp>
#include <pgnotify/messages/errors.hpp>
#include <pgnotify/messages/type_ids.hpp>

#include "clients.hpp"
#include "json_line.hpp"
#include "measure.hpp"
#include "subscribers.hpp"

namespace pgnotify::bench {

namespace {

/// A step of a workload failed; its message goes into the JSON line.
struct failure {
  std::string what;
};

struct bench_config : caf::actor_system_config {
  explicit bench_config(const settings& s) {
    pgnotify::configure(*this);
    set("logger.console-verbosity", caf::atom("quiet"));
    if (auto err = parse(s.caf_options)) throw failure{"CAF options: " + render(err)};
  }
};

class pgnotify_client {
 public:
  explicit pgnotify_client(const settings& s) : s_(s), cfg_(s), sys_(cfg_), probe_(sys_) {}

  ~pgnotify_client() {
    for (auto& actor : actors_) caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    if (bus_) caf::anon_send_exit(bus_, caf::exit_reason::user_shutdown);
  }

  json_line run() {
    switch (s_.kind) {
      case workload::w3:
        return latency();
      case workload::w4:
        return stalled();
      case workload::w5:
        return many_subscribers();
      case workload::idle:
        return idle();
      default:
        return stream(s_.kind == workload::w2 ? s_.k : 1);
    }
  }

 private:
  // w1 (one subscriber) and w2 (K subscribers): everyone counts every notification.
  json_line stream(uint32_t subscriber_count) {
    start_bus({s_.channel});
    auto tallies = spawn_counters(subscriber_count);
    ready();
    return stream_result(tallies);
  }

  json_line latency() {
    start_bus({s_.channel});
    auto log = std::make_shared<latency_log>();
    log->expected = s_.n;
    spawn_subscriber_of(s_.channel, latency_callbacks(log, probe_actor()), bound_for_all());
    await_subscribed(1);
    ready();
    await_done(1, [&] { return std::string{"latencies incomplete"}; });
    auto cpu = process_cpu() - cpu_at_ready_;
    json_line line;
    line.add("received", uint64_t{log->latencies.size()})
        .add("lat_ns", log->latencies)
        .add("cpu_us", cpu.total_us());
    return line;
  }

  // w4: w1 plus a subscriber that processes nothing until the stream is over.
  json_line stalled() {
    start_bus({s_.channel});
    auto tallies = spawn_counters(1);
    auto stalled = spawn_stalled_subscriber(sys_, probe_actor());
    actors_.push_back(stalled);
    subscribe(stalled, s_.stalled_bound);
    auto rss_before = proc_status_kib("VmRSS");
    ready();
    auto line = stream_result(tallies);
    auto rss_after = proc_status_kib("VmRSS");
    auto stats = subscription_of(stalled);
    caf::anon_send(stalled, resume_atom_v);
    uint64_t delivered = stats.delivered, reported_missed = 0;
    if (stats.missed > 0)
      probe_->receive(
          [&](caught_up_atom, uint64_t processed, uint64_t missed) {
            delivered = processed;
            reported_missed = missed;
          },
          caf::after(s_.patience) >> [] { throw failure{"the stalled subscriber got no lagged"}; });
    line.add("rss_before_kib", rss_before)
        .add("rss_after_kib", rss_after)
        .add("hwm_kib", proc_status_kib("VmHWM"))
        .add("stalled_bound", uint64_t{s_.stalled_bound})
        .add("stalled_delivered", delivered)
        .add("stalled_missed_stats", stats.missed)
        .add("stalled_missed_lagged", reported_missed);
    return line;
  }

  // w5: K subscribers spread over CHANNELS other channels; time their subscribe
  // and unsubscribe requests, and measure delivery on CHANNEL next to them.
  json_line many_subscribers() {
    std::vector<std::string> others;
    for (uint32_t i = 0; i < s_.other_channels; ++i)
      others.push_back(fmt::format("{}_{}", s_.channel, i));
    auto channels = others;
    channels.push_back(s_.channel);
    start_bus(channels);
    std::vector<caf::actor> sinks;
    for (uint32_t i = 0; i < s_.k; ++i) sinks.push_back(spawn_sink(sys_));
    actors_.insert(actors_.end(), sinks.begin(), sinks.end());
    auto subscribe = timed_requests(sinks.size(), [&](size_t i) {
      probe_->send(bus_, subscribe_atom_v, others[i % others.size()], sinks[i]);
    });
    auto tallies = spawn_counters(1);
    ready();
    auto line = stream_result(tallies);
    auto unsubscribe = timed_requests(sinks.size(), [&](size_t i) {
      probe_->send(bus_, unsubscribe_atom_v, others[i % others.size()], sinks[i]);
    });
    line.add("subscribers", uint64_t{sinks.size()})
        .add("other_channels", uint64_t{others.size()})
        .add("subscribe_us", subscribe.wall_us_each)
        .add("subscribe_cpu_us", subscribe.cpu_us_each)
        .add("unsubscribe_us", unsubscribe.wall_us_each)
        .add("unsubscribe_cpu_us", unsubscribe.cpu_us_each);
    return line;
  }

  json_line idle() {
    start_bus({s_.channel});
    spawn_counters(1);
    ready();
    auto start = monotonic_ns();
    std::this_thread::sleep_for(s_.idle_duration);
    auto cpu = process_cpu() - cpu_at_ready_;
    auto wall_us = (monotonic_ns() - start) / 1000;
    json_line line;
    line.add("seconds", static_cast<uint64_t>(s_.idle_duration.count()))
        .add("cpu_us", cpu.total_us())
        .add("wall_us", wall_us)
        .add("cpu_pct", 100.0 * static_cast<double>(cpu.total_us()) / static_cast<double>(wall_us));
    return line;
  }

  // -- steps ------------------------------------------------------------------

  caf::actor probe_actor() { return caf::actor{probe_}; }

  // Big enough that a counting subscriber never lags: it must see everything.
  uint32_t bound_for_all() const { return static_cast<uint32_t>(std::max<uint64_t>(s_.n, 1)); }

  // Spawns the bus and waits until it LISTENs (generation >= 1).
  void start_bus(std::vector<std::string> channels) {
    bus_settings settings;
    settings.conninfo = s_.uri;
    settings.channels = std::move(channels);
    settings.max_batch = s_.max_batch;
    auto bus = spawn_bus(sys_, settings);
    if (!bus) throw failure{"spawn_bus: " + render(bus.error())};
    bus_ = *bus;
    uint64_t generation = 0;
    probe_->request(bus_, s_.patience, reconnects_atom_v, probe_actor())
        .receive([&](uint64_t g) { generation = g; },
                 [](caf::error& err) { throw failure{render(err)}; });
    while (generation == 0)
      probe_->receive([&](const reconnected& msg) { generation = msg.generation; },
                      caf::after(s_.patience) >> [] { throw failure{"the bus never connected"}; });
  }

  void spawn_subscriber_of(const std::string& channel, subscriber_callbacks callbacks,
                           uint32_t bound) {
    actors_.push_back(spawn_subscriber(sys_, bus_, {{channel}, bound}, std::move(callbacks)));
  }

  std::vector<std::shared_ptr<stream_tally>> spawn_counters(uint32_t count) {
    std::vector<std::shared_ptr<stream_tally>> tallies;
    for (uint32_t i = 0; i < count; ++i) {
      auto tally = std::make_shared<stream_tally>();
      tally->expected = s_.n;
      if (s_.subscriber == subscriber_kind::helper) {
        spawn_subscriber_of(s_.channel, counting_callbacks(tally, probe_actor()), bound_for_all());
      } else {
        auto counter = spawn_counting_actor(sys_, tally, probe_actor());
        actors_.push_back(counter);
        subscribe(counter, bound_for_all());
      }
      tallies.push_back(std::move(tally));
    }
    if (s_.subscriber == subscriber_kind::helper) await_subscribed(count);
    return tallies;
  }

  // Subscribes an actor of the bench's own to CHANNEL and waits for the reply.
  void subscribe(const caf::actor& subscriber, uint32_t bound) {
    probe_->request(bus_, s_.patience, subscribe_atom_v, s_.channel, subscriber, bound)
        .receive([](caf::ok_atom) {},
                 [](caf::error& err) { throw failure{"subscribe: " + render(err)}; });
  }

  void await_subscribed(size_t count) {
    for (size_t confirmed = 0; confirmed < count;)
      probe_->receive([&](subscribed_atom) { ++confirmed; },
                      [](caf::error& err) { throw failure{"subscribe: " + render(err)}; },
                      caf::after(s_.patience) >> [] { throw failure{"subscribe timed out"}; });
  }

  void ready() {
    print_line("READY");
    cpu_at_ready_ = process_cpu();
  }

  // Waits for `count` done_atoms; a lag, a reconnect (notifications lost) or
  // `patience` without progress is a failure, described by `progress()`.
  template <class Progress>
  void await_done(size_t count, Progress progress) {
    for (size_t done = 0; done < count;)
      probe_->receive(
          [&](done_atom) { ++done; },
          [&](const lagged& msg) {
            throw failure{fmt::format("a subscriber lagged: missed {}", msg.missed)};
          },
          [&](const reconnected& msg) {
            throw failure{fmt::format("the bus reconnected (generation {})", msg.generation)};
          },
          caf::after(s_.patience) >>
              [&] { throw failure{fmt::format("timed out: {}", progress())}; });
  }

  json_line stream_result(const std::vector<std::shared_ptr<stream_tally>>& tallies) {
    await_done(tallies.size(), [&] {
      uint64_t received = 0;
      for (const auto& t : tallies) received += t->received.load(std::memory_order_relaxed);
      return fmt::format("{} deliveries of {}", received, s_.n * tallies.size());
    });
    auto cpu = process_cpu() - cpu_at_ready_;
    uint64_t received = 0, first_ns = UINT64_MAX, last_ns = 0, batches = 0;
    bool payloads_ok = true;
    for (const auto& t : tallies) {
      received += t->received.load(std::memory_order_relaxed);
      first_ns = std::min(first_ns, t->first_ns);
      last_ns = std::max(last_ns, t->last_ns);
      payloads_ok = payloads_ok && t->payloads_ok;
      batches += t->batches;
    }
    json_line line;
    line.add("received", received)
        .add("first_ns", first_ns)
        .add("last_ns", last_ns)
        .add("payloads_ok", payloads_ok)
        .add("cpu_us", cpu.total_us())
        .add("user_us", cpu.user_us)
        .add("sys_us", cpu.system_us);
    if (s_.subscriber == subscriber_kind::actor) line.add("batches", batches);
    return line;
  }

  struct request_cost {
    double wall_us_each = 0;
    double cpu_us_each = 0;
  };

  // Sends `count` requests back to back (send(i) sends the i-th), then collects
  // every reply: the average cost of one request with the pipeline full.
  template <class Send>
  request_cost timed_requests(size_t count, Send send) {
    auto cpu_before = process_cpu();
    auto start = monotonic_ns();
    for (size_t i = 0; i < count; ++i) send(i);
    for (size_t replies = 0; replies < count; ++replies)
      probe_->receive([](caf::ok_atom) {},
                      [](caf::error& err) { throw failure{"(un)subscribe: " + render(err)}; },
                      caf::after(s_.patience) >> [] { throw failure{"(un)subscribe timed out"}; });
    auto wall_ns = monotonic_ns() - start;
    auto cpu = process_cpu() - cpu_before;
    auto n = static_cast<double>(std::max<size_t>(count, 1));
    return {static_cast<double>(wall_ns) / 1000.0 / n, static_cast<double>(cpu.total_us()) / n};
  }

  // The registry's counters for `subscriber`'s subscription to CHANNEL.
  subscription_stats subscription_of(const caf::actor& subscriber) {
    subscription_stats result;
    probe_->request(bus_, s_.patience, stats_atom_v)
        .receive(
            [&](const bus_stats& stats) {
              for (const auto& sub : stats.subscriptions)
                if (sub.subscriber == subscriber.address() && sub.channel == s_.channel)
                  result = sub;
            },
            [](caf::error& err) { throw failure{"stats: " + render(err)}; });
    return result;
  }

  const settings& s_;
  bench_config cfg_;
  caf::actor_system sys_;
  caf::scoped_actor probe_;
  bus_actor bus_;
  std::vector<caf::actor> actors_;  ///< every subscriber: stopped with the bus
  cpu_usage cpu_at_ready_;
};

}  // namespace

int run_pgnotify_client(const settings& s) {
  try {
    pgnotify_client client{s};
    print_line(client.run().str());
    return 0;
  } catch (const failure& f) {
    fmt::print(stderr, "pgnotify-bench (pgnotify): {}\n", f.what);
    print_line(json_line{}.add("error", f.what).str());
    return 1;
  }
}

}  // namespace pgnotify::bench
