"""One rate-limit check from Python: sluice against `limits`' moving window.

Both get the same quota (300 per minute per key) and the same keys in the same order, in one
run: sluice's ``Limiter("global 300/1m").check(key)`` (library clock) and
``check(key, now_ms=...)`` (explicit time), ``allow(key)`` (the same decision as a bool, as
``hit`` answers, without the report), and `limits`' ``MovingWindowRateLimiter`` on its
``MemoryStorage`` with ``hit(RateLimitItemPerMinute(300), key)``: by default 200 keys hit 100
times each per round, every round from empty state, rounds alternating between them. sluice's
calls are measured on both of its paths: the native methods (what ``Limiter.check`` is on
CPython) and the ctypes path (``SLUICE_PYTHON_FAST=0``, or not CPython), in the same run.
Prints the median time per call of each, and the ratios (the targets: ``check`` >= 10x and
``allow`` >= 15x faster than `limits`), with the bare ctypes calls for the record.

Usage (from the repository root)::

    cargo build --release
    pip install ./bindings/python     # or the wheel of bindings/python/build_wheel.sh
    python3 bindings/python/bench.py [--keys K] [--hits H] [--repeats R]

or, without installing: ``PYTHONPATH=bindings/python SLUICE_LIBRARY=target/release/libsluice.so
python3 bindings/python/bench.py`` (the package and the library must be from one checkout).

`limits` is pip-installed if it is missing.
"""

import argparse
import importlib
import os
import platform
import statistics
import subprocess
import sys
import time


def ensure_limits():
    try:
        return importlib.import_module("limits")
    except ImportError:
        print("installing limits (pip) ...", file=sys.stderr)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet", "limits"],
            env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore",
                 "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        importlib.invalidate_caches()
        return importlib.import_module("limits")


def per_call(fn, keys, repeats):
    """Median over `repeats` runs of fn over every key, in seconds per call."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(keys)
        runs.append((time.perf_counter() - start) / len(keys))
    return statistics.median(runs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=200, help="distinct client keys")
    ap.add_argument("--hits", type=int, default=100, help="hits of each key per round (< 300)")
    ap.add_argument("--repeats", type=int, default=9, help="rounds")
    ap.add_argument("--only", metavar="CASE",
                    help="run this one case once, untimed and printing nothing (for an "
                         "instruction count: callgrind.sh)")
    args = ap.parse_args()
    if not 0 < args.hits < 300:
        ap.error("--hits must be below the limit of 300, so that every hit is admitted")

    limits = ensure_limits()
    from limits import RateLimitItemPerMinute
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    import sluice
    from sluice import _ffi, _limiter

    # The same keys in the same order for everyone: each of `keys` keys `hits` times, spread
    # out. Every round starts from empty state (a new Limiter, a new MemoryStorage, made
    # outside the timing), so every hit of every round is admitted and each key's log grows
    # from 0 to `hits` entries in every implementation.
    names = [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in range(args.keys)]
    calls = args.keys * args.hits
    keys = [names[(i * 7919) % args.keys] for i in range(calls)]
    bkeys = [k.encode() for k in keys]
    item = RateLimitItemPerMinute(300)
    policy = "global 300/1m"

    def fresh_limiter():
        limiter = sluice.Limiter(policy)
        limiter.category_id("global")  # resolved, as after a first request
        return limiter

    # `path(state)` is the bound method: the class's own (native on CPython), or the ctypes
    # path's (PYTHON_METHODS), bound the same way.
    def native(name):
        return lambda state: getattr(state, name)

    def ctypes_path(name):
        return lambda state: _limiter.PYTHON_METHODS[name].__get__(state)

    def sluice_check(path):
        def run(state):
            check = path(state)
            for k in keys:
                check(k)
        return run

    def sluice_check_now(path):
        def run(state):
            check, t = path(state), int(time.time() * 1000)
            for k in keys:
                check(k, now_ms=t)
        return run

    def sluice_allow(path):
        def run(state):
            allow = path(state)
            for k in keys:
                allow(k)
        return run

    def limits_moving(state):
        hit = state.hit
        for k in keys:
            hit(item, k)

    # For the record (private API): the foreign calls alone, every C value made ahead and no
    # argtypes, keys already bytes; through PyDLL (as the ctypes path) and CDLL.
    def bare(name, hold_gil, decides):
        function = (_ffi.decider_function(name, hold_gil) if decides
                    else _ffi.allower_function(hold_gil))
        c_now = _ffi.C_NOW
        pairs = [(k, _ffi.key_size(len(k))) for k in bkeys]

        def run(state):
            cell = state._cell
            if decides:
                buf = _ffi.new_decision_buffer()
                for k, size in pairs:
                    function(cell, 0, k, size, c_now, buf)
            else:
                for k, size in pairs:
                    function(cell, 0, k, size, c_now)
        return run

    def loop_only(state):
        for k in keys:
            pass

    fast = _limiter.FAST_PATH  # "native", or "ctypes" where the native methods are not in use
    cases = {
        f"check, {fast} (library clock)": (sluice_check(native("check")), fresh_limiter),
        f"check, {fast} (now_ms)": (sluice_check_now(native("check")), fresh_limiter),
        f"allow, {fast} (library clock)": (sluice_allow(native("allow")), fresh_limiter),
        "check, ctypes path (library clock)": (sluice_check(ctypes_path("check")), fresh_limiter),
        "allow, ctypes path (library clock)": (sluice_allow(ctypes_path("allow")), fresh_limiter),
        "limits moving window, memory": (
            limits_moving, lambda: MovingWindowRateLimiter(MemoryStorage())),
        "bare sluice_check, PyDLL": (bare("sluice_check", True, True), fresh_limiter),
        "bare sluice_allow, PyDLL": (bare("sluice_allow", True, False), fresh_limiter),
        "bare sluice_allow, CDLL": (bare("sluice_allow", False, False), fresh_limiter),
        "empty loop": (loop_only, lambda: None),
    }
    if args.only is not None:
        if args.only not in cases:
            ap.error("--only: one of " + ", ".join(map(repr, cases)))
        fn, make = cases[args.only]
        fn(make())
        return
    for fn, make in cases.values():  # warm up
        fn(make())
    samples = {name: [] for name in cases}
    # Rounds alternate between the implementations, so machine noise hits all alike.
    for _ in range(args.repeats):
        for name, (fn, make) in cases.items():
            state = make()
            start = time.perf_counter()
            fn(state)
            samples[name].append((time.perf_counter() - start) / calls)
            if isinstance(state, sluice.Limiter):
                state.close()
    results = {name: statistics.median(runs) for name, runs in samples.items()}

    print(f"machine: {platform.machine()} {platform.processor() or ''}, "
          f"Python {platform.python_version()}, limits {limits.__version__}, "
          f"sluice {sluice.library_version()} ({sluice.LIBRARY_PATH}), "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{args.keys} keys x {args.hits} hits per round, 300/1m, "
          f"median of {args.repeats} alternating rounds")
    width = max(map(len, results)) + 1
    print(f"{'':{width}} {'median per call':>16}")
    for name, secs in results.items():
        print(f"{name:{width}} {secs * 1e9:13.0f} ns")
    if fast != "native":
        print(f"(the native methods are not in use: {_limiter.NATIVE_UNAVAILABLE})")
    lim = results["limits moving window, memory"]
    for name, target in ((f"check, {fast} (library clock)", 10),
                         (f"check, {fast} (now_ms)", None),
                         (f"allow, {fast} (library clock)", 15),
                         ("check, ctypes path (library clock)", None),
                         ("allow, ctypes path (library clock)", None)):
        ratio = lim / results[name]
        verdict = "" if target is None else (
            f"  (target >= {target}x: {'met' if ratio >= target else 'not met'})")
        print(f"limits / sluice {name}: {ratio:.1f}x{verdict}")
    print("(a bare ctypes call of libc abs():", f"{ctypes_floor() * 1e9:.0f} ns on this machine)")


def ctypes_floor(n=200_000):
    """Seconds per call of the cheapest foreign call there is: the machine's ctypes floor."""
    import ctypes
    f = ctypes.CDLL(None).abs
    f.argtypes, f.restype = [ctypes.c_int], ctypes.c_int
    start = time.perf_counter()
    for i in range(n):
        f(i)
    return (time.perf_counter() - start) / n


if __name__ == "__main__":
    main()
