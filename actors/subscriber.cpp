#include "subscriber.hpp"

#include <algorithm>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

namespace pgnotify {

namespace {

struct subscriber_state {
  static inline const char* name = "pgnotify.subscriber";
  subscriber_callbacks callbacks;
  uint64_t snapshot = 0;
  size_t pending_replies = 0;
  /// For batches from another node (one from the bus's own node is acked at
  /// once, into its local_acks): acks wait until this many notifications of a
  /// channel are processed (an eighth of the bound: what is processed and not
  /// yet acked still counts against the bound, so 7/8 of it stays for what is
  /// queued), or until the mailbox is empty; 1 while the bound is the bus's,
  /// which the helper does not know.
  uint32_t ack_every = 1;
  /// Processed, not yet acked, per channel (a helper has a few channels).
  std::vector<std::pair<std::string, uint32_t>> unacked;
  ack_handle registry;         ///< the sender of the batches
  bool flush_pending = false;  ///< an (ack_atom) to itself is on its way
};

using subscriber_pointer = caf::stateful_actor<subscriber_state>*;

void confirm_one(subscriber_pointer self) {
  auto& st = self->state;
  if (--st.pending_replies == 0 && st.callbacks.on_subscribed)
    st.callbacks.on_subscribed(st.snapshot);
}

void ack(subscriber_pointer self, std::pair<std::string, uint32_t>& pending) {
  if (pending.second == 0) return;
  self->send(self->state.registry, ack_atom_v, pending.first, pending.second);
  pending.second = 0;
}

void ack_everything(subscriber_pointer self) {
  for (auto& pending : self->state.unacked) ack(self, pending);
}

// Counts a processed batch; acks its channel at an eighth of the bound, and
// everything once nothing else waits in the mailbox, so that the registry
// always has room for an idle subscriber and a lagging one hears of its loss at
// once. If other messages wait, an (ack_atom) to itself, behind them, acks the
// rest: whatever they are, nothing stays unacked for longer than they take.
void processed(subscriber_pointer self, std::string_view channel, uint32_t count) {
  auto& st = self->state;
  auto i = std::find_if(st.unacked.begin(), st.unacked.end(),
                        [&](const auto& entry) { return entry.first == channel; });
  if (i == st.unacked.end()) i = st.unacked.insert(st.unacked.end(), {std::string{channel}, 0});
  i->second += count;
  if (i->second >= st.ack_every) ack(self, *i);
  if (self->mailbox().empty()) {
    ack_everything(self);
  } else if (!st.flush_pending && i->second > 0) {
    st.flush_pending = true;
    self->send(self, ack_atom_v);
  }
}

void refuse(subscriber_pointer self, caf::error& err) {
  if (self->state.callbacks.on_error) self->state.callbacks.on_error(err);
  self->quit(std::move(err));
}

caf::behavior subscriber(caf::stateful_actor<subscriber_state>* self, subscription_actor bus,
                         subscriber_options options, subscriber_callbacks callbacks) {
  auto& st = self->state;
  st.callbacks = std::move(callbacks);
  st.pending_replies = options.channels.size() + 1;
  if (options.bound) st.ack_every = std::max<uint32_t>(1, *options.bound / 8);
  auto me = caf::actor_cast<caf::actor>(self);
  // The registry handles requests in order, so the snapshot reply arrives before
  // any reconnected{g} broadcast that could follow it.
  self->request(bus, caf::infinite, reconnects_atom_v, me)
      .then(
          [=](uint64_t generation) {
            self->state.snapshot = generation;
            confirm_one(self);
          },
          [=](caf::error& err) { refuse(self, err); });
  // A bus on another node is told this node's protocol version.
  bool remote = bus && bus.node() != self->node();
  for (auto& channel : options.channels) {
    auto on_reply = [=](caf::ok_atom) { confirm_one(self); };
    auto on_error = [=](caf::error& err) { refuse(self, err); };
    if (remote)
      self->request(caf::actor_cast<caf::actor>(bus), caf::infinite, subscribe_atom_v, channel, me,
                    options.bound.value_or(0), protocol_version)
          .then(on_reply, on_error);
    else if (options.bound)
      self->request(bus, caf::infinite, subscribe_atom_v, channel, me, *options.bound)
          .then(on_reply, on_error);
    else
      self->request(bus, caf::infinite, subscribe_atom_v, channel, me).then(on_reply, on_error);
  }
  return {
      [=](const notification_batch& batch) {
        if (batch.empty()) return;
        const auto& cb = self->state.callbacks;
        if (cb.on_batch)
          cb.on_batch(batch);
        else
          for (const auto& n : batch) cb.on_notification(n);
        // On the registry's node an ack costs an atomic add: no need to wait.
        if (batch.acks()) return ack(self, batch);
        // Acks go to whoever sent the batch: the registry, even behind a bus.
        if (!self->state.registry)  // the bus's registry: the same for every batch
          self->state.registry = caf::actor_cast<ack_handle>(self->current_sender());
        processed(self, batch.front().channel, static_cast<uint32_t>(batch.size()));
      },
      [=](ack_atom) {
        self->state.flush_pending = false;
        ack_everything(self);
      },
      [=](const lagged& msg) {
        if (self->state.callbacks.on_lagged) self->state.callbacks.on_lagged(msg);
      },
      [=](const reconnected& msg) {
        auto& st = self->state;
        if (msg.generation > st.snapshot && st.callbacks.on_generation)
          st.callbacks.on_generation(msg.generation);
        if (is_reconnect(st.snapshot, msg.generation) && st.callbacks.on_reconnected)
          st.callbacks.on_reconnected(msg.generation);
        st.snapshot = std::max(st.snapshot, msg.generation);
      },
  };
}

}  // namespace

void ack(caf::local_actor* self, const notification_batch& batch) {
  if (batch.empty()) return;
  auto count = static_cast<uint32_t>(batch.size());
  if (auto* acks = batch.acks()) {
    if (!acks->add(count)) return;
    count = 0;  // the registry waits for word: the count is in `acks` already
  }
  caf::unsafe_send_as(self, caf::actor_cast<ack_handle>(self->current_sender()), ack_atom_v,
                      std::string{batch.front().channel}, count);
}

caf::actor spawn_subscriber(caf::actor_system& sys, subscription_actor bus,
                            subscriber_options options, subscriber_callbacks callbacks) {
  return sys.spawn(subscriber, std::move(bus), std::move(options), std::move(callbacks));
}

}  // namespace pgnotify
