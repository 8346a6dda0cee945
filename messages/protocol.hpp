// The whole pgnotify actor protocol: every message type, atom and typed actor
// interface. Read this file to know what flows between the listener, the registry,
// the bus and subscriber actors; DESIGN.md §2 is the prose version.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/timestamp.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>

#include "notification_batch.hpp"

// Atoms (at most 10 characters). CAF 0.17's CAF_ADD_ATOM assigns no type ID, so
// the atoms may precede the type ID block in messages/type_ids.hpp.
CAF_ADD_ATOM(pgnotify, pgnotify, subscribe_atom, "subscribe")
CAF_ADD_ATOM(pgnotify, pgnotify, unsubscribe_atom, "unsubscrib")
CAF_ADD_ATOM(pgnotify, pgnotify, reconnects_atom, "reconnects")
CAF_ADD_ATOM(pgnotify, pgnotify, channels_atom, "channels")
CAF_ADD_ATOM(pgnotify, pgnotify, ack_atom, "ack")
CAF_ADD_ATOM(pgnotify, pgnotify, status_atom, "status")
CAF_ADD_ATOM(pgnotify, pgnotify, stats_atom, "stats")
CAF_ADD_ATOM(pgnotify, pgnotify, connect_atom, "connect")
CAF_ADD_ATOM(pgnotify, pgnotify, readable_atom, "readable")
CAF_ADD_ATOM(pgnotify, pgnotify, writable_atom, "writable")
CAF_ADD_ATOM(pgnotify, pgnotify, deadline_atom, "deadline")
CAF_ADD_ATOM(pgnotify, pgnotify, restart_atom, "restart")
CAF_ADD_ATOM(pgnotify, pgnotify, health_atom, "health")
CAF_ADD_ATOM(pgnotify, pgnotify, listen_atom, "listen")
CAF_ADD_ATOM(pgnotify, pgnotify, unlisten_atom, "unlisten")
CAF_ADD_ATOM(pgnotify, pgnotify, listening_atom, "listening")
CAF_ADD_ATOM(pgnotify, pgnotify, batch_limit_atom, "batchlimit")
// The protocol version in bus_actor's interface: "pgnotify" + protocol_version.
CAF_ADD_ATOM(pgnotify, pgnotify, protocol_atom, "pgnotify3")

namespace pgnotify {

/// The version of this protocol. bus_actor carries it as protocol_atom, so a
/// node's remote_actor<bus_actor> refuses a bus of another version
/// (unexpected_actor_messaging_interface; the error's context holds both
/// interfaces). Version 1 had no marker, and its nodes accept a newer bus.
constexpr uint32_t protocol_version = 3;

/// Everything one socket read delivered, any channels, in arrival order.
/// listener -> registry. The registry hands it on whole to the subscribers of
/// its channel (the usual case: one channel per read), or split by channel.
struct received_notifications {
  notification_batch notifications;
};

/// registry -> subscriber: a notification_batch of one channel (see
/// notification_batch.hpp). The registry sends the same batch to every
/// subscriber that has room for all of it, a prefix to one with room for part.
///
/// subscriber -> the batch's sender: (ack_atom, channel, count), the number of
/// that channel's notifications it has processed since its last ack. One ack
/// may cover several batches. A subscriber must ack at the latest once it has
/// processed half its bound unacked, and everything once nothing else waits
/// in its mailbox: the registry sends only within the bound, and reports a
/// loss (lagged) once everything sent has been acked. An ack for more than is
/// in flight frees nothing (bus_stats::bad_acks).
///
/// On the registry's own node a batch carries local_acks (batch.acks() is not
/// null): the subscriber acks each batch there once processed, an atomic add
/// that the registry collects whenever it sends, and sends (ack_atom, channel,
/// 0) only when local_acks::add asks for it (the registry waits to report a
/// loss). pgnotify::ack (actors/subscriber.hpp) does either, as the batch asks.
/// Acks by message remain valid on any node; ack each batch one way only. A
/// local ack for more than is in flight counts as a bad ack and frees only
/// what is in flight (it cannot be refused: it is counted already).

/// A subscriber's view of the sender of its batches: the registry, to which it
/// sends nothing but acks (the registry checks them, and refuses anything
/// internal from anyone but the listener and the bus).
using ack_handle = caf::typed_actor<caf::reacts_to<ack_atom, std::string, uint32_t>>;

/// registry -> subscriber: exactly `missed` notifications of `channel` were not
/// delivered to this subscriber because it exceeded its bound. Sent once it has
/// acked everything it was sent; the stream continues right after.
struct lagged {
  std::string channel;
  uint64_t missed = 0;
};

/// listener -> registry -> reconnect subscribers: a (re)connect succeeded and
/// every channel is LISTENed again. Generation 1 is the first connect.
struct reconnected {
  uint64_t generation = 0;
};

/// True when `generation` means "notifications may have been lost since you
/// took `snapshot`": only a generation above both the snapshot and the boot
/// connect (1) is a reconnect, so an early subscriber (snapshot 0) does not
/// resync on boot, while a late one (snapshot g) resyncs on g + 1.
constexpr bool is_reconnect(uint64_t snapshot, uint64_t generation) {
  return generation > snapshot && generation > 1;
}

enum class connection_state : uint8_t { connecting, listening, backing_off };

std::string to_string(connection_state x);

/// bus/listener -> user: the connection's state.
struct bus_status {
  connection_state state = connection_state::connecting;
  uint64_t generation = 0;
  std::string last_error;        ///< empty if there never was one; never holds a password
  caf::timestamp last_error_at;  ///< when last_error happened
  caf::timespan retry_in{0};     ///< while backing off: the delay before the next attempt
  /// Failed connects, and connections that dropped right after they were made,
  /// since the last connection that lasted (a lasting one that drops is
  /// replaced at once and is no failure).
  uint32_t failed_attempts = 0;
  uint64_t health_checks_passed = 0;  ///< on the current connection
  double queue_usage = 0;             ///< pg_notification_queue_usage() at the last health check
  uint32_t listener_restarts = 0;     ///< times the bus restarted a listener that crashed
};

/// One subscription's counters.
struct subscription_stats {
  std::string channel;
  caf::actor_addr subscriber;
  uint32_t bound = 0;
  uint32_t in_flight = 0;  ///< sent, not yet acked
  uint64_t delivered = 0;
  uint64_t missed = 0;  ///< in total, reported or not
};

/// The sizes of the registry's internal tables. Once every actor that
/// subscribed (or asked for reconnects) is dead, and no subscribe waits for a
/// LISTEN, all of them are 0 but `channels`, which is back to the bus's channels.
struct registry_tables {
  uint64_t channels = 0;               ///< registered channels, fixed and dynamic
  uint64_t subscriptions = 0;          ///< active subscriptions, all channels
  uint64_t pending_listens = 0;        ///< dynamic channels whose LISTEN is under way
  uint64_t pending_subscribes = 0;     ///< subscribers waiting for those LISTENs
  uint64_t pending_replies = 0;        ///< subscribe requests waiting for those LISTENs
  uint64_t cancelled = 0;              ///< unsubscribed with notifications still unacked
  uint64_t monitored = 0;              ///< actors the registry monitors
  uint64_t reconnect_subscribers = 0;  ///< actors that asked for reconnected{g}

  friend bool operator==(const registry_tables& x, const registry_tables& y) {
    return x.channels == y.channels && x.subscriptions == y.subscriptions &&
           x.pending_listens == y.pending_listens && x.pending_subscribes == y.pending_subscribes &&
           x.pending_replies == y.pending_replies && x.cancelled == y.cancelled &&
           x.monitored == y.monitored && x.reconnect_subscribers == y.reconnect_subscribers;
  }
  friend bool operator!=(const registry_tables& x, const registry_tables& y) { return !(x == y); }
};

/// bus/registry -> user: counters since the bus started.
struct bus_stats {
  uint64_t received = 0;    ///< notifications read from the connection
  uint64_t delivered = 0;   ///< notification deliveries to subscribers
  uint64_t missed = 0;      ///< deliveries skipped because a subscriber lagged
  uint64_t generation = 0;  ///< reconnects = generation - 1 once connected
  std::vector<subscription_stats> subscriptions;
  /// Internal messages (notifications, generations, the listener handle) that
  /// came from someone else than the listener or the bus, and were dropped.
  uint64_t rejected_messages = 0;
  /// Acks for more than the sender had in flight on that channel, or for no
  /// subscription of the sender: dropped, they free no credit.
  uint64_t bad_acks = 0;
  /// Unsubscribes refused: from a remote node for another node's actor, or
  /// without a sender.
  uint64_t refused_unsubscribes = 0;
  registry_tables tables;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, received_notifications& x) {
  return f(caf::meta::type_name("pgnotify.received_notifications"), x.notifications);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lagged& x) {
  return f(caf::meta::type_name("pgnotify.lagged"), x.channel, x.missed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reconnected& x) {
  return f(caf::meta::type_name("pgnotify.reconnected"), x.generation);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bus_status& x) {
  return f(caf::meta::type_name("pgnotify.bus_status"), x.state, x.generation, x.last_error,
           x.last_error_at, x.retry_in, x.failed_attempts, x.health_checks_passed, x.queue_usage,
           x.listener_restarts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, subscription_stats& x) {
  return f(caf::meta::type_name("pgnotify.subscription_stats"), x.channel, x.subscriber, x.bound,
           x.in_flight, x.delivered, x.missed);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_tables& x) {
  return f(caf::meta::type_name("pgnotify.registry_tables"), x.channels, x.subscriptions,
           x.pending_listens, x.pending_subscribes, x.pending_replies, x.cancelled, x.monitored,
           x.reconnect_subscribers);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bus_stats& x) {
  return f(caf::meta::type_name("pgnotify.bus_stats"), x.received, x.delivered, x.missed,
           x.generation, x.subscriptions, x.rejected_messages, x.bad_acks, x.refused_unsubscribes,
           x.tables);
}

// -- typed interfaces ---------------------------------------------------------

// clang-format off

/// What users may ask of the bus (and of the registry behind it). Subscribers
/// are plain `caf::actor`s that handle notification_batch, lagged and
/// reconnected (actors/subscriber.hpp builds one from callbacks) and ack what
/// they processed to the batch's sender (see notification_batch above).
using subscription_actor = caf::typed_actor<
  // Subscribe with the bus's default bound. Errors: invalid_channel, unknown_channel.
  caf::replies_to<subscribe_atom, std::string, caf::actor>::with<caf::ok_atom>,
  // Subscribe with a bound (>= 1) on notifications sent but not yet acked.
  caf::replies_to<subscribe_atom, std::string, caf::actor, uint32_t>::with<caf::ok_atom>,
  // Idempotent. Errors: invalid_channel, unknown_channel.
  caf::replies_to<unsubscribe_atom, std::string, caf::actor>::with<caf::ok_atom>,
  // Ask for reconnected{g} broadcasts; replies the current generation (0 = never connected).
  caf::replies_to<reconnects_atom, caf::actor>::with<uint64_t>,
  // The registered channel names, sorted.
  caf::replies_to<channels_atom>::with<std::vector<std::string>>,
  caf::replies_to<stats_atom>::with<bus_stats>>;

/// The listener: owns the connection; only the bus, the registry, CAF's event
/// loop and the listener itself talk to it. `attempt` numbers the connection
/// attempts: a message about an earlier attempt's connection is stale.
using listener_actor = caf::typed_actor<
  // (Re)connect now: self-sent at start and when a backoff is over.
  caf::reacts_to<connect_atom>,
  // The socket of connection `attempt` is readable / writable (from CAF's
  // event loop, once per request), or libpq holds input to read (self-sent).
  caf::reacts_to<readable_atom, uint64_t>,
  caf::reacts_to<writable_atom, uint64_t>,
  // A deadline of connection `attempt` passed: its connect (command 0) or its
  // command number `command` has taken too long (self-sent, delayed).
  caf::reacts_to<deadline_atom, uint64_t, uint64_t>,
  // Time for the health check of connection `attempt` (self-sent, delayed).
  caf::reacts_to<health_atom, uint64_t>,
  // Dynamic channels (registry -> listener): LISTEN on one more channel; the
  // reply comes once the server acknowledged it (or at once while disconnected:
  // the next connect LISTENs on it). UNLISTEN when its last subscriber is gone.
  caf::replies_to<listen_atom, std::string>::with<caf::ok_atom>,
  caf::reacts_to<unlisten_atom, std::string>,
  // registry -> listener: the smallest bound of the subscribers (one on
  // another node counts at least the default bound; UINT32_MAX: none); a read
  // hands on at most this many, so a burst does not cut a subscriber that
  // keeps up.
  caf::reacts_to<batch_limit_atom, uint32_t>,
  // pg_listening_channels() as the server reports it for this connection.
  caf::replies_to<listening_atom>::with<std::vector<std::string>>,
  caf::replies_to<status_atom>::with<bus_status>>;

/// The registry: subscription_actor plus what the listener, the bus and
/// subscribers send it.
using registry_actor = subscription_actor::extend<
  caf::reacts_to<received_notifications>,
  caf::reacts_to<reconnected>,
  // subscriber -> registry: processed `count` notifications of `channel`.
  caf::reacts_to<ack_atom, std::string, uint32_t>,
  // bus -> registry, once: the listener, which LISTENs for dynamic channels.
  caf::reacts_to<listener_actor>>;

/// The bus: the user's entry point. It supervises the listener: one that
/// crashed is restarted after a backoff (restart_atom, self-sent).
using bus_actor = subscription_actor::extend<
  // The protocol version: replies protocol_version.
  caf::replies_to<protocol_atom>::with<uint32_t>,
  // A subscribe from another node names its protocol version (the last
  // element); bound 0 means the bus's default bound. Errors: those of
  // subscribe, and protocol_mismatch (naming both versions) for another
  // version, or for a remote subscribe without a version (protocol 1 and 2).
  caf::replies_to<subscribe_atom, std::string, caf::actor, uint32_t, uint32_t>::with<caf::ok_atom>,
  caf::reacts_to<restart_atom>,
  caf::replies_to<status_atom>::with<bus_status>,
  // What the server says the bus's connection LISTENs on (error: not_connected).
  caf::replies_to<listening_atom>::with<std::vector<std::string>>>;

// clang-format on

}  // namespace pgnotify
