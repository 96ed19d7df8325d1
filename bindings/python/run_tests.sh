#!/usr/bin/env bash
# The Python bindings' tests, on a fresh machine:
#   1. the wheel: build_wheel.sh, its platform tag checked by auditwheel, installed into a
#      fresh venv outside the checkout, and the whole pytest suite (a copy of tests/) run
#      with that venv's python from a directory with no target/ above it, no SLUICE_LIBRARY:
#      the package must load the library the wheel carries; run twice, on the native methods
#      and on the ctypes path (SLUICE_PYTHON_FAST=0); mypy --strict on a user's file;
#      the `limits` storage against limits' own; limits' own moving-window tests (from its
#      sdist, pinned in tests/limits_upstream/run_limits_tests.sh) against sluice://;
#   2. the source install (`pip install ./bindings/python` into another venv), which finds
#      the repository's target/release through the source directory it recorded.
# Usage: bash bindings/python/run_tests.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
bindings="$repo/bindings/python"
python="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n== %s ==\n' "$*"; }

# Debian's python3 makes venvs only with python3-venv; objdump and strip are binutils.
missing=()
"$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v objdump >/dev/null && command -v strip >/dev/null || missing+=(binutils)
if [ "${#missing[@]}" -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

step "cargo build --release (target/release/libsluice.so, target/release/sluice)"
cargo build --release
test -f "$repo/target/release/libsluice.so"

work="$(mktemp -d)"
trap 'rm -rf "$work"; rm -rf "$bindings/build" "$bindings"/*.egg-info' EXIT

step "build_wheel.sh"
wheel="$(bash "$bindings/build_wheel.sh" "$work/dist" | tail -n1)"
echo "wheel: $wheel"
case "$wheel" in /*.whl) ;; *) echo "build_wheel.sh did not print a wheel's path" >&2; exit 1 ;; esac
tag="${wheel##*-py3-none-}"
tag="${tag%.whl}"

step "tools venv: pytest, auditwheel; the wheel's tag $tag is what auditwheel finds"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet pytest auditwheel
"$work/tools/bin/auditwheel" show "$wheel" | tee "$work/auditwheel.txt"
tr '\n' ' ' <"$work/auditwheel.txt" | grep -q "consistent with the following platform tag: *\"$tag\"" || {
  echo "run_tests.sh: auditwheel does not find the wheel consistent with $tag" >&2
  exit 1
}

step "fresh venv outside the checkout: pip install the wheel, pytest, mypy, limits"
"$python" -m venv "$work/venv"
venv_python="$work/venv/bin/python"
# limits: the version whose own tests tests/limits_upstream/run_limits_tests.sh runs.
"$venv_python" -m pip install --quiet "$wheel" pytest mypy limits==5.8.0
# The tests and what they read, laid out as in the repository, but with no target/ anywhere
# above them or the venv; the command-line tool copied for test_shared.py.
tree="$work/tree"
mkdir -p "$tree/bindings/python" "$tree/include" "$tree/bin"
cp -r "$bindings/tests" "$tree/bindings/python/tests"
rm -rf "$tree/bindings/python/tests/__pycache__"
cp "$bindings/README.md" "$tree/bindings/python/README.md"
cp "$repo/include/sluice.h" "$tree/include/sluice.h"
cp "$repo/target/release/sluice" "$tree/bin/sluice"
cd "$tree"

step "the wheel's package is the one imported, with its own library"
env -u SLUICE_LIBRARY -u PYTHONPATH "$venv_python" - "$work/venv" <<'EOF_PY'
import os, sys
from pathlib import Path
import sluice
from sluice import _ffi
package = Path(sluice.__file__).resolve().parent
venv = Path(sys.argv[1]).resolve()
print("sluice imported from", package, "library", _ffi.LIBRARY_PATH)
assert venv in package.parents, "not the venv's package"
assert Path(_ffi.LIBRARY_PATH) == package / _ffi.LIBRARY_NAME, "not the bundled library"
T0 = 1_767_225_600_000
with sluice.Limiter("global 3/10s") as l:
    got = [l.check("k", now_ms=T0 + i * 1000).remaining for i in range(3)]
    refused = l.check("k", now_ms=T0 + 9_999)
assert got == [2, 1, 0], got
assert (refused.status, refused.retry_after) == ("limited", 1)
EOF_PY

step "pytest (the wheel, from $tree): the native methods"
env -u SLUICE_LIBRARY -u PYTHONPATH -u SLUICE_PYTHON_FAST SLUICE_BIN="$tree/bin/sluice" \
  SLUICE_TEST_EXPECT_WHEEL="$tag" SLUICE_TEST_MYPY=1 SLUICE_TEST_LIMITS=1 \
  "$venv_python" -m pytest -p no:cacheprovider -q "$tree/bindings/python/tests" "$@"

step "pytest (the wheel, from $tree): the ctypes path (SLUICE_PYTHON_FAST=0)"
env -u SLUICE_LIBRARY -u PYTHONPATH SLUICE_PYTHON_FAST=0 SLUICE_BIN="$tree/bin/sluice" \
  SLUICE_TEST_EXPECT_WHEEL="$tag" SLUICE_TEST_MYPY=1 SLUICE_TEST_LIMITS=1 \
  "$venv_python" -m pytest -p no:cacheprovider -q "$tree/bindings/python/tests" "$@"

step "limits' own moving-window tests against sluice:// (the wheel)"
env -u SLUICE_LIBRARY -u PYTHONPATH bash "$bindings/tests/limits_upstream/run_limits_tests.sh" \
  "$venv_python" "$work/limits"

step "the source install: pip install ./bindings/python finds target/release"
cd "$repo"
"$python" -m venv "$work/dev"
dev_python="$work/dev/bin/python"
# setuptools builds in the source folder: start from a clean build/ so no stale module ships.
rm -rf "$bindings/build" "$bindings"/*.egg-info
"$dev_python" -m pip install --quiet pytest ./bindings/python
rm -rf "$bindings/build" "$bindings"/*.egg-info
cd "$work"
env -u SLUICE_LIBRARY -u PYTHONPATH SLUICE_TEST_EXPECT_INSTALLED=1 \
  "$dev_python" -m pytest -p no:cacheprovider -q "$bindings/tests/test_api.py" -k "installed or loading"
