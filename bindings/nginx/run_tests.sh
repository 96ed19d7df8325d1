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

# Every nginx of the tests lives in a prefix under this run's directory; the tests stop each
# one, and this trap stops any a killed test left behind: the masters by their command line
# (nginx -p RUN_DIR/...), their workers by parent pid.
run_dir="$(mktemp -d /tmp/sluice-nginx-tests.XXXXXX)"
chmod 755 "$run_dir"
stop_leftovers() {
  local f pid masters=() children=()
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q -- "-p $run_dir/"; then masters+=("$pid"); fi
  done
  if [ "${#masters[@]}" -gt 0 ]; then
    for f in /proc/[0-9]*/stat; do
      pid="$(awk '{sub(/.*\) /, ""); print $2}' "$f" 2>/dev/null || true)"
      for m in "${masters[@]}"; do
        if [ "$pid" = "$m" ]; then f="${f#/proc/}"; children+=("${f%/stat}"); fi
      done
    done
    echo "run_tests.sh: stopping leftover nginx ${masters[*]} ${children[*]}" >&2
    kill -9 "${masters[@]}" "${children[@]}" 2>/dev/null || true
  fi
  rm -rf "$run_dir"
}
trap stop_leftovers EXIT

step "pytest bindings/nginx/tests"
SLUICE_NGINX_TEST_DIR="$run_dir" SLUICE_NGINX_MODULE="$module" SLUICE_BIN="$repo/target/release/sluice" \
  SLUICE_LIBRARY="$repo/target/release/libsluice.so" PYTHONPATH="$repo/bindings/python" \
  "$python" -m pytest -p no:cacheprovider -q "$repo/bindings/nginx/tests" "$@"
