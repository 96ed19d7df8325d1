"""The C values made ahead for check/peek/failure against the declared C function.

The per-request callers of ``_ffi`` pass ready-made C values to a function object without
``argtypes``: a shared ``c_size_t`` per key length (``_ffi.KEY_SIZES``) and a
``DecisionBuffer`` instead of a ``sluice_decision`` passed by reference. Here every key length
is checked against the reference: the function as declared in ``_ffi.FUNCTIONS`` (ctypes
converts every argument), writing a ``sluice_decision`` read field by field.
"""

import ctypes

import pytest

import sluice
from sluice import _ffi
from support import T0

POLICY = "global 5/1m\nauth 3/1m\nauth lockout 2/1m for 1m\ncapacity 131072"


def reference(limiter, function, key, category_id, now_ms):
    """The call as declared (argtypes), the struct read by name: (code, public-order tuple)."""
    out = _ffi.sluice_decision()
    code = getattr(_ffi.lib, function)(limiter._handle, category_id, key, len(key), now_ms, ctypes.byref(out))
    if code != _ffi.SLUICE_OK:
        return code, None
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
    with sluice.Limiter(POLICY) as fast, sluice.Limiter(POLICY) as ref:
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
        assert fast.stats().rules[0] == ref.stats().rules[0]
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


def test_decision_buffer_holds_the_struct():
    assert ctypes.sizeof(_ffi.DecisionBuffer) >= ctypes.sizeof(_ffi.sluice_decision)
    assert ctypes.alignment(_ffi.DecisionBuffer) >= ctypes.alignment(_ffi.sluice_decision)
    assert _ffi.unpack_decision.__self__.size == ctypes.sizeof(_ffi.sluice_decision)
    a, b = _ffi.DecisionBuffer(), _ffi.DecisionBuffer()
    assert a is not b and len({a, b}) == 2  # tokens: hashable, each its own
