# Sourced by pg-start.sh and pg-standby.sh.

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_on_free_port DIR WRITE_ENV: picks a free port on 127.0.0.1, writes the
# server options to DIR/options, lets the function WRITE_ENV PORT write DIR/env,
# and starts the cluster in DIR/data (a few tries, in case a port is taken meanwhile).
start_on_free_port() {
  local dir=$1 write_env=$2 port
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    port_in_use "$port" && continue
    echo "-p $port -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
      >"$dir/options"
    "$write_env" "$port"
    bash "$(dirname "${BASH_SOURCE[0]}")/pg-ctl.sh" "$dir" start && return 0
  done
  return 1
}
