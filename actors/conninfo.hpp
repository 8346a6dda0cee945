// libpq connection strings: what the listener connects with, and what may be shown.
#pragma once

#include <string>

#include <caf/expected.hpp>

namespace pgnotify {

/// Settings the listener's connection gets unless the connection string or the
/// corresponding PG* environment variable sets them: a bounded connect, TCP
/// keepalive and a TCP user timeout, so a dead peer is noticed.
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

/// The connection string in key=value form without its password, for logs and
/// status output; "(unparsable connection string)" if libpq cannot parse it.
std::string redact_conninfo(const std::string& conninfo);

}  // namespace pgnotify
