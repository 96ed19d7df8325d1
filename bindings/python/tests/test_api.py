"""The Python API with explicit times and exact numbers, mirroring the Rust tests/scenarios.rs."""

import ctypes
import gc
import os
import pickle
import shutil
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest

import sluice
from sluice import _ffi, _limiter
from support import BINDINGS_DIR, DEFAULT_POLICY, REPO, T0


def limiter(policy):
    return sluice.Limiter(policy)


# ---- decisions: tests/scenarios.rs ------------------------------------------------------------


def test_sliding_window_is_exact_at_the_boundary():
    with limiter("global 3/10s") as l:
        for i in range(3):
            d = l.check("k", now_ms=T0 + i * 1000)
            assert d.allowed is True
            assert d.status == "passed"
            assert d.remaining == 2 - i
        d = l.check("k", now_ms=T0 + 9_999)
        assert (d.allowed, d.status, d.remaining) == (False, "limited", 0)
        assert d.retry_after == 1  # the first request leaves the window at T0 + 10 s
        assert d.reset == (T0 + 10_000) // 1000
        # At exactly T0 + 10 s the first request is out of (t - W, t].
        d = l.check("k", "global", T0 + 10_000)
        assert d.allowed and d.remaining == 0
        assert d.reset == (T0 + 11_000) // 1000  # the oldest in the window is T0 + 1 s
        assert (d.limit, d.window_ms, d.rule, d.retry_after) == (3, 10_000, 0, 0)


def test_rounding_of_reset_and_retry_after():
    with limiter("global 1/1500ms") as l:
        d = l.check("k", now_ms=T0 + 1)
        assert d.reset == (T0 + 1 + 1500 + 999) // 1000  # rounded up
        assert d.reset_after == 2
        d = l.check("k", now_ms=T0 + 1400)
        assert not d.allowed
        assert d.retry_after == 1  # 101 ms, rounded up to a whole second


def test_most_restrictive_rule_decides_and_refusal_records_nothing():
    with limiter("global 5/1m\nwrite 2/1m\nwrite 3/1h") as l:
        d = l.check("k", "write", T0)
        assert (d.limit, d.remaining, d.rule) == (2, 1, 1)
        l.check("k", "write", T0 + 1)
        d = l.check("k", "write", T0 + 2)
        assert (d.status, d.rule) == ("limited", 1)
        # The refused write was not counted by global: 3 remain after 2 writes and this one.
        assert l.check("k", now_ms=T0 + 3).remaining == 2
        # After a minute the per-minute rule frees up but the hour rule (3/1h) has 2 logged.
        d = l.check("k", "write", T0 + 60_001)
        assert d.allowed and (d.limit, d.remaining) == (3, 0)
        d = l.check("k", "write", T0 + 120_002)
        assert (d.status, d.rule) == ("limited", 2)
        assert d.retry_after == 3600 - 120  # the hour rule decides: largest retry_after


def test_strict_rule_keeps_a_hammering_client_refused():
    with limiter("global 2/10s strict") as l:
        l.check("k", now_ms=T0)
        l.check("k", now_ms=T0 + 1000)
        for s in range(2, 30):
            assert not l.check("k", now_ms=T0 + s * 1000).allowed, s
        assert l.check("k", now_ms=T0 + 29_000 + 10_000).allowed
    with limiter("global 2/10s") as l:
        l.check("k", now_ms=T0)
        l.check("k", now_ms=T0 + 1000)
        for s in range(2, 10):
            assert not l.check("k", now_ms=T0 + s * 1000).allowed
        assert l.check("k", now_ms=T0 + 10_000).allowed


def test_dry_run_never_refuses_but_reports_and_counts():
    with limiter("global 10/1m\nmedia 1/1m dry-run") as l:
        assert l.check("k", "media", T0).status == "passed"
        d = l.check("k", "media", T0 + 1)
        assert d.allowed
        assert (d.status, d.rule, d.remaining, d.retry_after) == ("dry-run-limited", 1, 0, 0)
        st = l.stats()
        assert st.rules[1]["dry_run_limited"] == 1
        assert st.rules[0]["passed"] == 2
        assert st.rules[1]["passed"] == 1


def test_peek_records_nothing():
    with limiter("global 2/1m") as l:
        p = l.peek("k", now_ms=T0)
        c = l.check("k", now_ms=T0)
        assert p == c
        for _ in range(5):
            assert l.peek("k", now_ms=T0 + 1).remaining == 0
        assert l.check("k", now_ms=T0 + 1).allowed
        p = l.peek("k", now_ms=T0 + 2)
        c = l.check("k", now_ms=T0 + 2)
        assert p == c and not c.allowed


def test_lockout_escalates_and_forgets():
    with limiter("auth 100/1m\nauth lockout 3/15m for 1m..4m") as l:

        def lock_for(t):
            for i in range(2):
                d = l.failure("u", "auth", t + i)
                assert (d.status, d.remaining) == ("passed", 2 - i)
            d = l.failure("u", "auth", t + 2)
            assert d.status == "locked" and not d.allowed
            return d.retry_after

        t = T0
        assert lock_for(t) == 60
        # Locked: check refuses and charges nothing; failures don't count or extend.
        d = l.check("u", "auth", t + 30_002)
        assert (d.status, d.retry_after, d.limit, d.rule, d.window_ms) == (
            "locked",
            30,
            3,
            1,
            900_000,
        )
        d = l.failure("u", "auth", t + 30_002)
        assert (d.status, d.retry_after) == ("locked", 30)
        t += 60_002
        assert l.check("u", "auth", t).allowed
        assert lock_for(t) == 120
        t += 120_002
        assert lock_for(t) == 240
        t += 240_002
        assert lock_for(t) == 240
        # Quiet for MAX (4m) after the lock ended: the level is forgotten.
        t += 240_002 + 240_000
        assert lock_for(t) == 60
        assert l.stats().rules[1]["lockouts"] == 5


def test_success_clears_failures_and_reset_unlocks():
    with limiter("auth lockout 3/15m for 1m..4m") as l:
        l.failure("u", "auth", T0)
        l.failure("u", "auth", T0 + 1)
        assert l.success("u", "auth", T0 + 2) is None
        assert l.failure("u", "auth", T0 + 3).remaining == 2
        l.failure("u", "auth", T0 + 4)
        assert l.failure("u", "auth", T0 + 5).status == "locked"
        assert l.reset("u", "auth", T0 + 6) is None
        assert l.check("u", "auth", T0 + 7).allowed
        # reset also forgot the level: the next lock is BAN again.
        for i in range(3):
            l.failure("u", "auth", T0 + 10 + i)
        assert l.check("u", "auth", T0 + 20).retry_after == 60


def test_locked_keys_at_the_library_clock():
    # sluice_stats judges "locked" at the library's clock, so this uses the real time.
    with limiter("auth lockout 1/1m for 1h") as l:
        d = l.failure("u", "auth")
        assert d.status == "locked"
        assert 3599 <= d.retry_after <= 3600
        assert abs(d.reset - (time.time() + 3600)) < 5
        st = l.stats()
        assert (st.live_keys, st.locked_keys) == (1, 1)
        l.reset("u", "auth")
        assert l.stats().locked_keys == 0


def test_locked_keys_at_an_explicit_time():
    with limiter("auth lockout 1/1m for 1h") as l:
        assert l.failure("u", "auth", T0).status == "locked"
        assert l.stats(now_ms=T0 + 1).locked_keys == 1
        assert l.stats(now_ms=T0 + 3_600_000).locked_keys == 0  # the lock has ended


def test_time_going_backwards_never_over_admits():
    with limiter("global 2/10s") as l:
        assert l.check("k", now_ms=T0 + 50_000).allowed
        assert l.check("k", now_ms=T0 + 50_001).allowed
        for dt in (0, 1000, 30_000, 59_000):
            assert not l.check("k", now_ms=T0 - 10_000 + dt).allowed
        assert l.check("k", now_ms=T0 + 60_000).allowed


def test_no_applicable_rule_and_full_table():
    with limiter("api 1/1m\ncapacity 1") as l:
        d = l.check("a", "global", T0)
        assert (d.allowed, d.status, d.rule, d.limit) == (True, "passed", None, 0)
        assert d.headers() == {}
    with limiter("auth lockout 1/1m for 1h\ncapacity 1") as l:
        assert l.failure("a", "auth", T0).status == "locked"
        d = l.check("b", "global", T0 + 1)  # the only slot holds an active lockout
        assert (d.allowed, d.status, d.retry_after, d.rule) == (False, "full", 1, None)
        assert d.headers() == {"Retry-After": "1"}
        assert l.stats().full == 1
    with limiter("auth lockout 1/1m for 1h\ncapacity 1\nwhen-full allow") as l:
        l.failure("a", "auth", T0)
        d = l.check("b", now_ms=T0 + 1)
        assert (d.allowed, d.status, d.retry_after) == (True, "full", 0)


def test_default_policy_numbers():
    with limiter(DEFAULT_POLICY) as l:
        d = l.check("198.51.100.7", "auth", T0)
        assert (d.limit, d.remaining, d.rule) == (10, 9, 5)
        after = l.failure("198.51.100.7", "auth", T0 + 1)
        assert (after.status, after.remaining, after.limit) == ("passed", 4, 5)
        st = l.stats()
        assert (st.capacity, st.bytes_per_key, len(st.rules), st.live_keys) == (65536, 8328, 7, 1)


# ---- keys -------------------------------------------------------------------------------------


def test_str_and_bytes_keys_are_the_same_key():
    with limiter("global 3/1m") as l:
        assert l.check("k", now_ms=T0).remaining == 2
        assert l.check(b"k", now_ms=T0).remaining == 1
        assert l.check(bytearray(b"k"), now_ms=T0).remaining == 0
        assert not l.check(memoryview(b"k"), now_ms=T0).allowed
        # Non-ASCII str keys are UTF-8.
        assert l.check("ключ", now_ms=T0).remaining == 2
        assert l.check("ключ".encode("utf-8"), now_ms=T0).remaining == 1
        # Bytes are bytes: embedded NULs and invalid UTF-8 are keys like any other, and the
        # length is passed, not a NUL terminator.
        assert l.check(b"a\0b", now_ms=T0).remaining == 2
        assert l.check(b"a", now_ms=T0).remaining == 2
        assert l.check(b"a\0c", now_ms=T0).remaining == 2
        assert l.check(b"\xff\xfe", now_ms=T0).remaining == 2
        assert l.stats().live_keys == 6


def test_key_lengths():
    with limiter("global 3/1m") as l:
        assert l.check(b"x" * 65_535, now_ms=T0).allowed
        with pytest.raises(sluice.InvalidKeyError) as e:
            l.check(b"x" * 65_536, now_ms=T0)
        assert e.value.code == sluice.SLUICE_ERR_KEY_TOO_LONG
        assert "65536 bytes" in str(e.value)
        with pytest.raises(sluice.InvalidKeyError) as e:
            l.check("", now_ms=T0)
        assert isinstance(e.value, ValueError) and isinstance(e.value, sluice.SluiceError)
        assert e.value.code == sluice.SLUICE_ERR_EMPTY_KEY == -3
        assert str(e.value).startswith("empty key: keys are 1 to 65535 bytes")
        with pytest.raises(sluice.InvalidKeyError):
            l.check(b"", now_ms=T0)
        with pytest.raises(sluice.InvalidKeyError):
            l.check("\ud800", now_ms=T0)  # a lone surrogate has no UTF-8
        with pytest.raises(TypeError):
            l.check(5, now_ms=T0)
        with pytest.raises(TypeError):
            l.check(None, now_ms=T0)


# ---- errors -----------------------------------------------------------------------------------


def test_invalid_policy_names_line_and_column():
    with pytest.raises(sluice.PolicyError) as e:
        sluice.Limiter("global 300/1 minute")
    err = e.value
    assert "line 1, column 12" in str(err)
    assert str(err) == (
        'invalid policy: line 1, column 12: expected a duration such as 1m or 30s, '
        'found "1 minute"'
    )
    assert err.code == sluice.SLUICE_ERR_POLICY == -10
    assert err.name == "SLUICE_ERR_POLICY"
    assert isinstance(err, ValueError) and isinstance(err, sluice.SluiceError)
    assert pickle.loads(pickle.dumps(err)).code == -10


def test_policy_errors_of_other_kinds():
    with pytest.raises(sluice.PolicyError) as e:
        sluice.Limiter("global 1/1m\nglobal 1/1m")
    assert "line 2" in str(e.value)
    with pytest.raises(sluice.PolicyError) as e:
        sluice.Limiter("global 1/1m\n\0 garbage")  # C would stop at the NUL: refused here
    assert "line 2, column 1" in str(e.value)
    with pytest.raises(sluice.PolicyError) as e:
        sluice.Limiter(b"global 1/1m # \xff")
    assert e.value.code == sluice.SLUICE_ERR_UTF8
    with pytest.raises(TypeError):
        sluice.Limiter(None)
    # bytes policies are fine
    with sluice.Limiter(b"global 1/1m") as l:
        assert l.check("k", now_ms=T0).allowed


def test_a_limiter_needs_a_policy_or_a_path():
    with pytest.raises(TypeError, match="needs a policy, a path, or both"):
        sluice.Limiter()


def _huge_page_mappings():
    """Mappings of this process advised for transparent huge pages ("hg" in smaps' VmFlags)."""
    with open("/proc/self/smaps") as f:
        return sum(1 for line in f if line.startswith("VmFlags:") and " hg" in line)


@pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps"), reason="no /proc/self/smaps to see the advice in"
)
def test_huge_pages_are_asked_for_only_when_chosen():
    # A kernel built without transparent huge pages takes no advice (and shows no "hg").
    thp = os.path.exists("/sys/kernel/mm/transparent_hugepage")
    before = _huge_page_mappings()
    for on in (False, True):
        with sluice.Limiter("global 10/1s\ncapacity 100000", huge_pages=on) as limiter:
            assert _huge_page_mappings() == before + (1 if on and thp else 0), on
            allowed = [limiter.check("k", now_ms=T0 + i).allowed for i in range(11)]
            assert allowed == [True] * 10 + [False]
        assert _huge_page_mappings() == before
    with pytest.raises(TypeError):
        sluice.Limiter("global 1/1s", None, True)  # keyword only


def test_unknown_category():
    with limiter(DEFAULT_POLICY) as l:
        with pytest.raises(sluice.UnknownCategoryError) as e:
            l.check("k", "uploads", T0)
        err = e.value
        assert isinstance(err, LookupError) and not isinstance(err, KeyError)
        assert err.code == sluice.SLUICE_ERR_UNKNOWN_CATEGORY == -20
        assert err.category == "uploads"
        assert "'uploads'" in str(err)
        for bad in ("", "auth\0x", "\ud800", "Auth"):
            with pytest.raises(sluice.UnknownCategoryError):
                l.peek("k", bad, T0)
        with pytest.raises(TypeError):
            l.check("k", 3, T0)
        assert l.category_id("global") == 0
        assert l.category_id("auth") == 4


def test_failure_without_lockout():
    with limiter("global 1/1m") as l:
        with pytest.raises(sluice.NoLockoutError) as e:
            l.failure("k", "global", T0)
        assert e.value.code == sluice.SLUICE_ERR_NO_LOCKOUT
        assert "'global'" in str(e.value) and "lockout" in str(e.value)
        with pytest.raises(sluice.NoLockoutError):
            l.success("k", now_ms=T0)


def test_time_out_of_range():
    with limiter("global 3/1m") as l:
        for bad in (-1, 2**42 - 1, 2**62, 2**70, -(2**70)):
            with pytest.raises(sluice.TimeRangeError) as e:
                l.check("k", now_ms=bad)
            assert e.value.code == sluice.SLUICE_ERR_TIME
            assert isinstance(e.value, ValueError)
        assert l.check("k", now_ms=0).allowed
        assert l.check("k", now_ms=2**42 - 2).allowed
        for bad in (1.5, "1", True):
            with pytest.raises(TypeError):
                l.check("k", now_ms=bad)


def test_bad_input_changes_nothing():
    with limiter(DEFAULT_POLICY) as l:
        l.check("k", now_ms=T0)
        for call in (
            lambda: l.check("", now_ms=T0),
            lambda: l.check("k", "uploads", T0),
            lambda: l.check("k", now_ms=-1),
            lambda: l.failure("k", "global", T0),
            lambda: l.check_batch([("k", "global"), ("", "global")], now_ms=T0),
            lambda: l.check_batch([("k", "global"), ("k", "uploads")], now_ms=T0),
        ):
            with pytest.raises(sluice.SluiceError):
                call()
        assert l.peek("k", now_ms=T0).remaining == 298


def test_now_is_the_library_clock():
    with limiter("global 3/1m") as l:
        before = time.time()
        d = l.check("k")
        assert d.allowed and d.remaining == 2
        assert before + 59 <= d.reset <= time.time() + 61
        assert l.peek("k", now_ms=sluice.SLUICE_NOW).remaining == 1


# ---- batches ----------------------------------------------------------------------------------


def test_check_batch():
    with limiter("global 1/1m\nauth 5/1m") as l:
        out = l.check_batch([(b"a", "global"), (b"b", "global"), (b"a", "global")], now_ms=1_000)
        assert [d.allowed for d in out] == [True, True, False]
        assert l.check_batch([], now_ms=T0) == []
        out = l.check_batch(["c", ("d", "auth"), ("c", "global")], now_ms=T0)
        assert [(d.allowed, d.limit) for d in out] == [(True, 1), (True, 1), (False, 1)]
        with pytest.raises(sluice.InvalidKeyError) as e:
            l.check_batch([("e", "auth"), ("", "auth")], now_ms=T0)
        assert "request 1" in str(e.value)
        # The library reports the index (sluice_check_batch's bad_request).
        with pytest.raises(sluice.InvalidKeyError) as e:
            l.check_batch([("e", "auth"), "f", (b"x" * 65_536, "global")], now_ms=T0)
        assert e.value.code == sluice.SLUICE_ERR_KEY_TOO_LONG
        assert "request 2 has a key of 65536 bytes" in str(e.value)
        with pytest.raises(sluice.UnknownCategoryError):
            l.check_batch([("e", "auth"), ("e", "nope")], now_ms=T0)
        with pytest.raises(TypeError):
            l.check_batch([("e", "auth", 3)], now_ms=T0)
        # Nothing of the refused batches was recorded.
        assert l.peek("e", "auth", T0).remaining == 0
        assert l.peek("e", "auth", T0).allowed
        assert l.check("e", "auth", T0).allowed


# ---- headers ----------------------------------------------------------------------------------


def test_headers_in_both_styles():
    with limiter("write 2/1m\nwrite 500/1h") as l:
        d = l.check("k", "write", T0)
        h = d.headers()
        assert h == {
            "X-RateLimit-Limit": "2",
            "X-RateLimit-Remaining": "1",
            "X-RateLimit-Reset": "1767225660",
        }
        assert list(h) == ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]
        assert d.headers("x-ratelimit") == h
        assert d.headers("ietf") == {
            "RateLimit-Policy": '"write";q=2;w=60',
            "RateLimit": '"write";r=1;t=60',
        }
        l.check("k", "write", T0 + 10_000)
        d = l.check("k", "write", T0 + 20_500)
        h = d.headers("ietf")
        assert list(h.items()) == [
            ("RateLimit-Policy", '"write";q=2;w=60'),
            ("RateLimit", '"write";r=0;t=40'),
            ("Retry-After", "40"),
        ]
        assert d.headers() == {
            "X-RateLimit-Limit": "2",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1767225660",
            "Retry-After": "40",
        }
        with pytest.raises(sluice.InvalidArgumentError):
            d.headers("X-RateLimit")


def test_headers_buffer_is_sized_from_the_returned_length(monkeypatch):
    with limiter("write 2/1m\nwrite 500/1h") as l:
        d = l.check("k", "write", T0)
        want = d.headers("ietf")
        for cap in (0, 1, 10, 47):
            monkeypatch.setattr(_limiter, "_HEADERS_INITIAL_CAP", cap)
            assert d.headers("ietf") == want


# ---- Decision, Stats --------------------------------------------------------------------------


def test_decision_is_an_immutable_value():
    with limiter("global 2/1m") as l:
        d = l.check("k", now_ms=T0)
        with pytest.raises(AttributeError):
            d.allowed = False
        with pytest.raises(AttributeError):
            del d.remaining
        with pytest.raises(AttributeError):
            d.extra = 1
        assert not hasattr(d, "__dict__")
        same = sluice.Decision(**d.as_dict())
        assert same == d and hash(same) == hash(d)
        assert d.as_dict() == {
            "allowed": True,
            "status": "passed",
            "limit": 2,
            "remaining": 1,
            "reset": 1767225660,
            "reset_after": 60,
            "retry_after": 0,
            "window_ms": 60_000,
            "rule": 0,
        }
        assert "remaining=1" in repr(d)
        assert pickle.loads(pickle.dumps(d)) == d
        with pytest.raises(sluice.SluiceError):
            same.headers()  # not made by a Limiter
        assert sluice.STATUSES == ("passed", "limited", "locked", "full", "dry-run-limited")


def test_stats_fields():
    with limiter("global 1/1m\nauth lockout 1/1m for 1m") as l:
        l.check("a", now_ms=T0)
        l.check("a", now_ms=T0 + 1)
        l.failure("b", "auth", T0 + 2)
        l.check("b", "auth", T0 + 3)
        st = l.stats()
        assert isinstance(st, sluice.Stats)
        assert st._asdict()["live_keys"] == 2
        assert (st.capacity, st.evictions, st.reclaimed, st.full) == (65536, 0, 0, 0)
        assert st.rules == [
            {"passed": 1, "limited": 1, "dry_run_limited": 0, "locked": 0, "lockouts": 0},
            {"passed": 0, "limited": 0, "dry_run_limited": 0, "locked": 1, "lockouts": 1},
        ]
        assert st.bytes_per_key > 0


# ---- lifetime ---------------------------------------------------------------------------------


def test_close_is_idempotent_and_later_calls_raise():
    l = sluice.Limiter("global 1/1m\nauth lockout 1/1m for 1m")
    d = l.check("k", now_ms=T0)
    assert not l.closed
    l.close()
    l.close()
    assert l.closed
    calls = [
        lambda: l.check("k", now_ms=T0),
        lambda: l.peek("k"),
        lambda: l.failure("k", "auth"),
        lambda: l.success("k", "auth"),
        lambda: l.reset("k"),
        lambda: l.check_batch([("k", "global")]),
        lambda: l.check_batch([]),
        lambda: l.stats(),
        lambda: l.category_id("auth"),
        lambda: l.category_id("global"),  # cached before the close
        lambda: d.headers(),
    ]
    for call in calls:
        with pytest.raises(sluice.ClosedError) as e:
            call()
        assert "closed" in str(e.value)
        assert e.value.code == sluice.SLUICE_ERR_NULL
    with pytest.raises(sluice.ClosedError):
        with l:
            pass
    assert "closed" in repr(l)


def test_context_manager_closes_even_on_error():
    with sluice.Limiter("global 1/1m") as l:
        assert l.check("k", now_ms=T0).allowed
    assert l.closed
    with pytest.raises(RuntimeError):
        with sluice.Limiter("global 1/1m") as l2:
            raise RuntimeError("boom")
    assert l2.closed


def test_garbage_collection_closes(monkeypatch):
    closed = []
    real_close = _ffi.lib.sluice_close

    class Spy:
        def __getattr__(self, name):
            return getattr(_ffi.lib, name)

    l = sluice.Limiter("global 1/1m")
    handle = ctypes.cast(l._handle, ctypes.c_void_p).value
    spy = Spy()
    spy.sluice_close = lambda h: (closed.append(ctypes.cast(h, ctypes.c_void_p).value), real_close(h))
    monkeypatch.setattr(_ffi, "lib", spy)
    ref = weakref.ref(l)
    del l
    gc.collect()
    assert ref() is None
    assert closed == [handle]


def test_a_failed_open_leaves_nothing_to_close():
    with pytest.raises(sluice.PolicyError):
        sluice.Limiter("nope")
    gc.collect()  # __del__ of the half-made Limiter must not crash


# ---- the library ------------------------------------------------------------------------------


def test_library_version_and_loading():
    assert sluice.library_version() == _ffi.SLUICE_VERSION == sluice.LIBRARY_VERSION
    # CDLL releases the GIL during calls; PyDLL (a subclass) holds it: only the fast path's
    # short per-request calls use the PyDLL load (held_lib, test_fast_path.py).
    assert type(_ffi.lib) is ctypes.CDLL
    assert _ffi.lib._func_flags_ & ctypes._FUNCFLAG_PYTHONAPI == 0
    assert Path(sluice.LIBRARY_PATH).is_file()


def test_library_not_found_says_where_it_looked_and_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.delenv("SLUICE_LIBRARY", raising=False)
    monkeypatch.setattr(_ffi, "_PACKAGE_DIR", tmp_path / "pkg")
    monkeypatch.setattr(_ffi, "_recorded_source_dir", lambda: None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sluice.LibraryNotFoundError) as e:
        _ffi.find_library()
    msg = str(e.value)
    assert isinstance(e.value, ImportError)
    assert "SLUICE_LIBRARY" in msg and "cargo build --release" in msg
    assert str(tmp_path / "pkg" / _ffi.LIBRARY_NAME) in msg
    assert str(tmp_path / "target" / "release" / _ffi.LIBRARY_NAME) in msg
    # A repository above the working directory is found by walking up.
    lib = tmp_path / "target" / "release" / _ffi.LIBRARY_NAME
    lib.parent.mkdir(parents=True)
    shutil.copy(sluice.LIBRARY_PATH, lib)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert _ffi.find_library() == lib
    # SLUICE_LIBRARY comes before the walks up, and must exist when set.
    other = tmp_path / "elsewhere" / _ffi.LIBRARY_NAME
    other.parent.mkdir()
    shutil.copy(sluice.LIBRARY_PATH, other)
    monkeypatch.setenv("SLUICE_LIBRARY", str(other))
    assert _ffi.find_library() == other
    monkeypatch.setenv("SLUICE_LIBRARY", str(tmp_path / "missing.so"))
    with pytest.raises(sluice.LibraryNotFoundError) as e:
        _ffi.find_library()
    assert "missing.so" in str(e.value)
    # A library inside the package directory (a wheel's) comes first, even before
    # SLUICE_LIBRARY: it is the copy made for these bindings.
    (tmp_path / "pkg").mkdir()
    shutil.copy(sluice.LIBRARY_PATH, tmp_path / "pkg" / _ffi.LIBRARY_NAME)
    assert _ffi.find_library() == tmp_path / "pkg" / _ffi.LIBRARY_NAME
    monkeypatch.setenv("SLUICE_LIBRARY", str(other))
    assert _ffi.find_library() == tmp_path / "pkg" / _ffi.LIBRARY_NAME


def _package_copy(tmp_path):
    """A copy of the imported package's modules without a bundled library or a recorded
    source directory (so that only SLUICE_LIBRARY, the working directory or nothing can
    supply the library); returns the directory to put on PYTHONPATH."""
    root = tmp_path / "site"
    (root / "sluice").mkdir(parents=True)
    for f in Path(sluice.__file__).resolve().parent.iterdir():
        if f.suffix == ".py" and f.name != "_build_info.py":
            shutil.copy(f, root / "sluice" / f.name)
    return root


def _import_in_subprocess(env_changes, cwd, pythonpath=None):
    env = dict(os.environ)
    env.pop("SLUICE_LIBRARY", None)
    # The same sluice as this process imported (installed, or the source folder).
    env["PYTHONPATH"] = str(pythonpath or Path(sluice.__file__).resolve().parent.parent)
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-c", "import sluice; print(sluice.LIBRARY_PATH); print(sluice.__file__)"],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
    )


def test_import_fails_cleanly_with_a_bad_sluice_library(tmp_path):
    site = _package_copy(tmp_path)
    r = _import_in_subprocess({"SLUICE_LIBRARY": str(tmp_path / "nope.so")}, tmp_path, site)
    assert r.returncode != 0
    assert "LibraryNotFoundError" in r.stderr and "SLUICE_LIBRARY" in r.stderr
    (tmp_path / "junk.so").write_bytes(b"not a library")
    r = _import_in_subprocess({"SLUICE_LIBRARY": str(tmp_path / "junk.so")}, tmp_path, site)
    assert r.returncode != 0 and "cannot load" in r.stderr
    # The same copy with a library bundled beside its modules loads that one, whatever
    # SLUICE_LIBRARY says.
    shutil.copy(sluice.LIBRARY_PATH, site / "sluice" / _ffi.LIBRARY_NAME)
    r = _import_in_subprocess({"SLUICE_LIBRARY": str(tmp_path / "junk.so")}, tmp_path, site)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.splitlines()[0]) == site / "sluice" / _ffi.LIBRARY_NAME


@pytest.mark.skipif(
    not os.environ.get("SLUICE_TEST_EXPECT_INSTALLED"),
    reason="run by run_tests.sh, which installs the package and sets SLUICE_TEST_EXPECT_INSTALLED",
)
def test_the_installed_package_is_under_test():
    """run_tests.sh installs the package and runs the tests from outside the source tree: the
    imported sluice must be the installed copy, and it must find the repository's library
    without SLUICE_LIBRARY, from any working directory (through the recorded source dir)."""
    source_pkg = (BINDINGS_DIR / "sluice").resolve()
    imported = Path(sluice.__file__).resolve().parent
    assert imported != source_pkg, "the source folder was imported, not the installed package"
    from sluice import _build_info

    assert Path(_build_info.SOURCE_DIR).resolve() == BINDINGS_DIR.resolve()
    r = _import_in_subprocess({}, "/")
    assert r.returncode == 0, r.stderr
    lib_path, module = r.stdout.splitlines()
    assert Path(lib_path) == REPO / "target" / "release" / _ffi.LIBRARY_NAME
    assert Path(module).resolve().parent == imported


@pytest.mark.skipif(
    not os.environ.get("SLUICE_TEST_EXPECT_WHEEL"),
    reason="run by run_tests.sh, which installs the wheel into a fresh venv and sets "
    "SLUICE_TEST_EXPECT_WHEEL",
)
def test_the_wheel_is_under_test():
    """run_tests.sh installs the wheel of build_wheel.sh into a fresh venv outside the
    checkout: the package imported is that venv's, it loaded the library the wheel carries
    (not SLUICE_LIBRARY, not a checkout's target/), it recorded no build directory, and the
    installed metadata says a platform wheel of the distribution name."""
    from importlib import metadata

    assert "SLUICE_LIBRARY" not in os.environ
    package = Path(sluice.__file__).resolve().parent
    assert Path(sys.prefix).resolve() in package.parents, (package, sys.prefix)
    assert Path(sluice.LIBRARY_PATH) == package / _ffi.LIBRARY_NAME
    assert Path(_ffi.find_library()) == package / _ffi.LIBRARY_NAME
    assert not (package / "_build_info.py").exists()
    dist = metadata.distribution("sluice-ratelimit")
    wheel = dist.read_text("WHEEL") or ""
    assert "Root-Is-Purelib: false" in wheel
    tag = os.environ["SLUICE_TEST_EXPECT_WHEEL"]
    assert "Tag: py3-none-{}".format(tag) in wheel.splitlines(), wheel
    files = {str(f) for f in dist.files or []}
    assert "sluice/" + _ffi.LIBRARY_NAME in files and "sluice/py.typed" in files
    # Stripped: no static symbol table left in the shipped copy (the .so has a .symtab
    # section name only if it kept one).
    assert b".symtab" not in (package / _ffi.LIBRARY_NAME).read_bytes()


def test_default_policy_comes_from_the_library():
    assert sluice.DEFAULT_POLICY.startswith("# sluice default policy")
    with sluice.Limiter(sluice.DEFAULT_POLICY) as l:
        d = l.check("198.51.100.7", "write", T0)
        assert (d.allowed, d.limit, d.remaining) == (True, 30, 29)
