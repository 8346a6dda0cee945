#include "notification_batch.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>

namespace pgnotify {

uint64_t notification_batch::generation() const noexcept {
  return data_ ? data_->generation : 0;
}

bool notification_batch::one_channel() const noexcept {
  if (size_ == 0) return true;
  const auto& entries = data_->entries;
  auto first = front().channel;
  return std::all_of(entries.begin() + 1, entries.begin() + size_, [&](const entry& e) {
    // Repeated channel names share their bytes: the same place is the same name.
    return (e.channel_offset == entries.front().channel_offset &&
            e.channel_size == entries.front().channel_size) ||
           std::string_view{data_->text.data() + e.channel_offset, e.channel_size} == first;
  });
}

notification_batch notification_batch::first(size_t count) const {
  notification_batch result = *this;
  result.size_ = std::min(count, size_);
  return result;
}

notification_batch notification_batch::with_acks(std::shared_ptr<local_acks> acks) && {
  acks_ = std::move(acks);
  return std::move(*this);
}

notification_batch notification_batch::only(std::string_view channel) const {
  builder out;
  for (const auto& n : *this)
    if (n.channel == channel) out.add(n.channel, n.payload, n.backend_pid);
  return out.finish(generation());
}

std::vector<notification_batch::wire_item> notification_batch::to_wire() const {
  std::vector<wire_item> result;
  result.reserve(size_);
  for (const auto& n : *this)
    result.push_back(wire_item{std::string{n.channel}, std::string{n.payload}, n.backend_pid});
  return result;
}

notification_batch notification_batch::from_wire(const std::vector<wire_item>& items,
                                                 uint64_t generation) {
  builder out;
  for (const auto& item : items) out.add(item.channel, item.payload, item.backend_pid);
  return out.finish(generation);
}

void notification_batch::builder::add(std::string_view channel, std::string_view payload,
                                      int32_t backend_pid) {
  if (!data_) start();
  auto& text = data_->text;
  auto& entries = data_->entries;
  if (text.size() + channel.size() + payload.size() > std::numeric_limits<uint32_t>::max())
    throw std::length_error("pgnotify: a notification batch holds at most 4 GiB");
  entry e{};
  if (!entries.empty() && std::string_view{text.data() + entries.back().channel_offset,
                                           entries.back().channel_size} == channel) {
    e.channel_offset = entries.back().channel_offset;
  } else {
    e.channel_offset = static_cast<uint32_t>(text.size());
    text.append(channel);
  }
  e.channel_size = static_cast<uint32_t>(channel.size());
  e.payload_offset = static_cast<uint32_t>(text.size());
  e.payload_size = static_cast<uint32_t>(payload.size());
  e.backend_pid = backend_pid;
  text.append(payload);
  entries.push_back(e);
}

void notification_batch::builder::start() {
  // The last batch's buffers, once every copy of it is gone: a burst then reads
  // into memory that is already there (no allocation, no page faults).
  // use_count() is a relaxed load in libstdc++ (and libc++); 1 means every
  // other owner has let go, each with an acq_rel decrement, and none can come
  // back: the fence makes their last reads happen before the rewrite.
  if (spare_ && spare_.use_count() == 1) {
    std::atomic_thread_fence(std::memory_order_acquire);
    data_ = std::move(spare_);
    data_->text.clear();
    data_->entries.clear();
    return;
  }
  spare_.reset();
  data_ = std::make_shared<storage>();
  data_->text.reserve(text_hint_);
  data_->entries.reserve(entries_hint_);
}

notification_batch notification_batch::builder::finish(uint64_t generation) {
  notification_batch result;
  if (!data_) return result;
  data_->generation = generation;
  text_hint_ = data_->text.size();
  entries_hint_ = data_->entries.size();
  // Kept for reuse unless it grew large (a burst of big payloads).
  if (data_->text.capacity() + data_->entries.capacity() * sizeof(entry) <= max_spare_bytes)
    spare_ = data_;
  result.size_ = data_->entries.size();
  result.data_ = std::move(data_);
  return result;
}

}  // namespace pgnotify
