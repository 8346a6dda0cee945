#include "registry.hpp"

#include <algorithm>

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

void track(registry_pointer self, const caf::actor& who) {
  if (self->state.monitored[who.address()]++ == 0) self->monitor(who);
}

void untrack(registry_pointer self, const caf::actor& who) {
  auto i = self->state.monitored.find(who.address());
  if (i != self->state.monitored.end() && --i->second == 0) {
    self->demonitor(who);
    self->state.monitored.erase(i);
  }
}

caf::error unknown_channel(const std::string& channel) {
  return make_error(errc::unknown_channel, "not one of the bus's channels: " + channel);
}

caf::expected<std::vector<subscription>*> find_channel(registry_pointer self,
                                                       const std::string& channel) {
  if (auto err = validate_channel_name(channel)) return err;
  auto i = self->state.channels.find(channel);
  if (i == self->state.channels.end()) return unknown_channel(channel);
  return &i->second;
}

void add_subscription(registry_pointer self, const std::string& channel,
                      std::vector<subscription>& subs, caf::actor who, uint32_t bound) {
  auto i = std::find_if(subs.begin(), subs.end(),
                        [&](const subscription& s) { return s.subscriber == who; });
  if (i != subs.end()) {
    i->bound = bound;  // subscribing again only updates the bound
    return;
  }
  track(self, who);
  subscription sub{who, bound};
  // Batches of an earlier subscription may still be unacked: they count.
  auto& unacked = self->state.unacked_after_unsubscribe;
  if (auto j = unacked.find({who.address(), channel}); j != unacked.end()) {
    sub.in_flight = j->second;
    unacked.erase(j);
  }
  subs.push_back(std::move(sub));
}

// With dynamic channels, a channel nobody subscribes to any more is UNLISTENed.
void drop_if_unused(registry_pointer self, const std::string& channel) {
  auto& st = self->state;
  auto i = st.channels.find(channel);
  if (!st.dynamic || i == st.channels.end() || !i->second.empty() || st.permanent.count(channel) ||
      st.pending_listens.count(channel))
    return;
  st.channels.erase(i);
  self->send(st.listener, unlisten_atom_v, channel);
}

caf::result<caf::ok_atom> subscribe(registry_pointer self, const std::string& channel,
                                    caf::actor who, uint32_t bound) {
  if (!who) return make_error(errc::invalid_argument, "subscriber is an invalid actor handle");
  if (bound == 0) return make_error(errc::invalid_argument, "bound must be at least 1");
  auto subs = find_channel(self, channel);
  if (subs) {
    add_subscription(self, channel, **subs, std::move(who), bound);
    return caf::ok_atom_v;
  }
  if (subs.error() != make_error(errc::unknown_channel) || !self->state.dynamic)
    return std::move(subs.error());
  // A new dynamic channel: answer once the server has acknowledged the LISTEN.
  // Meanwhile the channel must not be UNLISTENed by another subscriber leaving.
  ++self->state.pending_listens[channel];
  auto promise = self->make_response_promise<caf::ok_atom>();
  auto done = [=] {
    auto& pending = self->state.pending_listens;
    if (--pending[channel] == 0) pending.erase(channel);
  };
  self->request(self->state.listener, caf::infinite, listen_atom_v, channel)
      .then(
          [=](caf::ok_atom) mutable {
            done();
            auto& subs = self->state.channels[channel];
            auto& cancelled = self->state.cancelled_while_pending;
            if (cancelled.erase({who.address(), channel}) == 0)
              add_subscription(self, channel, subs, who, bound);
            drop_if_unused(self, channel);  // UNLISTENs again if it was cancelled
            promise.deliver(caf::ok_atom_v);
          },
          [=](caf::error& err) mutable {
            done();
            self->state.cancelled_while_pending.erase({who.address(), channel});
            drop_if_unused(self, channel);
            promise.deliver(std::move(err));
          });
  return promise;
}

// Delivers one channel's notifications to its subscribers: the whole batch as one
// shared message to each subscriber with room for it, a copied prefix to one with
// room for part of it, and a count to one that is lagging.
void dispatch(registry_pointer self, const std::string& channel, std::vector<subscription>& subs,
              std::vector<notification>&& items) {
  auto& st = self->state;
  if (subs.empty()) {
    logger()->debug("pgnotify: {} notification(s) on {:?} without subscribers", items.size(),
                    channel);
    return;
  }
  auto count = static_cast<uint32_t>(items.size());
  auto shared = caf::make_message(notification_batch{std::move(items)});
  const auto& all = shared.get_as<notification_batch>(0).notifications;
  for (auto& sub : subs) {
    uint32_t room = sub.unreported > 0 ? 0 : sub.bound - std::min(sub.bound, sub.in_flight);
    uint32_t sent = std::min(room, count);
    if (sent == count) {
      send_to(self, sub.subscriber, shared);
    } else if (sent > 0) {
      send_to(self, sub.subscriber,
              notification_batch{std::vector<notification>(all.begin(), all.begin() + sent)});
    }
    sub.in_flight += sent;
    sub.delivered += sent;
    sub.unreported += count - sent;
    sub.missed += count - sent;
    st.delivered += sent;
    st.missed += count - sent;
  }
}

void route(registry_pointer self, const std::string& channel, std::vector<notification>&& items) {
  auto i = self->state.channels.find(channel);
  if (i == self->state.channels.end()) {
    logger()->debug("pgnotify: ignoring a notification on unregistered channel {:?}", channel);
    return;
  }
  dispatch(self, channel, i->second, std::move(items));
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

void bad_ack(registry_pointer self, const std::string& channel, uint32_t count,
             uint32_t in_flight) {
  self->state.bad_acks += 1;
  logger()->warn("pgnotify: dropped an ack of {} on {:?} from {}, which has {} in flight there",
                 count, channel, caf::to_string(self->current_sender()), in_flight);
}

void forget(registry_pointer self, const caf::actor_addr& who) {
  auto& st = self->state;
  std::vector<std::string> emptied;
  for (auto& [channel, subs] : st.channels) {
    auto before = subs.size();
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const subscription& s) { return s.subscriber.address() == who; }),
               subs.end());
    if (subs.empty() && before > 0) emptied.push_back(channel);
  }
  for (const auto& channel : emptied) drop_if_unused(self, channel);
  auto& gens = st.reconnect_subscribers;
  gens.erase(std::remove_if(gens.begin(), gens.end(),
                            [&](const caf::actor& a) { return a.address() == who; }),
             gens.end());
  st.monitored.erase(who);
  auto& unacked = st.unacked_after_unsubscribe;
  for (auto j = unacked.begin(); j != unacked.end();)
    j = j->first.first == who ? unacked.erase(j) : std::next(j);
  auto& cancelled = st.cancelled_while_pending;
  for (auto j = cancelled.begin(); j != cancelled.end();)
    j = j->first == who ? cancelled.erase(j) : std::next(j);
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
      [=](subscribe_atom, const std::string& channel, caf::actor who) {
        return subscribe(self, channel, std::move(who), self->state.default_bound);
      },
      [=](subscribe_atom, const std::string& channel, caf::actor who, uint32_t bound) {
        return subscribe(self, channel, std::move(who), bound);
      },
      [=](unsubscribe_atom, const std::string& channel,
          const caf::actor& who) -> caf::result<caf::ok_atom> {
        auto& st = self->state;
        if (st.pending_listens.count(channel) && !st.channels.count(channel)) {
          // Its subscribe still waits for the LISTEN: cancel it when it lands.
          st.cancelled_while_pending.emplace(who.address(), channel);
          return caf::ok_atom_v;
        }
        auto subs = find_channel(self, channel);
        if (!subs) return std::move(subs.error());
        auto i = std::find_if((*subs)->begin(), (*subs)->end(),
                              [&](const subscription& s) { return s.subscriber == who; });
        if (i == (*subs)->end() && st.pending_listens.count(channel))
          st.cancelled_while_pending.emplace(who.address(), channel);
        if (i != (*subs)->end()) {
          if (i->in_flight > 0)
            self->state.unacked_after_unsubscribe[{who.address(), channel}] = i->in_flight;
          (*subs)->erase(i);
          untrack(self, who);
          drop_if_unused(self, channel);
        }
        return caf::ok_atom_v;
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
        const auto& st = self->state;
        bus_stats result{st.received, st.delivered,         st.missed,  st.generation,
                         {},          st.rejected_messages, st.bad_acks};
        for (const auto& [channel, subs] : st.channels)
          for (const auto& s : subs)
            result.subscriptions.push_back(subscription_stats{
                channel, s.subscriber.address(), s.bound, s.in_flight, s.delivered, s.missed});
        return result;
      },
      [=](received_notifications& batch) {
        if (!from_listener(self)) return;
        auto& items = batch.notifications;
        self->state.received += items.size();
        if (items.empty()) return;
        // One socket read is almost always one channel: pass it on whole.
        const auto& first = items.front().channel;
        if (std::all_of(items.begin(), items.end(),
                        [&](const notification& n) { return n.channel == first; })) {
          auto channel = first;
          return route(self, channel, std::move(items));
        }
        std::vector<std::pair<std::string, std::vector<notification>>> groups;
        for (auto& n : items) {
          auto g = std::find_if(groups.begin(), groups.end(),
                                [&](const auto& group) { return group.first == n.channel; });
          if (g == groups.end()) g = groups.insert(groups.end(), {n.channel, {}});
          g->second.push_back(std::move(n));
        }
        for (auto& [channel, group] : groups) route(self, channel, std::move(group));
      },
      [=](const reconnected& msg) {
        if (!from_listener(self)) return;
        self->state.generation = msg.generation;
        for (const auto& who : self->state.reconnect_subscribers) send_to(self, who, msg);
      },
      [=](ack_atom, const std::string& channel, uint32_t count) {
        auto i = self->state.channels.find(channel);
        // Compared by control block: building an actor_addr per subscription
        // would cost atomic reference counting on every ack.
        auto sender = self->current_sender().get();
        if (i != self->state.channels.end()) {
          for (auto& sub : i->second) {
            if (sub.subscriber->ctrl() != sender) continue;
            // An ack never frees credit the subscriber did not consume.
            if (count > sub.in_flight) return bad_ack(self, channel, count, sub.in_flight);
            sub.in_flight -= count;
            if (sub.in_flight == 0 && sub.unreported > 0) {
              send_to(self, sub.subscriber, lagged{channel, sub.unreported});
              sub.unreported = 0;
            }
            return;
          }
        }
        // A late ack for a cancelled subscription (its dynamic channel may be gone).
        auto& unacked = self->state.unacked_after_unsubscribe;
        auto j = unacked.find({caf::actor_cast<caf::actor_addr>(self->current_sender()), channel});
        if (j == unacked.end() || count > j->second)
          return bad_ack(self, channel, count, j == unacked.end() ? 0 : j->second);
        if ((j->second -= count) == 0) unacked.erase(j);
      },
  };
}

}  // namespace pgnotify
