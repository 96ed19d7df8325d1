#!/usr/bin/env bash
# `limits`' own moving-window tests against the sluice:// storage: its
# tests/test_strategy.py::TestMovingWindow and the threaded
# tests/integration/test_concurrency.py::TestConcurrency::test_moving_window, from the `limits`
# sdist of the version pinned below (the one the package's tests install), with
# sluice_limits_plugin.py adding sluice:// to their parametrisation (see that file).
# Usage: run_limits_tests.sh PYTHON WORKDIR   (PYTHON: a venv's python with sluice, limits
# LIMITS_VERSION and pytest installed; the plugin's one dependency is installed here)
set -euo pipefail
LIMITS_VERSION=5.8.0
LAZY_FIXTURES_VERSION=1.4.1  # tests/utils.py of the sdist imports pytest_lazy_fixtures
python="$1"
work="$2"
here="$(cd "$(dirname "$0")" && pwd)"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

installed="$("$python" -c 'import limits; print(limits.__version__)')"
if [ "$installed" != "$LIMITS_VERSION" ]; then
  echo "run_limits_tests.sh: limits $installed is installed, the tests are those of $LIMITS_VERSION" >&2
  exit 1
fi
"$python" -m pip install --quiet "pytest-lazy-fixtures==$LAZY_FIXTURES_VERSION"
mkdir -p "$work/sdist"
"$python" -m pip download --quiet --no-deps --no-binary :all: -d "$work/sdist" "limits==$LIMITS_VERSION"
tar -xzf "$work/sdist/limits-$LIMITS_VERSION.tar.gz" -C "$work"
src="$work/limits-$LIMITS_VERSION"
cd "$src"
# --noconftest: its conftest.py starts Docker servers; -c: our pytest.ini for its own.
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -m pytest -c "$here/pytest.ini" \
  --rootdir "$src" --noconftest -p sluice_limits_plugin -m sluice \
  "tests/test_strategy.py::TestMovingWindow" \
  "tests/integration/test_concurrency.py::TestConcurrency::test_moving_window"
