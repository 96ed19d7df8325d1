"""A storage for the `limits` package: ``sluice://`` for its moving-window strategy.

Importing this module registers the scheme with `limits` (which must be installed)::

    import limits
    import sluice.limits_storage  # registers sluice://

    storage = limits.storage.storage_from_string("sluice://")           # this process's memory
    storage = limits.storage.storage_from_string("sluice:///dev/shm/rl")  # files shared by workers
    limiter = limits.strategies.MovingWindowRateLimiter(storage)
    limiter.hit(limits.parse("300/minute"), "198.51.100.7")

Every distinct limit (an amount per a window, as `limits` passes them) gets its own sluice
table with the one rule ``global AMOUNT/WINDOWs``, made on first use: in memory, or with a
directory path, in the file ``AMOUNT-per-WINDOWs.sluice`` there (created with ``mode``,
shared by every process that opens the same directory). Decisions are sluice's exact sliding
window. Options, as keywords (``storage_from_string("sluice:///dev/shm/rl", capacity=100000,
mode=0o660)``) or in the URI's query (``sluice:///dev/shm/rl?capacity=100000&mode=660``, mode
in octal): ``capacity`` (keys per table, default sluice's), ``mode`` (file permission bits).

Only the moving window is supported: the fixed-window and sliding-window-counter strategies
need counters that sluice does not keep, and their calls (``incr``, ``get``, ``get_expiry``)
raise ``NotImplementedError``. A hit of ``cost`` > 1 is checked first and then recorded one
entry at a time, so two processes racing on one key may together pass the limit by less than
``cost``; a hit of cost 1 is exact.
"""

import os
import threading
import time
import urllib.parse
from typing import Dict, Optional, Tuple, Type, Union

try:
    from limits.storage import MovingWindowSupport, Storage
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sluice.limits_storage needs the `limits` package: pip install limits"
    ) from e

from ._errors import SluiceError
from ._limiter import Decision, Limiter

__all__ = ["SluiceStorage"]


def _whole(value: Union[float, str, bool], name: str, base: int) -> int:
    """An option's integer value: an int as given, or a string in ``base`` (mode: octal,
    ``660`` or ``0o660``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if base == 8 and text.startswith("0o"):
            text = text[2:]
        try:
            return int(text, base)
        except ValueError:
            pass
    raise ValueError(
        "sluice storage: {} must be {}, not {!r}".format(
            name, "octal permission bits such as 660" if base == 8 else "a whole number", value
        )
    )


def _entries(peek: Decision, limit: int) -> int:
    """The entries in the window of the one rule, from a peek: a refused peek means all
    ``limit``; an admitted one says what would remain after one more."""
    return limit - 1 - peek.remaining if peek.allowed else limit


class SluiceStorage(Storage, MovingWindowSupport):
    """``sluice://`` (memory) or ``sluice:///a/directory`` (shared table files)."""

    STORAGE_SCHEME = ["sluice"]

    def __init__(
        self,
        uri: str = "sluice://",
        wrap_exceptions: bool = False,
        **options: Union[float, str, bool],
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        scheme, sep, rest = uri.partition("://")
        if scheme != "sluice" or not sep:
            raise ValueError("a sluice storage URI is sluice:// or sluice:///directory, not {!r}".format(uri))
        path, _, query = rest.partition("?")
        if path and not path.startswith("/"):
            raise ValueError(
                "sluice storage URI {!r}: the path is an absolute directory after sluice://, "
                "as in sluice:///dev/shm/rl (a sluice storage has no host)".format(uri)
            )
        self.directory: Optional[str] = urllib.parse.unquote(path) if path else None
        if self.directory is not None and not os.path.isdir(self.directory):
            raise ValueError(
                "sluice storage: {!r} is not a directory (the tables are files in it)".format(self.directory)
            )
        # Options come as keywords (storage_from_string(uri, capacity=...): flask-limiter's
        # RATELIMIT_STORAGE_OPTIONS) or in the URI's query (?capacity=100000&mode=660).
        given: Dict[str, Union[float, str, bool]] = {}
        try:
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise ValueError("sluice storage URI {!r}: the query is not name=value pairs".format(uri)) from None
        for name, value in pairs:
            if name in given:
                raise ValueError("sluice storage URI {!r}: {} is given twice".format(uri, name))
            given[name] = value
        for name, value in options.items():
            if name in given:
                raise ValueError(
                    "sluice storage: {} is given both in the URI and as an option".format(name)
                )
            given[name] = value
        capacity = given.pop("capacity", None)
        mode = given.pop("mode", None)
        if given:
            raise ValueError(
                "sluice storage: unknown options {} (known: capacity, mode)".format(", ".join(sorted(given)))
            )
        self.capacity: Optional[int] = None if capacity is None else _whole(capacity, "capacity", 10)
        self.mode: Optional[int] = None if mode is None else _whole(mode, "mode", 8)
        if self.capacity is not None and self.capacity < 1:
            raise ValueError("sluice storage: capacity must be at least 1 key, not {}".format(self.capacity))
        if self.mode is not None and self.directory is None:
            raise ValueError("sluice storage: mode is for table files: give a directory, sluice:///DIR")
        self._limiters: Dict[Tuple[int, int], Limiter] = {}
        self._lock = threading.Lock()

    @property
    def base_exceptions(self) -> Union[Type[Exception], Tuple[Type[Exception], ...]]:
        return SluiceError

    def _limiter(self, limit: int, expiry: int) -> Limiter:
        limiter = self._limiters.get((limit, expiry))
        if limiter is not None:
            return limiter
        if limit < 1 or expiry < 1:
            raise ValueError("sluice storage: a limit of {} per {} s cannot be a rule".format(limit, expiry))
        with self._lock:
            limiter = self._limiters.get((limit, expiry))
            if limiter is None:
                policy = "global {}/{}s\n".format(limit, expiry)
                if self.capacity is not None:
                    policy += "capacity {}\n".format(self.capacity)
                path = None
                if self.directory is not None:
                    path = os.path.join(self.directory, "{}-per-{}s.sluice".format(limit, expiry))
                limiter = Limiter(policy, path=path, mode=self.mode if path else None)
                self._limiters[(limit, expiry)] = limiter
        return limiter

    # ---- the moving window -----------------------------------------------------------------

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        limiter = self._limiter(limit, expiry)
        if amount == 1:
            return limiter.allow(key)
        if amount < 1:
            return True
        peek = limiter.peek(key)
        if not peek.allowed or peek.remaining + 1 < amount:
            return False
        for _ in range(amount):
            if not limiter.allow(key):
                return False
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> Tuple[float, int]:
        """(the time of the oldest entry in the window, the entries in the window), as
        `limits`' own storages answer, to the millisecond, from peeks (which record nothing).

        A decision's ``reset`` is the second (rounded up) at which the oldest entry leaves
        the window; the millisecond is the first instant of that second at which a peek
        counts one entry fewer, found by bisection (about ten peeks)."""
        limiter = self._limiter(limit, expiry)
        now_ms = time.time_ns() // 1_000_000
        first = limiter.peek(key, now_ms=now_ms)
        count = _entries(first, limit)
        if count == 0:
            return now_ms / 1000, 0
        # The oldest entry leaves at o + W, with (reset - 1) s < o + W <= reset s and
        # o + W > now: the count is `count` at `lo` and lower at `hi`.
        lo = max(now_ms, (first.reset - 1) * 1000)
        hi = first.reset * 1000
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _entries(limiter.peek(key, now_ms=mid), limit) < count:
                hi = mid
            else:
                lo = mid
        return (hi - expiry * 1000) / 1000, count

    # ---- the rest of Storage -----------------------------------------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("the sluice storage supports the moving window strategy only")

    def get(self, key: str) -> int:
        raise NotImplementedError("the sluice storage supports the moving window strategy only")

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError("the sluice storage supports the moving window strategy only")

    def check(self) -> bool:
        return True

    def reset(self) -> Optional[int]:
        """Forget every table of this storage (memory tables are freed; files stay, and are
        cleared key by key with ``clear``)."""
        with self._lock:
            limiters, self._limiters = self._limiters, {}
        for limiter in limiters.values():
            limiter.close()
        return len(limiters)

    def clear(self, key: str) -> None:
        for limiter in list(self._limiters.values()):
            limiter.reset(key)

    def __repr__(self) -> str:
        return "<SluiceStorage {}>".format(self.directory or "memory")
