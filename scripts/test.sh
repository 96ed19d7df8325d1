#!/usr/bin/env bash
# Every test of sluice, on a fresh machine: formatting, lints, the header-drift check,
# unit/integration/property tests and doctests, the C suite (shared, static, valgrind), the
# Python package's suite, the loom models of the lock-free protocol, and a smoke run of the
# demo. Installs what it needs: gcc and valgrind (apt-get) if missing, pytest (pip).
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

# The toolchain is the machine's (rustup). rustfmt and clippy are components of it.
for tool in cargo rustfmt cargo-clippy; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add rustfmt clippy
    else
      echo "scripts/test.sh: $tool not found and no rustup to install it" >&2
      exit 1
    fi
  fi
done

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo doc: the API docs build without a broken link"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --quiet

step "header drift: build.rs regenerates include/sluice.h; it must match the checked-in one"
cargo build --release --quiet
if ! git diff --quiet -- include/sluice.h || [ -n "$(git status --porcelain -- include/sluice.h)" ]; then
  git --no-pager diff -- include/sluice.h | head -50
  echo "include/sluice.h differs from what src/ffi/ generates: commit the regenerated header" >&2
  exit 1
fi

step "sluice demo (the README's main job)"
cargo run --release --quiet -- demo >/dev/null

step "cargo test --release (unit, integration, property tests, doctests)"
cargo test --release

step "C: the header compiles alone; the suite against the shared and the static library; valgrind"
bash tests/c/run.sh

step "Python: the wheel in a fresh venv (and the source install), then its pytest suite"
bash bindings/python/run_tests.sh

step "nginx: the dynamic module against the distribution's nginx, and its pytest suite"
bash bindings/nginx/run_tests.sh

step "Go: gofmt, go vet, go test -race of bindings/go (installs Go from bookworm-backports if missing)"
bash bindings/go/run_tests.sh

step "Redis: the module (bindings/redis) against the distribution's redis-server, and its pytest suite"
bash bindings/redis/run_tests.sh

# Loom builds the crate with its own atomics; a separate target dir keeps the two builds
# from invalidating each other.
step "loom models: RUSTFLAGS=--cfg loom LOOM_MAX_PREEMPTIONS=2"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
  cargo test --release --lib loom
