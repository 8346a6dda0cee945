// Host names resolved off CAF's workers: PQconnectStart would call
// getaddrinfo synchronously and block the listener's worker for as long as DNS
// takes. A lookup runs on a short-lived detached thread that touches nothing
// but its own shared state, so the connection can abandon it at any time (a bus
// that stops does not wait for DNS). Numeric hosts, socket directories and a
// set hostaddr need no lookup and no thread.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pgnotify::pg {

/// Resolves one host name to numeric addresses, best first; throws
/// std::exception with the reason if it cannot. Runs on the lookup's thread.
using lookup_function = std::function<std::vector<std::string>(const std::string& host)>;

/// The default lookup: getaddrinfo (AF_UNSPEC, SOCK_STREAM), like libpq's.
std::vector<std::string> getaddrinfo_lookup(const std::string& host);

class host_lookup {
 public:
  struct shared_state;

  /// Null if the prepared (key=value) connection string needs no lookup: no
  /// entry of `host` is a name, or `hostaddr` is set. Else starts resolving
  /// every name with `lookup` (empty: getaddrinfo_lookup). Throws
  /// std::system_error if no eventfd or thread can be had.
  static std::unique_ptr<host_lookup> start(const std::string& conninfo, lookup_function lookup);

  /// Abandons a lookup still running: its thread finishes on its own.
  ~host_lookup();

  /// Becomes readable once the lookup is done (the descriptor stays ours).
  int event_fd() const;
  bool done() const;

  struct outcome {
    /// The connection string with one `hostaddr` entry per `host` entry: a
    /// name becomes one entry per address found (libpq tries each in turn,
    /// as it would after its own lookup); `host` keeps the name for TLS and
    /// .pgpass. Empty if no entry is left.
    std::string conninfo;
    /// libpq's wording: "could not translate host name \"x\" to address: ..."
    /// for each name that failed ("; " between them).
    std::string errors;
  };

  /// Once done(): what to connect with.
  outcome result() const;

 private:
  host_lookup() = default;

  struct entry {
    std::string host, port;
  };
  std::string conninfo_;
  std::vector<entry> entries_;      ///< host's entries with their ports
  std::vector<std::string> names_;  ///< the names resolved, each once
  bool port_per_entry_ = false;     ///< else one port (or none) for all
  std::shared_ptr<shared_state> state_;
};

}  // namespace pgnotify::pg
