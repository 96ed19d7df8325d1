#!/usr/bin/env bash
# Requests per second of a static file over loopback, with wrk, for three nginx setups run in
# alternating rounds (the machine's speed drifts: compare within one run, as ratios):
#   bare       the same nginx, no module loaded
#   limit_req  nginx's own limiter (limit_req_zone $binary_remote_addr, a rate never reached)
#   sluice     this module (POLICY, default global 10000/10ms on $remote_addr, never reached;
#              SLUICE_HEADERS=x-ratelimit by default)
# Every request of wrk comes from 127.0.0.1: one hot key, shared by all workers.
#
# Protocol: one warm-up run of each setup (2 s, not counted), then ROUNDS rounds, each running
# the three setups back to back in an order that rotates from round to round (so that none is
# always first or last after the others). Each round gives paired ratios (sluice / bare,
# sluice / limit_req, limit_req / bare, from runs seconds apart); the summary is the median
# of each ratio over the rounds with its spread (lowest and highest, and the middle half),
# the median requests/s and worker CPU per request of each setup, and the load average
# before and after (other work on the machine shows there). Defaults: 11 rounds of 6 s,
# about 4 minutes in all.
# Usage: bash bindings/nginx/bench.sh [seconds per round, default 6] [rounds, default 11]
# Needs wrk (apt-get install wrk); installs it when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-6}"
rounds="${2:-11}"
workers="${WORKERS:-2}"
connections="${CONNECTIONS:-64}"

if ! command -v wrk >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq wrk
fi
module="$(bash bindings/nginx/build.sh 2>/dev/null | tail -1)"

prefix="$(mktemp -d /tmp/sluice-nginx-bench.XXXXXX)"
chmod 755 "$prefix"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$prefix"
}
trap cleanup EXIT
mkdir -p "$prefix/html"
head -c 612 /dev/zero | tr '\0' 'x' >"$prefix/html/index.html"
chmod -R a+rX "$prefix/html"
printf '%s\n' "${POLICY:-global 10000/10ms}" >"$prefix/bench.policy"
port=$((20000 + RANDOM % 20000))

conf() {  # $1 = bare | limit_req | sluice
  local load="" http="" loc=""
  case "$1" in
    limit_req)
      http="limit_req_zone \$binary_remote_addr zone=bench:10m rate=1000000r/s;"
      loc="limit_req zone=bench burst=1000000 nodelay;" ;;
    sluice)
      load="load_module $module;"
      http="sluice_table bench path=$prefix/bench.sluice policy=$prefix/bench.policy;"
      loc="sluice bench; sluice_headers ${SLUICE_HEADERS:-x-ratelimit};" ;;
  esac
  cat >"$prefix/nginx.conf" <<CONF
$load
$( [ "$(id -u)" = 0 ] && echo "user nobody nogroup;" )
daemon off;
master_process on;
worker_processes $workers;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    $http
    server {
        listen 127.0.0.1:$port reuseport;
        root $prefix/html;
        location / { $loc }
    }
}
CONF
}

run() {  # $1 = setup, $2 = seconds; prints requests/s and worker CPU us per request
  conf "$1"
  nginx -p "$prefix/" -c "$prefix/nginx.conf" &
  pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.05
  done
  local out before after requests
  before="$(worker_ticks "$pid")"
  out="$(wrk -t2 -c"$connections" -d"${2}s" "http://127.0.0.1:$port/")"
  after="$(worker_ticks "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  # A worker descheduled for tens of ms on a loaded machine decides with a stale cached
  # clock, sees the other worker's newer entries as in its window and refuses a few: more
  # than 0.1 % means the policy is not the never-reached limit this bench means to measure.
  refused="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  if [ -n "$refused" ]; then
    echo "bench.sh: $1: $refused of $requests responses were not 2xx" >&2
    if [ "$((refused * 1000))" -gt "$requests" ]; then echo "$out" >&2; exit 1; fi
  fi
  # requests/s, and the workers' CPU time (user + system) per request in microseconds
  printf '%s %s\n' "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(echo "($after - $before) * 1000000 / $(getconf CLK_TCK) / $requests" | bc -l)"
}

# user + system clock ticks of the children (workers) of nginx master $1
worker_ticks() {
  local f total=0 fields
  for f in /proc/[0-9]*/stat; do
    fields="$(sed 's/.*) //' "$f" 2>/dev/null)" || continue
    set -- $fields "$1"
    # fields after the command: 1 state, 2 ppid, ... 12 utime, 13 stime
    if [ "$2" = "${!#}" ]; then total=$((total + ${12} + ${13})); fi
    set -- "${!#}"
  done
  echo "$total"
}

setups=(bare limit_req sluice)
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for setup in "${setups[@]}"; do run "$setup" 2 >/dev/null; done  # warm-up, not counted
results="$prefix/results"
: >"$results"
for round in $(seq "$rounds"); do
  for k in 0 1 2; do
    setup="${setups[$(( (round + k) % 3 ))]}"
    read -r rps us < <(run "$setup" "$seconds")
    echo "$round $setup $rps $us" >>"$results"
    printf 'round %2d  %-10s %10s requests/s  %6.2f us of worker CPU per request  (load %s)\n' \
      "$round" "$setup" "$rps" "$us" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$rounds" "$seconds" "$workers" "$connections" "$load_before" "$load_after" <<'PY'
import statistics, sys
path, rounds, seconds, workers, conns, before, after = sys.argv[1:]
rps, cpu = {}, {}
for line in open(path):
    r, setup, x, us = line.split()
    rps.setdefault(setup, {})[int(r)] = float(x)
    cpu.setdefault(setup, []).append(float(us))

def spread(xs):
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4) if len(xs) >= 4 else [xs[0], statistics.median(xs), xs[-1]]
    return statistics.median(xs), xs[0], xs[-1], q[0], q[2]

print(f"\n{rounds} rounds of {seconds} s ({workers} workers, wrk -t2 -c{conns}, one key); "
      f"load average {before} before, {after} after")
print(f"{'':24}{'median':>9}{'min':>9}{'max':>9}   middle half")
for setup in ("bare", "limit_req", "sluice"):
    m, lo, hi, q1, q3 = spread(rps[setup].values())
    print(f"  {setup + ' requests/s':22}{m:9.0f}{lo:9.0f}{hi:9.0f}   {q1:.0f} .. {q3:.0f}")
for a, b in (("sluice", "bare"), ("sluice", "limit_req"), ("limit_req", "bare")):
    ratios = [rps[a][r] / rps[b][r] for r in rps[a] if r in rps[b]]
    m, lo, hi, q1, q3 = spread(ratios)
    print(f"  {a + ' / ' + b:22}{m:9.3f}{lo:9.3f}{hi:9.3f}   {q1:.3f} .. {q3:.3f}"
          f"   (per round, paired; above 1 in {sum(x > 1 for x in ratios)} of {len(ratios)})")
print("worker CPU per request, us (user + system, median; steadier than requests/s on a busy machine):")
base = statistics.median(cpu["bare"])
for setup in ("bare", "limit_req", "sluice"):
    m = statistics.median(cpu[setup])
    extra = "" if setup == "bare" else f"  ({m - base:+.2f} us)"
    print(f"  {setup:10} {m:6.2f}{extra}")
PY
