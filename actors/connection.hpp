// What the listener needs from a database connection. pq_connection is the real
// one (libpqxx); the listener's deterministic tests script a fake.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/timespan.hpp>

#include "../messages/protocol.hpp"

namespace pgnotify {

class connection {
 public:
  virtual ~connection() = default;

  /// LISTENs on `channel` (sent as a quoted identifier); returns once the server
  /// acknowledged it. Throws std::exception on failure.
  virtual void listen(const std::string& channel) = 0;

  /// UNLISTENs on `channel`. Throws std::exception on failure.
  virtual void unlisten(const std::string& channel) = 0;

  /// Reads what has arrived, without blocking, and appends its notifications,
  /// stamped with `generation`, to `out`; keeps reading while more is there and
  /// `out` holds fewer than `enough`. Throws std::exception once the connection
  /// is lost.
  virtual void receive(std::vector<notification>& out, uint64_t generation, size_t enough) = 0;

  /// Sends readable_atom to `listener` once the socket has something to read
  /// (data, EOF or an error). One shot: call again after each receive().
  virtual void notify_when_readable(const listener_actor& listener) = 0;

  /// What the health check learns from the server.
  struct health {
    std::vector<std::string> listening;  ///< pg_listening_channels() of this connection
    double queue_usage = 0;              ///< pg_notification_queue_usage(), 0 to 1
  };

  /// The health check: asks the server about this very connection. Throws
  /// std::exception if the server does not answer within `timeout` (a frozen
  /// backend or a half-open TCP connection) or the connection fails.
  /// Notifications that arrive meanwhile wait for receive().
  virtual health check_health(caf::timespan timeout) = 0;
};

/// Opens a connection, or throws std::exception with a message fit for a log
/// (never containing the password).
using connection_factory = std::function<std::unique_ptr<connection>()>;

}  // namespace pgnotify
