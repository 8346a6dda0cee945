// A scripted PostgreSQL server for deterministic tests of the listener and the
// bus (and of applications that compose the bus): give spawn_bus (or
// spawn_listener) `server->factory()` instead of a real connection, run the
// actor system with CAF's test coordinator, and script what the server does.
// The scripted connection behaves like libpq's non-blocking API: it connects
// in steps, answers LISTEN, UNLISTEN and the health check, reports readiness
// with the same messages CAF's event loop would send, and can drop, hang,
// refuse, or hold input inside "TLS". Header-only; see tests/unit/test_listener.cpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_clock.hpp>
#include <caf/send.hpp>

#include "connection.hpp"

namespace pgnotify::pg {

class scripted_server : public std::enable_shared_from_this<scripted_server> {
 public:
  // -- what the server does (set before the event) ---------------------------

  int refuse_connects = 0;          ///< the next N connects fail ("connection refused")
  bool connects_hang = false;       ///< connects never complete (TCP up, server silent)
  std::string refuse_listen_on;     ///< the next LISTEN on this channel fails
  bool next_command_hangs = false;  ///< the next command is never answered
  std::optional<std::vector<std::string>>
      listening_override;         ///< what pg_listening_channels() claims
  bool next_read_throws = false;  ///< the next read throws std::logic_error (a bug)

  // -- what happened ------------------------------------------------------------

  std::vector<caf::actor_clock::time_point> connect_attempts;  ///< needs `clock`
  std::vector<std::string> commands;                           ///< every SQL command sent, in order
  std::vector<std::string> listens;  ///< successful LISTENs, in order, all connections
  std::vector<std::string> unlistens;
  int read_requests = 0;  ///< times the listener asked to hear of readability
  const caf::actor_clock* clock = nullptr;

  // -- events (the test's actions) ---------------------------------------------

  /// A notification arrives on the current connection.
  void notify(std::string channel, std::string payload, int32_t pid = 4242) {
    if (auto link = current_) {
      link->inbox.push_back({std::move(channel), std::move(payload), pid});
      signal(*link);
    }
  }

  /// A notification arrives that OpenSSL decrypts along with the previous
  /// read, so the socket will not report it again: only a listener that asks
  /// has_pending_input() before waiting sees it.
  void notify_inside_tls(std::string channel, std::string payload, int32_t pid = 4242) {
    if (auto link = current_)
      link->tls_buffer.push_back({std::move(channel), std::move(payload), pid});
  }

  /// The current connection breaks (its next read reports the loss).
  void drop() {
    if (auto link = current_) {
      link->lost = true;
      signal(*link);
    }
  }

  /// Answers the command that was left hanging (next_command_hangs).
  void answer_hanging_command() {
    if (auto link = current_; link && link->hanging) {
      link->ready.push_back(std::move(*link->hanging));
      link->hanging.reset();
      signal(*link);
    }
  }

  /// The server's current LISTEN set on the current connection.
  std::vector<std::string> listening() const {
    return current_ ? current_->listening : std::vector<std::string>{};
  }

  /// Whether a connection is open (connected or connecting).
  bool has_connection() const { return current_ != nullptr && !current_->closed; }

  /// What spawn_bus or spawn_listener takes.
  connection_factory factory() {
    auto self = shared_from_this();
    return [self](const listener_actor& listener) -> std::unique_ptr<connection> {
      if (self->clock) self->connect_attempts.push_back(self->clock->now());
      auto link_state = std::make_shared<link>();
      link_state->listener = caf::actor_cast<caf::actor>(listener);
      self->current_ = link_state;
      return std::make_unique<scripted_connection>(self, link_state);
    };
  }

 private:
  struct link {
    caf::actor listener;
    std::deque<notification_batch::wire_item> inbox;
    std::deque<notification_batch::wire_item> tls_buffer;
    std::deque<command_result> ready;       ///< answered commands, not yet read
    std::optional<command_result> hanging;  ///< held back until answer_hanging_command()
    std::vector<std::string> listening;
    std::optional<uint64_t> read_token;  ///< armed for readability
    int connect_steps = 0;
    bool lost = false;
    bool closed = false;
  };

  static void signal(link& l) {
    if (l.read_token && !l.closed) {
      caf::anon_send(l.listener, readable_atom_v, *l.read_token);
      l.read_token.reset();
    }
  }

  static std::string unquoted(const std::string& identifier) {
    std::string result;
    for (size_t i = 1; i + 1 < identifier.size(); ++i) {
      result += identifier[i];
      if (identifier[i] == '"') ++i;  // "" stands for "
    }
    return result;
  }

  // Runs one command the way the server would: one statement after another.
  command_result execute(link& l, const std::string& sql) {
    command_result result;
    size_t pos = 0;
    while (pos < sql.size() && result.error.empty()) {
      // Statements end at a ';' outside quotes.
      size_t end = pos;
      bool in_quotes = false;
      while (end < sql.size() && (in_quotes || sql[end] != ';')) {
        if (sql[end] == '"') in_quotes = !in_quotes;
        ++end;
      }
      auto statement = sql.substr(pos, end - pos);
      pos = end + 1;
      while (!statement.empty() && statement.front() == ' ') statement.erase(0, 1);
      if (statement.empty()) continue;
      if (statement.rfind("LISTEN ", 0) == 0) {
        auto channel = unquoted(statement.substr(7));
        if (channel == refuse_listen_on) {
          refuse_listen_on.clear();
          result.error = "ERROR: cannot execute LISTEN during recovery";
        } else {
          listens.push_back(channel);
          l.listening.push_back(channel);
        }
      } else if (statement.rfind("UNLISTEN ", 0) == 0) {
        auto channel = unquoted(statement.substr(9));
        unlistens.push_back(channel);
        l.listening.erase(std::remove(l.listening.begin(), l.listening.end(), channel),
                          l.listening.end());
      } else if (statement == "SELECT pg_listening_channels()") {
        result.columns.push_back(listening_override ? *listening_override : l.listening);
      } else if (statement == "SELECT pg_notification_queue_usage()") {
        result.columns.push_back({"0.25"});
      } else {
        result.error = "ERROR: the scripted server does not know " + statement;
      }
    }
    return result;
  }

  class scripted_connection final : public connection {
   public:
    scripted_connection(std::shared_ptr<scripted_server> server, std::shared_ptr<link> l)
        : server_(std::move(server)), link_(std::move(l)) {}

    ~scripted_connection() override { link_->closed = true; }

    connect_progress continue_connect() override {
      // Like libpq: the first step waits for writability, the second completes.
      if (link_->connect_steps++ == 0) return connect_progress::wait_writable;
      if (server_->refuse_connects > 0) {
        --server_->refuse_connects;
        error_ = "could not connect to server: Connection refused";
        return connect_progress::failed;
      }
      return connect_progress::done;
    }

    bool send_command(const std::string& sql) override {
      if (link_->lost) return false;
      server_->commands.push_back(sql);
      auto result = server_->execute(*link_, sql);
      if (server_->next_command_hangs) {
        server_->next_command_hangs = false;
        link_->hanging = std::move(result);
        return true;
      }
      link_->ready.push_back(std::move(result));
      signal(*link_);
      return true;
    }

    int flush() override { return link_->lost ? -1 : 0; }

    read_outcome read(notification_batch::builder& out, size_t max) override {
      if (server_->next_read_throws) {
        server_->next_read_throws = false;
        throw std::logic_error("scripted bug");
      }
      read_outcome outcome;
      // What OpenSSL decrypted during the previous read comes first.
      size_t taken = 0;
      auto take_from = [&](std::deque<notification_batch::wire_item>& queue) {
        for (; !queue.empty() && taken < max; ++taken) {
          const auto& n = queue.front();
          out.add(n.channel, n.payload, n.backend_pid);
          queue.pop_front();
        }
      };
      if (tls_decrypted_) take_from(link_->tls_buffer);
      take_from(link_->inbox);
      // The rest of the TLS record that brought this read: decrypted now, so
      // the socket will not report it; the next read gets it.
      tls_decrypted_ = !link_->tls_buffer.empty();
      outcome.more = !link_->inbox.empty();
      if (!link_->ready.empty()) {
        outcome.finished = std::move(link_->ready.front());
        link_->ready.pop_front();
        outcome.more = outcome.more || !link_->ready.empty();
      }
      if (link_->lost) {
        error_ = "server closed the connection unexpectedly";
        outcome.lost = true;
      }
      return outcome;
    }

    bool has_pending_input() override { return tls_decrypted_; }

    void await(readiness what, uint64_t token) override {
      if (what == readiness::writable) {
        // The socket is always writable, unless the server never answers a connect.
        if (!(server_->connects_hang && link_->connect_steps > 0))
          caf::anon_send(link_->listener, writable_atom_v, token);
        return;
      }
      ++server_->read_requests;
      link_->read_token = token;
      if (!link_->inbox.empty() || !link_->ready.empty() || link_->lost) signal(*link_);
    }

    std::string error_message() override { return error_; }

   private:
    std::shared_ptr<scripted_server> server_;
    std::shared_ptr<link> link_;
    std::string error_;
    bool tls_decrypted_ = false;
  };

  std::shared_ptr<link> current_;
};

}  // namespace pgnotify::pg
