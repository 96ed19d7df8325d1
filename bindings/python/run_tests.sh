#!/usr/bin/env bash
# The Python bindings' tests, on a fresh machine: build the C library, install the package
# from this folder, and run pytest from outside the source tree so that the installed package
# (not bindings/python/sluice) is what the tests import.
# Usage: bash bindings/python/run_tests.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
bindings="$repo/bindings/python"
python="${PYTHON:-python3}"

step() { printf '\n== %s ==\n' "$*"; }

step "cargo build --release (target/release/libsluice.so)"
cargo build --release
library="$repo/target/release/libsluice.so"
test -f "$library"

step "pip install pytest and ./bindings/python"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
"$python" -m pip install --quiet pytest
# setuptools builds in the source folder: start from a clean build/ so no stale module ships.
rm -rf "$bindings/build" "$bindings"/*.egg-info
"$python" -m pip install --quiet --force-reinstall --no-deps ./bindings/python
rm -rf "$bindings/build" "$bindings"/*.egg-info

outside="$(mktemp -d)"
trap 'rm -rf "$outside"' EXIT
cd "$outside"

step "the installed package is the one imported (from $outside)"
imported="$("$python" -c 'import sluice, os; print(os.path.dirname(os.path.realpath(sluice.__file__)))')"
echo "sluice imported from $imported"
case "$imported" in
  "$bindings"/*)
    echo "run_tests.sh: imported the source folder, not the installed package" >&2
    exit 1
    ;;
esac

step "python3 -c: the numbers of tests/scenarios.rs, finding the library without SLUICE_LIBRARY"
env -u SLUICE_LIBRARY "$python" - <<'EOF'
import sluice

T0 = 1_767_225_600_000
with sluice.Limiter("global 3/10s") as l:
    got = [l.check("k", now_ms=T0 + i * 1000).remaining for i in range(3)]
    refused = l.check("k", now_ms=T0 + 9_999)
    again = l.check("k", now_ms=T0 + 10_000)
assert got == [2, 1, 0], got
assert (refused.status, refused.retry_after, refused.reset) == ("limited", 1, (T0 + 10_000) // 1000)
assert (again.allowed, again.remaining, again.reset) == (True, 0, (T0 + 11_000) // 1000)
with sluice.Limiter("write 2/1m\nwrite 500/1h") as l:
    l.check("k", "write", T0)
    l.check("k", "write", T0 + 10_000)
    h = l.check("k", "write", T0 + 20_500).headers("ietf")
assert h == {"RateLimit-Policy": '"write";q=2;w=60', "RateLimit": '"write";r=0;t=40', "Retry-After": "40"}, h
print("library", sluice.LIBRARY_PATH, "version", sluice.library_version(), ": decisions as in tests/scenarios.rs")
EOF

step "pytest bindings/python/tests"
SLUICE_LIBRARY="$library" SLUICE_BIN="$repo/target/release/sluice" SLUICE_TEST_EXPECT_INSTALLED=1 \
  "$python" -m pytest -p no:cacheprovider -q "$bindings/tests" "$@"
