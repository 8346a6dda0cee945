#include "tls.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace pgnotify::app {

namespace {

/// OpenSSL's queued reasons, oldest first; clears the queue.
std::string openssl_reason() {
  std::string text;
  while (auto code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? "no reason given" : text;
}

/// A readable regular file, or a usage error saying why not (OpenSSL's own
/// messages do not name the file, nor tell "missing" from "unreadable").
void check_readable(const char* option, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw usage_error(
        fmt::format("--{}={}: cannot read it: {}", option, path, std::strerror(errno)));
  char byte;
  auto n = ::read(fd, &byte, 1);
  int error = errno;
  ::close(fd);
  if (n < 0)
    throw usage_error(
        fmt::format("--{}={}: cannot read it: {}", option, path, std::strerror(error)));
  if (n == 0) throw usage_error(fmt::format("--{}={}: the file is empty", option, path));
}

// Never prompt for a passphrase (OpenSSL's default reads the terminal): an
// encrypted key fails to load instead.
int no_passphrase(char*, int, int, void*) {
  return 0;
}

using ctx_ptr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

ctx_ptr new_context() {
  ctx_ptr ctx{SSL_CTX_new(TLS_method()), &SSL_CTX_free};
  if (!ctx) throw usage_error("cannot create an OpenSSL context: " + openssl_reason());
  SSL_CTX_set_default_passwd_cb(ctx.get(), no_passphrase);
  return ctx;
}

}  // namespace

void check_tls_files(const tls_settings& tls) {
  check_readable("tls-cert", tls.cert);
  check_readable("tls-key", tls.key);
  check_readable("tls-ca", tls.ca);
  ERR_clear_error();
  // The key alone first, so that "not a key" and "not this certificate's key"
  // read differently.
  {
    auto ctx = new_context();
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM) != 1)
      throw usage_error(fmt::format(
          "--tls-key={}: not a PEM private key, or an encrypted one (not supported): {}", tls.key,
          openssl_reason()));
  }
  auto ctx = new_context();
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert.c_str()) != 1)
    throw usage_error(
        fmt::format("--tls-cert={}: not a PEM certificate chain: {}", tls.cert, openssl_reason()));
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1)
    throw usage_error(
        fmt::format("--tls-key={} does not belong to the certificate in --tls-cert={}: {}", tls.key,
                    tls.cert, openssl_reason()));
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca.c_str(), nullptr) != 1)
    throw usage_error(
        fmt::format("--tls-ca={}: no PEM CA certificate in it: {}", tls.ca, openssl_reason()));
}

}  // namespace pgnotify::app
