#!/usr/bin/env bash
# The Go binding's tests, on a fresh Debian 12 machine as on a developer's: installs Go >= 1.21
# (bookworm-backports' golang-1.2x-go) and gcc with apt-get if they are missing, builds the
# library with cargo, then gofmt (must list nothing), go vet, go test -race, and the tests again
# against the shared library with GOEXPERIMENT=cgocheck2.
# Usage: bash bindings/go/run_tests.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# The Go module proxy is not used: the binding and its tests need the standard library only.
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=1
if [ -z "${HOME:-}" ] || [ ! -w "${HOME:-/nonexistent}" ]; then
  # No usable home (a bare CI shell): Go's caches under target/.
  export GOCACHE="${GOCACHE:-$root/target/go/cache}" GOPATH="${GOPATH:-$root/target/go/path}"
fi

# apt-get, waiting for the package database if another apt-get holds it.
apt_get() {
  local try
  for try in $(seq 1 60); do
    if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"; then
      return 0
    fi
    if ! fuser /var/lib/apt/lists/lock /var/lib/dpkg/lock-frontend >/dev/null 2>&1; then
      return 1 # a real failure, not a lock held by someone else
    fi
    sleep 5
  done
  return 1
}
updated=0
apt_update() {
  if [ "$updated" = 0 ]; then
    apt_get update -qq
    updated=1
  fi
}

# A go of at least 1.21 on PATH, or one of Debian's versioned ones.
go_ok() { # $1: a go binary
  local v
  v="$("$1" env GOVERSION 2>/dev/null)" || return 1
  v="${v#go}"
  [ "${v%%.*}" -gt 1 ] || { [ "${v%%.*}" = 1 ] && [ "$(echo "$v" | cut -d. -f2)" -ge 21 ]; }
}
find_go() {
  local g
  if command -v go >/dev/null 2>&1 && go_ok "$(command -v go)"; then
    command -v go
    return 0
  fi
  for g in $(ls -d /usr/lib/go-1.* 2>/dev/null | sort -t. -k2 -n -r); do
    if [ -x "$g/bin/go" ] && go_ok "$g/bin/go"; then
      echo "$g/bin/go"
      return 0
    fi
  done
  return 1
}

if ! gobin="$(find_go)"; then
  echo "bindings/go: no Go >= 1.21; installing golang-1.2x-go from bookworm-backports" >&2
  list=/etc/apt/sources.list.d/sluice-go-backports.list
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The machine's own mirror (the URIs line of its debian.sources, else sources.list).
    mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1)"
    if [ -z "$mirror" ]; then
      mirror="$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)"
    fi
    if [ -z "$mirror" ]; then
      echo "bindings/go: no Debian mirror in the machine's apt sources to add bookworm-backports from" >&2
      exit 1
    fi
    echo "deb $mirror bookworm-backports main" >"$list"
  fi
  apt_update
  pkg="$(apt-cache search --names-only '^golang-1\.[0-9]+-go$' | awk '{ print $1 }' |
    sort -t. -k2 -n | tail -1)"
  if [ -z "$pkg" ]; then
    echo "bindings/go: no golang-1.x-go package found in the apt sources" >&2
    exit 1
  fi
  apt_get install -y -qq -t bookworm-backports "$pkg" >/dev/null
  gobin="$(find_go)" || { echo "bindings/go: $pkg installed no usable go" >&2; exit 1; }
fi
export PATH="$(dirname "$gobin"):$PATH"
echo "bindings/go: $(go version)"

if ! command -v gcc >/dev/null 2>&1; then
  apt_update
  apt_get install -y -qq gcc libc6-dev >/dev/null
fi

# The library, the sluice command (the sharing test runs it) and the Rust API's replay of a
# script (the decisions test compares with it). A no-op when up to date.
(cd "$root" && cargo build --release --quiet && cargo build --release --quiet --example replay)
for f in target/release/libsluice.a target/release/sluice target/release/examples/replay; do
  [ -e "$root/$f" ] || { echo "bindings/go: cargo build made no $f" >&2; exit 1; }
done

cd "$here"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "bindings/go: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -race -count=1 ./...
# The shared-library build links and passes too, with cgo's full pointer checks (no Go pointer
# stored in memory handed to C: the keys, the batch buffers).
GOEXPERIMENT=cgocheck2 go test -count=1 -tags sluice_shared ./...
# And through pkg-config, as for a library installed system-wide: a sluice.pc for this build.
if ! command -v pkg-config >/dev/null 2>&1; then
  apt_get install -y -qq pkg-config >/dev/null
fi
pcdir="$(mktemp -d)"
trap 'rm -rf "$pcdir"' EXIT
cat >"$pcdir/sluice.pc" <<PC
Name: sluice
Description: exact, lock-free sliding-window rate limiter
Version: $(sed -n 's/^#define SLUICE_VERSION "\(.*\)"/\1/p' "$root/include/sluice.h")
Cflags: -I$root/include
Libs: -L$root/target/release -Wl,-rpath,$root/target/release -lsluice
PC
PKG_CONFIG_PATH="$pcdir" go test -count=1 -tags sluice_pkgconfig -run 'TestVersionAndPolicy|TestOneRuleSlidingWindow|TestErrors' ./
