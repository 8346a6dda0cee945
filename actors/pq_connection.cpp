#include "pq_connection.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <caf/send.hpp>
#include <pqxx/connection>
#include <pqxx/errorhandler>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/notification>
#include <pqxx/result>
#include "log.hpp"

namespace pgnotify {

namespace {

// libpq's messages span lines ("...\n\tIs the server running..."): make them one.
std::string one_line(std::string text) {
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

// Waits in poll() until the socket is readable, then sends readable_atom to the
// listener once. It never reads the connection: the listener does all reading,
// on its own thread, and re-arms the watcher afterwards. It also enforces the
// deadline of a blocking health-check query: when the deadline passes, it shuts
// the socket down, so that libpq's blocked read returns and the query fails.
class socket_watcher {
 public:
  using clock = std::chrono::steady_clock;

  explicit socket_watcher(int socket) : socket_(socket), wake_(::eventfd(0, EFD_CLOEXEC)) {
    if (wake_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    thread_ = std::thread([this] { run(); });
  }

  ~socket_watcher() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stopping_ = true;
    }
    wake();
    thread_.join();
    ::close(wake_);
  }

  void arm(const caf::actor& listener) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      listener_ = listener;
      armed_ = true;
    }
    wake();
  }

  void set_deadline(std::optional<clock::time_point> deadline) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      deadline_ = deadline;
    }
    wake();
  }

 private:
  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_, &one, sizeof one);
  }

  void run() {
    for (;;) {
      bool armed;
      int timeout_ms = -1;
      {
        std::lock_guard<std::mutex> guard{mtx_};
        if (stopping_) return;
        armed = armed_;
        if (deadline_) {
          auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - clock::now());
          if (left.count() <= 0) {
            // The server did not answer in time: make libpq's read fail.
            ::shutdown(socket_, SHUT_RDWR);
            deadline_.reset();
            continue;
          }
          timeout_ms = static_cast<int>(left.count());
        }
      }
      pollfd fds[2] = {{wake_, POLLIN, 0}, {armed ? socket_ : -1, POLLIN, 0}};
      if (::poll(fds, 2, timeout_ms) <= 0) continue;  // timeout or EINTR
      if (fds[0].revents != 0) {
        uint64_t count;
        [[maybe_unused]] auto n = ::read(wake_, &count, sizeof count);
        continue;
      }
      if (fds[1].revents != 0) {
        caf::actor listener;
        {
          std::lock_guard<std::mutex> guard{mtx_};
          armed_ = false;
          listener = listener_;
        }
        caf::anon_send(listener, readable_atom_v);
      }
    }
  }

  int socket_;
  int wake_;
  std::mutex mtx_;
  caf::actor listener_;
  bool armed_ = false;
  bool stopping_ = false;
  std::optional<clock::time_point> deadline_;
  std::thread thread_;
};

// Routes server notices (such as the FATAL that precedes a terminated backend)
// to the log instead of libpq's default of printing them to stderr.
class notice_logger final : public pqxx::errorhandler {
 public:
  using pqxx::errorhandler::errorhandler;
  bool operator()(const char msg[]) noexcept override {
    logger()->info("pgnotify: server says: {}", one_line(msg));
    return false;
  }
};

}  // namespace

struct pq_connection::impl {
  class receiver final : public pqxx::notification_receiver {
   public:
    receiver(impl& owner, const std::string& channel)
        : pqxx::notification_receiver(owner.conn, channel), owner_(owner) {}
    // libpqxx calls this from any query that reads notifications (LISTEN,
    // UNLISTEN, the health check), not only from receive(): collect them here.
    void operator()(const std::string& payload, int backend_pid) override {
      owner_.arrived.push_back(notification{channel(), payload, backend_pid, 0});
    }

   private:
    impl& owner_;
  };

  impl(const std::string& conninfo, caf::timespan timeout)
      : conn(conninfo),
        notices(conn),
        command_timeout(timeout),
        watcher(std::make_unique<socket_watcher>(conn.sock())) {
    // libpqxx 6 would otherwise reopen a broken connection behind our back on
    // the next query: we want to see the failure and start a new generation.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    conn.inhibit_reactivation(true);
#pragma GCC diagnostic pop
  }

  // Runs a blocking libpqxx call that the server must answer within `timeout` (the watcher shuts
  // the socket down otherwise) and on a connection that is still open afterwards (libpqxx swallows
  // some failures).
  template <class F>
  void bounded(const char* what, caf::timespan timeout, F&& call) {
    watcher->set_deadline(socket_watcher::clock::now() + timeout);
    try {
      call();
    } catch (const std::exception& e) {
      watcher->set_deadline(std::nullopt);
      throw std::runtime_error(one_line(std::string{what} + " failed: " + e.what()));
    }
    watcher->set_deadline(std::nullopt);
    if (!conn.is_open()) throw std::runtime_error(std::string{what} + " failed: connection lost");
  }

  pqxx::connection conn;
  notice_logger notices;
  caf::timespan command_timeout;
  std::vector<std::unique_ptr<receiver>> receivers;
  std::vector<notification> arrived;        ///< read by libpqxx, not yet handed out
  std::unique_ptr<socket_watcher> watcher;  // declared last: stops before the connection closes
};

pq_connection::pq_connection(const std::string& conninfo, caf::timespan command_timeout) {
  try {
    impl_ = std::make_unique<impl>(conninfo, command_timeout);
  } catch (const std::exception& e) {
    throw std::runtime_error(one_line(e.what()));
  }
}

pq_connection::~pq_connection() {
  // Close first: destroying a receiver on an open connection would send
  // UNLISTEN and wait for the server, which may be the one that is frozen.
  impl_->watcher.reset();
  impl_->conn.disconnect();
}

void pq_connection::listen(const std::string& channel) {
  impl_->bounded("LISTEN", impl_->command_timeout, [&] {
    impl_->receivers.push_back(std::make_unique<impl::receiver>(*impl_, channel));
  });
}

void pq_connection::unlisten(const std::string& channel) {
  auto& receivers = impl_->receivers;
  // Destroying the channel's receiver makes libpqxx send UNLISTEN.
  impl_->bounded("UNLISTEN", impl_->command_timeout, [&] {
    receivers.erase(std::remove_if(receivers.begin(), receivers.end(),
                                   [&](const auto& r) { return r->channel() == channel; }),
                    receivers.end());
  });
}

void pq_connection::receive(std::vector<notification>& out, uint64_t generation, size_t enough) {
  // Whatever was read, also just before a failure, belongs to this generation.
  auto hand_out = [&] {
    auto& arrived = impl_->arrived;
    for (auto& n : arrived) n.generation = generation;
    if (out.empty()) {
      out.swap(arrived);  // the usual case: no copy, no move per notification
    } else {
      out.insert(out.end(), std::make_move_iterator(arrived.begin()),
                 std::make_move_iterator(arrived.end()));
    }
    arrived.clear();
  };
  try {
    // While more has arrived, read it now: a read costs a poll() here, a trip
    // through the watcher thread otherwise.
    for (;;) {
      impl_->conn.get_notifs();
      // After the server's FATAL notice, get_notifs() returns normally; EOF follows.
      if (!impl_->conn.is_open()) throw std::runtime_error("connection closed by the server");
      pollfd more{impl_->conn.sock(), POLLIN, 0};
      if (impl_->arrived.size() >= enough || ::poll(&more, 1, 0) <= 0) break;
    }
  } catch (const std::exception& e) {
    hand_out();
    throw std::runtime_error(one_line(e.what()));
  }
  hand_out();
}

void pq_connection::notify_when_readable(const listener_actor& listener) {
  impl_->watcher->arm(caf::actor_cast<caf::actor>(listener));
}

connection::health pq_connection::check_health(caf::timespan timeout) {
  health result;
  impl_->bounded("health check", timeout, [&] {
    pqxx::nontransaction tx{impl_->conn, "pgnotify health check"};
    for (const auto& row : tx.exec("SELECT pg_listening_channels()"))
      result.listening.push_back(row[0].as<std::string>());
    result.queue_usage = tx.exec("SELECT pg_notification_queue_usage()")[0][0].as<double>();
  });
  return result;
}

}  // namespace pgnotify
