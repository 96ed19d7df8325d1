"""Differential test: the library through the Python bindings against the serial reference
model (``sluice_model.py``, a port of the Rust ``tests/support/model.rs``), on random policies
and random operation sequences, one ``random.Random(seed)`` per case.

As in the Rust ``tests/model.rs``: capacities are at most 16 (here 1..5), so the engine's
eviction order is the model's global one, and every operation happens later than the one
before it, so "least recently active" has no ties. ``SLUICE_MODEL_SEEDS`` sets the number of
cases (default 400); a failure names its seed, replayable with ``SLUICE_MODEL_SEED=N``.
"""

import os
import random

import pytest

import sluice
from sluice_model import GLOBAL, LockoutRule, Model, Policy, WindowRule

from support import T0
KEYS = [bytes([ord("k"), i]) for i in range(6)]


def window_rule(rng, name):
    flags = rng.randrange(8)
    return WindowRule(
        name=name,
        limit=rng.randrange(1, 5),
        window_ms=rng.choice([20, 50, 100, 300]),
        strict=flags in (0, 2),
        dry_run=flags in (1, 2),
    )


def lockout_rule(rng, name):
    ban = rng.randrange(10, 80)
    return LockoutRule(
        name=name,
        failures=rng.randrange(1, 4),
        window_ms=rng.choice([50, 200]),
        ban_ms=ban,
        max_ban_ms=rng.choice([None, rng.randrange(80, 400)]),
    )


def random_policy(rng):
    rules = (
        [window_rule(rng, GLOBAL) for _ in range(rng.randrange(3))]
        + [window_rule(rng, "api") for _ in range(rng.randrange(3))]
        + [window_rule(rng, "auth") for _ in range(rng.randrange(2))]
    )
    # The parser refuses a second rule with the same name, N and window.
    seen, unique = set(), []
    for r in rules:
        if (r.name, r.limit, r.window_ms) not in seen:
            seen.add((r.name, r.limit, r.window_ms))
            unique.append(r)
    rng.shuffle(unique)  # policy order decides ties and category ids
    unique.append(lockout_rule(rng, "auth"))
    if rng.random() < 0.25:
        unique.insert(rng.randrange(len(unique) + 1), lockout_rule(rng, "api"))
    return Policy(
        rules=unique,
        capacity=rng.randrange(1, 6),
        when_full=rng.choice(["deny", "allow"]),
    )


def random_step(rng):
    r = rng.random()
    if r < 0.5:
        dt = rng.randrange(1, 5)
    elif r < 5 / 6:
        dt = rng.randrange(5, 60)
    else:
        dt = rng.randrange(60, 500)
    return dt


def run_case(seed):
    rng = random.Random(seed)
    policy = random_policy(rng)
    text = policy.text()
    model = Model(policy)
    ncat = len(policy.categories)
    lockout_cats = [c for c in range(ncat) if model.lockout_of(c) is not None]
    history = []

    def fail(what, got, want):
        pytest.fail(
            "seed {} (SLUICE_MODEL_SEED={}): {} differs\n  library: {}\n  model:   {}\n"
            "policy:\n{}\nlast operations:\n  {}".format(
                seed, seed, what, got, want, text, "\n  ".join(history[-12:])
            )
        )

    with sluice.Limiter(text) as limiter:
        t = T0
        for step in range(rng.randrange(1, 150)):
            t += random_step(rng)
            op = rng.choices(
                ["check", "allow", "peek", "failure", "success", "reset", "batch"],
                [6, 3, 2, 3, 1, 1, 1],
            )[0]
            key = rng.choice(KEYS)
            c = rng.randrange(ncat)
            if op in ("failure", "success"):
                c = rng.choice(lockout_cats)
            cat = policy.categories[c]
            history.append("step {} +{}ms {} {!r} {}".format(step, t - T0, op, key, cat))
            if op == "check":
                got, want = limiter.check(key, cat, now_ms=t), model.check(key, c, t)
            elif op == "allow":  # the check's answer, recorded and counted as a check
                got, want = limiter.allow(key, cat, now_ms=t), model.check(key, c, t).allowed
            elif op == "peek":
                got, want = limiter.peek(key, cat, now_ms=t), model.peek(key, c, t)
            elif op == "failure":
                got, want = limiter.failure(key, cat, now_ms=t), model.failure(key, c, t)
            elif op == "success":
                got, want = limiter.success(key, cat, now_ms=t), model.success(key, c)
            elif op == "reset":
                got, want = limiter.reset(key, cat, now_ms=t), model.reset(key, c)
            else:
                # One key (repeated) per batch: two keys installed at one instant would tie
                # for "least recently active".
                cats = [rng.randrange(ncat) for _ in range(rng.randrange(1, 4))]
                history[-1] += " batch of categories {}".format(cats)
                got = limiter.check_batch(
                    [(key, policy.categories[ci]) for ci in cats], now_ms=t
                )
                want = [model.check(key, ci, t) for ci in cats]
            if got != want:
                fail(history[-1], got, want)
        st = limiter.stats()
        expected = {
            "capacity": policy.capacity,
            "live_keys": len(model.keys),
            "evictions": model.evictions,
            "reclaimed": model.reclaimed,
            "full": model.full_count,
        }
        got_stats = {name: getattr(st, name) for name in expected}
        if got_stats != expected:
            fail("stats", got_stats, expected)
        want_rules = [
            {
                "passed": model.passed[r],
                "limited": model.limited[r],
                "dry_run_limited": model.dry[r],
                "locked": model.locked[r],
                "lockouts": model.lockouts[r],
            }
            for r in range(len(policy.rules))
        ]
        if st.rules != want_rules:
            fail("per-rule stats", st.rules, want_rules)


def _seeds():
    if os.environ.get("SLUICE_MODEL_SEED"):
        return [int(os.environ["SLUICE_MODEL_SEED"])]
    return range(int(os.environ.get("SLUICE_MODEL_SEEDS", "400")))


@pytest.mark.parametrize("chunk", range(8))
def test_library_matches_the_serial_model(chunk):
    seeds = [s for s in _seeds() if s % 8 == chunk]
    for seed in seeds:
        run_case(seed)


def test_model_reproduces_the_worked_lockout_numbers():
    """The model itself against tests/scenarios.rs (lockout_escalates_and_forgets)."""
    policy = Policy([WindowRule("auth", 100, 60_000), LockoutRule("auth", 3, 900_000, 60_000, 240_000)])
    m = Model(policy)
    a = policy.category_id("auth")

    def lock_for(t):
        for i in range(2):
            d = m.failure(b"u", a, t + i)
            assert (d.status, d.remaining) == ("passed", 2 - i)
        d = m.failure(b"u", a, t + 2)
        assert d.status == "locked"
        return d.retry_after

    t = T0
    assert lock_for(t) == 60
    t += 60_002
    assert m.check(b"u", a, t).allowed
    assert lock_for(t) == 120
    t += 120_002
    assert lock_for(t) == 240
    t += 240_002
    assert lock_for(t) == 240
    t += 240_002 + 240_000
    assert lock_for(t) == 60
    assert m.lockouts[1] == 5
