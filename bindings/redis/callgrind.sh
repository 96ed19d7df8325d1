#!/usr/bin/env bash
# Server instructions per command, by callgrind: redis-server runs under
# `valgrind --tool=callgrind` with instrumentation off; each command is first run once over
# the keys untimed (so every key exists, as in a long-running server), then instrumentation is
# switched on for exactly one redis-benchmark run of it and the counts are dumped. Everything
# the server executes in that run is counted (reading the requests, the command, the reply,
# writing it), divided by the number of requests. Instruction counts repeat from run to run,
# unlike wall-clock time on a shared machine.
# Usage: [CACHE_SIM=1] bash bindings/redis/callgrind.sh [requests (20000)] [pipeline (16)]
#        [keys (1000)]
# Prints one line per command; keeps the dumps (for callgrind_annotate) in $CALLGRIND_KEEP
# when that is set. With CACHE_SIM=1 callgrind also simulates the caches (of this machine's
# sizes) and each line adds the data reads that missed the first level and the last.
# Under valgrind the server runs some 50 times slower than natively, so per key and per
# millisecond there are fewer requests than natively: what happens once per key per second
# (setting the key's expiry) or per millisecond (the replicated time's string) is counted more
# often here than it costs at full speed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
n="${1:-20000}" pipeline="${2:-16}" keys="${3:-1000}" clients=50

command -v valgrind >/dev/null 2>&1 || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
}
module="$(bash "$here/build.sh" | tail -n1)"
floor="$(bash "$here/build.sh" floor | tail -n1)"
work="${CALLGRIND_KEEP:-$(mktemp -d)}"
mkdir -p "$work"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
sim=()
[ "${CACHE_SIM:-0}" = 1 ] && sim=(--cache-sim=yes)
valgrind --tool=callgrind "${sim[@]}" --instr-atstart=no --callgrind-out-file="$work/cg.out" \
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
  --logfile "$work/redis.log" --daemonize no \
  --loadmodule "$module" POLICY "$repo/policies/default.policy" \
  --loadmodule "$floor" 2>"$work/valgrind.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; [ -n "${CALLGRIND_KEEP:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 600); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

lua='local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - window)
local count = redis.call("ZCARD", KEYS[1])
if count < limit then
  redis.call("ZADD", KEYS[1], now, t[1] .. "." .. t[2] .. "-" .. count)
  redis.call("PEXPIRE", KEYS[1], window)
  return 1
end
return 0'
sha="$(redis-cli -p "$port" SCRIPT LOAD "$lua")"

bench() { # requests command...
  local count="$1"
  shift
  redis-benchmark -p "$port" -n "$count" -c "$clients" -P "$pipeline" -r "$keys" -q "$@" >/dev/null
}

measure() { # label command...
  local label="$1"
  shift
  bench "$((keys * 4))" "$@"
  callgrind_control -i on "$pid" >/dev/null 2>&1
  bench "$n" "$@"
  callgrind_control -i off "$pid" >/dev/null 2>&1
  callgrind_control -d "$label" "$pid" >/dev/null
  local dump
  dump="$(ls -t "$work"/cg.out.* | head -n1)"
  mv "$dump" "$work/cg.$label"
  python3 - "$work/cg.$label" "$label" "$n" <<'PY'
import sys
path, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
events = totals = None
for line in open(path):
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith("totals:"):
        totals = list(map(int, line.split()[1:]))
per = {e: t / n for e, t in zip(events, totals)}
extra = ""
if "D1mr" in per:
    extra = f", data reads missing D1 {per['D1mr']:.1f}, LL {per['DLmr']:.2f}"
print(f"{label:<14} {per['Ir']:8.0f} instructions per request{extra}")
PY
}

echo "callgrind: $n requests, $clients clients, -P $pipeline, $keys random keys"
measure incr INCR 'rl:__rand_int__'
measure floor.ok FLOOR.OK 'fk:__rand_int__'
measure floor.key FLOOR.KEY 'fk:__rand_int__'
measure floor.check FLOOR.CHECK 'fk:__rand_int__' global
measure check.global SLUICE.CHECK 'ip:__rand_int__' global
measure check.write SLUICE.CHECK 'ip:__rand_int__' write
measure lua.log EVALSHA "$sha" 1 'zl:__rand_int__' 300 60000
