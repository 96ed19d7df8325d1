#!/usr/bin/env bash
# Requests per second of a static file over loopback, with wrk, for three nginx setups run in
# alternating rounds (the machine's speed drifts; compare within one run, as ratios):
#   bare       the same nginx, no module loaded
#   limit_req  nginx's own limiter (limit_req_zone $binary_remote_addr, a rate never reached)
#   sluice     this module (POLICY, default global 10000/10ms on $remote_addr, never reached;
#              SLUICE_HEADERS=x-ratelimit by default)
# Every request of wrk comes from 127.0.0.1: one hot key, shared by all workers.
# Usage: bash bindings/nginx/bench.sh [seconds per round, default 5] [rounds, default 3]
# Needs wrk (apt-get install wrk); installs it when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-5}"
rounds="${2:-3}"
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

run() {  # $1 = setup; prints requests/s
  conf "$1"
  nginx -p "$prefix/" -c "$prefix/nginx.conf" &
  pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.05
  done
  local out before after requests
  before="$(worker_ticks "$pid")"
  out="$(wrk -t2 -c"$connections" -d"${seconds}s" "http://127.0.0.1:$port/")"
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

declare -A all cpu
for setup in bare limit_req sluice; do all[$setup]=""; cpu[$setup]=""; done
for round in $(seq "$rounds"); do
  for setup in bare limit_req sluice; do
    read -r rps us < <(run "$setup")
    all[$setup]="${all[$setup]} $rps"
    cpu[$setup]="${cpu[$setup]} $us"
    printf 'round %d  %-10s %10s requests/s  %6.2f us of worker CPU per request\n' \
      "$round" "$setup" "$rps" "$us"
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bare="$(median <<<"${all[bare]}")"
lr="$(median <<<"${all[limit_req]}")"
sl="$(median <<<"${all[sluice]}")"
printf '\nmedians over %d rounds of %ss (%d workers, wrk -t2 -c%d, one key):\n' "$rounds" "$seconds" "$workers" "$connections"
printf '  bare       %10s requests/s\n' "$bare"
printf '  limit_req  %10s requests/s  (%.3f x bare)\n' "$lr" "$(echo "$lr / $bare" | bc -l)"
printf '  sluice     %10s requests/s  (%.3f x bare, %.3f x limit_req)\n' "$sl" \
  "$(echo "$sl / $bare" | bc -l)" "$(echo "$sl / $lr" | bc -l)"
cb="$(median <<<"${cpu[bare]}")"
cl="$(median <<<"${cpu[limit_req]}")"
cs="$(median <<<"${cpu[sluice]}")"
printf 'worker CPU per request (user + system, median; steadier than requests/s on a busy machine):\n'
printf '  bare       %6.2f us\n  limit_req  %6.2f us  (+%.2f us)\n  sluice     %6.2f us  (+%.2f us)\n' \
  "$cb" "$cl" "$(echo "$cl - $cb" | bc -l)" "$cs" "$(echo "$cs - $cb" | bc -l)"
