#include "handshake_guard.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <caf/event_based_actor.hpp>

#include <pgnotify/actors/log.hpp>

namespace pgnotify::app {

namespace {

/// A descriptor of ours, closed at the end.
class owned_fd {
 public:
  explicit owned_fd(int fd) : fd_(fd) {}
  owned_fd(owned_fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  owned_fd& operator=(owned_fd&&) = delete;
  ~owned_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

/// One TCP connection of this process, through a duplicate of its descriptor:
/// whatever its owner does meanwhile, every call here reaches this socket.
struct connection {
  owned_fd fd;
  uint64_t inode = 0;
  uint16_t local_port = 0;
  uint16_t peer_port = 0;
  std::string peer;  ///< "address:port"
};

uint16_t port_of(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
}

std::string address_of(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, text, sizeof text);
  else
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, text, sizeof text);
  return addr.ss_family == AF_INET6 ? fmt::format("[{}]:{}", text, port_of(addr))
                                    : fmt::format("{}:{}", text, port_of(addr));
}

int socket_option(int fd, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, name, &value, &length) != 0) return -1;
  return value;
}

/// The descriptors of this process whose /proc/self/fd link starts with `kind`
/// ("socket:[", "anon_inode:[eventpoll]"), with what follows the prefix.
std::vector<std::pair<int, std::string>> descriptors(const std::string& kind) {
  std::vector<std::pair<int, std::string>> result;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return result;
  while (auto* entry = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    char link[256];
    auto n = readlink(fmt::format("/proc/self/fd/{}", fd).c_str(), link, sizeof link - 1);
    if (n <= 0) continue;
    std::string target{link, static_cast<size_t>(n)};
    if (target.compare(0, kind.size(), kind) == 0)
      result.emplace_back(static_cast<int>(fd), target.substr(kind.size()));
  }
  closedir(dir);
  return result;
}

/// The TCP connection (not a listener) behind descriptor `fd` if it is still
/// the socket `inode`.
std::optional<connection> connection_of(int fd, uint64_t inode) {
  owned_fd dup{fcntl(fd, F_DUPFD_CLOEXEC, 0)};
  struct stat st;
  // The descriptor may have been closed and reused since `inode` was read.
  if (dup.get() < 0 || fstat(dup.get(), &st) != 0 || st.st_ino != inode) return std::nullopt;
  int domain = socket_option(dup.get(), SO_DOMAIN);
  if ((domain != AF_INET && domain != AF_INET6) ||
      socket_option(dup.get(), SO_TYPE) != SOCK_STREAM ||
      socket_option(dup.get(), SO_ACCEPTCONN) != 0)
    return std::nullopt;
  sockaddr_storage local{}, peer{};
  socklen_t local_length = sizeof local, peer_length = sizeof peer;
  if (getsockname(dup.get(), reinterpret_cast<sockaddr*>(&local), &local_length) != 0 ||
      getpeername(dup.get(), reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0)
    return std::nullopt;
  return connection{std::move(dup), inode, port_of(local), port_of(peer), address_of(peer)};
}

/// Every connected TCP socket of this process (no listeners), once each.
std::vector<connection> connections() {
  std::vector<connection> result;
  for (auto& [fd, rest] : descriptors("socket:[")) {
    uint64_t inode = std::strtoull(rest.c_str(), nullptr, 10);
    if (std::any_of(result.begin(), result.end(),
                    [&](const connection& c) { return c.inode == inode; }))
      continue;  // another descriptor of the same socket
    if (auto conn = connection_of(fd, inode)) result.push_back(std::move(*conn));
  }
  return result;
}

/// A descriptor registered with an epoll instance, and for what.
struct registration {
  int fd = -1;
  uint64_t inode = 0;
  uint32_t events = 0;
};

/// The registrations of the epoll instances `epoll_fds` (CAF's event loop is
/// one), from /proc/self/fdinfo: "tfd: FD events: HEX data: HEX  pos:0 ino:HEX
/// sdev:HEX". Empty optional if one of them is gone.
std::optional<std::vector<registration>> epoll_registrations(const std::vector<int>& epoll_fds) {
  std::vector<registration> result;
  for (int fd : epoll_fds) {
    std::ifstream info{fmt::format("/proc/self/fdinfo/{}", fd)};
    if (!info) return std::nullopt;
    std::string line;
    while (std::getline(info, line)) {
      if (line.compare(0, 4, "tfd:") != 0) continue;
      auto events = line.find("events:");
      auto ino = line.find("ino:");
      if (events == std::string::npos || ino == std::string::npos) continue;
      result.push_back(
          {static_cast<int>(std::strtol(line.c_str() + 4, nullptr, 10)),
           std::strtoull(line.c_str() + ino + 4, nullptr, 16),
           static_cast<uint32_t>(std::strtoul(line.c_str() + events + 7, nullptr, 16))});
    }
  }
  return result;
}

std::vector<int> epoll_descriptors() {
  std::vector<int> result;
  for (auto& [fd, rest] : descriptors("anon_inode:[eventpoll]")) result.push_back(fd);
  return result;
}

/// What the kernel says about a connection's sending.
struct send_progress {
  uint64_t bytes_sent = 0;             ///< retransmissions included
  std::chrono::milliseconds quiet{0};  ///< since it last sent data (or was established)
};

std::optional<send_progress> progress_of(int fd) {
  tcp_info info{};
  socklen_t length = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0 ||
      length < offsetof(tcp_info, tcpi_bytes_sent) + sizeof info.tcpi_bytes_sent)
    return std::nullopt;  // Linux before 4.19
  return send_progress{info.tcpi_bytes_sent, std::chrono::milliseconds{info.tcpi_last_data_sent}};
}

bool writable(int fd) {
  pollfd p{fd, POLLOUT, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) != 0;
}

struct guard_state {
  static inline const char* name = "pgnotify.handshake_guard";
  std::vector<int> epoll_fds;
  /// Connections on the port that CAF wanted to write to at the last look,
  /// by socket inode: the bytes they had sent then.
  std::map<uint64_t, uint64_t> candidates;
};

// A connection is cut when at two looks in a row CAF wanted to write to it
// (registered for EPOLLOUT), it could take data, nothing was sent in between,
// and it has sent nothing for `timeout`. A working connection is written to
// within microseconds of becoming writable, so it never qualifies; a TLS
// handshake that waits for the peer does (CAF's spin). Only sockets registered
// for writing are looked at: for an idle or quiet server a look costs one read
// of /proc/self/fdinfo/EPOLL_FD.
void inspect_connections(guard_state& st, uint16_t port, caf::timespan timeout) {
  if (st.epoll_fds.empty()) st.epoll_fds = epoll_descriptors();
  auto registered = epoll_registrations(st.epoll_fds);
  if (!registered) {
    st.epoll_fds.clear();  // an epoll instance is gone: find them again next time
    return;
  }
  std::map<uint64_t, uint64_t> candidates;
  for (const auto& reg : *registered) {
    if ((reg.events & EPOLLOUT) == 0 || candidates.count(reg.inode) > 0) continue;
    auto conn = connection_of(reg.fd, reg.inode);
    if (!conn || conn->local_port != port || !writable(conn->fd.get())) continue;
    auto progress = progress_of(conn->fd.get());
    if (!progress) continue;  // cannot tell: never cut
    auto before = st.candidates.find(reg.inode);
    if (before != st.candidates.end() && before->second == progress->bytes_sent &&
        progress->quiet >= timeout) {
      ::shutdown(conn->fd.get(), SHUT_RDWR);
      logger()->warn("closed the connection from {}: its TLS handshake did not finish within {} ms",
                     conn->peer,
                     std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
      continue;
    }
    candidates.emplace(reg.inode, progress->bytes_sent);
  }
  st.candidates = std::move(candidates);
}

caf::behavior guard(caf::stateful_actor<guard_state>* self, uint16_t port, caf::timespan timeout) {
  // Every look wakes two threads (CAF's timer and a worker): rarely while no
  // connection is a candidate (a stall is seen at most `idle` after it began),
  // often while one is (it is cut at most `busy` after its timeout).
  using std::chrono::milliseconds;
  auto idle = std::min<caf::timespan>(timeout / 2, milliseconds(250));
  auto busy = std::min<caf::timespan>(timeout / 10, milliseconds(50));
  self->send(self, caf::tick_atom_v);
  return {
      [=](caf::tick_atom) {
        inspect_connections(self->state, port, timeout);
        self->delayed_send(self, self->state.candidates.empty() ? idle : busy, caf::tick_atom_v);
      },
  };
}

}  // namespace

caf::actor spawn_handshake_guard(caf::actor_system& sys, uint16_t port, caf::timespan timeout) {
  return sys.spawn(guard, port, timeout);
}

size_t shut_down_connections(uint16_t port, bool local_port) {
  size_t count = 0;
  for (auto& conn : connections())
    if ((local_port ? conn.local_port : conn.peer_port) == port) {
      ::shutdown(conn.fd.get(), SHUT_RDWR);
      ++count;
    }
  return count;
}

}  // namespace pgnotify::app
