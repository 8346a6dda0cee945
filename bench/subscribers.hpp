// The subscriber actors of the pgnotify client. Each reports to `probe` (the
// client's main thread, a scoped_actor) with the messages below.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/send.hpp>
#include <caf/type_id.hpp>

#include <pgnotify/actors/subscriber.hpp>

#include "measure.hpp"
#include "settings.hpp"

// subscriber -> probe: (subscribed_atom) every subscription is confirmed;
// (done_atom) it received everything it expected; (lagged) it missed some.
CAF_ADD_ATOM(pgnotify_bench, pgnotify::bench, subscribed_atom, "subscribed")
CAF_ADD_ATOM(pgnotify_bench, pgnotify::bench, done_atom, "done")
// probe -> stalled subscriber: start processing and acking.
CAF_ADD_ATOM(pgnotify_bench, pgnotify::bench, resume_atom, "resume")
// stalled subscriber -> probe: (caught_up_atom, delivered, missed) after its lagged.
CAF_ADD_ATOM(pgnotify_bench, pgnotify::bench, caught_up_atom, "caughtup")

namespace pgnotify::bench {

/// What one counting subscriber saw. Only that subscriber writes it; the probe
/// reads first_ns/last_ns/payloads_ok after done_atom (the message orders the
/// reads). `received` is atomic only so that a timeout report may read it.
struct alignas(64) stream_tally {
  uint64_t expected = 0;
  std::atomic<uint64_t> received{0};
  uint64_t first_ns = 0;
  uint64_t last_ns = 0;
  bool payloads_ok = true;
  uint64_t batches = 0;  ///< only the counting actor sees batches; the helper hides them

  /// Counts a whole batch at once, as an optimiser would fold a loop of ++: the
  /// raw client's per-notification work is K counter increments, and a batch
  /// is one delivery unit here. The same checks and times as count(), on the
  /// batch's first and expected notifications.
  void count_batch(const notification_batch& batch, const caf::actor& probe) {
    auto before = received.load(std::memory_order_relaxed);
    auto seen = before + batch.size();
    received.store(seen, std::memory_order_relaxed);
    if (before == 0) {
      first_ns = monotonic_ns();
      payloads_ok = payloads_ok && batch.front().payload == sequence_payload(1);
    }
    if (before < expected && seen >= expected) {
      last_ns = monotonic_ns();
      payloads_ok =
          payloads_ok && batch[expected - before - 1].payload == sequence_payload(expected);
      caf::anon_send(probe, done_atom_v);
    }
  }

  /// Counts `n`; at the expected count it records the time and tells `probe`.
  void count(const notification& n, const caf::actor& probe) {
    // One writer: a relaxed load and store cost what a plain increment does.
    auto seen = received.load(std::memory_order_relaxed) + 1;
    received.store(seen, std::memory_order_relaxed);
    if (seen == 1) {
      first_ns = monotonic_ns();
      payloads_ok = payloads_ok && n.payload == sequence_payload(1);
    }
    if (seen == expected) {
      last_ns = monotonic_ns();
      payloads_ok = payloads_ok && n.payload == sequence_payload(seen);
      caf::anon_send(probe, done_atom_v);
    }
  }
};

/// Callbacks for pgnotify::spawn_subscriber that count into `tally` and report
/// to `probe`: subscribed_atom, done_atom at the expected count, lagged, errors.
subscriber_callbacks counting_callbacks(std::shared_ptr<stream_tally> tally, caf::actor probe);

/// Latencies: each payload is the sender's CLOCK_MONOTONIC ns.
struct latency_log {
  uint64_t expected = 0;
  std::vector<int64_t> latencies;  ///< receipt - send, ns; read by the probe after done_atom
};

subscriber_callbacks latency_callbacks(std::shared_ptr<latency_log> log, caf::actor probe);

/// The same count without the helper: an actor that speaks the protocol itself,
/// loops over each batch and acks it. It must be subscribed by the caller.
caf::actor spawn_counting_actor(caf::actor_system& sys, std::shared_ptr<stream_tally> tally,
                                caf::actor probe);

/// A subscriber that speaks the protocol itself and does nothing at all with its
/// batches, which pile up unprocessed in its mailbox, until resume_atom. Then it
/// processes and acks them and, on lagged, tells the probe
/// (caught_up_atom, notifications delivered to it, missed).
caf::actor spawn_stalled_subscriber(caf::actor_system& sys, caf::actor probe);

/// A subscriber that acks every batch at once and keeps nothing: the cheapest
/// well-behaved subscriber, for the many idle subscriptions of w5.
caf::actor spawn_sink(caf::actor_system& sys);

}  // namespace pgnotify::bench
