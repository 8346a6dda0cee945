#include "type_ids.hpp"

#include "errors.hpp"

namespace pgnotify {

std::string to_string(connection_state x) {
  switch (x) {
    case connection_state::connecting:
      return "connecting";
    case connection_state::listening:
      return "listening";
    case connection_state::backing_off:
      return "backing_off";
  }
  return "unknown";
}

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::pgnotify>();
  cfg.add_error_category(error_category,
                         [](uint8_t code, caf::atom_value category, const caf::message& context) {
                           return render(caf::error{code, category, context});
                         });
}

}  // namespace pgnotify
