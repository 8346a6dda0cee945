#include "handshake_guard.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

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

/// One TCP socket of this process, through a duplicate of its descriptor:
/// whatever its owner does meanwhile, every call here reaches this socket.
struct tcp_socket {
  owned_fd fd;
  uint64_t inode = 0;
  bool listening = false;
  uint16_t local_port = 0;
  uint16_t peer_port = 0;  ///< 0 if listening
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

/// The peer of connected socket `fd`, "address:port" ("?" if unknown).
std::string peer_of(int fd) {
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return "?";
  return address_of(peer);
}

int socket_option(int fd, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, name, &value, &length) != 0) return -1;
  return value;
}

/// The descriptors of this process that are sockets, with their inodes
/// (/proc/self/fd/N links to "socket:[INODE]").
std::vector<std::pair<int, uint64_t>> socket_descriptors() {
  const std::string kind = "socket:[";
  std::vector<std::pair<int, uint64_t>> result;
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
      result.emplace_back(static_cast<int>(fd),
                          std::strtoull(target.c_str() + kind.size(), nullptr, 10));
  }
  closedir(dir);
  return result;
}

/// The TCP socket behind descriptor `fd` if it is still the socket `inode`.
std::optional<tcp_socket> tcp_socket_of(int fd, uint64_t inode) {
  owned_fd dup{fcntl(fd, F_DUPFD_CLOEXEC, 0)};
  struct stat st;
  // The descriptor may have been closed and reused since `inode` was read.
  if (dup.get() < 0 || fstat(dup.get(), &st) != 0 || st.st_ino != inode) return std::nullopt;
  int domain = socket_option(dup.get(), SO_DOMAIN);
  int listening = socket_option(dup.get(), SO_ACCEPTCONN);
  if ((domain != AF_INET && domain != AF_INET6) ||
      socket_option(dup.get(), SO_TYPE) != SOCK_STREAM || listening < 0)
    return std::nullopt;
  sockaddr_storage local{}, peer{};
  socklen_t local_length = sizeof local, peer_length = sizeof peer;
  if (getsockname(dup.get(), reinterpret_cast<sockaddr*>(&local), &local_length) != 0)
    return std::nullopt;
  if (listening != 0) return tcp_socket{std::move(dup), inode, true, port_of(local), 0};
  if (getpeername(dup.get(), reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0)
    return std::nullopt;  // not connected (yet, or any more)
  return tcp_socket{std::move(dup), inode, false, port_of(local), port_of(peer)};
}

/// Every listening or connected TCP socket of this process, once each.
std::vector<tcp_socket> tcp_sockets() {
  std::vector<tcp_socket> result;
  for (auto& [fd, inode] : socket_descriptors()) {
    if (std::any_of(result.begin(), result.end(),
                    [inode = inode](const tcp_socket& s) { return s.inode == inode; }))
      continue;  // another descriptor of the same socket
    if (auto sock = tcp_socket_of(fd, inode)) result.push_back(std::move(*sock));
  }
  return result;
}

// TCP_ESTABLISHED of the kernel's tcp_states.h (<netinet/tcp.h> has it too,
// but clashes with <linux/tcp.h>, whose tcp_info has the fields used here).
constexpr uint8_t tcp_established = 1;

// In milliseconds; 0: never cut (every command but `serve` with TLS).
std::atomic<int64_t> handshake_timeout_ms{0};

}  // namespace

void limit_tls_handshakes(caf::timespan timeout) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
  handshake_timeout_ms.store(std::max<int64_t>(ms, 1), std::memory_order_relaxed);
}

// Runs at every turn of CAF's spin on a waiting handshake (and a few times in
// every good handshake): one getsockopt. The kernel's clocks are the
// connection's: `tcpi_last_data_sent` counts from the last data this side sent,
// or from when the connection was established (as the kernel's
// tcp_create_openreq_child sets it); `tcpi_bytes_received` is every byte the
// peer sent, read or not. Only an established connection is cut, once: after
// shutdown(2) it is not (FIN_WAIT*), and CAF's next SSL_accept on it, if any,
// finds it so.
void cut_overdue_tls_handshake(int fd) {
  auto timeout = handshake_timeout_ms.load(std::memory_order_relaxed);
  if (timeout <= 0 || fd < 0) return;
  tcp_info info{};
  socklen_t length = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0 ||
      length < offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received ||
      info.tcpi_state != tcp_established)
    return;  // not TCP, a kernel before 4.1 (cannot tell: never cut), or cut already
  bool silent = info.tcpi_bytes_received == 0;
  auto limit = silent ? std::min<int64_t>(timeout, first_byte_grace.count()) : timeout;
  if (info.tcpi_last_data_sent < limit) return;
  auto peer = peer_of(fd);
  ::shutdown(fd, SHUT_RDWR);
  if (silent)
    logger()->warn("closed the connection from {}: it sent nothing (no TLS handshake)", peer);
  else
    logger()->warn("closed the connection from {}: its TLS handshake did not finish within {} ms",
                   peer, timeout);
}

size_t defer_accept(uint16_t port) {
  // The kernel rounds up to whole SYN-ACK retransmissions (1 s: the first).
  int seconds = static_cast<int>(first_byte_wait.count());
  size_t count = 0;
  for (auto& sock : tcp_sockets())
    if (sock.listening && sock.local_port == port &&
        setsockopt(sock.fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds) == 0)
      ++count;
  return count;
}

size_t shut_down_connections(uint16_t port, bool local_port) {
  size_t count = 0;
  for (auto& sock : tcp_sockets())
    if (!sock.listening && (local_port ? sock.local_port : sock.peer_port) == port) {
      ::shutdown(sock.fd.get(), SHUT_RDWR);
      ++count;
    }
  return count;
}

}  // namespace pgnotify::app
