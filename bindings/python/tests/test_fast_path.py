"""The inline fast path of check/peek/failure against the declared C function, and Decision's
two forms (made by the library from the raw C struct, or by the public constructor).

The fast path passes ready-made C values to a function object without ``argtypes``: a shared
``c_size_t`` per key length (``_ffi.KEY_SIZES``) and a ``DecisionBuffer`` instead of a
``sluice_decision`` passed by reference. Here every key length is checked against the
reference: the function as declared in ``_ffi.FUNCTIONS`` (ctypes converts every argument),
writing a ``sluice_decision`` read field by field.
"""

import copy
import ctypes
import pickle

import pytest

import sluice
from sluice import _ffi, _limiter
from support import T0

POLICY = "global 5/1m\nauth 3/1m\nauth lockout 2/1m for 1m\ncapacity 131072"


def reference(limiter, function, key, category_id, now_ms):
    """The call as declared (argtypes), the struct read by name: (code, public-order tuple)."""
    out = _ffi.sluice_decision()
    out.size = ctypes.sizeof(out)
    code = getattr(_ffi.lib, function)(limiter._handle, category_id, key, len(key), now_ms, ctypes.byref(out))
    if code != _ffi.SLUICE_OK:
        return code, None
    assert out.size == ctypes.sizeof(out)  # the bytes the library wrote: all of it
    return code, (
        out.allowed != 0,
        sluice.STATUSES[out.status],
        out.limit,
        out.remaining,
        out.reset,
        out.reset_after,
        out.retry_after,
        out.window_ms,
        None if out.rule < 0 else out.rule,
    )


def fields(d):
    return (d.allowed, d.status, d.limit, d.remaining, d.reset, d.reset_after, d.retry_after,
            d.window_ms, d.rule)


def test_every_key_length_gives_the_decision_of_the_declared_call():
    big = bytes((i * 131 + 7) % 251 + 1 for i in range(_ffi.MAX_KEY_LEN))
    python_check = _limiter.PYTHON_METHODS["check"]  # the ctypes path, whichever is in use
    with sluice.Limiter(POLICY) as fast, sluice.Limiter(POLICY) as ref, sluice.Limiter(
        POLICY
    ) as via_ctypes:
        for n in range(1, _ffi.MAX_KEY_LEN + 1):
            key = big[:n]
            t = T0 + n
            # Some lengths twice: the second check sees the first recorded.
            for _ in range(2 if n % 97 == 1 else 1):
                code, want = reference(ref, "sluice_check", key, 0, t)
                assert code == _ffi.SLUICE_OK
                got = fast.check(key, now_ms=t)
                assert type(got) is sluice.Decision
                assert fields(got) == want, n
                other = python_check(via_ctypes, key, now_ms=t)
                assert type(other) is sluice.Decision and fields(other) == want, n
        assert fast.stats().rules[0] == ref.stats().rules[0] == via_ctypes.stats().rules[0]
    # Each cached size is the length it is used for.
    for n in (1, 2, 255, 256, 4096, _ffi.MAX_KEY_LEN):
        assert _ffi.KEY_SIZES[n].value == n
        assert _ffi.key_size(n) is _ffi.KEY_SIZES[n]
    assert _ffi.key_size(_ffi.MAX_KEY_LEN + 1).value == _ffi.MAX_KEY_LEN + 1


@pytest.mark.parametrize("what", ["check", "peek", "failure"])
def test_an_over_long_key_gets_key_too_long(what):
    with sluice.Limiter(POLICY) as l:
        for n in (_ffi.MAX_KEY_LEN + 1, 70_000):
            for key in (b"x" * n, "x" * n):
                with pytest.raises(sluice.InvalidKeyError) as e:
                    getattr(l, what)(key, "auth", T0)
                assert e.value.code == sluice.SLUICE_ERR_KEY_TOO_LONG
                assert "{} of a key of {} bytes".format(what, n) in str(e.value)


@pytest.mark.parametrize("what", ["check", "peek", "failure"])
def test_fast_path_and_declared_call_agree_on_every_call_and_status(what):
    """peek and failure too; str and bytes keys; the library clock; statuses other than
    "passed" (limited, locked)."""
    cat_name = "auth"
    with sluice.Limiter(POLICY) as fast, sluice.Limiter(POLICY) as ref:
        cat = fast.category_id(cat_name)
        assert ref.category_id(cat_name) == cat
        seen = set()
        for i in range(12):
            for key in ("ü-{}".format(i % 3), b"k\0%d" % (i % 2)):
                kb = key.encode() if isinstance(key, str) else key
                t = T0 + i * 7_000
                if what == "peek":  # something for peek to see: a check in both tables
                    assert reference(ref, "sluice_check", kb, cat, t)[0] == _ffi.SLUICE_OK
                    fast.check(key, cat_name, t)
                code, want = reference(ref, "sluice_" + what, kb, cat, t)
                assert code == _ffi.SLUICE_OK
                got = getattr(fast, what)(key, cat_name, t)
                assert fields(got) == want
                seen.add(got.status)
        assert seen == ({"passed", "locked"} if what == "failure" else {"passed", "limited"})
        # The library clock: the same call path with C_NOW.
        d = getattr(fast, what)("clock", cat_name)
        assert d.status in sluice.STATUSES and d.reset > T0 // 1000


@pytest.mark.parametrize("what", ["check", "peek", "failure"])
def test_errors_of_the_fast_path_are_those_of_the_general_path(what):
    """Over-long and empty keys, an out-of-range time: the same exception, code and message
    whether the fast path or the general one (_decide) met them."""
    with sluice.Limiter(POLICY) as l:
        general = getattr(_ffi, what)
        cases = [
            (b"x" * (_ffi.MAX_KEY_LEN + 1), "auth", T0),
            (b"x" * 70_000, "auth", None),
            ("x" * (_ffi.MAX_KEY_LEN + 1), "auth", T0),
            (b"", "auth", T0),
            ("", "auth", None),
            (b"k", "auth", 2**42),  # in int64 (fast path), outside the library's range
            (b"k", "auth", -1),  # the general path
            (b"k", "auth", 2**63),  # refused before the call
            (b"k", "nope", T0),
        ]
        if what != "failure":
            cases.append((b"k", "global", T0 + 1))  # fine: a decision
        for key, category, now_ms in cases:
            outcomes = []
            for call in (
                lambda: getattr(l, what)(key, category, now_ms),
                lambda: l._decide(general, what, key, category, now_ms),
            ):
                try:
                    outcomes.append(("ok", fields(call())))
                except sluice.SluiceError as e:
                    outcomes.append((type(e), e.code, str(e)))
            fast, slow = outcomes
            if fast[0] == "ok":
                assert slow[0] == "ok"
            else:
                assert fast == slow, (key[:8], category, now_ms)
        with pytest.raises(sluice.InvalidKeyError) as e:
            getattr(l, what)(b"x" * (_ffi.MAX_KEY_LEN + 1), "auth", T0)
        assert e.value.code == sluice.SLUICE_ERR_KEY_TOO_LONG
        assert "{} of a key of 65536 bytes".format(what) in str(e.value)
        if what == "check":
            with pytest.raises(sluice.NoLockoutError):
                l.failure(b"k", "global", T0)


def test_unusual_arguments_take_the_general_path():
    with sluice.Limiter("global 3/1m\nauth 2/1m") as l:
        assert l.check(bytearray(b"k"), now_ms=T0).remaining == 2
        assert l.check(memoryview(b"k"), now_ms=T0).remaining == 1

        class S(str):
            pass

        assert l.check(S("k"), S("global"), T0).remaining == 0
        with pytest.raises(TypeError):
            l.check(5, now_ms=T0)
        with pytest.raises(TypeError):
            l.check("k", ["global"], T0)
        with pytest.raises(TypeError):
            l.check("k", now_ms=True)
        with pytest.raises(TypeError):
            l.check("k", now_ms=1.5)
        with pytest.raises(sluice.InvalidKeyError) as e:
            l.check("\udc80", now_ms=T0)
        assert e.value.code == sluice.SLUICE_ERR_UTF8
        # On the ctypes path a category is resolved by the general path once, then cached
        # for the fast one (the native methods look it up in the library).
        assert "auth" not in l._categories
        assert _limiter.PYTHON_METHODS["check"](l, "k2", "auth", T0).remaining == 1
        assert l._categories["auth"] == l.category_id("auth")


def test_decision_buffer_holds_the_struct():
    assert ctypes.sizeof(_ffi.DecisionBuffer) >= ctypes.sizeof(_ffi.sluice_decision)
    assert ctypes.alignment(_ffi.DecisionBuffer) >= ctypes.alignment(_ffi.sluice_decision)
    assert _ffi.unpack_decision.__self__.size == ctypes.sizeof(_ffi.sluice_decision)
    a, b = _ffi.DecisionBuffer(), _ffi.DecisionBuffer()
    assert a is not b and len({a, b}) == 2  # tokens: hashable, each its own
    # A buffer whose first word is DECISION_SIZE_WORD is a decision with its size set.
    ready = _ffi.new_decision_buffer()
    assert type(ready) is _ffi.DecisionBuffer
    assert _ffi.sluice_decision.from_buffer(ready).size == ctypes.sizeof(_ffi.sluice_decision)
    assert list(ready)[1:] == [0] * (len(ready) - 1)


def test_a_decision_buffer_without_its_size_is_refused():
    """The fast path's buffer must carry the size: the library refuses one without it
    (SLUICE_ERR_SIZE) and records nothing."""
    with sluice.Limiter(POLICY) as l:
        check = _ffi.decider_function("sluice_check")
        key = b"k"
        bare = _ffi.DecisionBuffer()
        code = check(l._raw, 0, key, _ffi.key_size(1), ctypes.c_int64(T0), bare)
        assert code == _ffi.SLUICE_ERR_SIZE
        assert list(bare) == [0] * len(bare)
        assert l.peek(key, now_ms=T0).remaining == 4  # nothing recorded
        ready = _ffi.new_decision_buffer()
        assert check(l._raw, 0, key, _ffi.key_size(1), ctypes.c_int64(T0), ready) == 0
        assert _ffi.unpack_decision(ready)[1:5] == (1, 0, 5, 4)  # allowed, passed, 5, 4


# ---- Decision ---------------------------------------------------------------------------------

def library_decisions():
    """Decisions of every status the library gives, each made by a Limiter (both returned)."""
    l = sluice.Limiter("global 1/1m\nauth lockout 1/1m for 1m\ncapacity 1")
    m = sluice.Limiter("media 1/1m dry-run")
    out = [
        l.check("a", now_ms=T0),  # passed
        l.check("a", now_ms=T0 + 1),  # limited
        l.failure("a", "auth", T0 + 2),  # locked
        l.check("b", now_ms=T0 + 3),  # full: the only slot holds a lockout
        m.check("a", "media", T0),
        m.check("a", "media", T0 + 1),  # dry-run-limited
        m.check("a", now_ms=T0 + 2),  # no rule applies
    ]
    return (l, m), out


def test_library_decisions_equal_constructed_ones():
    limiters, ds = library_decisions()
    assert [d.status for d in ds] == [
        "passed", "limited", "locked", "full", "passed", "dry-run-limited", "passed"]
    assert ds[-1].rule is None and ds[0].rule == 0
    for d in ds:
        assert type(d) is sluice.Decision
        values = d.as_dict()
        assert list(values) == list(_limiter._FIELDS)
        made = sluice.Decision(**values)
        positional = sluice.Decision(*fields(d))
        with_limiter = sluice.Decision(**values, limiter=d._limiter)
        for other in (made, positional, with_limiter):
            assert other == d and d == other and not (other != d) and not (d != other)
            assert hash(other) == hash(d)
            assert repr(other) == repr(d)
            assert other.as_dict() == values
            assert fields(other) == fields(d)
            assert other._to_c() == d._to_c()
        assert type(d.allowed) is bool and type(d.status) is str
        # Pickling and copying go through the public constructor (without the limiter).
        for p in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(d, protocol=p))
            assert type(back) is sluice.Decision and back == d and hash(back) == hash(d)
            assert repr(back) == repr(d)
            with pytest.raises(sluice.SluiceError):
                back.headers()
        assert copy.copy(d) == d and copy.deepcopy(d) == d
        assert d.headers() == with_limiter.headers()
        assert d.headers("ietf") == with_limiter.headers("ietf")
        assert d in {made} and {d: 1}[made] == 1
    assert ds[0] != ds[1]
    assert ds[0] == ds[4] and len(set(ds)) == len(set(map(fields, ds))) == 6  # by value
    assert ds[0] != "passed" and (ds[0] == object()) is False
    for l in limiters:
        l.close()


def test_decisions_stay_immutable_in_both_forms():
    limiters, ds = library_decisions()
    for d in (ds[0], sluice.Decision(**ds[0].as_dict())):
        for name in list(_limiter._FIELDS) + ["_s", "extra", "headers"]:
            with pytest.raises(AttributeError) as e:
                setattr(d, name, 1)
            assert str(e.value) == "Decision is immutable"
            with pytest.raises(AttributeError) as e:
                delattr(d, name)
            assert str(e.value) == "Decision is immutable"
        assert not hasattr(d, "__dict__")
        assert d.as_dict() == ds[0].as_dict()
    for l in limiters:
        l.close()


def test_unusual_values_read_back_as_given_or_as_before():
    # The constructor keeps what it is given (allowed made a bool), as it always did.
    d = sluice.Decision(2, 3, "x", None, 1.5, -1, [], 0, -1)
    assert fields(d) == (True, 3, "x", None, 1.5, -1, [], 0, -1)
    assert repr(d) == ("Decision(allowed=True, status=3, limit='x', remaining=None, reset=1.5, "
                       "reset_after=-1, retry_after=[], window_ms=0, rule=-1)")
    with pytest.raises(TypeError):
        hash(d)  # a list inside, as before
    # From the C struct: allowed is "not zero", an unknown status is named by its code, a
    # negative rule is None.
    raw = (48, 2, 9, 1, 0, 5, 5, -1, 1767225605, 1000)
    c = sluice.Decision._from_c(raw, None)
    assert fields(c) == (True, "unknown-9", 1, 0, 1767225605, 5, 5, 1000, None)
    assert c == sluice.Decision(True, "unknown-9", 1, 0, 1767225605, 5, 5, 1000, None)
    with pytest.raises(sluice.InvalidArgumentError):
        c._to_c()
    ok = sluice.Decision._from_c((48, 1, 4, 3, 0, 60, 0, 2, 1767225660, 60_000), None)
    assert ok._to_c() == (0, 1, 4, 3, 0, 60, 0, 2, 1767225660, 60_000)  # size: set by headers
    assert ok == pickle.loads(pickle.dumps(ok))


def test_allow_fast_path_agrees_with_the_declared_call_and_with_check():
    """``allow`` on its fast path, the general path (``_allow``) and ``sluice_allow`` called as
    declared give the same answers over every key length class and both clocks, and the
    answer is the one ``check`` gives on a twin table."""
    with sluice.Limiter(POLICY) as fast, sluice.Limiter(POLICY) as general, sluice.Limiter(
        POLICY
    ) as declared, sluice.Limiter(POLICY) as checked:
        auth = fast.category_id("auth")
        for n in (1, 7, 8, 255, 4096, _ffi.MAX_KEY_LEN):
            key = bytes((i * 31 + n) % 256 for i in range(n))
            seen = set()
            for i in range(7):
                t = T0 + 10 * n + i
                got = fast.allow(key, "auth", t)
                assert got is general._allow(key, "auth", t)
                code = _ffi.lib.sluice_allow(declared._handle, auth, key, len(key), t)
                assert code in (0, 1) and got is (code == 1)
                assert got is checked.check(key, "auth", t).allowed
                seen.add(got)
            assert seen == {True, False}, n  # 3 per minute: admitted, then refused
        assert fast.allow("clock") is True  # the library clock (C_NOW)
        for limiter in (fast, general, declared, checked):
            assert limiter.stats().rules[1]["passed"] == 18
            assert limiter.stats().rules[1]["limited"] == 24


def test_allow_errors_are_those_of_check():
    with sluice.Limiter(POLICY) as l:
        cases = [
            (b"x" * (_ffi.MAX_KEY_LEN + 1), "auth", T0, sluice.InvalidKeyError),
            ("", "auth", None, sluice.InvalidKeyError),
            (b"k", "auth", -1, sluice.TimeRangeError),
            (b"k", "auth", 2**42, sluice.TimeRangeError),
            (b"k", "nope", T0, sluice.UnknownCategoryError),
            (5, "global", T0, TypeError),
        ]
        for key, category, now_ms, exc in cases:
            with pytest.raises(exc) as e:
                l.allow(key, category, now_ms)
            if isinstance(e.value, sluice.SluiceError) and category != "nope":
                assert "allow " in str(e.value)
        assert l.peek(b"k", "auth", T0).remaining == 2  # nothing was recorded


def test_the_fast_path_holds_the_gil_and_reads_the_handle_from_a_cell_close_empties():
    """check/peek/failure/allow on the fast path call through PyDLL (the GIL held from reading
    the handle cell to the return: what makes the path safe against close() without a token)
    and register no call in flight; close() stores NULL in the cell, which the library
    refuses, so a later call raises ClosedError without touching the freed table."""
    assert type(_ffi.held_lib) is ctypes.PyDLL
    assert _ffi.held_lib._func_flags_ & ctypes._FUNCFLAG_PYTHONAPI
    l = sluice.Limiter("global 3/1m\nauth lockout 2/1m for 1m")
    cell = l._cell
    assert cell.value == l._raw.value and cell.value
    l.category_id("global"), l.category_id("auth")  # resolved: the calls below are fast
    seen = []
    real_add = l._active.add
    l._active = type("Spy", (set,), {"add": lambda self, t: (seen.append(t), real_add(t))})()
    assert l.check("k", now_ms=T0).remaining == 2 and l.allow(b"k", now_ms=T0)
    assert l.peek("k", now_ms=T0).remaining == 0 and l.failure("k", "auth", now_ms=T0).remaining == 1
    assert seen == []  # no token on the fast path
    l.close()
    assert l._cell is cell and cell.value is None
    for call in (l.check, l.peek, l.allow):
        with pytest.raises(sluice.ClosedError):
            call("k")
    with pytest.raises(sluice.ClosedError):
        l.failure("k", "auth")
