// The listener's real connection: libpqxx, one notification_receiver per channel
// (which sends LISTEN with the name quoted), and a socket watcher thread that
// tells the listener when the socket is readable, so that an idle bus sleeps in
// poll() instead of polling.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "connection.hpp"

namespace pgnotify {

class pq_connection final : public connection {
 public:
  /// Connects with a prepared connection string (see prepare_conninfo); throws
  /// std::runtime_error with libpq's one-line reason on failure. LISTEN and
  /// UNLISTEN fail if the server does not answer within `command_timeout`.
  pq_connection(const std::string& conninfo, caf::timespan command_timeout);
  ~pq_connection() override;

  void listen(const std::string& channel) override;
  void unlisten(const std::string& channel) override;
  void receive(std::vector<notification>& out, uint64_t generation, size_t enough) override;
  void notify_when_readable(const listener_actor& listener) override;
  health check_health(caf::timespan timeout) override;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace pgnotify
