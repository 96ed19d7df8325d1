#!/usr/bin/env bash
# The Redis module's tests: build the module (build.sh) and the core's shared library (for
# the differential tests against the Python package), install pytest and the redis client
# (with pip; into a venv under target/redis if the system's python refuses), then run tests/
# with pytest. Every server the tests start listens on 127.0.0.1 on a free
# high port, with its own directory, and is stopped when its test ends.
# Usage: bash bindings/redis/run_tests.sh [extra pytest arguments]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s ==\n' "$*"; }

step "build.sh (the module)"
module="$(bash "$here/build.sh" | tail -n1)"
echo "module: $module"

step "cargo build --release (target/release/libsluice.so for the Python package)"
(cd "$repo" && cargo build --release --quiet)
test -f "$repo/target/release/libsluice.so"

step "pytest and redis (pip)"
if ! "$python" -c 'import pytest, redis' 2>/dev/null; then
  if ! "$python" -m pip install --quiet pytest redis; then
    # A python whose packages the system manages (PEP 668): a venv under target/redis.
    "$python" -c 'import ensurepip, venv' 2>/dev/null || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    }
    "$python" -m venv "$repo/target/redis/venv"
    python="$repo/target/redis/venv/bin/python"
    "$python" -m pip install --quiet pytest redis
  fi
fi

step "pytest bindings/redis/tests"
export SLUICE_REDIS_MODULE="$module"
export SLUICE_LIBRARY="$repo/target/release/libsluice.so"
export PYTHONPATH="$repo/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
cd "$here"
"$python" -m pytest -q -p no:cacheprovider tests "$@"
