#!/usr/bin/env bash
# Instructions nginx executes per request (callgrind, which repeats exactly, unlike requests/s
# on a shared machine): one nginx process (master_process off) serving a 612-byte static file
# over one keep-alive connection, bare, with limit_req, and with this module (global
# 10000/10ms on $remote_addr, never reached), with its X-RateLimit headers, the IETF ones, and none
# (headers off and no $sluice_* variable: the check that counts nothing). Each setup runs twice,
# with N1 and N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one request, start-up
# and shutdown cancelled out.
# Usage: bash bindings/nginx/bench_callgrind.sh [N1, default 500] [N2, default 2500]
# SETUPS="sluice bare" measures only those setups (default all five; the ratios need bare,
# limit_req and the setup compared). KEEP=DIR keeps each run's callgrind output there
# (DIR/SETUP-N.out, for callgrind_annotate; SLUICE_NGINX_STRIP= builds the module with symbols).
set -euo pipefail
cd "$(dirname "$0")/../.."
n1="${1:-500}"
n2="${2:-2500}"
command -v valgrind >/dev/null 2>&1 || {
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq valgrind
}
module="$(bash bindings/nginx/build.sh 2>/dev/null | tail -1)"
prefix="$(mktemp -d /tmp/sluice-nginx-callgrind.XXXXXX)"
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
printf 'global 10000/10ms\n' >"$prefix/bench.policy"
port=$((20000 + RANDOM % 20000))

conf() {
  local load="" http="" loc=""
  case "$1" in
    limit_req)
      http="limit_req_zone \$binary_remote_addr zone=bench:10m rate=1000000r/s;"
      loc="limit_req zone=bench burst=1000000 nodelay;" ;;
    sluice | sluice_noheaders | sluice_ietf)
      load="load_module $module;"
      http="sluice_table bench path=$prefix/bench.sluice policy=$prefix/bench.policy;"
      loc="sluice bench;"
      if [ "$1" = sluice_noheaders ]; then loc="$loc sluice_headers off;"; fi
      if [ "$1" = sluice_ietf ]; then loc="$loc sluice_headers ietf;"; fi ;;
  esac
  cat >"$prefix/nginx.conf" <<CONF
$load
daemon off;
master_process off;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    $http
    server {
        listen 127.0.0.1:$port;
        root $prefix/html;
        location / { $loc }
    }
}
CONF
}

instructions() {  # $1 setup, $2 requests: prints nginx's total Ir
  conf "$1"
  rm -f "$prefix/bench.sluice" "$prefix/cg.out"
  valgrind --tool=callgrind --callgrind-out-file="$prefix/cg.out" \
    nginx -p "$prefix/" -c "$prefix/nginx.conf" 2>"$prefix/valgrind.log" &
  pid=$!
  python3 - "$port" "$2" <<'PY'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(400):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.connect()
        break
    except OSError:
        time.sleep(0.05)
for _ in range(n):
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
c.close()
PY
  kill -QUIT "$pid"; wait "$pid" || true; pid=""
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$prefix/cg.out" "$KEEP/$1-$2.out"; fi
  awk '/^summary:/ {print $2}' "$prefix/cg.out"
}

printf '%-16s %14s %14s %12s\n' setup "Ir($n1)" "Ir($n2)" "Ir/request"
declare -A per
setups="${SETUPS:-bare limit_req sluice sluice_ietf sluice_noheaders}"
for setup in $setups; do
  a="$(instructions "$setup" "$n1")"
  b="$(instructions "$setup" "$n2")"
  per[$setup]=$(( (b - a) / (n2 - n1) ))
  printf '%-16s %14s %14s %12s\n' "$setup" "$a" "$b" "${per[$setup]}"
done
ratio() {  # $1 setup, $2 label
  if [ -n "${per[$1]:-}" ] && [ -n "${per[bare]:-}" ] && [ -n "${per[limit_req]:-}" ]; then
    printf '%s: +%d (%.3f x bare, %.3f x limit_req)\n' "$2" $(( per[$1] - per[bare] )) \
      "$(echo "${per[$1]} / ${per[bare]}" | bc -l)" "$(echo "${per[$1]} / ${per[limit_req]}" | bc -l)"
  fi
}
echo
ratio limit_req limit_req
ratio sluice sluice
ratio sluice_ietf "sluice_headers ietf"
ratio sluice_noheaders "sluice_headers off"
