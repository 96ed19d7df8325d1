"""sluice.limits_storage: `limits`' moving window on sluice tables (``sluice://``), answering
as `limits`' own memory storage does, shared between storages of one directory.

Skipped where `limits` is not installed, unless ``SLUICE_TEST_LIMITS`` is set (run_tests.sh
installs it into the venv it tests the wheel in, and sets it)."""

import os
import random
import time

import pytest

try:
    import limits
    from limits.storage import MemoryStorage, storage_from_string
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    HAVE_LIMITS = True
except ImportError:
    HAVE_LIMITS = False

pytestmark = pytest.mark.skipif(
    not HAVE_LIMITS and not os.environ.get("SLUICE_TEST_LIMITS"),
    reason="limits is not installed (run_tests.sh installs it)",
)


@pytest.fixture
def storage():
    assert HAVE_LIMITS, "SLUICE_TEST_LIMITS is set but limits is not installed"
    import sluice.limits_storage  # noqa: F401  (registers sluice://)

    s = storage_from_string("sluice://")
    yield s
    s.reset()


def test_the_scheme_is_registered_and_hits_match_limits_memory_storage(storage):
    ours = MovingWindowRateLimiter(storage)
    theirs = MovingWindowRateLimiter(MemoryStorage())
    items = [limits.parse("3/minute"), limits.parse("5/hour"), limits.parse("7/day")]
    rng = random.Random(7)
    start = time.time()
    for _ in range(200):
        item = rng.choice(items)
        key = rng.choice(["a", "b", "c"])
        cost = rng.choice([1, 1, 1, 2])
        assert ours.hit(item, key, cost=cost) == theirs.hit(item, key, cost=cost), (item, key, cost)
        assert ours.test(item, key) == theirs.test(item, key)
        assert ours.get_window_stats(item, key).remaining == theirs.get_window_stats(item, key).remaining
    # No entry left a window during the loop (the two storages read the clock microseconds
    # apart, which matters only at a window's edge).
    assert time.time() - start < 60


def test_window_stats_and_clear(storage):
    ours = MovingWindowRateLimiter(storage)
    item = limits.parse("2/minute")
    now = time.time()
    assert ours.get_window_stats(item, "k").remaining == 2
    assert ours.hit(item, "k") and ours.hit(item, "k") and not ours.hit(item, "k")
    stats = ours.get_window_stats(item, "k")
    assert stats.remaining == 0
    assert now + 59 <= stats.reset_time <= now + 61  # the oldest entry + the minute
    assert not ours.test(item, "k")
    ours.clear(item, "k")
    assert ours.hit(item, "k")
    assert not ours.hit(item, "x", cost=3)  # more than the limit: refused, nothing recorded
    assert ours.get_window_stats(item, "x").remaining == 2


def test_a_directory_is_shared_by_storages_like_workers(tmp_path):
    assert HAVE_LIMITS
    import sluice.limits_storage  # noqa: F401

    uri = "sluice://" + str(tmp_path)
    one = MovingWindowRateLimiter(storage_from_string(uri))
    two = MovingWindowRateLimiter(storage_from_string(uri, mode=0o660))
    item = limits.parse("3/minute")
    assert one.hit(item, "k") and two.hit(item, "k") and one.hit(item, "k")
    assert not two.hit(item, "k")
    assert (tmp_path / "3-per-60s.sluice").is_file()


def test_what_is_not_supported_says_so(storage):
    with pytest.raises(NotImplementedError, match="moving window"):
        FixedWindowRateLimiter(storage).hit(limits.parse("1/minute"), "k")
    with pytest.raises(ValueError, match="not a directory"):
        storage_from_string("sluice:///no/such/dir")
    with pytest.raises(ValueError, match="unknown options"):
        storage_from_string("sluice://", colour="blue")
    assert storage.check()


def test_the_window_starts_at_the_oldest_entry_to_the_millisecond(storage):
    ours = MovingWindowRateLimiter(storage)
    item = limits.parse("3/minute")
    before = time.time()
    assert ours.hit(item, "ms")
    after = time.time()
    time.sleep(0.3)
    assert ours.hit(item, "ms")
    # `reset` is the oldest entry + 60 s, not a whole second (the decision's rounded reset).
    for _ in range(2):
        reset = ours.get_window_stats(item, "ms").reset_time
        assert before + 60 - 0.002 <= reset <= after + 60 + 0.002, (before, reset, after)
    start, count = storage.get_moving_window(item.key_for("ms"), 3, 60)
    assert count == 2 and before - 0.002 <= start <= after + 0.002
    assert ours.hit(item, "ms") and not ours.hit(item, "ms")  # full: the same oldest entry
    assert before + 60 - 0.002 <= ours.get_window_stats(item, "ms").reset_time <= after + 60.002


def test_options_in_the_uri_or_as_keywords_and_bad_ones_said_clearly(tmp_path):
    assert HAVE_LIMITS
    import sluice.limits_storage  # noqa: F401

    s = storage_from_string("sluice://{}?capacity=4096&mode=660".format(tmp_path))
    assert (s.directory, s.capacity, s.mode) == (str(tmp_path), 4096, 0o660)
    assert MovingWindowRateLimiter(s).hit(limits.parse("1/minute"), "k")
    assert (tmp_path / "1-per-60s.sluice").stat().st_mode & 0o777 == 0o660
    s = storage_from_string("sluice://" + str(tmp_path), capacity="2048", mode="0o640")
    assert (s.capacity, s.mode) == (2048, 0o640)
    for uri, options, message in [
        ("sluice://host/dir", {}, "absolute directory"),
        ("sluice://?capacity=lots", {}, "capacity must be a whole number, not 'lots'"),
        ("sluice://{}?mode=rw".format(tmp_path), {}, "mode must be octal"),
        ("sluice://?colour=blue", {}, r"unknown options colour \(known: capacity, mode\)"),
        ("sluice://?capacity=1&capacity=2", {}, "capacity is given twice"),
        ("sluice://?capacity=1", {"capacity": 2}, "both in the URI and as an option"),
        ("sluice://", {"mode": 0o660}, "mode is for table files"),
        ("sluice://?capacity", {}, "the query is not name=value pairs"),
        ("sluice://?capacity=0", {}, "capacity must be at least 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            storage_from_string(uri, **options)
