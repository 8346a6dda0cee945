// The registry actor: channel -> subscribers. Fans each socket read out as one
// shared batch per channel, bounds each subscriber's unacked notifications,
// tells a subscriber that overflowed exactly how many it missed, broadcasts
// reconnected{g}, and forgets subscribers that die.
#pragma once

#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/typed_event_based_actor.hpp>

#include "../messages/protocol.hpp"

namespace pgnotify {

struct registry_settings {
  std::vector<std::string> channels;  ///< validated names, always registered
  uint32_t default_bound = 256;
  /// Subscribing to another valid channel LISTENs on it (through the listener);
  /// when its last subscriber leaves or dies, it is UNLISTENed again.
  bool dynamic = false;
  /// The bus: the only actor whose listener handle the registry accepts. The
  /// listener so named is the only one whose notifications and generations it
  /// accepts.
  caf::actor_addr supervisor;
};

struct subscription {
  caf::actor subscriber;
  uint32_t bound = 0;
  uint32_t in_flight = 0;   ///< sent, not yet acked
  uint64_t unreported = 0;  ///< missed since the last lagged message
  uint64_t delivered = 0;
  uint64_t missed = 0;
};

struct registry_state {
  static inline const char* name = "pgnotify.registry";

  /// The registered channels; each channel's subscriptions in subscription order.
  std::unordered_map<std::string, std::vector<subscription>> channels;
  std::set<std::string> permanent;  ///< the channels given at start: never UNLISTENed
  bool dynamic = false;
  listener_actor listener;  ///< for dynamic channels; set once by the bus
  /// Unacked notifications of subscriptions that were cancelled: a subscriber's
  /// late acks settle these, and a re-subscription starts with them in flight.
  std::map<std::pair<caf::actor_addr, std::string>, uint32_t> unacked_after_unsubscribe;
  /// Dynamic channels with a LISTEN under way: not UNLISTENed meanwhile.
  std::unordered_map<std::string, size_t> pending_listens;
  /// Subscribers that unsubscribed while their subscribe waited for its LISTEN.
  std::set<std::pair<caf::actor_addr, std::string>> cancelled_while_pending;
  std::vector<caf::actor> reconnect_subscribers;
  /// How many subscriptions (channels plus reconnects) each monitored actor holds.
  std::unordered_map<caf::actor_addr, size_t> monitored;
  uint32_t default_bound = 256;
  uint64_t generation = 0;
  uint64_t received = 0;
  uint64_t delivered = 0;
  uint64_t missed = 0;
  caf::actor_addr supervisor;
  uint64_t rejected_messages = 0;
  uint64_t bad_acks = 0;
};

using registry_pointer = registry_actor::stateful_pointer<registry_state>;

registry_actor::behavior_type registry(registry_pointer self, registry_settings settings);

}  // namespace pgnotify
