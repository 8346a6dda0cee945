// CAF type IDs for every pgnotify message type, and the one call that registers
// them (plus the error category) on a user's actor_system_config. Every node of
// a distributed application must call it, or remote messages arrive empty.
#pragma once

#include <caf/actor_system_config.hpp>

#include "protocol.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(pgnotify, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::notification_batch::wire_item))
CAF_ADD_TYPE_ID(pgnotify, (std::vector<pgnotify::notification_batch::wire_item>))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::notification_batch))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::received_notifications))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::lagged))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::reconnected))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::connection_state))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::bus_status))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::subscription_stats))
CAF_ADD_TYPE_ID(pgnotify, (std::vector<pgnotify::subscription_stats>))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::bus_stats))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::subscription_actor))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::registry_actor))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::listener_actor))
CAF_ADD_TYPE_ID(pgnotify, (pgnotify::bus_actor))
CAF_END_TYPE_ID_BLOCK(pgnotify)

namespace pgnotify {

/// Registers pgnotify's message types and error category. Call once per config.
void add_message_types(caf::actor_system_config& cfg);

}  // namespace pgnotify
