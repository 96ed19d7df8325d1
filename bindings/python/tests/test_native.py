"""The native methods (``src/ffi/python.rs``): in use wherever they can be, and the same as the
ctypes path (``_limiter.PYTHON_METHODS``) in every result and every exception, without
reference leaks.

Where the native methods are not in use (SLUICE_PYTHON_FAST=0, not CPython) the comparisons
still run, the ctypes path against itself; ``run_tests.sh`` runs the whole suite on both
paths.
"""

import gc
import inspect
import os
import random
import subprocess
import sys
import sysconfig
import tracemalloc
from pathlib import Path

import pytest

import sluice
from sluice import _ffi, _limiter
from support import T0

OPS = ("check", "peek", "failure", "allow")
POLICY = "global 4/1m\nauth 3/1m\nauth lockout 2/1m for 1m\nmedia 2/10s dry-run\ncapacity 64"

#: Where the native methods can be had (a GIL, the usual object header) ...
NATIVE_CAPABLE = (
    sys.implementation.name == "cpython"
    and not sysconfig.get_config_var("Py_GIL_DISABLED")
    and not hasattr(sys, "getobjects")
)
#: ... and are wanted.
NATIVE_EXPECTED = NATIVE_CAPABLE and os.environ.get("SLUICE_PYTHON_FAST", "") != "0"
native = pytest.mark.skipif(
    _limiter.FAST_PATH != "native", reason="the native methods are not in use here"
)


def test_the_native_methods_are_in_use_where_they_can_be():
    """On CPython the native methods must be in use unless SLUICE_PYTHON_FAST=0: a silent
    fall back to the ctypes path fails here, with the reason."""
    if NATIVE_EXPECTED:
        assert _limiter.NATIVE_UNAVAILABLE is None, _limiter.NATIVE_UNAVAILABLE
        assert _limiter.FAST_PATH == "native"
        for name in OPS:
            method = sluice.Limiter.__dict__[name]
            assert type(method).__name__ == "method_descriptor", name
            assert method is not _limiter.PYTHON_METHODS[name]
    else:
        assert _limiter.FAST_PATH == "ctypes" and _limiter.NATIVE_UNAVAILABLE
        for name in OPS:
            assert sluice.Limiter.__dict__[name] is _limiter.PYTHON_METHODS[name]


@pytest.mark.parametrize("switch", ["0", "1", None])
def test_the_environment_switch(switch):
    env = dict(os.environ)
    env.pop("SLUICE_PYTHON_FAST", None)
    if switch is not None:
        env["SLUICE_PYTHON_FAST"] = switch
    # The same package as this process's (installed or from the source folder).
    env["PYTHONPATH"] = str(Path(sluice.__file__).resolve().parent.parent)
    code = (
        "import sluice; from sluice import _limiter as m; "
        "l = sluice.Limiter('global 2/1m'); "
        "print(m.FAST_PATH, l.check('k', now_ms=%d).remaining, l.allow(b'k', now_ms=%d))"
        % (T0, T0)
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    path = "native" if NATIVE_CAPABLE and switch != "0" else "ctypes"
    assert out.stdout.split() == [path, "1", "True"]


@native
def test_native_methods_read_as_methods():
    for name in OPS:
        method = sluice.Limiter.__dict__[name]
        assert method.__name__ == name and method.__qualname__ == "Limiter." + name
        params = list(inspect.signature(method).parameters)
        assert params == ["self", "key", "category", "now_ms"], name
        python_doc = inspect.cleandoc(_limiter.PYTHON_METHODS[name].__doc__)
        assert inspect.getdoc(method) == python_doc
    with sluice.Limiter(POLICY) as l:
        bound = l.check
        assert bound.__self__ is l and bound("k", now_ms=T0).remaining == 3
        assert sluice.Limiter.check(l, "k", now_ms=T0).remaining == 2
        with pytest.raises(TypeError):
            sluice.Limiter.check(object(), "k")

    class Sub(sluice.Limiter):
        pass

    with Sub(POLICY) as s:
        d = s.check("k", "auth", T0)
        assert d.remaining == 2 and d._limiter is s
        # Served natively: the ctypes path would have cached the category's id.
        assert s._categories == {}


@native
def test_the_handle_is_read_from_its_slot_or_by_name():
    """The native methods read ``_address`` at its slot's offset (checked at import); where
    that cannot be told they look it up by name, with the same results."""
    assert _limiter._handle_offset() == object.__basicsize__
    by_name = _limiter._native_objects(handle_offset=0)
    try:
        _ffi.native_methods(by_name)  # the last objects given serve every native method
        with sluice.Limiter(POLICY) as a, sluice.Limiter(POLICY) as b:
            for i in range(8):
                for op in OPS:
                    got = outcome(lambda: getattr(a, op)("k%d" % (i % 3), "auth", T0 + i))
                    want = outcome(lambda: _limiter.PYTHON_METHODS[op](b, "k%d" % (i % 3), "auth", T0 + i))
                    assert got == want
            # Served natively: the ctypes path would have cached the category's id.
            assert "auth" not in a._categories and "auth" in b._categories
        closed = outcome(lambda: a.check("k"))
        assert closed[1] is sluice.ClosedError
    finally:
        _ffi.native_methods(_limiter._native_objects())
    with sluice.Limiter(POLICY) as l:
        assert l.check("k", now_ms=T0).remaining == 3


# ---- both paths: the same results and exceptions ----------------------------------------------


class S(str):
    pass


def outcome(call):
    try:
        r = call()
    except Exception as e:  # noqa: BLE001 - every exception is compared
        return ("raised", type(e), getattr(e, "code", None), str(e))
    if isinstance(r, sluice.Decision):
        assert type(r) is sluice.Decision
        return ("decision", r.as_dict())
    assert type(r) is bool
    return ("bool", r)


def random_call(rng, i):
    """(op, args, kwargs, on the library clock?) of a random call, most of them in the common
    case."""
    op = rng.choice(OPS)
    key = rng.choice(
        ["k1", "k2", "ü", "日本", b"b1", b"\0x", "k1", b"b1"] * 3
        + [bytearray(b"k1"), memoryview(b"b1"), S("k1"), "", b"", "x" * 70_000, "\udc80", 7, None]
    )
    category = rng.choice(
        [None] * 6 + ["global", "auth", "auth", "media", "nope", "au\0th", S("auth"), 5, b"auth"]
    )
    now = rng.choice(
        [T0 + i * 2_000] * 8 + [None, -1, 2**42, 2**63, -(2**63), True, 1.5, "1"]
    )
    args, kwargs = [key], {}
    form = rng.randrange(6)
    if form == 0:  # positional
        if category is not None or now is not None:
            args.append("global" if category is None else category)
        if now is not None:
            args.append(now)
    else:
        if category is not None:
            kwargs["category"] = category
        if now is not None:
            kwargs["now_ms"] = now
        if form == 1:
            kwargs["key"] = args.pop()
        elif form == 2 and kwargs:  # a name not interned: the Python method sorts it out
            name = rng.choice(list(kwargs))
            kwargs["".join(list(name))] = kwargs.pop(name)
        elif form == 3:
            kwargs[rng.choice(["key", "nope", "category"])] = "x"  # duplicate or unknown
        elif form == 4:
            args.extend(["global", T0, "extra"])
    if rng.randrange(40) == 0:
        args, kwargs = [], {}
    return op, args, kwargs, now is None


def test_both_paths_agree_on_random_calls():
    rng = random.Random(20260101)
    with sluice.Limiter(POLICY) as a, sluice.Limiter(POLICY) as b:
        for i in range(4_000):
            op, args, kwargs, clock = random_call(rng, i)
            got = outcome(lambda: getattr(a, op)(*args, **kwargs))
            want = outcome(lambda: _limiter.PYTHON_METHODS[op](b, *args, **kwargs))
            if clock:
                # The library clock: two calls a moment apart; compare what does not move.
                if got[0] == want[0] == "decision":
                    for d in (got[1], want[1]):
                        for f in ("reset", "reset_after", "retry_after"):
                            d.pop(f)
            assert got == want, (i, op, args, kwargs)
        assert a.stats() == b.stats()


def test_both_paths_raise_alike_on_a_closed_limiter():
    for op in OPS:
        outcomes = []
        for call in (lambda l: getattr(l, op), lambda l: _limiter.PYTHON_METHODS[op].__get__(l)):
            l = sluice.Limiter(POLICY)
            l.close()
            outcomes.append([outcome(lambda: call(l)(k, "auth", T0)) for k in ("k", b"k", 5)])
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][0][1] is sluice.ClosedError


def test_both_paths_raise_alike_on_a_read_only_table(tmp_path):
    path = tmp_path / "t.sluice"
    sluice.Limiter(POLICY, path=path).close()
    with sluice.Limiter(path=path, read_only=True) as ro:
        for op in OPS:
            native_way = outcome(lambda: getattr(ro, op)("k", "auth", T0))
            ctypes_way = outcome(lambda: _limiter.PYTHON_METHODS[op](ro, "k", "auth", T0))
            assert native_way == ctypes_way, op
            if op == "peek":
                assert native_way[0] == "decision"
            else:
                assert native_way[1] is sluice.ReadOnlyError


def test_decisions_of_both_paths_are_alike():
    with sluice.Limiter(POLICY) as a, sluice.Limiter(POLICY) as b:
        for i in range(6):
            d = a.check("k", "auth", T0 + i)
            e = _limiter.PYTHON_METHODS["check"](b, "k", "auth", T0 + i)
            assert type(d) is type(e) is sluice.Decision
            assert d == e and hash(d) == hash(e) and repr(d) == repr(e)
            assert d._limiter is a and e._limiter is b
            assert type(d.allowed) is bool and d.status in sluice.STATUSES
            assert d.headers() == e.headers() and d.headers("ietf") == e.headers("ietf")
            assert sys.getrefcount(d) == 2  # this name and the call's argument: nothing else
        with pytest.raises(TypeError):
            d[0]
        with pytest.raises(TypeError):
            iter(d)
        with pytest.raises(TypeError):
            len(d)
        with pytest.raises(TypeError):
            d < e
        assert bool(d) is True


# ---- no leaks ----------------------------------------------------------------------------------


def _workload(l, n, t0):
    """Every kind of call, the common case and not, successes and errors."""
    key, bkey, cat = "leak-kéy", b"leak\0key", "auth"
    for i in range(n):
        t = t0 + i * 1_000
        l.check(key, cat, t)
        l.check(bkey, now_ms=t)
        l.peek(key, category=cat, now_ms=t)
        l.failure(bkey, cat, t)
        l.allow(key, now_ms=t)
        l.allow(bkey)
        l.check(bytearray(bkey), cat, t)  # the Python method, from the native one
        for bad in (lambda: l.check("", cat, t), lambda: l.failure(key, "global", t),
                    lambda: l.check(key, "nope", t), lambda: l.check(5), lambda: l.allow(key, t)):
            try:
                bad()
            except (sluice.SluiceError, TypeError):
                pass


def test_no_reference_leaks():
    with sluice.Limiter(POLICY) as l:
        key, bkey, cat = "leak-kéy", b"leak\0key", "auth"
        watched = [key, bkey, cat, l, l._address, None, True, False, sluice.Decision, "passed", "limited",
                   "locked"] + [_limiter.PYTHON_METHODS[op] for op in OPS]
        _workload(l, 200, T0)  # warm: caches filled, every code path taken once
        gc.collect()
        before = [sys.getrefcount(o) for o in watched]
        objects = len(gc.get_objects())
        _workload(l, 2_000, T0 + 10**9)
        gc.collect()
        after = [sys.getrefcount(o) for o in watched]
        assert after == before, [(repr(o)[:30], x, y) for o, x, y in zip(watched, before, after) if x != y]
        assert len(gc.get_objects()) - objects < 50


def test_no_memory_growth():
    with sluice.Limiter(POLICY) as l:
        _workload(l, 300, T0)
        gc.collect()
        tracemalloc.start()
        try:
            _workload(l, 300, T0 + 10**9)
            gc.collect()
            start, _ = tracemalloc.get_traced_memory()
            _workload(l, 3_000, T0 + 2 * 10**9)
            gc.collect()
            end, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # 3,000 rounds of 12 calls: a leak of one small object per call would be ~1 MB.
        assert end - start < 32_000, end - start
