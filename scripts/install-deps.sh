#!/usr/bin/env bash
# Installs everything pgnotify needs on a fresh Debian 12 (as root; anyone else
# is told what is missing and how to install it).
# Idempotent: skips apt entirely when every package is already present.
set -euo pipefail
packages=(
  build-essential cmake pkg-config git ca-certificates clang-format
  libcaf-dev libpqxx-dev libpq-dev libfmt-dev libspdlog-dev doctest-dev
  postgresql-15 postgresql-client-15 python3 procps openssl libssl-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: install them as root, then run this again:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
