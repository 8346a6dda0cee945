#include "pq_connection.hpp"

#include <sys/stat.h>

#include <stdexcept>

#include <libpq-fe.h>
#include <openssl/ssl.h>
#include <caf/send.hpp>

#include "../log.hpp"
#include "socket_watcher.hpp"

namespace pgnotify::pg {

std::string one_line(const std::string& text) {
  std::string result;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
      space = !result.empty();
      continue;
    }
    if (space) result += ' ';
    space = false;
    result += c;
  }
  return result;
}

namespace {

// Server notices (such as the FATAL that precedes a terminated backend) go to
// the log instead of libpq's default, stderr.
void log_notice(void*, const char* message) {
  logger()->info("pgnotify: server says: {}", one_line(message));
}

unsigned long inode_of(int fd) {
  struct stat info {};
  return ::fstat(fd, &info) == 0 ? static_cast<unsigned long>(info.st_ino) : 0;
}

}  // namespace

pq_connection::pq_connection(const std::string& conninfo,
                             caf::io::network::default_multiplexer& mux, caf::actor listener,
                             lookup_function lookup)
    : mux_(mux), listener_(std::move(listener)) {
  // PQconnectStart would resolve a name synchronously, blocking this worker.
  lookup_ = host_lookup::start(conninfo, std::move(lookup));
  if (lookup_ == nullptr) {
    start(conninfo);
    if (PQstatus(conn_) == CONNECTION_BAD) {
      auto reason = error_message();
      PQfinish(conn_);
      throw std::runtime_error(reason);
    }
    return;
  }
  // Its eventfd is watched like the socket: readable once the lookup is done.
  watcher_ = new socket_watcher(mux_, lookup_->event_fd(), listener_);
}

pq_connection::~pq_connection() {
  // libpq may close its socket first: the kernel drops it from the watcher's set.
  // A lookup still running is abandoned: its thread ends on its own.
  if (conn_ != nullptr) PQfinish(conn_);
  if (watcher_ != nullptr) watcher_->close();
}

void pq_connection::start(const std::string& conninfo) {
  conn_ = PQconnectStart(conninfo.c_str());
  if (conn_ == nullptr) throw std::runtime_error("connect: out of memory");
  PQsetNoticeProcessor(conn_, log_notice, nullptr);
}

bool pq_connection::start_after_lookup() {
  if (watcher_ != nullptr) watcher_->close();  // the eventfd's
  watcher_ = nullptr;
  auto outcome = lookup_->result();
  lookup_.reset();
  if (outcome.conninfo.empty()) {
    lookup_error_ = outcome.errors;
    return false;
  }
  // Another host is left: libpq tries it, as it would after its own failed lookup.
  if (!outcome.errors.empty()) logger()->warn("pgnotify: {}", outcome.errors);
  try {
    start(outcome.conninfo);
  } catch (const std::exception& e) {
    lookup_error_ = e.what();
    return false;
  }
  return PQstatus(conn_) != CONNECTION_BAD;
}

void pq_connection::watch_current_socket() {
  // libpq may replace its socket while connecting (several hosts), even under
  // the same number: compare the inode too, and watch the new one (pitfall 6).
  if (lookup_ != nullptr || conn_ == nullptr) return;
  int fd = PQsocket(conn_);
  if (fd < 0) return;
  auto inode = inode_of(fd);
  if (watcher_ != nullptr && fd == watched_fd_ && inode == watched_inode_) return;
  if (watcher_ != nullptr) watcher_->close();
  watcher_ = nullptr;
  watcher_ = new socket_watcher(mux_, fd, listener_);
  watched_fd_ = fd;
  watched_inode_ = inode;
}

connect_progress pq_connection::continue_connect() {
  if (lookup_ != nullptr) {
    if (!lookup_->done()) return connect_progress::wait_readable;  // its eventfd
    if (!start_after_lookup()) return connect_progress::failed;
  }
  // libpq's protocol: act as if PQconnectPoll had asked for writability first.
  auto status = started_ ? PQconnectPoll(conn_) : PGRES_POLLING_WRITING;
  started_ = true;
  switch (status) {
    case PGRES_POLLING_READING:
      watch_current_socket();
      return connect_progress::wait_readable;
    case PGRES_POLLING_WRITING:
      watch_current_socket();
      return connect_progress::wait_writable;
    case PGRES_POLLING_OK:
      watch_current_socket();
      if (PQsetnonblocking(conn_, 1) != 0) return connect_progress::failed;
      return connect_progress::done;
    default:
      return connect_progress::failed;
  }
}

bool pq_connection::send_command(const std::string& sql) {
  if (PQsendQuery(conn_, sql.c_str()) == 0) return false;
  command_in_flight_ = true;
  results_ = {};
  return true;
}

int pq_connection::flush() {
  return PQflush(conn_);
}

void pq_connection::collect_results(read_outcome& outcome) {
  while (command_in_flight_ && PQisBusy(conn_) == 0) {
    PGresult* result = PQgetResult(conn_);
    if (result == nullptr) {
      command_in_flight_ = false;
      outcome.finished = std::move(results_);
      results_ = {};
      return;
    }
    auto status = PQresultStatus(result);
    if (status == PGRES_TUPLES_OK) {
      std::vector<std::string> column;
      for (int row = 0, rows = PQntuples(result); row < rows; ++row)
        column.emplace_back(PQgetvalue(result, row, 0),
                            static_cast<size_t>(PQgetlength(result, row, 0)));
      results_.columns.push_back(std::move(column));
    } else if (status != PGRES_COMMAND_OK && results_.error.empty()) {
      results_.error = one_line(PQresultErrorMessage(result));
      if (results_.error.empty()) results_.error = PQresStatus(status);
    }
    PQclear(result);
  }
}

read_outcome pq_connection::read(notification_batch::builder& out, size_t max) {
  read_outcome outcome;
  if (conn_ == nullptr) {  // still resolving, or the lookup failed
    outcome.lost = true;
    return outcome;
  }
  // One PQconsumeInput reads at most libpq's free buffer (16 KB at first, some
  // 170 notifications): read on while reads bring a burst (burst_bytes), so
  // that a burst makes batches of up to `max` and what a batch costs is paid
  // less often. A smaller read has most likely emptied the socket: hand it on
  // without another recv (latency).
  size_t taken = 0;
  bool consumed = true;
  for (;;) {
    consumed = PQconsumeInput(conn_) != 0;
    if (consumed) collect_results(outcome);
    // Whatever libpq parsed is handed out, also (especially) before a failure.
    auto bytes_before = out.bytes();
    while (taken < max) {
      PGnotify* n = PQnotifies(conn_);
      if (n == nullptr) break;
      out.add(n->relname, n->extra, n->be_pid);  // the one copy of it
      PQfreemem(n);
      ++taken;
    }
    if (!consumed || taken == max || out.bytes() - bytes_before < burst_bytes) break;
  }
  outcome.more = taken == max;
  outcome.lost = !consumed || PQstatus(conn_) == CONNECTION_BAD;
  return outcome;
}

bool pq_connection::has_pending_input() {
  // libpq checks its own TLS buffer (pgtls_read_pending) before it waits on the
  // socket; an outside poller must do the same.
  auto* ssl = static_cast<SSL*>(PQsslStruct(conn_, "OpenSSL"));
  return ssl != nullptr && SSL_pending(ssl) > 0;
}

void pq_connection::await(readiness what, uint64_t token) {
  if (watcher_ == nullptr) watch_current_socket();
  if (watcher_ == nullptr) {
    // No socket (libpq closed it): let the next read or step find out why.
    caf::anon_send(listener_, readable_atom_v, token);
    return;
  }
  watcher_->arm(what == readiness::readable ? socket_watcher::operation::read
                                            : socket_watcher::operation::write,
                token);
}

std::string pq_connection::error_message() {
  if (conn_ == nullptr) return lookup_error_.empty() ? "connection lost" : lookup_error_;
  auto message = one_line(PQerrorMessage(conn_));
  return message.empty() ? "connection lost" : message;
}

}  // namespace pgnotify::pg
