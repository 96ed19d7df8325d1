"""A value written under another policy (the server restarted with a changed file): unchanged
rules keep their logs wherever they now stand, a changed rule keeps what is still exact, a new
rule starts empty, and a lock keeps its end and its level; through RDB and through an AOF
rewrite."""

import pytest

from conftest import decision
from test_persistence import wait_rewrite

CHANGED = """\
global 20/1m
global 1000/1d
search 5/1m
write 6/10s
write 20/2h
auth 4/1m
auth lockout 5/15m for 2m..8m
"""


def at(r, op, key, cat, t):
    return decision(r.execute_command("SLUICE." + op, key, cat, "AT", t))


@pytest.mark.parametrize("persist", ["rdb", "aof"])
def test_a_changed_policy_keeps_what_is_still_exact(servers, tmp_path, now, persist):
    extra = ("--appendonly", "yes", "--aof-use-rdb-preamble", "no") if persist == "aof" else ()
    s = servers("p", extra=extra).start()
    r = s.client()
    t = now
    for i in range(5):  # search 5/1m: full
        assert at(r, "CHECK", "k", "search", t + i)["allowed"] == 1
    for i in range(3):  # write 3/10s: full
        assert at(r, "CHECK", "k", "write", t + 5 + i)["allowed"] == 1
    assert at(r, "CHECK", "k", "write", t + 8)["status"] == "limited"
    for i in range(3):  # auth lockout 3/15m for 1m..8m: locked until t + 12 + 1m, level 1
        at(r, "FAILURE", "u", "auth", t + 10 + i)
    if persist == "rdb":
        assert r.save()
    else:
        r.bgrewriteaof()
        wait_rewrite(r)
        # Each SLUICE.RESTORE carries the policy its value was written under.
        assert b"write 3/10s" in next((s.dir / "appendonlydir").glob("*.base.aof")).read_bytes()
    s.stop()

    changed = tmp_path / "changed.policy"
    changed.write_text(CHANGED)
    s2 = servers("p", policy_file=changed, extra=extra).start()
    r2 = s2.client()
    assert r2.execute_command("SLUICE.POLICY") == CHANGED.encode()
    if persist == "rdb":
        assert "written under another policy" in s2.log_text()
    # search 5/1m is unchanged (now the third rule): its log is whole.
    d = at(r2, "PEEK", "k", "search", t + 1000)
    assert d["status"] == "limited" and d["rule"] == 2 and d["retry_after"] == 59, d
    # write 3/10s became 6/10s: the 3 logged stay (nothing in the window is lost), 3 more fit;
    # write 10/1h became 20/2h and kept its 3 (the whole history); global 1000/1d is new: 1 after
    # this check.
    d = at(r2, "CHECK", "k", "write", t + 1000)
    assert (d["allowed"], d["limit"], d["remaining"], d["rule"]) == (1, 6, 2, 3), d
    assert at(r2, "PEEK", "k", "write", t + 1001)["remaining"] == 1  # after the peeked one
    # global 20/1m kept its 8 (the refused write did not count), 9 with this check.
    g = at(r2, "PEEK", "k", "global", t + 1001)
    assert (g["limit"], g["remaining"], g["rule"]) == (20, 10, 0), g
    for _ in range(2):
        assert at(r2, "CHECK", "k", "write", t + 1002)["allowed"] == 1
    assert at(r2, "CHECK", "k", "write", t + 1003)["status"] == "limited"
    # The lock keeps its end (a policy change does not shorten or lengthen it) and its level.
    d = at(r2, "CHECK", "u", "auth", t + 1000)
    assert d["status"] == "locked" and d["retry_after"] == 60, d
    assert at(r2, "CHECK", "u", "auth", t + 12 + 60_000)["allowed"] == 1
    for i in range(5):  # F is now 5; the ban now 2m, doubled by the level kept: 4m
        d = at(r2, "FAILURE", "u", "auth", t + 70_000 + i)
    assert d["status"] == "locked" and d["retry_after"] == 240, d
