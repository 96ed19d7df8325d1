"""Random operation sequences with AT give the same decisions through the module as through
the Python package (the same engine over a table)."""

import random

import pytest
import sluice

from conftest import POLICY, decision

KEYS = ("alice", "bob", "{tag}carol")
CATEGORIES = ("global", "search", "write", "auth")
STEPS = (0, 1, 10, 250, 1000, 5000, 30_000, 120_000, 600_000)
WEIGHTS = (20, 20, 20, 15, 10, 5, 4, 2, 1)


def py_tuple(d):
    return (
        int(d.allowed), d.status, d.limit, d.remaining, d.reset, d.retry_after,
        -1 if d.rule is None else d.rule, d.window_ms,
    )


def redis_tuple(reply):
    d = decision(reply)
    return tuple(d[f] for f in ("allowed", "status", "limit", "remaining", "reset", "retry_after", "rule", "window_ms"))


def operations(seed, n, start):
    rnd = random.Random(seed)
    t = start
    for _ in range(n):
        t += rnd.choices(STEPS, WEIGHTS)[0]
        key = rnd.choice(KEYS)
        op = rnd.choices(("check", "peek", "failure", "success", "reset"), (10, 3, 4, 1, 1))[0]
        cat = "auth" if op in ("failure", "success") else rnd.choice(CATEGORIES)
        yield op, key, cat, t


@pytest.mark.parametrize("seed", range(6))
def test_module_decides_as_the_python_package(r, now, seed):
    ops = list(operations(seed, 1500, now))
    lim = sluice.Limiter(POLICY)
    expected = []
    for op, key, cat, t in ops:
        if op in ("check", "peek", "failure"):
            expected.append(py_tuple(getattr(lim, op)(key, cat, now_ms=t)))
        elif op == "success":
            lim.success(key, cat, now_ms=t)
            expected.append(b"OK")
        else:
            lim.reset(key, cat, now_ms=t)
            expected.append(b"OK")
    pipe = r.pipeline(transaction=False)
    for op, key, cat, t in ops:
        if op == "reset":
            pipe.execute_command("SLUICE.RESET", key, cat)
        else:
            pipe.execute_command("SLUICE." + op.upper(), key, cat, "AT", t)
    got = [x if x == b"OK" else redis_tuple(x) for x in pipe.execute()]
    statuses = set()
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, (i, ops[i], g, e)
        if isinstance(e, tuple):
            statuses.add(e[1])
    # The sequence went through every kind of answer.
    assert {"passed", "limited", "locked"} <= statuses
