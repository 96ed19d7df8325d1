"""What ``mode`` and ``read_only`` do to a table file: the permission bits it is created with,
that a read-only attach never creates a file nor changes one, and that a user who may only
read a table file can still open it read-only. Run as root (as the test command is), the last
one forks a child that drops to ``nobody``: root may write any file, which would prove
nothing.
"""

import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

import sluice
from support import T0

POLICY = "global 5/1m\ncapacity 64"


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_077():
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def test_the_default_mode_is_0600(tmp_path):
    path = tmp_path / "t.sluice"
    sluice.Limiter(POLICY, path=path).close()
    assert oct(file_mode(path)) == oct(0o600)


@pytest.mark.parametrize("mode", [0o640, 0o660, 0o644, 0o666, 0o400], ids=oct)
def test_a_new_file_gets_the_mode_exactly_whatever_the_umask(tmp_path, umask_077, mode):
    path = tmp_path / "t.sluice"
    sluice.Limiter(POLICY, path=path, mode=mode).close()
    assert oct(file_mode(path)) == oct(mode)


def test_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "t.sluice"
    sluice.Limiter(POLICY, path=path, mode=0o640).close()
    os.chmod(path, 0o604)
    sluice.Limiter(POLICY, path=path, mode=0o660).close()
    assert oct(file_mode(path)) == oct(0o604)


@pytest.mark.parametrize("policy", [POLICY, None])
def test_read_only_never_creates_a_file(tmp_path, policy):
    path = tmp_path / "t.sluice"
    with pytest.raises(sluice.NoTableError):
        sluice.Limiter(policy, path=path, read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_attach_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "t.sluice"
    with sluice.Limiter(POLICY, path=path) as rw:
        rw.check("k", now_ms=T0)
    before = path.read_bytes()
    with sluice.Limiter(path=path, read_only=True) as ro:
        assert ro.peek("k", now_ms=T0 + 1).remaining == 3
        ro.stats()
        with pytest.raises(sluice.ReadOnlyError):
            ro.check("k", now_ms=T0 + 1)
    assert path.read_bytes() == before


def _probe(path):
    """In a process that may only read ``path``: a bit per thing that worked as it should."""
    found = 0
    try:
        sluice.Limiter(path=path)
    except sluice.TableFileError as e:
        if e.code == sluice.SLUICE_ERR_IO:
            found |= 1  # a read-write open is refused by the operating system
    try:
        with sluice.Limiter(path=path, read_only=True) as ro:
            found |= 2
            if ro.peek("k", now_ms=T0 + 1).remaining == 3:
                found |= 4
            try:
                ro.check("k", now_ms=T0 + 1)
            except sluice.ReadOnlyError:
                found |= 8
    except sluice.SluiceError:
        pass
    return found


@pytest.fixture
def world_reachable_dir():
    """A directory `nobody` can reach (pytest's tmp_path lies under a 0700 directory)."""
    d = tempfile.mkdtemp(prefix="sluice-py-read-only-")
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d)


def test_a_user_who_may_only_read_the_file_opens_it_read_only(world_reachable_dir):
    path = world_reachable_dir / "t.sluice"
    with sluice.Limiter(POLICY, path=path, mode=0o644) as rw:
        rw.check("k", now_ms=T0)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 100
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                code = _probe(path)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status)
        found = os.WEXITSTATUS(status)
    else:
        os.chmod(path, 0o444)
        found = _probe(path)
    assert found & 1, "a read-write open by a reader was not refused with SLUICE_ERR_IO"
    assert found & 2, "a read-only open by a reader failed"
    assert found == 15, found
