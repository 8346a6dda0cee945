// Checks the mutual-TLS files before CAF's OpenSSL module sees them: CAF reads
// them only when the first connection comes, and then a bad file aborts a
// server or hangs a client (notes/caf-0.17-openssl-notes.md, pitfall 1).
#pragma once

#include "options.hpp"

namespace pgnotify::app {

/// Loads the certificate chain, the key (unencrypted: nothing may prompt for a
/// passphrase) and the CA file with OpenSSL, and checks that the key belongs to
/// the certificate. Throws usage_error naming the option and the file.
void check_tls_files(const tls_settings& tls);

/// True if CAF's OpenSSL calls go through the program's wrappers that empty
/// OpenSSL's error queue first (app/openssl_error_queue.cpp, linked into the
/// program only): without them a peer that leaves or is refused makes CAF cut
/// another, healthy connection.
bool openssl_error_queue_is_emptied();

}  // namespace pgnotify::app
