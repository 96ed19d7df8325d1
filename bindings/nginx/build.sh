#!/usr/bin/env bash
# Builds the sluice nginx module against the distribution's nginx (Debian's nginx and
# nginx-dev, installed with apt-get when missing) and prints the module's absolute path as
# the last line: target/nginx/ngx_http_sluice_module.so.
#
# The module is configured with the distribution's own configure flags (conf_flags of
# nginx-dev; they include --with-compat), without which nginx refuses to load it, and links
# target/release/libsluice.a (built with cargo when missing) into itself.
# Usage: bash bindings/nginx/build.sh        (SLUICE_NGINX_SRC overrides /usr/share/nginx/src)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
addon="$repo/bindings/nginx"
src="${SLUICE_NGINX_SRC:-/usr/share/nginx/src}"

log() { printf 'build.sh: %s\n' "$*" >&2; }

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -f "$src/conf_flags" ] || need+=(nginx-dev)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

if [ ! -f "$repo/target/release/libsluice.a" ]; then
  log "cargo build --release (target/release/libsluice.a)"
  cargo build --release --quiet >&2
fi

if [ ! -f "$src/conf_flags" ] || [ ! -x "$src/configure" ]; then
  log "error: $src has no conf_flags or configure (Debian's nginx-dev provides them)"
  exit 1
fi

# conf_flags defines NGX_CONF_FLAGS, the distribution's configure flags, as a bash array.
# shellcheck disable=SC1091
. "$src/conf_flags"

# Digits only in the build directory's name: nginx's configure turns paths into make rules with
# sed, and one random name (mktemp letters) came out as a rule for a path that does not exist.
builddir="/tmp/sluice-module-build.$$.$RANDOM"
rm -rf "$builddir" && mkdir -p "$builddir"
trap 'rm -rf "$builddir"' EXIT

log "configure (in $src, build directory $builddir)"
# -Wextra and -Werror on top of nginx's own -W -Wall (its headers pass them, see README.md).
(cd "$src" && ./configure "${NGX_CONF_FLAGS[@]}" \
  --with-cc-opt="-O2 -fPIC -Wall -Wextra -Wunused-parameter -Werror" \
  --add-dynamic-module="$addon" --builddir="$builddir") >"$builddir.configure.log" 2>&1 || {
  tail -30 "$builddir.configure.log" >&2
  rm -f "$builddir.configure.log"
  exit 1
}
rm -f "$builddir.configure.log"

log "make modules"
make -s -f "$builddir/Makefile" -C "$src" modules >&2

mkdir -p "$repo/target/nginx"
cp "$builddir/ngx_http_sluice_module.so" "$repo/target/nginx/ngx_http_sluice_module.so"
echo "$repo/target/nginx/ngx_http_sluice_module.so"
