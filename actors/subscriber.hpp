// The subscriber helper: one call gives a user per-notification (or per-batch)
// callbacks. It subscribes to its channels and to reconnects, unpacks batches,
// acks them to the registry, applies the generation snapshot rule, and hands
// lagged and reconnects to callbacks of their own. Callbacks run inside the actor.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/local_actor.hpp>

#include "../messages/protocol.hpp"

namespace pgnotify {

struct subscriber_callbacks {
  /// Each notification, in order. Required unless on_batch is set. The
  /// notification views into its batch: copy what must outlive the call.
  std::function<void(const notification&)> on_notification;
  /// Each batch as it arrives (one channel, in order, never empty): for a
  /// consumer that does one thing per batch, say one write. When set, it is
  /// called instead of on_notification. The batch is acked once it returns.
  std::function<void(const notification_batch&)> on_batch;
  /// This subscriber fell behind its bound and missed some notifications.
  std::function<void(const lagged&)> on_lagged;
  /// A reconnect after this subscriber's snapshot (see is_reconnect): notifications
  /// may have been lost, resync from the tables.
  std::function<void(uint64_t generation)> on_reconnected;
  /// Every generation announced after the snapshot, the boot connect included
  /// (for display; resync logic belongs in on_reconnected).
  std::function<void(uint64_t generation)> on_generation;
  /// Every subscription is confirmed; `generation` is the snapshot (0 = not yet
  /// connected). Notifications may arrive from now on.
  std::function<void(uint64_t generation)> on_subscribed;
  /// A subscription was refused (say, unknown_channel); the helper then quits
  /// with this error as its exit reason.
  std::function<void(const caf::error&)> on_error;
};

struct subscriber_options {
  std::vector<std::string> channels;
  std::optional<uint32_t> bound;  ///< unset: the bus's default bound
};

/// For an actor that speaks the protocol itself: acks `batch`, which it has
/// processed, to the batch's sender. Call it while handling that batch. On the
/// registry's node this is an atomic add to the batch's local_acks (a message
/// only when the registry waits for one); from another node, the message
/// (ack_atom, channel, size). messages/protocol.hpp has the rules.
void ack(caf::local_actor* self, const notification_batch& batch);

/// Spawns the helper; `bus` may be a bus_actor, local or on another node (then
/// its subscribes name this node's protocol version), or a local registry_actor.
caf::actor spawn_subscriber(caf::actor_system& sys, subscription_actor bus,
                            subscriber_options options, subscriber_callbacks callbacks);

}  // namespace pgnotify
