// The registry actor's state: internal to the library (not installed); the
// bus spawns the registry, tests inspect it.
#pragma once

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "registry.hpp"

namespace pgnotify {

// A subscription's life, one actor on one channel, and where the registry
// keeps it:
//
//   pending   its dynamic channel's LISTEN is under way: a pending_subscribe in
//             registry_state::pending_listens[channel];
//   active    receives notifications: a subscription in channels[channel];
//   cancelled unsubscribed with notifications still unacked: their count in
//             registry_state::cancelled, which late acks settle and a
//             re-subscription takes over;
//   gone      nothing is kept.
//
// pending -> active when the LISTEN lands; pending -> gone on unsubscribe,
// death or a failed LISTEN; active -> cancelled or gone on unsubscribe;
// cancelled -> active on a re-subscription (it starts with what is still
// unacked), -> gone once everything is acked; anything -> gone on death (the
// registry monitors an actor as long as it keeps anything about it).

/// An active subscription.
struct subscription {
  caf::actor subscriber;
  uint32_t bound = 0;
  uint32_t in_flight = 0;  ///< sent, not yet acked (as far as collected from `acks`)
  /// A subscriber on this node acks here, without messages; null for one on
  /// another node.
  std::shared_ptr<local_acks> acks{};
  uint64_t unreported = 0;  ///< missed since the last lagged message
  uint64_t delivered = 0;
  uint64_t missed = 0;
};

/// A channel's active subscriptions, in subscription order, and where each
/// subscriber's is: an ack finds its subscription without a search.
class subscription_list {
 public:
  using iterator = std::vector<subscription>::iterator;
  using const_iterator = std::vector<subscription>::const_iterator;

  iterator begin() { return list_.begin(); }
  iterator end() { return list_.end(); }
  const_iterator begin() const { return list_.begin(); }
  const_iterator end() const { return list_.end(); }
  size_t size() const { return list_.size(); }
  bool empty() const { return list_.empty(); }

  /// The subscription of the actor behind `who`, or nullptr.
  subscription* find(const caf::actor_control_block* who) {
    auto i = position_.find(who);
    return i == position_.end() ? nullptr : &list_[i->second];
  }
  subscription* find(const caf::actor& who) {
    return find(caf::actor_cast<caf::actor_control_block*>(who));
  }

  void add(subscription sub) {
    position_.emplace(caf::actor_cast<caf::actor_control_block*>(sub.subscriber), list_.size());
    list_.push_back(std::move(sub));
  }

  /// Removes every subscription `remove` holds for; returns how many.
  template <class Predicate>
  size_t remove_if(Predicate remove) {
    auto kept = std::remove_if(list_.begin(), list_.end(), remove);
    auto removed = static_cast<size_t>(list_.end() - kept);
    if (removed == 0) return 0;
    list_.erase(kept, list_.end());
    position_.clear();  // rare (an unsubscribe, a death): renumber
    for (size_t i = 0; i < list_.size(); ++i)
      position_.emplace(caf::actor_cast<caf::actor_control_block*>(list_[i].subscriber), i);
    return removed;
  }

 private:
  std::vector<subscription> list_;
  std::unordered_map<const caf::actor_control_block*, size_t> position_;
};

/// A subscriber waiting for its dynamic channel's LISTEN.
struct pending_subscribe {
  caf::actor subscriber;
  uint32_t bound = 0;
};

/// What a cancelled subscription has not acked yet.
struct unacked {
  uint32_t in_flight = 0;
  std::shared_ptr<local_acks> acks{};  ///< as in subscription
};

/// A dynamic channel whose LISTEN is under way: one request to the listener per
/// channel, however many subscribe meanwhile.
struct pending_listen {
  /// Subscribed when the LISTEN lands, in order; one entry per actor. An
  /// unsubscribe (or a death) removes the actor's entry: that is the cancellation.
  std::vector<pending_subscribe> subscribers;
  /// Every subscribe request on the channel meanwhile, answered when the LISTEN
  /// lands (ok, even for one that was cancelled since) or fails (its error).
  std::vector<caf::typed_response_promise<caf::ok_atom>> replies;
};

struct registry_state {
  static inline const char* name = "pgnotify.registry";

  /// The registered channels; each channel's active subscriptions in
  /// subscription order. A dynamic channel is here once its LISTEN has landed.
  std::unordered_map<std::string, subscription_list> channels;
  std::set<std::string> permanent;  ///< the channels given at start: never UNLISTENed
  bool dynamic = false;
  listener_actor listener;  ///< for dynamic channels; set once by the bus
  /// Dynamic channels with a LISTEN under way (never also in `channels`).
  std::unordered_map<std::string, pending_listen> pending_listens;
  /// Cancelled subscriptions: unacked notifications of a subscriber that
  /// unsubscribed. Its late acks settle these, and a re-subscription starts
  /// with them in flight.
  std::map<std::pair<caf::actor_addr, std::string>, unacked> cancelled;
  std::vector<caf::actor> reconnect_subscribers;
  /// The bounds of the active subscriptions, each with how many have it (one
  /// on another node counts at least default_bound): the smallest is the
  /// listener's batch limit (see batch_limit_atom).
  std::map<uint32_t, size_t> bounds;
  uint32_t batch_limit = std::numeric_limits<uint32_t>::max();  ///< as last sent
  /// How many entries (active, pending and cancelled subscriptions, reconnect
  /// subscriptions) each monitored actor has in the tables above.
  std::unordered_map<caf::actor_addr, size_t> monitored;
  uint32_t default_bound = 256;
  uint64_t generation = 0;
  uint64_t received = 0;
  uint64_t delivered = 0;
  uint64_t missed = 0;
  caf::actor_addr supervisor;
  uint64_t rejected_messages = 0;
  uint64_t bad_acks = 0;
  uint64_t refused_unsubscribes = 0;
};

using registry_pointer = registry_actor::stateful_pointer<registry_state>;

registry_actor::behavior_type registry(registry_pointer self, registry_settings settings);

}  // namespace pgnotify
