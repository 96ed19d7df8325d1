#!/usr/bin/env bash
# Builds the wheel that carries the C library: cargo build --release, a stripped copy of
# libsluice.so inside a staging copy of this folder, then `pip wheel`. The wheel is tagged
# py3-none-PLATFORM: any Python 3 (ctypes, no extension module), one platform. PLATFORM is
# manylinux_2_34_ARCH only if the library meets that policy (it links only libraries the policy
# allows and needs no glibc symbol version above 2.34 nor libgcc_s one above GCC_7.0.0), else
# linux_ARCH (installable on this kind of system only, and honest about it).
# Usage: bash bindings/python/build_wheel.sh [OUTDIR]   (default target/wheels)
# Progress goes to stderr; the last line of stdout is the wheel's absolute path.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"
bindings="$repo/bindings/python"
python="${PYTHON:-python3}"
outdir="${1:-$repo/target/wheels}"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"

cargo build --release >&2
library="$repo/target/release/libsluice.so"
test -f "$library"

need() { command -v "$1" >/dev/null || { echo "build_wheel.sh: needs $1 (binutils)" >&2; exit 1; }; }
need objdump
need strip

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/sluice"
cp "$bindings/pyproject.toml" "$bindings/setup.py" "$bindings/README.md" "$stage/"
cp "$bindings"/sluice/*.py "$bindings/sluice/py.typed" "$stage/sluice/"
rm -f "$stage/sluice/_build_info.py"
strip --strip-unneeded -o "$stage/sluice/libsluice.so" "$library"

# ---- the platform tag ---------------------------------------------------------------------
arch="$(uname -m)"
glibc_max="$(objdump -T "$stage/sluice/libsluice.so" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)"
gcc_max="$(objdump -T "$stage/sluice/libsluice.so" | grep -o 'GCC_[0-9][0-9.]*' | sed 's/GCC_//' | sort -uV | tail -n1)"
needed="$(objdump -p "$stage/sluice/libsluice.so" | awk '$1 == "NEEDED" { print $2 }')"
# The libraries the manylinux policies let a wheel link against without bundling them.
allowed=" libc.so.6 libm.so.6 libdl.so.2 librt.so.1 libpthread.so.0 libgcc_s.so.1 libstdc++.so.6 libutil.so.1 libnsl.so.1 libresolv.so.2 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 libz.so.1 "
version_le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }
platform="manylinux_2_34_$arch"
why="links only $(echo $needed | tr '\n' ' '), needs glibc ${glibc_max:-none} and libgcc_s GCC_${gcc_max:-none}"
for lib in $needed; do
  case "$allowed" in
    *" $lib "*) ;;
    *) platform="linux_$arch"; why="links $lib, which the manylinux policy does not allow" ;;
  esac
done
if [ -n "$glibc_max" ] && ! version_le "$glibc_max" 2.34; then
  platform="linux_$arch"; why="needs GLIBC_$glibc_max, above manylinux_2_34's 2.34"
fi
if [ -n "$gcc_max" ] && ! version_le "$gcc_max" 7.0.0; then
  platform="linux_$arch"; why="needs GCC_$gcc_max, above manylinux_2_34's GCC_7.0.0"
fi
echo "build_wheel.sh: tag py3-none-$platform: the library $why" >&2

# ---- the wheel ----------------------------------------------------------------------------
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$python" -m pip --version >/dev/null 2>&1; then
  # A system Python without pip (Debian's python3 alone): build from a venv of its own.
  venv="$repo/target/python-build-venv"
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" >&2
  fi
  python="$venv/bin/python"
fi
rm -f "$outdir"/sluice_ratelimit-*.whl
SLUICE_WHEEL_PLATFORM="$platform" "$python" -m pip wheel --quiet --no-deps -w "$outdir" "$stage" >&2
wheel="$(ls "$outdir"/sluice_ratelimit-*-py3-none-"$platform".whl)"
test -f "$wheel"
echo "$wheel"
