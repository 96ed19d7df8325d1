#!/usr/bin/env bash
# Build the sluice Redis module. Installs what it needs with apt-get when missing
# (redis-server and redis-tools to run it, libclang-dev for the redis-module
# crate's bindgen), then `cargo build --release` of this crate into target/redis under the
# repository root. Prints the module's absolute path as its last line.
# With `floor`, builds the measuring module of examples/floor.rs instead (what any keyed module
# command costs; for callgrind.sh and bench.sh) and prints its path.
# Usage: bash bindings/redis/build.sh [floor]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
# bindgen loads libclang at run time.
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "build.sh: apt-get install ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/redis}"
if [ "${1:-}" = floor ]; then
  cargo build --release --locked --manifest-path "$here/Cargo.toml" --example floor >&2
  module="$CARGO_TARGET_DIR/release/examples/libfloor.so"
else
  cargo build --release --locked --manifest-path "$here/Cargo.toml" >&2
  module="$CARGO_TARGET_DIR/release/libsluice_redis.so"
fi
test -f "$module"
echo "$module"
