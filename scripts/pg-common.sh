# shellcheck shell=bash
# Sourced by pg-start.sh, pg-standby.sh, pg-ctl.sh and pg-stop.sh.

# The cluster's owner. PostgreSQL refuses to run as root, so root runs it as the
# postgres user; anyone else runs it as themselves (runuser and chown need root).
# shellcheck disable=SC2034 # pg_owner is used by pg-stop.sh
if [ "$(id -u)" = 0 ]; then pg_owner=postgres; else pg_owner=$(id -un); fi
# as_owner COMMAND...: runs COMMAND as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# prepare_dir DIR: makes DIR/sock and a self-signed TLS certificate for 127.0.0.1
# (DIR/server.crt, DIR/server.key), all owned by the cluster's owner.
prepare_dir() {
  local dir=$1
  mkdir -p "$dir/sock"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/server.key" -out "$dir/server.crt" \
    >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; return 1; }
  chmod 600 "$dir/server.key" # the server refuses a key that others can read
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$dir"; fi
  chmod 755 "$dir"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_on_free_port DIR WRITE_ENV: picks a free port on 127.0.0.1, writes the
# server options to DIR/options, lets the function WRITE_ENV PORT write DIR/env,
# and starts the cluster in DIR/data (a few tries, in case a port is taken meanwhile).
# TLS is on with DIR's certificate (see prepare_dir); clients choose with sslmode.
start_on_free_port() {
  local dir=$1 write_env=$2 port
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    port_in_use "$port" && continue
    echo "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      "-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" >"$dir/options"
    "$write_env" "$port"
    bash "$(dirname "${BASH_SOURCE[0]}")/pg-ctl.sh" "$dir" start && return 0
  done
  return 1
}
