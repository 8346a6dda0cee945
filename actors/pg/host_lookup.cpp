#include "host_lookup.hpp"

#include <netdb.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <libpq-fe.h>

namespace pgnotify::pg {

/// Shared by the connection and the lookup's thread; the last owner closes the
/// eventfd, so the thread can always signal, whoever went first.
struct host_lookup::shared_state {
  int event_fd = -1;
  mutable std::mutex mtx;
  bool done = false;                              ///< guarded by mtx, like the below
  std::vector<std::vector<std::string>> results;  ///< per name, in the order of names
  std::vector<std::string> errors;                ///< per name; empty: resolved

  shared_state() : event_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (event_fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  ~shared_state() { ::close(event_fd); }
};

namespace {

std::vector<std::string> split(const std::string& list) {
  // libpq's lists: plain commas, no quoting; "" is no list at all.
  std::vector<std::string> result;
  if (list.empty()) return result;
  size_t pos = 0;
  for (;;) {
    auto comma = list.find(',', pos);
    result.push_back(list.substr(pos, comma - pos));
    if (comma == std::string::npos) return result;
    pos = comma + 1;
  }
}

std::string join(const std::vector<std::string>& xs, const char* separator) {
  std::string result;
  for (size_t i = 0; i < xs.size(); ++i) result += (i == 0 ? "" : separator) + xs[i];
  return result;
}

// libpq's key=value quoting: single quotes, with \ and ' escaped by a backslash.
void append_setting(std::string& out, const std::string& key, const std::string& value) {
  if (!out.empty()) out += ' ';
  out += key + "='";
  for (char c : value) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  out += '\'';
}

using options_ptr = std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)>;

options_ptr parse(const std::string& conninfo) {
  char* error = nullptr;
  options_ptr options{PQconninfoParse(conninfo.c_str(), &error), &PQconninfoFree};
  if (error) PQfreemem(error);
  return options;
}

// What libpq will use: the connection string's value, else its PG* variable.
std::string value_of(const PQconninfoOption* options, const std::string& key) {
  for (auto* opt = options; opt->keyword; ++opt) {
    if (key != opt->keyword) continue;
    if (opt->val) return opt->val;
    const char* env = opt->envvar ? std::getenv(opt->envvar) : nullptr;
    return env ? env : "";
  }
  return "";
}

// A name needs DNS; a numeric address, a socket directory ('/', or '@' for
// Linux's abstract namespace) or an empty entry (the default socket) do not.
bool is_name(const std::string& host) {
  if (host.empty() || host[0] == '/' || host[0] == '@') return false;
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST;  // never asks DNS
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return true;
  ::freeaddrinfo(found);
  return false;
}

std::string translate_error(const std::string& host, const std::string& reason) {
  return "could not translate host name \"" + host + "\" to address: " + reason;
}

// The thread's whole work: resolve, store, signal. It must not touch CAF, the
// connection or anything else that may be gone by the time it finishes.
void resolve_all(const std::shared_ptr<host_lookup::shared_state>& state,
                 const std::vector<std::string>& names, const lookup_function& lookup) {
  std::vector<std::vector<std::string>> results(names.size());
  std::vector<std::string> errors(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    try {
      results[i] = lookup(names[i]);
      if (results[i].empty()) errors[i] = translate_error(names[i], "no address found");
    } catch (const std::exception& e) {
      errors[i] = translate_error(names[i], e.what());
    } catch (...) {
      errors[i] = translate_error(names[i], "unknown error");
    }
  }
  {
    std::lock_guard<std::mutex> guard{state->mtx};
    state->results = std::move(results);
    state->errors = std::move(errors);
    state->done = true;
  }
  uint64_t one = 1;
  // Fails only if the counter overflowed, which one write cannot do.
  if (::write(state->event_fd, &one, sizeof one) < 0) return;
}

}  // namespace

std::vector<std::string> getaddrinfo_lookup(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc == EAI_SYSTEM) throw std::system_error(errno, std::generic_category());
  if (rc != 0) throw std::runtime_error(::gai_strerror(rc));
  std::vector<std::string> result;
  for (auto* a = found; a != nullptr; a = a->ai_next) {
    char text[NI_MAXHOST];
    if (::getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) ==
            0 &&
        std::find(result.begin(), result.end(), text) == result.end())
      result.emplace_back(text);
  }
  ::freeaddrinfo(found);
  return result;
}

std::unique_ptr<host_lookup> host_lookup::start(const std::string& conninfo,
                                                lookup_function lookup) {
  auto options = parse(conninfo);
  if (!options) return nullptr;  // PQconnectStart will say what is wrong
  if (!value_of(options.get(), "hostaddr").empty()) return nullptr;
  auto hosts = split(value_of(options.get(), "host"));
  auto ports = split(value_of(options.get(), "port"));
  // A mismatch is libpq's error, reported before any lookup of its own.
  if (ports.size() > 1 && ports.size() != hosts.size()) return nullptr;
  std::vector<std::string> names;
  for (const auto& host : hosts)
    if (is_name(host) && std::find(names.begin(), names.end(), host) == names.end())
      names.push_back(host);
  if (names.empty()) return nullptr;

  std::unique_ptr<host_lookup> result{new host_lookup};
  result->conninfo_ = conninfo;
  result->names_ = names;
  result->port_per_entry_ = ports.size() > 1;
  for (size_t i = 0; i < hosts.size(); ++i)
    result->entries_.push_back(
        {hosts[i], ports.empty() ? std::string{} : ports[result->port_per_entry_ ? i : 0]});
  result->state_ = std::make_shared<shared_state>();
  if (!lookup) lookup = getaddrinfo_lookup;
  // Detached at once: nobody ever waits for DNS (the thread owns its copies).
  std::thread{[state = result->state_, names, lookup] {
    resolve_all(state, names, lookup);
  }}.detach();
  return result;
}

host_lookup::~host_lookup() = default;

int host_lookup::event_fd() const {
  return state_->event_fd;
}

bool host_lookup::done() const {
  std::lock_guard<std::mutex> guard{state_->mtx};
  return state_->done;
}

host_lookup::outcome host_lookup::result() const {
  std::vector<std::vector<std::string>> results;
  std::vector<std::string> errors;
  {
    std::lock_guard<std::mutex> guard{state_->mtx};
    results = state_->results;
    errors = state_->errors;
  }
  std::vector<std::string> hosts, addresses, ports, failed;
  auto add = [&](const entry& e, const std::string& address) {
    hosts.push_back(e.host);
    addresses.push_back(address);  // empty: libpq handles the entry itself (no DNS)
    ports.push_back(e.port);
  };
  for (const auto& e : entries_) {
    auto name = std::find(names_.begin(), names_.end(), e.host);
    if (name == names_.end()) {
      add(e, "");
      continue;
    }
    auto i = static_cast<size_t>(name - names_.begin());
    if (i >= results.size()) continue;  // not done: nothing to connect to
    if (!errors[i].empty()) {
      // libpq would go on with the next host; so do we, and report it.
      if (std::find(failed.begin(), failed.end(), errors[i]) == failed.end())
        failed.push_back(errors[i]);
      continue;
    }
    for (const auto& address : results[i]) add(e, address);
  }
  outcome out;
  out.errors = join(failed, "; ");
  if (hosts.empty()) return out;
  auto options = parse(conninfo_);
  for (auto* opt = options.get(); opt->keyword; ++opt) {
    std::string key = opt->keyword;
    if (opt->val && key != "host" && key != "hostaddr" && key != "port")
      append_setting(out.conninfo, key, opt->val);
  }
  append_setting(out.conninfo, "host", join(hosts, ","));
  append_setting(out.conninfo, "hostaddr", join(addresses, ","));
  if (port_per_entry_)
    append_setting(out.conninfo, "port", join(ports, ","));
  else if (!ports.front().empty())
    append_setting(out.conninfo, "port", ports.front());  // one for all, as given
  return out;
}

}  // namespace pgnotify::pg
