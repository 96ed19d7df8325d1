#!/usr/bin/env bash
# Throughput of SLUICE.CHECK under redis-benchmark, beside Redis's own INCR and a
# SET with PX (the usual fixed-window limiter's work) on the same server, in one run.
# Prints requests per second of each and SLUICE.CHECK's ratio to INCR.
# Usage: bash bindings/redis/bench.sh [requests (200000)] [clients (50)] [pipeline (1)] [keys (10000)]
# (With the default policy a key holds 8 KiB: 10000 keys take about 84 MB.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
n="${1:-200000}" clients="${2:-50}" pipeline="${3:-1}" keys="${4:-10000}"

module="$(bash "$here/build.sh" | tail -n1)"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
  --logfile "$work/redis.log" --daemonize no \
  --loadmodule "$module" POLICY "$repo/policies/default.policy" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

rps() { # command... -> requests per second
  redis-benchmark -p "$port" -n "$n" -c "$clients" -P "$pipeline" -r "$keys" --csv "$@" \
    | tail -n1 | cut -d, -f2 | tr -d '"'
}

echo "redis-benchmark: $n requests, $clients clients, pipeline $pipeline, $keys random keys"
incr="$(rps INCR 'rl:__rand_int__')"
setpx="$(rps SET 'rl:__rand_int__' 1 PX 60000)"
global="$(rps SLUICE.CHECK 'ip:__rand_int__' global)"
write="$(rps SLUICE.CHECK 'ip:__rand_int__' write)"
awk -v incr="$incr" -v setpx="$setpx" -v global="$global" -v write="$write" 'BEGIN {
  printf "%-42s %12.0f req/s\n", "INCR key", incr
  printf "%-42s %12.0f req/s  %.3f x INCR\n", "SET key 1 PX 60000", setpx, setpx / incr
  printf "%-42s %12.0f req/s  %.3f x INCR\n", "SLUICE.CHECK key global (1 rule)", global, global / incr
  printf "%-42s %12.0f req/s  %.3f x INCR\n", "SLUICE.CHECK key write (3 rules)", write, write / incr
}'
