#include "registry_state.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include <caf/make_message.hpp>
#include <caf/send.hpp>
#include "log.hpp"

#include "../messages/channel_name.hpp"
#include "../messages/errors.hpp"

namespace pgnotify {

namespace {

// Subscribers are dynamically typed actors, which a typed actor cannot send() to;
// unsafe_send_as keeps the registry as the sender, so acks find their way back.
template <class... Ts>
void send_to(registry_pointer self, const caf::actor& subscriber, Ts&&... xs) {
  caf::unsafe_send_as(self, subscriber, std::forward<Ts>(xs)...);
}

// -- monitoring: an actor is monitored while any table holds an entry for it --

void track(registry_pointer self, const caf::actor& who) {
  if (self->state.monitored[who.address()]++ == 0) self->monitor(who);
}

void untrack(registry_pointer self, const caf::actor_addr& who) {
  auto i = self->state.monitored.find(who);
  if (i != self->state.monitored.end() && --i->second == 0) {
    self->demonitor(who);
    self->state.monitored.erase(i);
  }
}

// -- acks ---------------------------------------------------------------------

void bad_ack(registry_pointer self, const caf::actor_addr& who, const std::string& channel,
             uint64_t count, uint32_t in_flight) {
  self->state.bad_acks += 1;
  logger()->warn("pgnotify: dropped an ack of {} on {:?} from {}, which has {} in flight there",
                 count, channel, caf::to_string(who), in_flight);
}

// Frees what a subscriber on this node acked in its local_acks (`taken`). An
// ack by message for more than is in flight frees nothing (the handler refuses
// it); a local ack is already counted when the registry sees it, so more than
// is in flight is a bad ack that frees what is in flight.
void settle_local(registry_pointer self, const caf::actor_addr& who, const std::string& channel,
                  uint32_t& in_flight, uint64_t taken) {
  if (taken > in_flight) {
    bad_ack(self, who, channel, taken, in_flight);
    taken = in_flight;
  }
  in_flight -= static_cast<uint32_t>(taken);
}

// Collects what a subscriber on this node acked in its local_acks since the last look.
void collect(registry_pointer self, const std::string& channel, subscription& sub) {
  if (sub.acks)
    settle_local(self, sub.subscriber.address(), channel, sub.in_flight, sub.acks->take());
}

// For a subscription that waits for everything in flight to be acked: collects
// its local acks and, while anything is left, asks it to tell when it acks more
// (local_acks::add); once nothing is left it stops asking.
void settle_and_wait(registry_pointer self, const caf::actor_addr& who, const std::string& channel,
                     uint32_t& in_flight, local_acks* acks) {
  if (acks == nullptr || in_flight == 0) return;
  settle_local(self, who, channel, in_flight, acks->take_and_wait());
  if (in_flight == 0) settle_local(self, who, channel, in_flight, acks->take());
}

// A lagging subscriber hears of its loss once it has acked everything it was
// sent.
void report_loss_when_caught_up(registry_pointer self, const std::string& channel,
                                subscription& sub) {
  if (sub.unreported == 0) return;
  settle_and_wait(self, sub.subscriber.address(), channel, sub.in_flight, sub.acks.get());
  if (sub.in_flight > 0) return;
  send_to(self, sub.subscriber, lagged{channel, sub.unreported});
  sub.unreported = 0;
}

using cancelled_entry = decltype(registry_state::cancelled)::iterator;

// cancelled -> gone once everything it was sent is acked.
void settle_cancelled(registry_pointer self, cancelled_entry j) {
  auto& entry = j->second;
  const auto& [who, channel] = j->first;
  settle_and_wait(self, who, channel, entry.in_flight, entry.acks.get());
  if (entry.in_flight > 0) return;
  auto gone = who;
  self->state.cancelled.erase(j);
  untrack(self, gone);
}

// Brings every count up to date with what subscribers on this node acked.
void collect_all(registry_pointer self) {
  auto& st = self->state;
  for (auto& [channel, subs] : st.channels)
    for (auto& sub : subs) {
      collect(self, channel, sub);
      report_loss_when_caught_up(self, channel, sub);
    }
  for (auto j = st.cancelled.begin(); j != st.cancelled.end();) settle_cancelled(self, j++);
}

// -- the listener's batch limit ----------------------------------------------

// What a subscription counts toward the batch limit: its bound, or for one on
// another node at least the default bound, so that a stranger's bound of 1
// cannot shrink every batch (and a remote subscriber with the default bound is
// not cut by a burst it keeps up with).
uint32_t counted_bound(const registry_state& st, const subscription& sub) {
  return sub.acks ? sub.bound : std::max(sub.bound, st.default_bound);
}

// An active subscription starts or stops counting its bound.
void count_bound(registry_pointer self, const subscription& sub, bool counted) {
  auto& bounds = self->state.bounds;
  auto bound = counted_bound(self->state, sub);
  if (counted) {
    ++bounds[bound];
  } else if (auto i = bounds.find(bound); i != bounds.end() && --i->second == 0) {
    bounds.erase(i);
  }
}

// A batch larger than a subscriber's bound would cut that subscriber even if it
// keeps up: the listener hands on at most the smallest counted bound.
void publish_batch_limit(registry_pointer self) {
  auto& st = self->state;
  auto limit = st.bounds.empty() ? std::numeric_limits<uint32_t>::max() : st.bounds.begin()->first;
  if (limit == st.batch_limit || !st.listener) return;
  st.batch_limit = limit;
  self->send(st.listener, batch_limit_atom_v, limit);
}

caf::error unknown_channel(const std::string& channel) {
  return make_error(errc::unknown_channel, "not one of the bus's channels: " + channel);
}

// With dynamic channels, a channel nobody subscribes to any more is UNLISTENed.
void drop_if_unused(registry_pointer self, const std::string& channel) {
  auto& st = self->state;
  auto i = st.channels.find(channel);
  if (!st.dynamic || i == st.channels.end() || !i->second.empty() || st.permanent.count(channel))
    return;
  st.channels.erase(i);
  self->send(st.listener, unlisten_atom_v, channel);
}

// -- a subscription's life (see registry_state.hpp) ---------------------------------

// -> active: a new subscription, or a new bound for an active one. A cancelled
// subscription of the same actor and channel is taken over: what it has not
// acked is in flight.
void activate(registry_pointer self, const std::string& channel, subscription_list& subs,
              const caf::actor& who, uint32_t bound) {
  if (auto* existing = subs.find(who)) {
    count_bound(self, *existing, false);
    existing->bound = bound;  // subscribing again only updates the bound
    count_bound(self, *existing, true);
    publish_batch_limit(self);
    return;
  }
  track(self, who);
  subscription sub{who, bound};
  auto& cancelled = self->state.cancelled;
  if (auto j = cancelled.find({who.address(), channel}); j != cancelled.end()) {
    sub.in_flight = j->second.in_flight;
    sub.acks = std::move(j->second.acks);  // batches in flight ack there
    cancelled.erase(j);
    untrack(self, who.address());
  }
  if (!sub.acks && who.node() == self->node()) sub.acks = std::make_shared<local_acks>();
  count_bound(self, sub, true);
  subs.add(std::move(sub));
  publish_batch_limit(self);
}

// active -> cancelled (notifications unacked) or gone. May erase the channel.
void deactivate(registry_pointer self, const std::string& channel, subscription_list& subs,
                subscription& sub) {
  auto who = sub.subscriber.address();
  collect(self, channel, sub);
  std::optional<cancelled_entry> cancelled;
  if (sub.in_flight > 0) {
    // The subscription's reference keeps the actor monitored, now for this entry.
    auto [j, added] = self->state.cancelled.try_emplace({who, channel});
    j->second.in_flight += sub.in_flight;
    j->second.acks = sub.acks;
    if (!added) untrack(self, who);
    cancelled = j;
  } else {
    untrack(self, who);
  }
  count_bound(self, sub, false);
  auto* gone = &sub;
  subs.remove_if([&](const subscription& s) { return &s == gone; });
  publish_batch_limit(self);
  if (cancelled) settle_cancelled(self, *cancelled);
  drop_if_unused(self, channel);
}

// pending -> active for every subscriber still waiting; answers every subscribe
// request that waited for this LISTEN.
void listen_landed(registry_pointer self, const std::string& channel) {
  auto& st = self->state;
  auto i = st.pending_listens.find(channel);
  if (i == st.pending_listens.end()) return;
  auto pending = std::move(i->second);
  st.pending_listens.erase(i);
  auto& subs = st.channels[channel];
  for (const auto& p : pending.subscribers) {
    activate(self, channel, subs, p.subscriber, p.bound);
    untrack(self, p.subscriber.address());  // the pending entry's reference
  }
  drop_if_unused(self, channel);  // UNLISTENs again if every subscriber left meanwhile
  for (auto& reply : pending.replies) reply.deliver(caf::ok_atom_v);
}

// pending -> gone for every subscriber still waiting.
void listen_failed(registry_pointer self, const std::string& channel, const caf::error& err) {
  auto& st = self->state;
  auto i = st.pending_listens.find(channel);
  if (i == st.pending_listens.end()) return;
  auto pending = std::move(i->second);
  st.pending_listens.erase(i);
  for (const auto& p : pending.subscribers) untrack(self, p.subscriber.address());
  for (auto& reply : pending.replies) reply.deliver(err);
}

caf::result<caf::ok_atom> subscribe(registry_pointer self, const std::string& channel,
                                    const caf::actor& who, uint32_t bound) {
  if (!who) return make_error(errc::invalid_argument, "subscriber is an invalid actor handle");
  if (bound == 0) return make_error(errc::invalid_argument, "bound must be at least 1");
  if (auto err = validate_channel_name(channel)) return err;
  auto& st = self->state;
  if (auto i = st.channels.find(channel); i != st.channels.end()) {
    activate(self, channel, i->second, who, bound);
    return caf::ok_atom_v;
  }
  if (!st.dynamic) return unknown_channel(channel);
  // A dynamic channel: the subscriber is added once the server has acknowledged
  // the LISTEN, which is asked for once, by the first subscribe.
  auto [i, first] = st.pending_listens.try_emplace(channel);
  auto& waiting = i->second.subscribers;
  auto j = std::find_if(waiting.begin(), waiting.end(),
                        [&](const pending_subscribe& p) { return p.subscriber == who; });
  if (j != waiting.end()) {
    j->bound = bound;
  } else {
    track(self, who);
    waiting.push_back(pending_subscribe{who, bound});
  }
  auto promise = self->make_response_promise<caf::ok_atom>();
  i->second.replies.push_back(promise);
  if (first)
    self->request(st.listener, caf::infinite, listen_atom_v, channel)
        .then([=](caf::ok_atom) { listen_landed(self, channel); },
              [=](caf::error& err) { listen_failed(self, channel, err); });
  return promise;
}

// Local callers (the application, a supervisor) may unsubscribe any actor; a
// remote node only its own actors.
caf::error check_unsubscriber(registry_pointer self, const caf::actor& who) {
  const auto& sender = self->current_sender();
  if (sender != nullptr &&
      (sender->node() == self->node() || (who && who.node() == sender->node())))
    return caf::none;
  self->state.refused_unsubscribes += 1;
  logger()->warn("pgnotify: refused an unsubscribe of {} from {}", caf::to_string(who.address()),
                 caf::to_string(sender));
  return make_error(errc::invalid_argument, sender == nullptr
                                                ? "an unsubscribe needs a sender"
                                                : "a remote node may unsubscribe only its own "
                                                  "actors");
}

caf::result<caf::ok_atom> unsubscribe(registry_pointer self, const std::string& channel,
                                      const caf::actor& who) {
  if (auto err = check_unsubscriber(self, who)) return err;
  if (auto err = validate_channel_name(channel)) return err;
  auto& st = self->state;
  if (auto p = st.pending_listens.find(channel); p != st.pending_listens.end()) {
    // pending -> gone: the cancellation. An actor without a pending subscribe
    // here leaves no trace.
    auto& waiting = p->second.subscribers;
    auto j = std::find_if(waiting.begin(), waiting.end(),
                          [&](const pending_subscribe& s) { return s.subscriber == who; });
    if (j != waiting.end()) {
      auto addr = j->subscriber.address();
      waiting.erase(j);
      untrack(self, addr);
    }
    return caf::ok_atom_v;
  }
  auto i = st.channels.find(channel);
  if (i == st.channels.end()) return unknown_channel(channel);
  if (auto* sub = i->second.find(who)) deactivate(self, channel, i->second, *sub);
  return caf::ok_atom_v;
}

// anything -> gone for an actor that died.
void forget(registry_pointer self, const caf::actor_addr& who) {
  auto& st = self->state;
  std::vector<std::string> emptied;
  for (auto& [channel, subs] : st.channels) {
    auto removed = subs.remove_if([&](const subscription& s) {
      if (s.subscriber.address() != who) return false;
      count_bound(self, s, false);
      return true;
    });
    if (removed > 0 && subs.empty()) emptied.push_back(channel);
  }
  publish_batch_limit(self);
  for (const auto& channel : emptied) drop_if_unused(self, channel);
  // Its subscribe requests are still answered when their LISTEN lands.
  for (auto& [channel, pending] : st.pending_listens) {
    auto& waiting = pending.subscribers;
    waiting.erase(
        std::remove_if(waiting.begin(), waiting.end(),
                       [&](const pending_subscribe& p) { return p.subscriber.address() == who; }),
        waiting.end());
  }
  auto& cancelled = st.cancelled;
  auto j = cancelled.lower_bound({who, std::string{}});
  while (j != cancelled.end() && j->first.first == who) j = cancelled.erase(j);
  auto& gens = st.reconnect_subscribers;
  gens.erase(std::remove_if(gens.begin(), gens.end(),
                            [&](const caf::actor& a) { return a.address() == who; }),
             gens.end());
  st.monitored.erase(who);
}

registry_tables tables(const registry_state& st) {
  registry_tables result;
  result.channels = st.channels.size();
  for (const auto& entry : st.channels) result.subscriptions += entry.second.size();
  result.pending_listens = st.pending_listens.size();
  for (const auto& entry : st.pending_listens) {
    result.pending_subscribes += entry.second.subscribers.size();
    result.pending_replies += entry.second.replies.size();
  }
  result.cancelled = st.cancelled.size();
  result.monitored = st.monitored.size();
  result.reconnect_subscribers = st.reconnect_subscribers.size();
  return result;
}

// Delivers one channel's notifications to its subscribers: the whole batch as one
// shared message to each subscriber with room for it, a prefix (sharing the
// batch's buffer) to one with room for part of it, and a count to one that is
// lagging.
void dispatch(registry_pointer self, const std::string& channel, subscription_list& subs,
              const notification_batch& items) {
  auto& st = self->state;
  if (subs.empty()) {
    logger()->debug("pgnotify: {} notification(s) on {:?} without subscribers", items.size(),
                    channel);
    return;
  }
  auto count = static_cast<uint32_t>(items.size());
  caf::message shared;  // for subscribers on other nodes, made once
  for (auto& sub : subs) {
    collect(self, channel, sub);
    report_loss_when_caught_up(self, channel, sub);  // lagged goes before the batch
    uint32_t room = sub.unreported > 0 ? 0 : sub.bound - std::min(sub.bound, sub.in_flight);
    uint32_t sent = std::min(room, count);
    if (sent > 0 && sub.acks) {
      send_to(self, sub.subscriber, items.first(sent).with_acks(sub.acks));
    } else if (sent == count) {
      if (shared.empty()) shared = caf::make_message(items);
      send_to(self, sub.subscriber, shared);
    } else if (sent > 0) {
      send_to(self, sub.subscriber, items.first(sent));
    }
    sub.in_flight += sent;
    sub.delivered += sent;
    sub.unreported += count - sent;
    sub.missed += count - sent;
    st.delivered += sent;
    st.missed += count - sent;
    report_loss_when_caught_up(self, channel, sub);  // asks a new laggard to tell
  }
}

void route(registry_pointer self, std::string_view channel, const notification_batch& items) {
  // Channel names are at most 63 bytes: the key fits std::string's small buffer.
  std::string key{channel};
  auto i = self->state.channels.find(key);
  if (i == self->state.channels.end()) {
    logger()->debug("pgnotify: ignoring a notification on unregistered channel {:?}", key);
    return;
  }
  dispatch(self, key, i->second, items);
}

// Internal messages are accepted only from inside: a remote subscriber (the
// sender of a batch's acks) must not be able to forge them.
bool from_listener(registry_pointer self) {
  auto& st = self->state;
  if (st.listener && self->current_sender() == caf::actor_cast<caf::strong_actor_ptr>(st.listener))
    return true;
  st.rejected_messages += 1;
  logger()->warn("pgnotify: dropped an internal message from {}, which is not the listener",
                 caf::to_string(self->current_sender()));
  return false;
}

}  // namespace

registry_actor::behavior_type registry(registry_pointer self, registry_settings settings) {
  auto& st = self->state;
  st.default_bound = settings.default_bound;
  st.dynamic = settings.dynamic;
  st.supervisor = settings.supervisor;
  for (auto& channel : settings.channels) {
    st.channels[channel];
    st.permanent.insert(channel);
  }
  self->set_down_handler([=](caf::down_msg& msg) { forget(self, msg.source); });
  // A subscriber that does not understand a message answers with an error; the
  // default handler would make the registry quit. One bad subscriber must not.
  self->set_error_handler([=](caf::error& err) {
    logger()->warn("pgnotify: a subscriber rejected a message: {}", self->system().render(err));
  });
  return {
      [=](subscribe_atom, const std::string& channel, const caf::actor& who) {
        return subscribe(self, channel, who, self->state.default_bound);
      },
      [=](subscribe_atom, const std::string& channel, const caf::actor& who, uint32_t bound) {
        return subscribe(self, channel, who, bound);
      },
      [=](unsubscribe_atom, const std::string& channel, const caf::actor& who) {
        return unsubscribe(self, channel, who);
      },
      [=](listener_actor& lis) {
        auto& st = self->state;
        if (!st.supervisor || self->current_sender() == nullptr ||
            self->current_sender()->address() != st.supervisor) {
          st.rejected_messages += 1;
          logger()->warn("pgnotify: dropped a listener handle from {}, which is not the bus",
                         caf::to_string(self->current_sender()));
          return;
        }
        st.listener = std::move(lis);
        st.batch_limit = std::numeric_limits<uint32_t>::max();  // what a new listener assumes
        publish_batch_limit(self);
      },
      [=](reconnects_atom, caf::actor who) -> caf::result<uint64_t> {
        if (!who)
          return make_error(errc::invalid_argument, "subscriber is an invalid actor handle");
        auto& gens = self->state.reconnect_subscribers;
        if (std::find(gens.begin(), gens.end(), who) == gens.end()) {
          track(self, who);
          gens.push_back(std::move(who));
        }
        return self->state.generation;
      },
      [=](channels_atom) {
        std::vector<std::string> names;
        for (const auto& entry : self->state.channels) names.push_back(entry.first);
        std::sort(names.begin(), names.end());
        return names;
      },
      [=](stats_atom) {
        collect_all(self);
        const auto& st = self->state;
        bus_stats result;
        result.received = st.received;
        result.delivered = st.delivered;
        result.missed = st.missed;
        result.generation = st.generation;
        result.rejected_messages = st.rejected_messages;
        result.bad_acks = st.bad_acks;
        result.refused_unsubscribes = st.refused_unsubscribes;
        result.tables = tables(st);
        for (const auto& [channel, subs] : st.channels)
          for (const auto& s : subs)
            result.subscriptions.push_back(subscription_stats{
                channel, s.subscriber.address(), s.bound, s.in_flight, s.delivered, s.missed});
        return result;
      },
      [=](const received_notifications& batch) {
        if (!from_listener(self)) return;
        const auto& items = batch.notifications;
        self->state.received += items.size();
        if (items.empty()) return;
        // One socket read is almost always one channel: pass it on whole.
        if (items.one_channel()) return route(self, items.front().channel, items);
        std::vector<std::string_view> channels;
        for (const auto& n : items)
          if (std::find(channels.begin(), channels.end(), n.channel) == channels.end())
            channels.push_back(n.channel);
        for (auto channel : channels) route(self, channel, items.only(channel));
      },
      [=](const reconnected& msg) {
        if (!from_listener(self)) return;
        self->state.generation = msg.generation;
        for (const auto& who : self->state.reconnect_subscribers) send_to(self, who, msg);
      },
      [=](ack_atom, const std::string& channel, uint32_t count) {
        auto i = self->state.channels.find(channel);
        // Found by control block: an actor_addr would cost atomic reference
        // counting on every ack.
        if (i != self->state.channels.end()) {
          if (auto* sub = i->second.find(self->current_sender().get())) {
            // From a subscriber on this node, also word that it acked locally.
            collect(self, channel, *sub);
            if (count > sub->in_flight)
              bad_ack(self, sub->subscriber.address(), channel, count, sub->in_flight);
            else
              sub->in_flight -= count;
            report_loss_when_caught_up(self, channel, *sub);
            return;
          }
        }
        // A late ack for a cancelled subscription (its dynamic channel may be gone).
        auto& cancelled = self->state.cancelled;
        auto who = caf::actor_cast<caf::actor_addr>(self->current_sender());
        auto j = cancelled.find({who, channel});
        if (j == cancelled.end()) {
          // Word from local acks (count 0) may come after they were collected.
          if (count > 0 || !who || who.node() != self->node())
            bad_ack(self, who, channel, count, 0);
          return;
        }
        auto& entry = j->second;
        if (entry.acks) settle_local(self, who, channel, entry.in_flight, entry.acks->take());
        if (count > entry.in_flight)
          bad_ack(self, who, channel, count, entry.in_flight);
        else
          entry.in_flight -= count;
        settle_cancelled(self, j);
      },
  };
}

}  // namespace pgnotify
