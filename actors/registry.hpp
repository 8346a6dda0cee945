// The registry actor's settings. The registry: channel -> subscribers. Fans each socket read out as
// one shared batch per channel, bounds each subscriber's unacked notifications, tells a subscriber
// that overflowed exactly how many it missed, broadcasts reconnected{g}, and forgets subscribers
// that die.
#pragma once

#include <string>
#include <vector>

#include <caf/actor_addr.hpp>

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

}  // namespace pgnotify
