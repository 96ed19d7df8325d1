"""sluice.migrate and Limiter.superseded: a changed policy keeps every lockout."""

import os
import time

import pytest

import sluice

POLICY = "global 100/1m\nauth 3/1m\nauth lockout 2/15m for 15m\ncapacity 1000\n"
CHANGED = "global 200/1m\nauth 3/1m\nauth lockout 2/15m for 15m\ncapacity 1000\n"


def now_ms():
    return int(time.time() * 1000)


def lock_out(limiter, key, t):
    limiter.failure(key, "auth", now_ms=t)
    d = limiter.failure(key, "auth", now_ms=t + 1)
    assert d.status == "locked"
    return d


def test_a_migration_keeps_the_lockout_and_the_unchanged_rules_counts(tmp_path):
    old, new = tmp_path / "old.sluice", tmp_path / "new.sluice"
    t = now_ms()
    with sluice.Limiter(POLICY, old) as a:
        locked = lock_out(a, "198.51.100.7", t)
        for i in range(2):
            assert a.check("203.0.113.9", "auth", now_ms=t + i).allowed
        assert a.superseded() is None
        report = sluice.migrate(old, new, CHANGED)
        assert a.superseded() == str(new)
    assert isinstance(report, sluice.Migration)
    assert report.keys == 2 and report.locked_keys == 1 and not report.in_place
    assert report.from_format >= 1 and report.to_capacity == report.from_capacity == 1000
    with sluice.Limiter(None, new) as b:
        assert b.policy.startswith("global 200/1m")
        again = b.peek("198.51.100.7", "auth", now_ms=t + 2)
        assert again.status == "locked" and again.retry_after == locked.retry_after
        # auth 3/1m is unchanged: its two logged requests are still there, so one more passes.
        assert b.check("203.0.113.9", "auth", now_ms=t + 3).allowed
        assert b.check("203.0.113.9", "auth", now_ms=t + 4).status == "limited"
        # The changed global rule is in force.
        assert b.peek("192.0.2.1", now_ms=t + 3).limit == 200


def test_migrating_in_place_tells_the_old_handle(tmp_path):
    path = tmp_path / "t.sluice"
    t = now_ms()
    with sluice.Limiter(POLICY, path) as a:
        lock_out(a, "k", t)
        report = sluice.migrate(path, path, CHANGED)
        assert report.in_place
        assert a.superseded() == str(path)
        with sluice.Limiter(None, path) as b:  # the path now opens the new table
            assert b.policy == CHANGED
            assert b.peek("k", "auth", now_ms=t + 2).status == "locked"


def test_migrating_without_a_policy_keeps_the_sources(tmp_path):
    old, new = tmp_path / "old.sluice", tmp_path / "new.sluice"
    with sluice.Limiter(POLICY, old):
        pass
    assert sluice.migrate(str(old), str(new)).keys == 0
    with sluice.Limiter(None, new) as b:
        assert b.policy == POLICY


def test_bad_migrations_create_nothing_and_change_nothing(tmp_path):
    old, new = tmp_path / "old.sluice", tmp_path / "new.sluice"
    with sluice.Limiter(POLICY, old):
        pass
    before = old.read_bytes()
    with pytest.raises(sluice.PolicyError, match="line 1"):
        sluice.migrate(old, new, "global 10/")
    with pytest.raises(sluice.PolicyError, match="NUL"):
        sluice.migrate(old, new, "global 10/1m\0")
    with pytest.raises(sluice.NoTableError):
        sluice.migrate(tmp_path / "missing.sluice", new)
    (tmp_path / "junk").write_bytes(b"not a table" * 100)
    with pytest.raises(sluice.NotATableError):
        sluice.migrate(tmp_path / "junk", new)
    new.write_bytes(b"")
    with pytest.raises(sluice.MigrationError, match="exists"):
        sluice.migrate(old, new)
    assert new.read_bytes() == b""
    os.unlink(new)
    with pytest.raises(TypeError):
        sluice.migrate(old, new, 42)  # type: ignore[arg-type]
    assert not new.exists()
    assert old.read_bytes() == before


def test_superseded_of_a_private_table_and_of_a_closed_limiter():
    limiter = sluice.Limiter("global 1/1s")
    assert limiter.superseded() is None
    limiter.close()
    with pytest.raises(sluice.ClosedError):
        limiter.superseded()
