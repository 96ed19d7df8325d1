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
  local out
  out="$(wrk -t2 -c"$connections" -d"${seconds}s" "http://127.0.0.1:$port/")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  if grep -q "Non-2xx" <<<"$out"; then
    echo "bench.sh: $1 answered non-2xx responses:" >&2; echo "$out" >&2; exit 1
  fi
  awk '/Requests\/sec/ {print $2}' <<<"$out"
}

declare -A all
for setup in bare limit_req sluice; do all[$setup]=""; done
for round in $(seq "$rounds"); do
  for setup in bare limit_req sluice; do
    rps="$(run "$setup")"
    all[$setup]="${all[$setup]} $rps"
    printf 'round %d  %-10s %10s requests/s\n' "$round" "$setup" "$rps"
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
