// The listener's real connection: libpq's non-blocking API (libpqxx 6 hides
// PGconn and has no non-blocking interface), with socket readiness from CAF's
// event loop through a socket_watcher.
#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/io/network/default_multiplexer.hpp>

#include "connection.hpp"
#include "host_lookup.hpp"

struct pg_conn;

namespace pgnotify::pg {

class socket_watcher;

class pq_connection final : public connection {
 public:
  /// Starts connecting (PQconnectStart) with a prepared connection string (see
  /// prepare_conninfo). Throws std::runtime_error with libpq's one-line reason
  /// if libpq fails at once. If a host is a name, it first starts resolving it
  /// with `lookup` (empty: getaddrinfo) off the workers (see host_lookup.hpp),
  /// and PQconnectStart follows in continue_connect once the addresses are in.
  pq_connection(const std::string& conninfo, caf::io::network::default_multiplexer& mux,
                caf::actor listener, lookup_function lookup = {});
  ~pq_connection() override;

  connect_progress continue_connect() override;
  bool send_command(const std::string& sql) override;
  int flush() override;
  read_outcome read(notification_batch::builder& out, size_t max) override;
  bool has_pending_input() override;
  void await(readiness what, uint64_t token) override;
  std::string error_message() override;

 private:
  void start(const std::string& conninfo);
  bool start_after_lookup();
  void watch_current_socket();
  void collect_results(read_outcome& outcome);

  pg_conn* conn_ = nullptr;  ///< null while the lookup runs or after it failed
  std::unique_ptr<host_lookup> lookup_;
  std::string lookup_error_;
  caf::io::network::default_multiplexer& mux_;
  caf::actor listener_;
  /// Watches the lookup's eventfd, then libpq's socket; frees itself on the
  /// multiplexer thread after close().
  socket_watcher* watcher_ = nullptr;
  int watched_fd_ = -1;
  unsigned long watched_inode_ = 0;
  bool started_ = false;
  bool command_in_flight_ = false;
  command_result results_;  ///< of the command in flight, so far
};

/// libpq's messages span lines ("...\n\tIs the server running..."): make them one.
std::string one_line(const std::string& text);

}  // namespace pgnotify::pg
