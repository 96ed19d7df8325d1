#!/usr/bin/env bash
# The nginx module's tests on a fresh Debian 12 machine: installs nginx, nginx-dev and
# python3-pytest's pip package when missing, builds target/release (cargo) and the module
# (build.sh), then runs pytest against real nginx instances on 127.0.0.1 high ports (each in a
# prefix directory of its own under /tmp, always stopped). Run as root, the workers run as
# nobody. Usage: bash bindings/nginx/run_tests.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
python="${PYTHON:-python3}"

step() { printf '\n== %s ==\n' "$*"; }

step "cargo build --release (libsluice.a, libsluice.so, sluice)"
cargo build --release --quiet

step "bash bindings/nginx/build.sh"
module="$(bash bindings/nginx/build.sh | tail -1)"
test -f "$module"
echo "$module"

if ! "$python" -c 'import pytest' >/dev/null 2>&1; then
  step "pip install pytest"
  PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$python" -m pip install --quiet pytest
fi

step "pytest bindings/nginx/tests"
SLUICE_NGINX_MODULE="$module" SLUICE_BIN="$repo/target/release/sluice" \
  SLUICE_LIBRARY="$repo/target/release/libsluice.so" PYTHONPATH="$repo/bindings/python" \
  "$python" -m pytest -p no:cacheprovider -q "$repo/bindings/nginx/tests" "$@"
