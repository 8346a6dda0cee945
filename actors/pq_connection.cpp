#include "pq_connection.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <caf/send.hpp>
#include <pqxx/connection>
#include <pqxx/errorhandler>
#include <pqxx/except>
#include <pqxx/notification>
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
// listener once. It never touches the connection itself: the listener does all
// reading, on its own thread, and re-arms the watcher afterwards.
class socket_watcher {
 public:
  socket_watcher(int socket, caf::actor listener)
      : socket_(socket), wake_(::eventfd(0, EFD_CLOEXEC)), listener_(std::move(listener)) {
    if (wake_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    thread_ = std::thread([this] { run(); });
  }

  ~socket_watcher() {
    stopping_ = true;
    wake();
    thread_.join();
    ::close(wake_);
  }

  void arm() {
    armed_ = true;
    wake();
  }

 private:
  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_, &one, sizeof one);
  }

  void run() {
    while (!stopping_) {
      pollfd fds[2] = {{wake_, POLLIN, 0}, {armed_ ? socket_ : -1, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;  // EINTR
      if (fds[0].revents != 0) {
        uint64_t count;
        [[maybe_unused]] auto n = ::read(wake_, &count, sizeof count);
        continue;
      }
      if (fds[1].revents != 0) {
        armed_ = false;
        caf::anon_send(listener_, readable_atom_v);
      }
    }
  }

  int socket_;
  int wake_;
  caf::actor listener_;
  std::atomic<bool> armed_{false};
  std::atomic<bool> stopping_{false};
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
    void operator()(const std::string& payload, int backend_pid) override {
      owner_.out->push_back(notification{channel(), payload, backend_pid, owner_.generation});
    }

   private:
    impl& owner_;
  };

  explicit impl(const std::string& conninfo) : conn(conninfo), notices(conn) {}

  pqxx::connection conn;
  notice_logger notices;
  std::vector<std::unique_ptr<receiver>> receivers;
  std::vector<notification>* out = nullptr;
  uint64_t generation = 0;
  std::unique_ptr<socket_watcher> watcher;  // declared last: stops before the connection closes
};

pq_connection::pq_connection(const std::string& conninfo) {
  try {
    impl_ = std::make_unique<impl>(conninfo);
  } catch (const std::exception& e) {
    throw std::runtime_error(one_line(e.what()));
  }
}

pq_connection::~pq_connection() = default;

void pq_connection::listen(const std::string& channel) {
  try {
    impl_->receivers.push_back(std::make_unique<impl::receiver>(*impl_, channel));
  } catch (const std::exception& e) {
    throw std::runtime_error(one_line("LISTEN failed: " + std::string{e.what()}));
  }
}

void pq_connection::receive(std::vector<notification>& out, uint64_t generation) {
  impl_->out = &out;
  impl_->generation = generation;
  try {
    impl_->conn.get_notifs();
  } catch (const std::exception& e) {
    throw std::runtime_error(one_line(e.what()));
  }
  // After the server's FATAL notice, get_notifs() returns normally; EOF follows.
  if (!impl_->conn.is_open()) throw std::runtime_error("connection closed by the server");
}

void pq_connection::notify_when_readable(const listener_actor& listener) {
  if (!impl_->watcher)
    impl_->watcher =
        std::make_unique<socket_watcher>(impl_->conn.sock(), caf::actor_cast<caf::actor>(listener));
  impl_->watcher->arm();
}

}  // namespace pgnotify
