"""The annotations and ``py.typed`` work for a user: ``mypy --strict`` finds nothing wrong in a
file that calls every public function (typing/user_code.py, which also runs), and reports each
misuse of typing/wrong_code.py, which an untyped (Any) API would let through.

Skipped where mypy is not installed, unless ``SLUICE_TEST_MYPY`` is set (run_tests.sh installs
mypy into the venv it tests the wheel in, and sets it)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sluice
from support import BINDINGS_DIR, TESTS_DIR

TYPING = TESTS_DIR / "typing"

try:
    import mypy  # noqa: F401

    HAVE_MYPY = True
except ImportError:
    HAVE_MYPY = False

pytestmark = pytest.mark.skipif(
    not HAVE_MYPY and not os.environ.get("SLUICE_TEST_MYPY"),
    reason="mypy is not installed (run_tests.sh installs it)",
)


def _mypy(path, tmp_path):
    """``mypy --strict path`` as a user runs it, against the sluice this process imported:
    installed (site-packages: mypy needs its py.typed, and reports nothing inside it), or the
    source folder (then on MYPYPATH, its own modules' findings silenced as an installed
    package's are)."""
    assert HAVE_MYPY, "SLUICE_TEST_MYPY is set but mypy is not installed"
    package = Path(sluice.__file__).resolve().parent
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    args = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
            sys.executable, "--cache-dir", str(tmp_path / "cache")]
    if package.parent.resolve() == BINDINGS_DIR.resolve():
        config = tmp_path / "mypy.ini"
        config.write_text("[mypy]\n[mypy-sluice.*]\nignore_errors = True\n")
        env["MYPYPATH"] = str(BINDINGS_DIR)
        args += ["--config-file", str(config)]
    else:
        args += ["--config-file", os.devnull]
    r = subprocess.run(args + [str(path)], cwd=str(tmp_path), env=env, capture_output=True,
                       text=True)
    return r


def test_a_users_file_calling_every_public_function_is_strict_clean(tmp_path):
    r = _mypy(TYPING / "user_code.py", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found in 1 source file" in r.stdout, r.stdout
    # ... and it runs, against the same library.
    run = subprocess.run([sys.executable, str(TYPING / "user_code.py")], cwd=str(tmp_path),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 20


def test_misuses_are_reported_each_on_its_line(tmp_path):
    source = (TYPING / "wrong_code.py").read_text(encoding="utf-8").splitlines()
    expected = {i + 1 for i, line in enumerate(source) if "  # error: " in line}
    assert len(expected) >= 8
    r = _mypy(TYPING / "wrong_code.py", tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    reported = {int(m.group(1)) for m in re.finditer(r"wrong_code\.py:(\d+): error:", r.stdout)}
    assert reported == expected, r.stdout
