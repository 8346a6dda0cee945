// libpq connection strings: what the listener connects with, and what may be shown.
#pragma once

#include <string>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

namespace pgnotify {

/// Settings the listener's connection gets unless the connection string or the
/// corresponding PG* environment variable sets them: a bounded connect, TCP
/// keepalive and a TCP user timeout, so a dead peer is noticed; and
/// target_session_attrs=read-write, so a multi-host URI lands on the primary.
struct connection_defaults {
  int connect_timeout_s = 10;
  int keepalives_idle_s = 10;
  int keepalives_interval_s = 5;
  int keepalives_count = 3;
  int tcp_user_timeout_ms = 20000;
  std::string application_name = "pgnotify";
};

/// Parses a libpq connection string (key=value or URI; empty means "from the PG*
/// environment") and returns it in key=value form with `defaults` added. A string
/// libpq cannot parse yields errc::invalid_argument with libpq's reason.
caf::expected<std::string> prepare_conninfo(const std::string& conninfo,
                                            const connection_defaults& defaults = {});

/// The whole connect's deadline: connect_timeout of `conninfo` (a prepared one)
/// or PGCONNECT_TIMEOUT; 0 means none. libpq ignores connect_timeout in its
/// non-blocking connect, so the listener enforces it.
caf::timespan connect_timeout_of(const std::string& conninfo);

/// The connection string in key=value form without its password, for logs and
/// status output; "(unparsable connection string)" if libpq cannot parse it.
std::string redact_conninfo(const std::string& conninfo);

}  // namespace pgnotify
