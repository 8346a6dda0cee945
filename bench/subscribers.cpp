#include "subscribers.hpp"

#include <charconv>
#include <cstdlib>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/skip.hpp>

namespace pgnotify::bench {

namespace {

void common_callbacks(subscriber_callbacks& callbacks, const caf::actor& probe) {
  callbacks.on_subscribed = [probe](uint64_t) { caf::anon_send(probe, subscribed_atom_v); };
  callbacks.on_lagged = [probe](const lagged& msg) { caf::anon_send(probe, msg); };
  callbacks.on_error = [probe](const caf::error& err) { caf::anon_send(probe, err); };
}

caf::behavior stalled_subscriber(caf::event_based_actor* self, caf::actor probe) {
  // caf::skip leaves a batch in the mailbox, unprocessed and unacked, exactly as
  // if the actor were busy elsewhere; the registry must stop at the bound.
  return {
      [](const notification_batch&) -> caf::result<void> { return caf::skip; },
      [](const reconnected&) {},
      [=](resume_atom) {
        auto delivered = std::make_shared<uint64_t>(0);
        self->become(
            [=](const notification_batch& batch) {
              *delivered += batch.size();
              ack(self, batch);
            },
            [=](const lagged& msg) {
              caf::anon_send(probe, caught_up_atom_v, *delivered, msg.missed);
            },
            [](const reconnected&) {});
      },
  };
}

caf::behavior counting_actor(caf::event_based_actor* self, std::shared_ptr<stream_tally> tally,
                             caf::actor probe) {
  return {
      [=](const notification_batch& batch) {
        ++tally->batches;
        if (!batch.empty()) tally->count_batch(batch, probe);
        ack(self, batch);
      },
      [=](const lagged& msg) { caf::anon_send(probe, msg); },
      [](const reconnected&) {},
  };
}

caf::behavior sink(caf::event_based_actor* self) {
  return {
      [=](const notification_batch& batch) { ack(self, batch); },
      [](const lagged&) {},
      [](const reconnected&) {},
  };
}

}  // namespace

subscriber_callbacks counting_callbacks(std::shared_ptr<stream_tally> tally, caf::actor probe) {
  subscriber_callbacks callbacks;
  common_callbacks(callbacks, probe);
  callbacks.on_notification = [tally, probe](const notification& n) { tally->count(n, probe); };
  return callbacks;
}

subscriber_callbacks latency_callbacks(std::shared_ptr<latency_log> log, caf::actor probe) {
  subscriber_callbacks callbacks;
  common_callbacks(callbacks, probe);
  log->latencies.reserve(log->expected);
  callbacks.on_notification = [log, probe](const notification& n) {
    auto now = monotonic_ns();
    uint64_t sent = 0;  // the payload is a view: not NUL-terminated
    std::from_chars(n.payload.data(), n.payload.data() + n.payload.size(), sent);
    log->latencies.push_back(static_cast<int64_t>(now - sent));
    if (log->latencies.size() == log->expected) caf::anon_send(probe, done_atom_v);
  };
  return callbacks;
}

caf::actor spawn_counting_actor(caf::actor_system& sys, std::shared_ptr<stream_tally> tally,
                                caf::actor probe) {
  return sys.spawn(counting_actor, std::move(tally), std::move(probe));
}

caf::actor spawn_stalled_subscriber(caf::actor_system& sys, caf::actor probe) {
  return sys.spawn(stalled_subscriber, std::move(probe));
}

caf::actor spawn_sink(caf::actor_system& sys) {
  return sys.spawn(sink);
}

}  // namespace pgnotify::bench
