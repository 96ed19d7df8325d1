"""Threads sharing one Limiter: no interleaving admits more than a rule allows.

Two threads hammer one key of ``global 5/10s`` at a few instants (both threads step through
the same instants together, so their checks race). Every admitted timestamp is then replayed:
no window ``(t - 10 s, t]`` may hold more than 5 of them. Races may refuse a request that a
serial order would have admitted, never the reverse.
"""

import random
import threading
import time

import pytest

import sluice
from support import T0

LIMIT, WINDOW = 5, 10_000
# Several instants per window and some exactly one window apart (the boundary).
INSTANTS = [T0 + dt for dt in (0, 1, 2_500, 9_999, 10_000, 10_001, 14_000, 19_999, 20_001, 35_000)]
CHECKS_PER_INSTANT = 300


def max_in_any_window(times, window):
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_max_in_any_window_helper():
    assert max_in_any_window([0, 1, 9_999, 10_000], 10_000) == 3
    assert max_in_any_window([0, 10_000, 20_000], 10_000) == 1
    assert max_in_any_window([], 10_000) == 0


@pytest.mark.parametrize("round_", range(10))
def test_two_threads_never_over_admit(round_):
    with sluice.Limiter("global {}/{}ms".format(LIMIT, WINDOW)) as limiter:
        admitted = [[], []]
        refused = [0, 0]
        errors = []
        barrier = threading.Barrier(2)

        def hammer(me):
            try:
                for t in INSTANTS:
                    barrier.wait()
                    for _ in range(CHECKS_PER_INSTANT):
                        d = limiter.check(b"hot key", now_ms=t)
                        if d.allowed:
                            admitted[me].append(t)
                        elif d.status == "limited":
                            refused[me] += 1
                        else:
                            raise AssertionError("unexpected decision {!r}".format(d))
            except BaseException as e:  # reported by the main thread
                errors.append(e)
                barrier.abort()

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        times = admitted[0] + admitted[1]
        assert max_in_any_window(times, WINDOW) <= LIMIT, sorted(times)
        # The first instant admitted something; the library counted exactly what we saw.
        assert times and min(times) == INSTANTS[0]
        st = limiter.stats()
        assert st.rules[0]["passed"] == len(times)
        # Every refusal we saw is counted as `limited`, those after lost races included (they
        # count under the category's first rule, here the only one): the counts add up to
        # every check made.
        assert st.rules[0]["limited"] == refused[0] + refused[1]
        assert len(times) + refused[0] + refused[1] == 2 * len(INSTANTS) * CHECKS_PER_INSTANT
        assert st.rules[0]["passed"] + st.rules[0]["limited"] == 2 * len(INSTANTS) * CHECKS_PER_INSTANT


def test_threads_on_distinct_keys_and_a_closing_limiter():
    """Many keys from four threads, then close() while calls may still be running: close waits
    for them, and later calls raise ClosedError instead of touching freed memory."""
    limiter = sluice.Limiter("global 3/1s\ncapacity 64")
    stop = threading.Event()
    outcomes = []

    def worker(me):
        n = 0
        closed = False
        while not stop.is_set() and not closed:
            try:
                d = limiter.check("key-{}-{}".format(me, n % 10), now_ms=T0 + n)
                assert d.status in ("passed", "limited", "full")
            except sluice.ClosedError:
                closed = True
            n += 1
        outcomes.append((me, n, closed))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    while limiter.stats().rules[0]["passed"] < 200:
        time.sleep(0.001)
    limiter.close()
    stop.set()
    for th in threads:
        th.join()
    assert len(outcomes) == 4
    assert limiter.closed


# ---- close() racing with calls -----------------------------------------------------------------

RACE_POLICY = "global 1000/1s\nauth 1000/1s\nauth lockout 3/1s for 1s\ncapacity 4096"


def _race_ops(limiter, decision):
    """(name, call, returns a Decision?) for every kind of call, fast path and general."""
    return [
        ("check str", lambda n: limiter.check("key-{}".format(n % 50)), True),
        ("check bytes now_ms", lambda n: limiter.check(b"k%d" % (n % 50), now_ms=T0 + n), True),
        ("peek", lambda n: limiter.peek("key-{}".format(n % 7), "auth"), True),
        ("failure", lambda n: limiter.failure(b"f%d" % (n % 5), "auth", T0 + n), True),
        ("check general", lambda n: limiter.check(bytearray(b"g%d" % (n % 9)), now_ms=T0 + n), True),
        ("allow", lambda n: limiter.allow("key-{}".format(n % 50), now_ms=T0 + n), False),
        ("allow general", lambda n: limiter.allow(bytearray(b"a%d" % (n % 9))), False),
        ("success", lambda n: limiter.success("f", "auth", T0 + n), False),
        ("reset", lambda n: limiter.reset("key-{}".format(n % 3)), False),
        ("check_batch", lambda n: limiter.check_batch(["a", ("b", "auth")], now_ms=T0 + n), False),
        ("stats", lambda n: limiter.stats(), False),
        ("headers", lambda n: decision.headers("ietf"), False),
        ("category_id", lambda n: limiter.category_id("auth"), False),
    ]


@pytest.mark.parametrize("fallback", [False, True], ids=["gil-guard", "locked-fallback"])
@pytest.mark.parametrize("round_", range(8))
def test_close_racing_with_calls(round_, fallback, monkeypatch):
    """Four threads call every kind of method in a loop while two threads close the limiter:
    no crash; every call returns normally or raises ClosedError; once close() has returned,
    every call raises ClosedError. ``fallback``: the guard as a free-threaded build runs it
    (under a lock; the fast path keeps its own steps, which are correct under the GIL)."""
    from sluice import _limiter

    if fallback:
        monkeypatch.setattr(_limiter, "_FREE_THREADED", True)
    limiter = sluice.Limiter(RACE_POLICY)
    decision = limiter.check("seed", "auth")
    ops = _race_ops(limiter, decision)
    closed_done = threading.Event()
    progress = [0] * 4
    errors = []
    results = {}

    def worker(me):
        rng = random.Random(round_ * 10 + me)
        n = after = 0
        try:
            while after < 200:
                name, call, decides = ops[rng.randrange(len(ops))]
                started_after_close = closed_done.is_set()
                try:
                    out = call(n)
                except sluice.ClosedError as e:
                    assert e.code == sluice.SLUICE_ERR_NULL and "closed" in str(e)
                    results[(me, "closed")] = results.get((me, "closed"), 0) + 1
                else:
                    assert not started_after_close, "{} returned after close(): {!r}".format(name, out)
                    if decides:
                        assert type(out) is sluice.Decision, (name, out)
                        assert out.status in sluice.STATUSES
                    results[(me, "ok")] = results.get((me, "ok"), 0) + 1
                if started_after_close:
                    after += 1
                n += 1
                progress[me] = n
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    rng = random.Random(round_)
    want = rng.randrange(20, 400)
    while min(progress) < want and not errors:
        time.sleep(0.0005)
    second = threading.Thread(target=limiter.close)
    second.start()
    limiter.close()
    closed_done.set()
    second.join()
    for th in threads:
        th.join()
    assert not errors, errors
    assert limiter.closed and not limiter._active
    assert sum(v for (me, kind), v in results.items() if kind == "ok") >= 4 * 20
    assert all(results.get((me, "closed"), 0) >= 200 for me in range(4))
    limiter.close()  # idempotent
    with pytest.raises(sluice.ClosedError):
        limiter.check("key")


def test_a_call_that_got_in_before_close_completes_and_close_waits_for_it():
    """close() starts (refusing new calls) while a call is between its check of the flag and
    the foreign call: that call still completes with the live table, and close() frees it
    only afterwards."""
    limiter = sluice.Limiter("global 3/1m\nauth lockout 2/1m for 1m")
    enter = limiter._enter
    closer = threading.Thread(target=limiter.close)

    def enter_then_close(token):
        handle = enter(token)
        closer.start()
        while limiter._raw is not None:  # close() has marked the limiter closing ...
            time.sleep(0.001)
        time.sleep(0.01)
        assert closer.is_alive() and not limiter.closed  # ... and waits for this call
        return handle

    limiter.category_id("global")  # resolved now: the check below enters once
    limiter._enter = enter_then_close  # the general path (a bytearray key) calls _enter
    d = limiter.check(bytearray(b"k"), now_ms=T0)
    assert (d.allowed, d.remaining) == (True, 2)
    closer.join()
    assert limiter.closed
    with pytest.raises(sluice.ClosedError):
        limiter.check(bytearray(b"k"), now_ms=T0)


FALLBACK_SCRIPT = r"""
import sysconfig, threading, time
real = sysconfig.get_config_var
sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
import sluice
from sluice import _limiter
assert _limiter._FREE_THREADED
T0 = 1_767_225_600_000
l = sluice.Limiter("global 3/10s\nauth lockout 1/1m for 1m")
assert [l.check("k", now_ms=T0 + i).remaining for i in range(3)] == [2, 1, 0]
assert l.peek("k", now_ms=T0 + 3).status == "limited"
assert l.failure("k", "auth", T0).status == "locked"
with __import__("pytest").raises(sluice.InvalidKeyError):
    l.check(b"x" * 65_536)
l.close()
l = sluice.Limiter("global 1000/1s")
stop = threading.Event()
outcomes = []
def worker(me):
    n = 0
    while not stop.is_set():
        try:
            l.check("w{}-{}".format(me, n % 10))
        except sluice.ClosedError:
            outcomes.append(me)
            return
        n += 1
threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
while l.stats().rules[0]["passed"] < 100:
    time.sleep(0.001)
l.close()
for t in threads:
    t.join()
assert sorted(outcomes) == [0, 1, 2] and not l._active
print("fallback ok")
"""


def test_a_free_threaded_build_takes_the_locked_fallback():
    """On a build with Py_GIL_DISABLED (faked here, in a subprocess) every call goes through
    the general path with the guard under a lock, and still works and closes safely."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(sluice.__file__).resolve().parent.parent)
    r = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fallback ok"


# ---- close() while a call of its own thread is in flight (a signal handler) --------------------


@pytest.fixture
def freed(monkeypatch):
    """The handles the library frees from now on (``_ffi.close`` still frees them)."""
    from sluice import _ffi

    handles = []
    real_close = _ffi.close
    monkeypatch.setattr(_ffi, "close", lambda h: (handles.append(h), real_close(h)))
    return handles


def test_close_stops_waiting_and_the_table_is_freed_later(freed):
    """A call in flight that never returns while close() waits (here a token put in by hand,
    as a call interrupted by the signal handler that closes): close() returns after
    CLOSE_WAIT_S without freeing, refuses every call from then on, and the table is freed
    exactly once, by the next close() after the call has returned."""
    from sluice import _limiter

    limiter = sluice.Limiter("global 3/1m")
    token = object()
    limiter._active.add(token)
    started = time.monotonic()
    limiter.close()
    assert time.monotonic() - started >= _limiter.CLOSE_WAIT_S
    assert limiter.closed and freed == []
    with pytest.raises(sluice.ClosedError):
        limiter.check("k")
    with pytest.raises(sluice.ClosedError):
        limiter.allow(bytearray(b"k"))
    limiter._active.discard(token)  # the interrupted call returns
    limiter.close()
    assert len(freed) == 1
    limiter.close()
    del limiter
    assert len(freed) == 1


def test_close_reentered_from_its_own_wait_frees_once(freed, monkeypatch):
    """A close() that runs inside another close()'s wait on the same thread (a signal handler
    interrupting close()) neither deadlocks on the close lock nor frees twice."""
    from sluice import _limiter

    limiter = sluice.Limiter("global 3/1m")
    token = object()
    limiter._active.add(token)
    real_sleep = time.sleep
    reentered = []

    def sleep_then_close_once(seconds):
        if not reentered:
            reentered.append(True)
            limiter._active.discard(token)  # the call in flight returns ...
            limiter.close()  # ... and a "signal handler" closes, inside the outer close()
        real_sleep(seconds)

    monkeypatch.setattr(_limiter.time, "sleep", sleep_then_close_once)
    outer = threading.Thread(target=limiter.close, daemon=True)
    outer.start()
    outer.join(timeout=10)
    assert not outer.is_alive(), "close() deadlocked when re-entered on its own thread"
    assert reentered and limiter.closed and len(freed) == 1


SIGNAL_SCRIPT = r"""
import gc, signal, sys
import sluice
from sluice import _ffi

freed = []
real_close = _ffi.close
_ffi.close = lambda h: (freed.append(h), real_close(h))
limiter = sluice.Limiter("global 65535/1ms")
KEY = eval(sys.argv[1])
in_flight = []

def on_alarm(signum, frame):
    in_flight.append(len(limiter._active))
    limiter.close()

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.002)
calls = 0
try:
    while True:
        limiter.check(KEY)
        calls += 1
except sluice.ClosedError:
    pass
del limiter
gc.collect()
print("in_flight", in_flight[0], "freed", len(freed), "calls", calls)
"""


def test_close_in_a_signal_handler_during_a_call_returns():
    """SIGALRM arrives while the main thread is in check() on the general path (a bytearray
    key: a Python signal handler runs between bytecodes, so with the call's token still
    registered) and its handler closes the limiter: close() must return, the loop must then
    see ClosedError, and the table must be freed exactly once. Before CLOSE_WAIT_S, close()
    waited for its own thread forever. Repeated until the alarm lands inside a call at least
    once."""
    import subprocess
    import sys

    for attempt in range(20):
        out = subprocess.run(
            [sys.executable, "-c", SIGNAL_SCRIPT, "bytearray(b'198.51.100.7')"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        words = out.stdout.split()
        assert words[0] == "in_flight" and words[2] == "freed" and words[3] == "1", out.stdout
        if words[1] == "1":
            return  # the handler closed with a call of its own thread in flight
    pytest.fail("in 20 runs the alarm never landed inside a call")


def test_close_in_a_signal_handler_on_the_fast_path():
    """The same on the fast path (a str key), which registers no token: the handler's close()
    frees at once (no call can be inside the library while a handler runs: the GIL is held
    from reading the handle to the call's return), and the loop's next call sees NULL in the
    handle cell and raises ClosedError."""
    import subprocess
    import sys

    for attempt in range(3):
        out = subprocess.run(
            [sys.executable, "-c", SIGNAL_SCRIPT, "'198.51.100.7'"],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        words = out.stdout.split()
        assert words[:4] == ["in_flight", "0", "freed", "1"], out.stdout
        assert int(words[5]) > 0, out.stdout
