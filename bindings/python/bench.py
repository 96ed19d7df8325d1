"""One rate-limit check from Python: sluice through ctypes against `limits`' moving window.

Both get the same quota (300 per minute per key) and the same keys in the same order, in one
run: sluice's ``Limiter("global 300/1m").check(key)`` (library clock) and
``check(key, now_ms=...)`` (explicit time), ``allow(key)`` (the same decision as a bool, as
``hit`` answers, without the report), and `limits`' ``MovingWindowRateLimiter`` on its
``MemoryStorage`` with ``hit(RateLimitItemPerMinute(300), key)``. Prints the median time per
call of each over several repeats, and the ratios (the targets: sluice <= 1.5 us and >= 10x
faster than `limits`).

Usage (from the repository root)::

    cargo build --release
    pip install ./bindings/python     # or the wheel of bindings/python/build_wheel.sh
    python3 bindings/python/bench.py [--calls N] [--repeats R] [--keys K]

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
    ap.add_argument("--calls", type=int, default=20_000, help="calls per repeat")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--keys", type=int, default=1_000, help="distinct client keys")
    args = ap.parse_args()

    limits = ensure_limits()
    from limits import RateLimitItemPerMinute
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    import sluice

    # The same keys in the same order for everyone; each key is hit calls/keys times per
    # repeat, well under 300 a minute for the defaults, so every request is admitted.
    names = [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in range(args.keys)]
    keys = [names[(i * 7919) % args.keys] for i in range(args.calls)]

    limiter = sluice.Limiter("global 300/1m")
    check = limiter.check
    t0 = int(time.time() * 1000)

    def sluice_clock(ks):
        for k in ks:
            check(k)

    clock = {"t": t0}

    def sluice_now(ks):
        t = clock["t"]
        for k in ks:
            check(k, now_ms=t)
        clock["t"] = t + 60_001  # the next repeat starts with empty windows

    # allow() on a limiter of its own, so that the others still admit every request.
    allow_limiter = sluice.Limiter("global 300/1m")
    allow = allow_limiter.allow

    def sluice_allow(ks):
        for k in ks:
            allow(k)

    item = RateLimitItemPerMinute(300)
    moving = MovingWindowRateLimiter(MemoryStorage())
    hit = moving.hit

    def limits_moving(ks):
        for k in ks:
            hit(item, k)

    # The bare foreign call, key bytes and decision struct made ahead, through the declared
    # argtypes (reaches into the package's private _ffi module; for the record only).
    from sluice import _ffi
    raw_check = _ffi.lib.sluice_check
    out = _ffi.sluice_decision()
    out_ref = _ffi.ctypes.byref(out)
    handle = limiter._handle
    bkeys = [k.encode() for k in keys]

    def raw_ctypes(ks):
        t = clock["t"]
        for k in bkeys:
            raw_check(handle, 0, k, len(k), t, out_ref)
        clock["t"] = t + 60_001

    # The floor under check()'s fast path: the same call without argtypes, every C value made
    # ahead, at the library clock (on a limiter of its own, so "sluice check (library clock)"
    # still admits every request).
    floor_limiter = sluice.Limiter("global 300/1m")
    fast_check = _ffi.decider_function("sluice_check")
    raw_handle, c_now, buf = floor_limiter._raw, _ffi.C_NOW, _ffi.DecisionBuffer()
    bsizes = [_ffi.key_size(len(k)) for k in bkeys]

    def raw_fast(ks):
        for k, size in zip(bkeys, bsizes):
            fast_check(raw_handle, 0, k, size, c_now, buf)

    def loop_only(ks):
        for k in ks:
            pass

    # Warm up each once (first calls resolve categories, grow dicts).
    for fn in (sluice_clock, sluice_now, sluice_allow, limits_moving):
        fn(keys[:1000])

    results = {}
    # Interleave the implementations repeat by repeat, so machine noise hits all alike.
    names = ("sluice check (library clock)", "sluice check (now_ms)",
             "sluice allow (library clock)", "limits moving window, memory",
             "bare ctypes sluice_check", "bare, no argtypes, C values ready", "empty loop")
    samples = {name: [] for name in names}
    fns = dict(zip(names, (sluice_clock, sluice_now, sluice_allow, limits_moving, raw_ctypes,
                           raw_fast, loop_only)))
    for _ in range(args.repeats):
        for name, fn in fns.items():
            samples[name].append(per_call(fn, keys, 1))
    for name, runs in samples.items():
        results[name] = statistics.median(runs)

    print(f"machine: {platform.machine()} {platform.processor() or ''}, "
          f"Python {platform.python_version()}, limits {limits.__version__}, "
          f"sluice {sluice.library_version()} ({sluice.LIBRARY_PATH})")
    print(f"{args.calls} calls per repeat over {args.keys} keys, median of {args.repeats} repeats")
    print(f"{'':34} {'median per call':>16}")
    for name, secs in results.items():
        print(f"{name:34} {secs * 1e9:13.0f} ns")
    lim = results["limits moving window, memory"]
    for name in ("sluice check (library clock)", "sluice check (now_ms)",
                 "sluice allow (library clock)"):
        print(f"limits / {name}: {lim / results[name]:.1f}x")
    for name in ("sluice check (library clock)", "sluice allow (library clock)"):
        verdict = results[name] <= 1.5e-6 and lim / results[name] >= 10
        print(f"target (<= 1.5 us, >= 10x limits), {name}:", "met" if verdict else "not met")
    print("(a bare ctypes call of libc abs():", f"{ctypes_floor() * 1e9:.0f} ns on this machine)")
    limiter.close()
    floor_limiter.close()
    allow_limiter.close()


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
