#!/usr/bin/env bash
# Throughput of SLUICE.CHECK under redis-benchmark on loopback, beside Redis's own INCR and a
# sorted-set sliding log in Lua (ZREMRANGEBYSCORE + ZCARD + ZADD through EVALSHA, the usual
# exact limiter on Redis) on the same server, in one run: the same random keys, the same limit
# (the default policy's `global 300/1m`), in alternating rounds, at each pipeline depth
# (unpipelined, -P 4 and -P 16 unless PIPELINES says otherwise). Beside them FLOOR.CHECK of
# examples/floor.rs: the module API calls any check makes (open the key, replicate with AT,
# the eight-field reply) and no decision, the floor under SLUICE.CHECK on this Redis.
# Prints the load average, each round's requests per second and, per depth, the medians.
# Usage: [PIPELINES="1 4 16"] bash bindings/redis/bench.sh [requests (200000)] [clients (50)]
#        [keys (10000)] [rounds (3)]
# (With the default policy a key holds 8 KiB: 10000 keys take about 84 MB.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
n="${1:-200000}" clients="${2:-50}" keys="${3:-10000}" rounds="${4:-3}"

module="$(bash "$here/build.sh" | tail -n1)"
floor="$(bash "$here/build.sh" floor | tail -n1)"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
  --logfile "$work/redis.log" --daemonize no \
  --loadmodule "$module" POLICY "$repo/policies/default.policy" --loadmodule "$floor" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

# The sliding log: drop what left the window, count, add if under the limit. The member is
# the time in microseconds and the count, unique within the key. Time is the server's.
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
# Both sides answer (redis-benchmark counts error replies as requests).
test "$(redis-cli -p "$port" EVALSHA "$sha" 1 zl:probe 300 60000)" = 1
test "$(redis-cli -p "$port" SLUICE.CHECK ip:probe global | head -n1)" = 1
test "$(redis-cli -p "$port" FLOOR.CHECK fl:probe global | head -n1)" = 1

rps() { # pipeline command... -> requests per second
  local pipeline="$1"
  shift
  redis-benchmark -p "$port" -n "$n" -c "$clients" -P "$pipeline" -r "$keys" --csv "$@" \
    | tail -n1 | cut -d, -f2 | tr -d '"'
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "redis-benchmark: $n requests, $clients clients, $keys random keys, $rounds rounds; load: $(load)"
for pipeline in ${PIPELINES:-1 4 16}; do
  rows=()
  for round in $(seq "$rounds"); do
    incr="$(rps "$pipeline" INCR 'rl:__rand_int__')"
    check="$(rps "$pipeline" SLUICE.CHECK 'ip:__rand_int__' global)"
    floor_check="$(rps "$pipeline" FLOOR.CHECK 'fl:__rand_int__' global)"
    write="$(rps "$pipeline" SLUICE.CHECK 'ip:__rand_int__' write)"
    zlog="$(rps "$pipeline" EVALSHA "$sha" 1 'zl:__rand_int__' 300 60000)"
    printf 'P %-2s round %s: INCR %8.0f  SLUICE.CHECK global %8.0f  FLOOR.CHECK %8.0f  SLUICE.CHECK write %8.0f  Lua log %7.0f req/s; load %s\n' \
      "$pipeline" "$round" "$incr" "$check" "$floor_check" "$write" "$zlog" "$(load)"
    rows+=("$incr $check $write $zlog $floor_check")
  done
  printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = lambda xs: statistics.median(xs)
p = sys.argv[1]
print(f"P {p} median: INCR {med([r[0] for r in rows]):.0f}, SLUICE.CHECK global {med([r[1] for r in rows]):.0f}, "
      f"FLOOR.CHECK {med([r[4] for r in rows]):.0f}, write {med([r[2] for r in rows]):.0f}, "
      f"Lua log {med([r[3] for r in rows]):.0f} req/s")
print(f"P {p} median ratios (per round): SLUICE.CHECK global / INCR {med([r[1] / r[0] for r in rows]):.3f} "
      f"(FLOOR.CHECK / INCR {med([r[4] / r[0] for r in rows]):.3f}), "
      f"write (3 rules) / INCR {med([r[2] / r[0] for r in rows]):.3f}, "
      f"global / Lua log {med([r[1] / r[3] for r in rows]):.2f}")
' "$pipeline"
done
