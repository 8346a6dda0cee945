// Notifications on the hot path. A notification_batch keeps every channel name
// and payload of one socket read in one buffer: each NOTIFY is copied once, from
// libpq's PGnotify into the batch, and the batch is shared, never copied, by
// every subscriber it reaches. A notification is a view into its batch.
#pragma once

#include <atomic>
#include <cstdint>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>

namespace pgnotify {

/// One NOTIFY as PostgreSQL delivered it: a view into the batch that carries
/// it, valid while the batch lives (in a subscriber's callback: until the
/// callback returns). Copy what must outlive it.
struct notification {
  std::string_view channel;
  std::string_view payload;  ///< byte for byte as sent; may be empty
  int32_t backend_pid = 0;   ///< the notifying backend
  uint64_t generation = 0;   ///< the connection generation it arrived in (>= 1)
};

/// Where a subscriber on the registry's own node acks: an atomic count of the
/// notifications it has processed, which the registry collects when it next
/// sends to it, instead of an (ack_atom, channel, count) message per batch.
/// Only a subscriber that lags needs to tell the registry (see add). The add
/// and the registry's request for word (take_and_wait) are sequentially
/// consistent, so an add that misses the request is seen by the take that
/// follows it. Ack each batch once, here or by message, never both.
class alignas(64) local_acks {
 public:
  /// Subscriber: `count` more notifications processed. True if the registry
  /// waits to hear of it: then send it (ack_atom, channel, uint32_t{0}).
  bool add(uint32_t count) noexcept {
    processed_.fetch_add(count);
    return waiting_.load() && waiting_.exchange(false);
  }

  /// Registry: what was processed since the last take; stops waiting (a
  /// registry that still waits asks again, by take_and_wait).
  uint64_t take() noexcept {
    if (waiting_.load(std::memory_order_relaxed)) waiting_.store(false);
    return processed_.exchange(0);
  }

  /// Registry: asks the next add() to report, then takes.
  uint64_t take_and_wait() noexcept {
    waiting_.store(true);
    return processed_.exchange(0);
  }

 private:
  std::atomic<uint64_t> processed_{0};
  std::atomic<bool> waiting_{false};
};

/// Notifications in arrival order, all of one generation; immutable and cheap
/// to copy (copies share the buffer).
class notification_batch {
 public:
  class builder;
  class const_iterator;
  using value_type = notification;
  using size_type = size_t;

  notification_batch() = default;

  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  uint64_t generation() const noexcept;

  notification operator[](size_t index) const noexcept;
  notification front() const noexcept { return (*this)[0]; }
  const_iterator begin() const noexcept;
  const_iterator end() const noexcept;

  /// True if every notification is of the first one's channel.
  bool one_channel() const noexcept;
  /// The first `count` (at most size()) notifications, sharing this buffer.
  notification_batch first(size_t count) const;
  /// The notifications of `channel`, in order, copied into a new batch.
  notification_batch only(std::string_view channel) const;

  /// Where the recipient acks this batch without a message (see local_acks):
  /// set by a registry on the recipient's node, null from another node (it
  /// does not travel). Acking is pgnotify::ack's job (actors/subscriber.hpp).
  local_acks* acks() const noexcept { return acks_.get(); }
  /// This batch, acked into `acks` (moved from: no copy on the hot path).
  notification_batch with_acks(std::shared_ptr<local_acks> acks) &&;

  /// The form a batch takes on the wire: one element per notification.
  struct wire_item {
    std::string channel;
    std::string payload;
    int32_t backend_pid = 0;
  };
  std::vector<wire_item> to_wire() const;
  static notification_batch from_wire(const std::vector<wire_item>& items, uint64_t generation);

 private:
  struct entry {
    uint32_t channel_offset;
    uint32_t channel_size;
    uint32_t payload_offset;
    uint32_t payload_size;
    int32_t backend_pid;
  };
  struct storage {
    std::string text;  ///< channel names and payloads, back to back
    std::vector<entry> entries;
    uint64_t generation = 0;
  };

  std::shared_ptr<const storage> data_;
  size_t size_ = 0;  ///< a prefix of data_->entries
  std::shared_ptr<local_acks> acks_;
};

/// Builds a batch: one copy of each notification into one growing buffer (a
/// channel name repeated from the previous notification is not copied again).
class notification_batch::builder {
 public:
  void add(std::string_view channel, std::string_view payload, int32_t backend_pid);
  size_t size() const noexcept { return data_ ? data_->entries.size() : 0; }
  bool empty() const noexcept { return size() == 0; }
  /// Bytes of channel names and payloads added (a repeated name counts once).
  size_t bytes() const noexcept { return data_ ? data_->text.size() : 0; }
  /// The batch built so far, of `generation`; the builder starts a new one,
  /// with room for one as large.
  notification_batch finish(uint64_t generation);
  /// Forgets what was added.
  void clear() noexcept { data_.reset(); }

 private:
  static constexpr size_t max_spare_bytes = 1 << 20;
  void start();

  std::shared_ptr<storage> data_;
  std::shared_ptr<storage> spare_;  ///< the last batch's storage, reused once nobody holds it
  size_t text_hint_ = 0;
  size_t entries_hint_ = 0;
};

class notification_batch::const_iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = notification;
  using difference_type = std::ptrdiff_t;
  using pointer = void;
  using reference = notification;

  const_iterator(const notification_batch* batch, size_t index) : batch_(batch), index_(index) {}
  notification operator*() const noexcept { return (*batch_)[index_]; }
  const_iterator& operator++() noexcept {
    ++index_;
    return *this;
  }
  const_iterator operator++(int) noexcept {
    auto result = *this;
    ++index_;
    return result;
  }
  friend bool operator==(const const_iterator& x, const const_iterator& y) noexcept {
    return x.index_ == y.index_;
  }
  friend bool operator!=(const const_iterator& x, const const_iterator& y) noexcept {
    return x.index_ != y.index_;
  }

 private:
  const notification_batch* batch_;
  size_t index_;
};

inline notification_batch::const_iterator notification_batch::begin() const noexcept {
  return {this, 0};
}

inline notification_batch::const_iterator notification_batch::end() const noexcept {
  return {this, size_};
}

inline notification notification_batch::operator[](size_t index) const noexcept {
  const auto& e = data_->entries[index];
  const char* text = data_->text.data();
  return notification{std::string_view{text + e.channel_offset, e.channel_size},
                      std::string_view{text + e.payload_offset, e.payload_size}, e.backend_pid,
                      data_->generation};
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, notification_batch::wire_item& x) {
  return f(caf::meta::type_name("pgnotify.notification"), x.channel, x.payload, x.backend_pid);
}

// On the wire a batch is its generation and its notifications; the shared
// buffer is rebuilt on arrival.
template <class Inspector>
std::enable_if_t<Inspector::reads_state, typename Inspector::result_type> inspect(
    Inspector& f, const notification_batch& x) {
  auto generation = x.generation();
  auto items = x.to_wire();
  return f(caf::meta::type_name("pgnotify.notification_batch"), generation, items);
}

template <class Inspector>
std::enable_if_t<Inspector::writes_state, typename Inspector::result_type> inspect(
    Inspector& f, notification_batch& x) {
  uint64_t generation = 0;
  std::vector<notification_batch::wire_item> items;
  return f(caf::meta::type_name("pgnotify.notification_batch"), generation, items,
           caf::meta::load_callback([&]() -> caf::error {
             try {
               x = notification_batch::from_wire(items, generation);
             } catch (const std::length_error&) {  // over 4 GiB from another node
               return caf::sec::invalid_argument;
             }
             return caf::none;
           }));
}

}  // namespace pgnotify
