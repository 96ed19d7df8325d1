"""``Limiter``'s keyword-only options (``mode``, ``read_only``, ``huge_pages``) as they reach
``sluice_open_with``, and ``Stats.installing``. How a table file is created with a mode, and
what a read-only attach may do to the file, are in ``test_file_options.py``.
"""

import pytest

import sluice
from support import T0

POLICY = "global 5/1m\nauth 5/1m\nauth lockout 3/1m for 1m"


@pytest.mark.parametrize("mode", ["0660", 6.6, True, [0o660]])
def test_a_mode_of_the_wrong_type_is_a_type_error(tmp_path, mode):
    with pytest.raises(TypeError, match="mode is None or an int"):
        sluice.Limiter(POLICY, path=tmp_path / "t.sluice", mode=mode)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, says",
    [
        (dict(mode=0), "mode=0 would let nobody open the file"),
        (dict(mode=-1), "is not a file mode"),
        (dict(mode=0o10000), "is not a file mode"),
        (dict(mode=0o700), "mode 0700 has bits outside 0666 (0100)"),
        (dict(mode=0o4660), "mode 04660 has bits outside 0666 (04000)"),
        (dict(read_only=True, mode=0o640), "mode 0640 with SLUICE_OPEN_READ_ONLY"),
    ],
)
def test_bad_options_with_a_path_create_nothing(tmp_path, kwargs, says):
    with pytest.raises(sluice.InvalidArgumentError) as e:
        sluice.Limiter(POLICY, path=tmp_path / "t.sluice", **kwargs)
    assert says in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, says",
    [
        (dict(mode=0o660), "a mode needs a path"),
        (dict(read_only=True), "SLUICE_OPEN_READ_ONLY needs a path"),
    ],
)
def test_file_options_without_a_path_are_refused(kwargs, says):
    with pytest.raises(sluice.InvalidArgumentError) as e:
        sluice.Limiter(POLICY, **kwargs)
    assert e.value.code == sluice.SLUICE_ERR_ARGUMENT
    assert says in str(e.value)


def test_huge_pages_and_a_mode_open_a_working_table(tmp_path):
    with sluice.Limiter(POLICY, huge_pages=True) as l:
        assert l.check("k", now_ms=T0).remaining == 4
    with sluice.Limiter(POLICY, path=tmp_path / "t.sluice", mode=0o640) as l:
        assert l.check("k", now_ms=T0).remaining == 4


def test_read_only_refuses_every_recording_call_and_records_nothing(tmp_path):
    path = tmp_path / "t.sluice"
    with sluice.Limiter(POLICY, path=path) as rw, sluice.Limiter(path=path, read_only=True) as ro:
        assert ro.policy == rw.policy
        rw.check("k", now_ms=T0)
        calls = [
            lambda: ro.check("k", now_ms=T0 + 1),
            lambda: ro.allow("k", now_ms=T0 + 1),
            lambda: ro.failure("k", "auth", now_ms=T0 + 1),
            lambda: ro.success("k", "auth", now_ms=T0 + 1),
            lambda: ro.reset("k", now_ms=T0 + 1),
            lambda: ro.check_batch([("k", "global"), ("j", "auth")], now_ms=T0 + 1),
            lambda: ro.check(b"k", "auth"),  # the fast path, the library's clock
        ]
        for call in calls:
            with pytest.raises(sluice.ReadOnlyError) as e:
                call()
            assert e.value.code == sluice.SLUICE_ERR_READ_ONLY
            assert "read-only" in str(e.value)
        # peek, stats and headers work, and see the read-write handle's one check only.
        d = ro.peek("k", now_ms=T0 + 1)
        assert (d.allowed, d.remaining) == (True, 3)
        assert d.headers()["X-RateLimit-Remaining"] == "3"
        st = ro.stats(now_ms=T0 + 1)
        assert st.live_keys == 1 and st.rules[0]["passed"] == 1 and st.rules[0]["limited"] == 0
        assert rw.check("k", now_ms=T0 + 2).remaining == 3  # the read-write handle still records


def test_stats_has_installing_after_locked_keys():
    with sluice.Limiter(POLICY) as l:
        l.check("k", now_ms=T0)
        st = l.stats(now_ms=T0)
    assert sluice.Stats._fields[:5] == ("capacity", "live_keys", "locked_keys", "installing", "evictions")
    assert st.installing == 0  # no install in flight, none abandoned
    assert st.live_keys == 1
