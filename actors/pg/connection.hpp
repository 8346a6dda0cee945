// What the listener needs from a database connection: libpq's non-blocking
// API, reduced to the calls the listener makes. pq_connection is the real one;
// scripted_connection.hpp offers a scripted one for deterministic tests.
// Nothing here blocks, and nothing here is an actor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../../messages/protocol.hpp"

namespace pgnotify::pg {

/// What a connect step (PQconnectPoll) needs next.
enum class connect_progress { wait_readable, wait_writable, done, failed };

/// Readiness the listener can wait for.
enum class readiness { readable, writable };

/// The outcome of one command (one PQsendQuery, maybe several statements),
/// known once libpq has every result of it.
struct command_result {
  std::string error;  ///< empty: every statement succeeded; else the server's one-line reason
  /// For each statement that returned rows: the first column of every row, as text.
  std::vector<std::vector<std::string>> columns;
};

/// A read that brings at least this many bytes of channel names and payloads
/// (some 30 notifications of 64 bytes, or one big one) is part of a burst: more is
/// likely on its way, so read on rather than wait for the socket. A trickle
/// brings less, and reading again would only find nothing, late.
constexpr size_t burst_bytes = 2048;

/// What one read found.
struct read_outcome {
  bool lost = false;  ///< the connection is gone (error_message() says why)
  /// libpq holds more input than this read handed out (it stopped at `max`):
  /// read again without waiting for the socket.
  bool more = false;
  std::optional<command_result> finished;  ///< the command in flight has finished
};

class connection {
 public:
  virtual ~connection() = default;

  /// One step of connecting. Call it once at first and again whenever the
  /// readiness it asked for (through await) has arrived.
  virtual connect_progress continue_connect() = 0;

  /// Sends one command (one at a time: the next after the last one finished).
  /// False if it could not be queued (the connection is broken).
  virtual bool send_command(const std::string& sql) = 0;

  /// Writes what libpq has buffered: 0 all written, 1 more to write (await
  /// writable), -1 the connection is broken.
  virtual int flush() = 0;

  /// Reads what has arrived without blocking, adds at most `max`
  /// notifications to `out`, and reports a finished command. After `lost`, the
  /// notifications read before the failure are in `out` already.
  virtual read_outcome read(notification_batch::builder& out, size_t max) = 0;

  /// True while the TLS layer holds decrypted input that the socket will not
  /// report again: read it before waiting for the socket.
  virtual bool has_pending_input() = 0;

  /// Asks for one (readable_atom | writable_atom, token) message to the
  /// listener once the socket is ready; an asked-for readiness is reported once.
  virtual void await(readiness what, uint64_t token) = 0;

  /// libpq's last error on one line (never a password).
  virtual std::string error_message() = 0;
};

/// Starts connecting (PQconnectStart) for `listener`, which receives the
/// readiness messages; throws std::exception with a loggable message if even
/// that fails.
using connection_factory =
    std::function<std::unique_ptr<connection>(const listener_actor& listener)>;

}  // namespace pgnotify::pg
