"""Tables shared through a file: between Limiter objects, processes and languages."""

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import sluice

POLICY = "global 100/1m\nauth 3/1m\nauth lockout 2/15m for 15m\ncapacity 1000\n"


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def sluice_cli():
    """The `sluice` command-line tool built beside the library (run_tests.sh sets SLUICE_BIN)."""
    path = os.environ.get("SLUICE_BIN")
    assert path and os.access(path, os.X_OK), "set SLUICE_BIN to target/release/sluice"
    return path


def test_two_limiters_on_one_path_share_the_table(tmp_path):
    path = tmp_path / "t.sluice"
    with sluice.Limiter("global 2/1m", path=path) as a, sluice.Limiter(path=str(path)) as b:
        assert a.path == b.path == str(path)
        assert b.policy == "global 2/1m"  # read from the file
        assert a.check("k", now_ms=1000).allowed
        assert b.check("k", now_ms=1001).remaining == 0
        assert not a.check("k", now_ms=1002).allowed
        assert b.stats(now_ms=1002).live_keys == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Closed and reopened: still there.
    with sluice.Limiter(path=os.fsencode(path)) as c:
        assert not c.peek("k", now_ms=1003).allowed


def test_another_policy_is_refused_and_the_file_left_alone(tmp_path):
    path = tmp_path / "t.sluice"
    sluice.Limiter(POLICY, path=path).close()
    before = digest(path)
    with pytest.raises(sluice.PolicyMismatchError) as e:
        sluice.Limiter(POLICY.replace("auth 3/1m", "auth 4/1m"), path=path)
    assert e.value.code == sluice.SLUICE_ERR_POLICY_MISMATCH == -34
    assert str(path) in str(e.value)
    assert "`auth 3/1m` where the given one has `auth 4/1m`" in str(e.value)
    assert isinstance(e.value, sluice.TableFileError)
    assert digest(path) == before


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("zeros", bytes(8192), "all zeros"),
        ("short", b"SLUICE", "shorter than a table's 128-byte header"),
        ("text", b"not a table at all\n" * 100, "bad magic number"),
    ],
)
def test_foreign_files_are_refused_untouched(tmp_path, name, content, expected):
    path = tmp_path / (name + ".sluice")
    path.write_bytes(content)
    for policy in (POLICY, None):
        with pytest.raises(sluice.NotATableError) as e:
            sluice.Limiter(policy, path=path)
        assert e.value.code == sluice.SLUICE_ERR_NOT_A_TABLE
        assert expected in str(e.value) and str(path) in str(e.value)
    assert path.read_bytes() == content


def test_missing_directory_and_missing_table(tmp_path):
    with pytest.raises(sluice.TableFileError) as e:
        sluice.Limiter(POLICY, path=tmp_path / "no" / "such" / "t.sluice")
    assert e.value.code == sluice.SLUICE_ERR_IO
    assert "does the directory exist" in str(e.value)
    with pytest.raises(sluice.NoTableError) as e:
        sluice.Limiter(path=tmp_path / "absent.sluice")
    assert e.value.code == sluice.SLUICE_ERR_NO_TABLE
    assert list(tmp_path.iterdir()) == []


def test_python_and_the_cli_see_each_others_requests(tmp_path, sluice_cli):
    path = tmp_path / "shared.sluice"
    with sluice.Limiter(POLICY, path=path) as limiter:
        for _ in range(2):
            assert limiter.check("198.51.100.7", "auth").allowed
        # The CLI (another process, written in Rust) sees Python's two requests...
        out = subprocess.run(
            [sluice_cli, "check", str(path), "198.51.100.7", "auth", "--json"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        d = json.loads(out.stdout)
        assert (d["allowed"], d["remaining"], d["rule"]) == (True, 0, "auth 3/1m")
        # ...and Python sees the CLI's: the auth rule is now full.
        refused = limiter.check("198.51.100.7", "auth")
        assert (refused.allowed, refused.status, refused.rule) == (False, "limited", 1)
        # A lockout made in Python, lifted by the operator's tool.
        for _ in range(2):
            limiter.failure("203.0.113.9", "auth")
        assert limiter.peek("203.0.113.9", "auth").status == "locked"
        out = subprocess.run(
            [sluice_cli, "unlock", str(path), "203.0.113.9", "auth"], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert limiter.peek("203.0.113.9", "auth").allowed
        stats = json.loads(
            subprocess.run(
                [sluice_cli, "stat", str(path), "--json"], capture_output=True, text=True, check=True
            ).stdout
        )
        assert stats["live_keys"] == limiter.stats().live_keys == 2


def test_two_python_processes_share_the_table(tmp_path):
    path = tmp_path / "t.sluice"
    with sluice.Limiter("global 5/1h", path=path) as limiter:
        assert limiter.check("k").remaining == 4
        child = (
            "import sluice, sys\n"
            "with sluice.Limiter(path=sys.argv[1]) as l:\n"
            "    print(l.check('k').remaining)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", child, str(path)], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "3"
        assert limiter.check("k").remaining == 2
