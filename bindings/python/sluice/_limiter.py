"""The managed handle: ``Limiter`` owns one ``struct sluice *``; ``Decision`` and ``Stats``.

No ctypes import here: calls go through the plain-value wrappers of ``_ffi``, except the
common case of check/peek/failure/allow (``_decider_method``), which passes C values that
``_ffi`` makes ready (``decider_function``, ``allower_function``, ``KEY_SIZES``,
``DecisionBuffer``, ``C_NOW``) to save the wrappers' per-call work.
"""

import inspect
import os
import sys
import sysconfig
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

from . import _ffi
from ._errors import (
    ClosedError,
    InvalidArgumentError,
    InvalidKeyError,
    PolicyError,
    SluiceError,
    UnknownCategoryError,
    error,
)

GLOBAL = "global"

#: What a key may be: ``str`` (sent as UTF-8) or bytes-like.
Key = Union[str, bytes, bytearray, memoryview]
#: One request of ``Limiter.check_batch``: a ``(key, category)`` pair, or a bare key (global).
BatchRequest = Union[Key, Tuple[Key, str]]
#: A table file's path.
TablePath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: The values of ``Decision.as_dict()``.
FieldValue = Union[bool, str, int, None]

#: ``Decision.status`` strings, by the C status code.
STATUS_NAMES = {
    _ffi.SLUICE_STATUS_PASSED: "passed",
    _ffi.SLUICE_STATUS_LIMITED: "limited",
    _ffi.SLUICE_STATUS_LOCKED: "locked",
    _ffi.SLUICE_STATUS_FULL: "full",
    _ffi.SLUICE_STATUS_DRY_RUN_LIMITED: "dry-run-limited",
}
_STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}

#: ``Decision.headers`` styles.
HEADER_STYLES = {
    "x-ratelimit": _ffi.SLUICE_HEADERS_X_RATELIMIT,
    "ietf": _ffi.SLUICE_HEADERS_IETF,
}

# First buffer tried for sluice_headers; a longer block is fetched again with a buffer sized
# from the length the library returns.
_HEADERS_INITIAL_CAP = 256
MAX_KEY_LEN = _ffi.MAX_KEY_LEN


def _key_bytes(key):
    """A key as bytes: ``str`` is UTF-8 encoded, bytes-like objects are taken as they are."""
    if type(key) is bytes:
        return key
    if isinstance(key, str):
        try:
            return key.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidKeyError(
                _ffi.SLUICE_ERR_UTF8, "key {!r} cannot be encoded as UTF-8: {}".format(key, e)
            ) from None
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError("a key is str or bytes, not {}".format(type(key).__name__))


def _time(now_ms):
    """``now_ms`` for the C call: None is SLUICE_NOW; ints are range-checked to int64 here
    (ctypes would silently wrap them) and to the 42-bit time range by the library."""
    if now_ms is None:
        return _ffi.SLUICE_NOW
    if type(now_ms) is not int and (isinstance(now_ms, bool) or not isinstance(now_ms, int)):
        raise TypeError(
            "now_ms is None or an int (Unix milliseconds), not {}".format(type(now_ms).__name__)
        )
    if not _ffi.INT64_MIN <= now_ms <= _ffi.INT64_MAX:
        raise error(_ffi.SLUICE_ERR_TIME, context="now_ms={}".format(now_ms))
    return now_ms


_FIELDS = (
    "allowed",
    "status",
    "limit",
    "remaining",
    "reset",
    "reset_after",
    "retry_after",
    "window_ms",
    "rule",
)

#: ``status`` by the C status code, for every uint8 (codes the bindings do not know read as
#: "unknown-N").
_STATUS_BY_CODE = tuple(STATUS_NAMES.get(code) or "unknown-{}".format(code) for code in range(256))

# A Decision is a tuple underneath: its nine fields in _FIELDS order, converted (allowed a
# bool, status its name, rule None if negative), then the Limiter that made it (None for one
# made by the public constructor). One object, filled in one step, by either path: the ctypes
# path (_from_c) and the library's native methods (src/ffi/python.rs), which allocate it and
# fill the items directly. The fields read through C-level item getters; the tuple's own
# sequence behaviour (indexing, iteration, len, ordering, + and *) is switched off, so a
# Decision behaves as the record it is: immutable, compared and hashed by its nine fields.

try:  # the accessor of namedtuple's fields: reads the item without a Python-level call
    from _collections import _tuplegetter as _item  # type: ignore[import-not-found]
except ImportError:  # not CPython

    def _item(index, doc, _get=tuple.__getitem__):
        return property(lambda self: _get(self, index), doc=doc)


assert _ffi.DECISION_FIELDS == (
    "size", "allowed", "status", "limit", "remaining", "reset_after", "retry_after", "rule",
    "reset", "window_ms",
), "_from_c unpacks the C struct's fields in this order"

_tuple_new = tuple.__new__
_tuple_getitem = tuple.__getitem__


def _not_a_sequence(name):
    def refuse(self, *args):
        raise TypeError("a Decision is not a sequence (no {}): read its fields by name".format(name))

    return refuse


if TYPE_CHECKING:
    _Record = object
else:
    _Record = tuple


class Decision(_Record):
    """The answer to a request, for its deciding rule (immutable, compared by value).

    ``allowed`` (bool), ``status`` (``"passed"``, ``"limited"``, ``"locked"``, ``"full"`` or
    ``"dry-run-limited"``), ``limit``, ``remaining``, ``reset`` (Unix seconds), ``reset_after``
    and ``retry_after`` (seconds), ``window_ms``, and ``rule``: the deciding rule's index in
    policy order, or None when no rule applies. ``headers()`` formats its response headers.
    """

    __slots__ = ()

    if TYPE_CHECKING:  # what the item getters return

        @property
        def allowed(self) -> bool: ...
        @property
        def status(self) -> str: ...
        @property
        def limit(self) -> int: ...
        @property
        def remaining(self) -> int: ...
        @property
        def reset(self) -> int: ...
        @property
        def reset_after(self) -> int: ...
        @property
        def retry_after(self) -> int: ...
        @property
        def window_ms(self) -> int: ...
        @property
        def rule(self) -> Optional[int]: ...

    else:
        allowed = _item(0, "True if the request may go ahead, False if it must be refused (429).")
        status = _item(1, '"passed", "limited", "locked", "full" or "dry-run-limited".')
        limit = _item(2, "N of the deciding rule (F for a lockout); 0 when no rule applies.")
        remaining = _item(3, "Requests the deciding rule would still admit now, after this one.")
        reset = _item(4, "Unix seconds (rounded up) when `remaining` next grows.")
        reset_after = _item(5, "Seconds until `reset`, rounded up.")
        retry_after = _item(6, "Whole seconds until this request would be admitted; 0 if allowed.")
        window_ms = _item(7, "The deciding rule's window in milliseconds.")
        rule = _item(8, "Index of the deciding rule in policy order, or None.")
        _limiter = _item(9, "The Limiter that made this decision, or None.")

    def __new__(
        cls,
        allowed: bool,
        status: str,
        limit: int,
        remaining: int,
        reset: int,
        reset_after: int,
        retry_after: int,
        window_ms: int,
        rule: Optional[int],
        limiter: Optional["Limiter"] = None,
    ) -> "Decision":
        return _tuple_new(  # type: ignore[no-any-return]
            cls,
            (
                bool(allowed),
                status,
                limit,
                remaining,
                reset,
                reset_after,
                retry_after,
                window_ms,
                rule,
                limiter,
            ),
        )

    @classmethod
    def _from_c(cls, raw, limiter, _names=_STATUS_BY_CODE):
        """From a tuple in sluice_decision's field order (_ffi.DECISION_FIELDS)."""
        _size, allowed, status, limit, remaining, reset_after, retry_after, rule, reset, window_ms = raw
        return _tuple_new(
            cls,
            (
                allowed != 0,
                _names[status],
                limit,
                remaining,
                reset,
                reset_after,
                retry_after,
                window_ms,
                None if rule < 0 else rule,
                limiter,
            ),
        )

    def _values(self):
        """The fields as a tuple in _FIELDS order."""
        return _tuple_getitem(self, slice(0, 9))

    def _to_c(self):
        """A tuple in sluice_decision's field order."""
        status = _STATUS_CODES.get(self.status)
        if status is None:
            raise InvalidArgumentError(
                _ffi.SLUICE_ERR_ARGUMENT, "unknown decision status {!r}".format(self.status)
            )
        return (
            0,  # size: set by _ffi.headers
            1 if self.allowed else 0,
            status,
            self.limit,
            self.remaining,
            self.reset_after,
            self.retry_after,
            -1 if self.rule is None else self.rule,
            self.reset,
            self.window_ms,
        )

    def as_dict(self) -> Dict[str, FieldValue]:
        """The fields as a dict (without the limiter)."""
        return dict(zip(_FIELDS, self._values()))

    def headers(self, style: str = "x-ratelimit") -> Dict[str, str]:
        """The response headers of this decision, ``{name: value}`` in the order to send them.

        ``style``: ``"x-ratelimit"`` (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``) or
        ``"ietf"`` (``RateLimit-Policy``, ``RateLimit``); both add ``Retry-After`` when
        refused. Formatted by the library through the Limiter that made the decision (the
        IETF fields name the rule's category).
        """
        limiter = _tuple_getitem(self, 9)
        if limiter is None:
            raise SluiceError(
                _ffi.SLUICE_ERR_NULL, "this Decision was not made by a Limiter: no headers"
            )
        return limiter._headers(self, style)  # type: ignore[no-any-return]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Decision is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Decision is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[no-any-return]

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._values() != other._values()  # type: ignore[no-any-return]

    def __hash__(self) -> int:
        return hash(self._values())

    def __bool__(self) -> bool:
        return True  # a record, not an empty-or-not sequence

    def __repr__(self) -> str:
        return "Decision({})".format(
            ", ".join("{}={!r}".format(f, v) for f, v in zip(_FIELDS, self._values()))
        )

    def __reduce__(self) -> Tuple[Any, Tuple[FieldValue, ...]]:
        return (Decision, self._values())

    if not TYPE_CHECKING:
        __getitem__ = _not_a_sequence("indexing")
        __iter__ = _not_a_sequence("iteration")
        __len__ = _not_a_sequence("len()")
        __contains__ = _not_a_sequence("`in`")
        count = index = _not_a_sequence("count() or index()")

        def _no_operator(self, other):
            return NotImplemented

        __add__ = __radd__ = __mul__ = __rmul__ = _no_operator
        __lt__ = __le__ = __gt__ = __ge__ = _no_operator
        del _no_operator


class Migration(NamedTuple):
    """What ``sluice.migrate`` carried into the new table."""

    #: Keys carried into the new table, and of those the keys with an active lockout.
    keys: int
    locked_keys: int
    #: Keys left behind because nothing in their state mattered any more.
    expired: int
    #: Unlocked keys left behind for want of a free slot in the new table.
    dropped: int
    #: Active locks not carried because the new policy has no lockout for their category.
    locks_of_removed_lockouts: int
    from_capacity: int
    to_capacity: int
    #: Format version of the source table.
    from_format: int
    #: The new table replaced the source at the same path.
    in_place: bool


def migrate(
    from_path: TablePath, to_path: TablePath, policy: Union[str, bytes, None] = None
) -> Migration:
    """Build a table at ``to_path`` for ``policy`` (None: the source's own policy) from the
    table file at ``from_path``, carrying every key's state over: every active lockout with its
    end and level, the logs of unchanged rules, of changed rules what is still exact. The new
    table appears complete, and the source is then marked superseded (``Limiter.superseded``).
    ``to_path`` equal to ``from_path`` migrates in place. As ``sluice migrate FROM TO --policy
    FILE``; raises ``MigrationError``, ``PolicyError`` or a ``TableFileError`` with nothing
    created and the source unchanged."""
    if isinstance(policy, str):
        text: Optional[bytes] = policy.encode("utf-8")
    elif policy is None or isinstance(policy, (bytes, bytearray)):
        text = None if policy is None else bytes(policy)
    else:
        raise TypeError("policy is str, bytes or None, not {}".format(type(policy).__name__))
    if text is not None and b"\0" in text:
        raise PolicyError(_ffi.SLUICE_ERR_POLICY, "invalid policy: a NUL character")
    code, report, message = _ffi.migrate(os.fsencode(from_path), os.fsencode(to_path), text)
    if code != _ffi.SLUICE_OK or report is None:
        raise error(code, message)
    report["in_place"] = bool(report["in_place"])
    return Migration(**report)


class Stats(NamedTuple):
    """Table-wide counts (``Limiter.stats()``). ``rules`` has one dict per rule or lockout,
    in policy order: ``passed``, ``limited``, ``dry_run_limited``, ``locked``, ``lockouts``.
    ``locked_keys`` is judged at ``stats(now_ms)`` (None: the library's clock).
    ``installing``: slots being claimed for a new key right now; one left by a process killed
    in the middle of a claim stays counted until it is taken over (2 s later, by an install
    that needs its place), so a value that stays above zero on an idle table is the harmless
    trace of a killed process."""

    capacity: int
    live_keys: int
    locked_keys: int
    installing: int
    evictions: int
    reclaimed: int
    full: int
    bytes_per_key: int
    rules: List[Dict[str, int]]


def _mode(mode):
    """``mode`` for sluice_open_options: None is 0 (the library's default, 0600); the library
    checks the bits and says what is wrong."""
    if mode is None:
        return 0
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError("mode is None or an int such as 0o660, not {}".format(type(mode).__name__))
    if mode == 0:
        # 0 is the C API's "default"; as a Python mode it would mean "nobody may open it".
        raise InvalidArgumentError(
            _ffi.SLUICE_ERR_ARGUMENT,
            "mode=0 would let nobody open the file: pass None for the default 0o600, or the "
            "bits wanted (within 0o666)",
        )
    if not 0 < mode <= 0o7777:
        raise InvalidArgumentError(
            _ffi.SLUICE_ERR_ARGUMENT,
            "mode {!r} is not a file mode: pass the permission bits (within 0o666)".format(mode),
        )
    return mode


def _closed():
    return ClosedError(_ffi.SLUICE_ERR_NULL, "this Limiter is closed")


# The in-flight guard (see Limiter.close) is made correct by the GIL. A free-threaded build
# (3.13t, Py_GIL_DISABLED) is not supported by these bindings; should one import them anyway,
# every call takes the fallback below: the guard's steps under a lock, no fast path.
_FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

#: How long ``Limiter.close()`` waits for calls in flight before it leaves the freeing to a
#: later ``close()`` or to garbage collection. A call takes microseconds; one still running
#: after this is most likely one that the closing thread itself interrupted (a signal handler).
CLOSE_WAIT_S = 0.25


def _decider_method(what, doc):
    """``Limiter.check``, ``.peek``, ``.failure`` or ``.allow``: the common case (a str or bytes
    key of 1..MAX_KEY_LEN bytes, a category already resolved, ``now_ms`` None or an int from 0
    to INT64_MAX) inline, with C values made ahead; anything else goes to the general path
    (``Limiter._decide``, or ``Limiter._allow`` for allow), which has every check and error
    message. Both paths give the same results. ``allow`` calls ``sluice_allow``, which takes
    no decision buffer and answers 1 or 0; the others return a ``Decision``."""
    name = "sluice_" + what
    answers = what == "allow"  # a bool, not a Decision
    if answers:

        def general(self, key, category=GLOBAL, now_ms=None):
            return self._allow(key, category, now_ms)

    else:
        general_call = getattr(_ffi, what)

        def general(self, key, category=GLOBAL, now_ms=None):
            return self._decide(general_call, what, key, category, now_ms)

    if _FREE_THREADED:
        method = general

    else:
        # PyDLL: the GIL is held from reading the handle cell to the call's return.
        function = (
            _ffi.allower_function(hold_gil=True)
            if answers
            else _ffi.decider_function(name, hold_gil=True)
        )
        new_buffer = _ffi.DecisionBuffer
        size_word = _ffi.DECISION_SIZE_WORD
        unpack = _ffi.unpack_decision
        sizes = _ffi.KEY_SIZES
        key_size = _ffi.key_size
        int64 = _ffi.c_int64
        c_now = _ffi.C_NOW
        now_value = _ffi.SLUICE_NOW
        int64_max = _ffi.INT64_MAX
        err_null = _ffi.SLUICE_ERR_NULL
        tuple_new, names = _tuple_new, _STATUS_BY_CODE

        def method(self, key, category=GLOBAL, now_ms=None):
            if type(key) is str:
                try:
                    k = key.encode()
                except UnicodeEncodeError:
                    return general(self, key, category, now_ms)
            elif type(key) is bytes:
                k = key
            else:
                return general(self, key, category, now_ms)
            try:
                size = sizes[len(k)]
                cat = self._categories[category]
            except (IndexError, KeyError, TypeError):  # too long; not resolved; unhashable
                return general(self, key, category, now_ms)
            if size is None:
                size = key_size(len(k))
            if now_ms is None:
                t = c_now
            elif type(now_ms) is int and 0 <= now_ms <= int64_max:
                t = int64(now_ms)
            else:
                return general(self, key, category, now_ms)
            # The handle is read from its cell inside the call (see "the handle's lifetime").
            if answers:
                code = function(self._cell, cat, k, size, t)
                if code == 1 or code == 0:
                    return code == 1
            else:
                buf = new_buffer()
                buf[0] = size_word
                code = function(self._cell, cat, k, size, t, buf)
                if not code:
                    _, a, st, lim, rem, ra, rt, rule, reset, w = unpack(buf)
                    return tuple_new(
                        Decision,
                        (a != 0, names[st], lim, rem, reset, ra, rt, w,
                         None if rule < 0 else rule, self),
                    )
            if code == err_null and self._cell.value is None:
                raise _closed()
            raise self._call_error(
                code, what, k, category, now_value if now_ms is None else now_ms
            )

    method.__name__ = what
    method.__qualname__ = "Limiter." + what
    method.__doc__ = doc
    return method


class Limiter:
    """A rate limiter: one table and its policy, owning a ``struct sluice *``.

    ``Limiter(policy)`` opens a limiter from policy text (see the README of sluice) in this
    process's memory. ``Limiter(policy, path=...)`` keeps the table in the file ``path``
    (``str``, ``bytes`` or ``os.PathLike``), shared with every process that opens it, in any
    language: created for ``policy`` if missing, else checked against it (a different policy
    raises ``PolicyMismatchError`` naming the rules that differ, and the file is left as it
    is). ``Limiter(path=...)`` attaches with the policy stored in the file. ``.policy`` is the
    policy text in use.

    Keyword-only options (``sluice_open_with``):

    - ``mode``: the permission bits a new table file is created with (an int within
      ``0o666``, e.g. ``0o660`` to share it with a group); None (the default) is ``0o600``,
      the creating user only. The umask does not apply; an existing file keeps its mode.
      Needs a ``path``.
    - ``read_only=True``: attach to an existing table file for reading only (a user who may
      only read the file can still inspect it). ``peek``, ``stats``, ``headers`` and
      ``policy`` work; ``check``, ``allow``, ``failure``, ``success``, ``reset`` and
      ``check_batch`` raise ``ReadOnlyError`` and record nothing. A missing file is an
      error, never created. Needs a ``path``; excludes ``mode``.
    - ``huge_pages=True`` backs the table with transparent huge pages
      (``SLUICE_OPEN_HUGE_PAGES``): fewer TLB misses when many distinct keys are checked over
      a large table, but resident memory grows 2 MiB at a time instead of 4 KiB.

    Bad options raise ``InvalidArgumentError`` (or ``TypeError`` for a wrong type) before
    anything is opened or created.
    Safe to share between threads (calls run without the GIL). ``close()`` frees it (also on
    ``with`` exit and garbage collection); it waits for calls running in other threads.
    """

    # _address: the handle as an int, 0 once closed, in a slot of its own so that the native
    # methods read it at a fixed offset (see _handle_offset); every other attribute is in the
    # instance dict as before.
    __slots__ = ("_address", "__dict__", "__weakref__")

    def __init__(
        self,
        policy: Union[str, bytes, None] = None,
        path: Optional[TablePath] = None,
        *,
        mode: Optional[int] = None,
        read_only: bool = False,
        huge_pages: bool = False,
    ) -> None:
        self._handle = None  # the struct sluice *; None once freed
        self._raw = None  # the same as a c_void_p for the calls; None from the start of close()
        self._cell = _ffi.raw_handle(None)  # the fast path's handle: NULL when closed
        self._address = 0  # the native methods' handle: 0 when closed (see FAST_PATH)
        self._unfreed = []  # [the handle] until it is freed: list.pop() frees exactly once
        self._close_returned = False  # close() has returned (with the table freed or not)
        self._active = set()  # the calls in flight: one token each (see close)
        # close() against close(), reentrant: a signal handler may call close() on a thread
        # that is inside close() already. Never taken by the calls.
        self._close_lock = threading.RLock()
        self._guard_lock = threading.Lock()  # the free-threaded fallback only
        self._categories = {}
        if policy is None and path is None:
            raise TypeError("Limiter() needs a policy, a path, or both")
        if policy is None:
            text = None
        elif isinstance(policy, str):
            try:
                text = policy.encode("utf-8")
            except UnicodeEncodeError as e:
                raise PolicyError(
                    _ffi.SLUICE_ERR_UTF8, "invalid policy: not valid UTF-8 ({})".format(e)
                ) from None
        elif isinstance(policy, (bytes, bytearray)):
            text = bytes(policy)
        else:
            raise TypeError("policy is str or bytes, not {}".format(type(policy).__name__))
        if text is not None and b"\0" in text:
            # A C string would end there and the rest would be silently ignored.
            before = text[: text.index(b"\0")]
            line = before.count(b"\n") + 1
            column = len(before.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")) + 1
            raise PolicyError(
                _ffi.SLUICE_ERR_POLICY,
                "invalid policy: line {}, column {}: a NUL character".format(line, column),
            )
        c_path = None if path is None else os.fsencode(path)
        flags = (_ffi.SLUICE_OPEN_HUGE_PAGES if huge_pages else 0) | (
            _ffi.SLUICE_OPEN_READ_ONLY if read_only else 0
        )
        code, handle, message = _ffi.open_limiter(text, c_path, flags, _mode(mode))
        if code != _ffi.SLUICE_OK:
            raise error(code, message, cls=PolicyError if code == _ffi.SLUICE_ERR_UTF8 else None)
        self._handle = handle
        self._unfreed.append(handle)
        self._raw = _ffi.raw_handle(handle)  # for the per-request fast callers
        # The fast path's handle: the same pointer in a cell of its own, never replaced;
        # close() sets it to NULL before freeing (see "the handle's lifetime").
        self._cell = _ffi.raw_handle(handle)
        self._address = _ffi.address(handle)
        #: The policy text in use (for a table attached by path: the one stored in the file).
        self.policy: str = _ffi.policy(handle)
        #: The table file, or None for a table in private memory.
        self.path: Optional[str] = None if c_path is None else os.fsdecode(c_path)

    # ---- the handle's lifetime ---------------------------------------------------------------
    # The fast path (check, peek, failure, allow with a str/bytes key: _decider_method) takes
    # no token. It passes self._cell, a c_void_p that holds the handle and is never replaced,
    # to a function of _ffi.held_lib (PyDLL), and close() stores NULL in that cell before it
    # frees. ctypes reads the pointer out of the cell while converting the arguments, inside
    # the call, and from there to the call's return the thread holds the GIL: no Python code
    # runs in between (the other arguments are an exact int, bytes and ctypes values, whose
    # conversion calls no Python; the GIL is not released), so no other thread's close() and
    # no signal handler (they run between bytecodes) can run then. So a call either read
    # the handle before close() stored NULL, and returned before close() goes on, or reads
    # NULL, which the library refuses with SLUICE_ERR_NULL (ClosedError here). The table is
    # never freed under it. This is what the GIL guarantees; a free-threaded build has none,
    # and there every call takes the general path below instead.
    #
    # Every other call (the general paths, headers, stats, check_batch) goes through CDLL,
    # which releases the GIL during the foreign call, so close() in another thread could free
    # the table while such a call is using it. The guard, with no lock on the calls' path:
    #
    #   a call:   token into self._active (W1); read self._raw (R1): None -> ClosedError;
    #             else the foreign call with it; in `finally`, token out of self._active.
    #   close():  self._raw = None (W2); wait until self._active is empty (R2); free. (If it
    #             is not empty after CLOSE_WAIT_S, the free is left to a later close() or to
    #             __del__, which runs only when no call can hold the limiter.)
    #
    # Each side writes its flag before it reads the other's (Dekker). Under the GIL the
    # interpreter runs one bytecode at a time across all threads, so these four steps happen
    # in one order that every thread sees (each is one bytecode or one C call: set.add,
    # set.discard, an attribute load or store, bool() of the set; releasing and taking the
    # GIL around the foreign call is a full barrier). If R1 comes before W2, then so does W1,
    # so R2 sees the token and close() waits for the `finally`, which runs after the foreign
    # call returns. If R1 comes after W2, the call sees None and never touches the table.
    # It is the GIL that makes this right: on a free-threaded build (3.13t) the fallback
    # takes a lock around W1+R1 and W2 (_FREE_THREADED).
    #
    # The token is added as the first step inside `try`, and removed in `finally` with
    # set.discard, which does nothing if it is absent: an exception raised between any two
    # bytecodes (a KeyboardInterrupt) neither leaves a token behind (close() would wait
    # forever) nor removes another call's (close() could free under it). Each call's token is
    # its own object: the decision buffer, or a new object().

    def _enter(self, token):
        """Register a call in flight: returns the raw handle as read at R1, or raises
        ClosedError. Call it first thing inside ``try:``, with ``finally: self._exit(token)``.
        Until then that value and ``self._handle`` stay valid (close() waits, or leaves the
        freeing to later), but
        ``self._raw`` may turn None at any moment: never read it again."""
        if _FREE_THREADED:
            with self._guard_lock:
                self._active.add(token)
                raw = self._raw
        else:
            self._active.add(token)  # W1
            raw = self._raw  # R1
        if raw is None:
            raise _closed()
        return raw

    def _exit(self, token):
        if _FREE_THREADED:
            with self._guard_lock:
                self._active.discard(token)
        else:
            self._active.discard(token)

    def _calls_in_flight(self):
        if _FREE_THREADED:
            with self._guard_lock:
                return len(self._active)
        return len(self._active)

    def close(self) -> None:
        """Free the table. Idempotent; any later call raises ``ClosedError``. Waits for calls
        already running in other threads to return first, for at most a quarter of a second
        (``CLOSE_WAIT_S``). A call still running then keeps the table, which is freed by a
        later ``close()`` or when the limiter is garbage-collected, once no call can be using
        it. That call is most likely one that a signal handler calling ``close()`` interrupted
        on its own thread, which would otherwise be waited for forever."""
        lock = self.__dict__.get("_close_lock")
        if lock is None:  # __init__ failed before the lock existed
            return
        with lock:  # a second close() in another thread waits here until the first is done
            if not self._unfreed:
                return
            self._cell.value = None  # the fast path: every later call reads NULL
            self._address = 0  # the native methods: every later call reads 0
            if _FREE_THREADED:
                with self._guard_lock:
                    self._raw = None
            else:
                self._raw = None  # W2: from now on every call is refused
            # R2: wait for the calls that got in before W2 (close is rare and a call takes
            # microseconds: a short sleep-poll is enough).
            deadline = time.monotonic() + CLOSE_WAIT_S
            delay = 0.0
            while self._calls_in_flight():
                if time.monotonic() >= deadline:
                    break  # freed later (see the docstring): never under a running call
                time.sleep(delay)
                delay = min(delay * 2 or 1e-6, 1e-3)
            else:
                self._free()
            self._close_returned = True

    def _free(self):
        """Free the handle if nobody has. list.pop() is one step that a signal handler cannot
        split, so of a close(), a close() in a signal handler interrupting it, and __del__,
        exactly one frees."""
        try:
            handle = self._unfreed.pop()
        except IndexError:
            return
        self._handle = None
        _ffi.close(handle)

    @property
    def closed(self) -> bool:
        """True once ``close()`` has returned (calls are refused from its start)."""
        return self._close_returned or not self._unfreed

    def __enter__(self) -> "Limiter":
        if self._raw is None:
            raise _closed()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Only reached when nothing refers to the limiter, so no call is in flight.
        try:
            if getattr(self, "_unfreed", None):
                self._cell.value = None
                self._address = 0
                self._raw = None
                self._free()
        except Exception:  # interpreter shutdown: modules may be gone
            pass

    def __repr__(self) -> str:
        lines = [l for l in getattr(self, "policy", "").splitlines() if l.strip()]
        return "<sluice.Limiter {} policy={!r}{}>".format(
            "closed" if self.closed else "open",
            lines[0].strip() if lines else "",
            " ..." if len(lines) > 1 else "",
        )

    # ---- categories ----------------------------------------------------------------------------

    def category_id(self, category: str) -> int:
        """The library's id of a category name (``"global"`` is 0), resolved once and cached."""
        if self._raw is None:
            raise _closed()
        try:
            return self._categories[category]
        except (KeyError, TypeError):
            pass
        if not isinstance(category, str):
            raise TypeError("a category is a name (str), not {}".format(type(category).__name__))
        try:
            name = category.encode("utf-8")
        except UnicodeEncodeError:
            name = None
        token = object()
        try:
            self._enter(token)
            if name is None or b"\0" in name:  # cannot be a category (C would cut at the NUL)
                code = _ffi.SLUICE_ERR_UNKNOWN_CATEGORY
            else:
                code = _ffi.category(self._handle, name)
        finally:
            self._exit(token)
        if code < 0:
            if code == _ffi.SLUICE_ERR_UNKNOWN_CATEGORY:
                raise UnknownCategoryError(
                    code,
                    "unknown category {!r}: the policy has no rule or lockout of that "
                    "name".format(category),
                    category,
                )
            raise error(code, context="category {!r}".format(category))
        self._categories[category] = code
        return code

    # ---- per-request calls -------------------------------------------------------------------

    def _decide(self, call, what, key, category, now_ms):
        """The general path of check/peek/failure: any key, category and now_ms, every check
        and error message. (The common case is inlined in _decider_method.)"""
        k = _key_bytes(key)
        t = _time(now_ms)
        cat = self.category_id(category)
        token = object()
        try:
            handle = self._enter(token)  # the raw handle: valid (close waits) until _exit
            code, raw = call(handle, cat, k, t)
        finally:
            self._exit(token)
        if code != _ffi.SLUICE_OK:
            raise self._call_error(code, what, k, category, t)
        return Decision._from_c(raw, self)

    def _allow(self, key, category, now_ms):
        """The general path of allow (the common case is inlined by _decider_method)."""
        return self._key_code(_ffi.allow, "allow", key, category, now_ms) == 1

    def _key_code(self, call, what, key, category, now_ms):
        """A call of ``call`` (allow, success or reset: a code, no decision) with every check
        and error message; returns its non-negative code."""
        k = _key_bytes(key)
        t = _time(now_ms)
        cat = self.category_id(category)
        token = object()
        try:
            self._enter(token)
            code = call(self._handle, cat, k, t)
        finally:
            self._exit(token)
        if code < 0:
            raise self._call_error(code, what, k, category, t)
        return code

    @staticmethod
    def _call_error(code, what, key, category, t):
        if code in (_ffi.SLUICE_ERR_EMPTY_KEY, _ffi.SLUICE_ERR_KEY_TOO_LONG):
            context = "{} of a key of {} bytes".format(what, len(key))
        elif code == _ffi.SLUICE_ERR_TIME:
            context = "{} at now_ms={}".format(what, t)
        elif code == _ffi.SLUICE_ERR_NO_LOCKOUT:
            context = (
                "{} in category {!r}: add a line such as `{} lockout 5/15m for 15m` to the "
                "policy".format(what, category, category)
            )
        else:
            context = "{} of key {!r} in category {!r}".format(what, key[:64], category)
        return error(code, context=context)

    if TYPE_CHECKING:  # the methods made by _decider_method()

        def check(self, key: Key, category: str = GLOBAL, now_ms: Optional[int] = None) -> Decision: ...
        def allow(self, key: Key, category: str = GLOBAL, now_ms: Optional[int] = None) -> bool: ...
        def peek(self, key: Key, category: str = GLOBAL, now_ms: Optional[int] = None) -> Decision: ...
        def failure(self, key: Key, category: str = GLOBAL, now_ms: Optional[int] = None) -> Decision: ...

    else:
        check = _decider_method(
            "check",
            """May this request of ``key`` (str or bytes) in ``category`` go ahead? Records it if
            admitted. ``now_ms``: Unix milliseconds, or None for the library's clock.""",
        )
        allow = _decider_method(
            "allow",
            """May this request of ``key`` in ``category`` go ahead? ``check``'s answer as a bool,
            recorded and counted the same way, without the decision's report (``remaining``,
            ``reset``, ``retry_after``): for callers that send no rate-limit headers, and what
            ``limits``' ``hit`` answers. Raises as ``check`` does.""",
        )
        peek = _decider_method("peek", """The decision ``check`` would give, recording nothing.""")
        failure = _decider_method(
            "failure",
            """Record a failed attempt (a wrong password) in ``category``, which must have a
            lockout (else ``NoLockoutError``). Returns the key's state: status ``"locked"`` with
            ``retry_after`` = the rest of the lock, or ``"passed"`` with ``remaining`` = failures
            left before a lockout.""",
        )

    def success(self, key: Key, category: str = GLOBAL, now_ms: Optional[int] = None) -> None:
        """A successful attempt: clears the key's failure log in ``category`` (which must
        have a lockout); the lockout level is kept. Returns None."""
        self._key_code(_ffi.success, "success", key, category, now_ms)

    def reset(self, key: Key, category: str = GLOBAL, now_ms: Optional[int] = None) -> None:
        """Clear everything ``check(key, category)`` consults: the category's and the global
        rules' logs and the category's lockout, level included. Returns None."""
        self._key_code(_ffi.reset, "reset", key, category, now_ms)

    def check_batch(
        self, requests: Iterable[BatchRequest], now_ms: Optional[int] = None
    ) -> List[Decision]:
        """Check many requests at one instant: ``requests`` is a sequence of ``(key,
        category)`` pairs (a bare str/bytes key means the global category). Returns a list of
        decisions. If any request is invalid nothing is recorded and the error is raised."""
        t = _time(now_ms)
        items = []
        for i, request in enumerate(requests):
            if isinstance(request, (str, bytes, bytearray, memoryview)):
                key, category = request, GLOBAL
            else:
                try:
                    key, category = request
                except (TypeError, ValueError):
                    raise TypeError(
                        "request {} of the batch is not a (key, category) pair: {!r}".format(
                            i, request
                        )
                    ) from None
            items.append((_key_bytes(key), self.category_id(category)))
        token = object()
        try:
            self._enter(token)
            code, result = _ffi.check_batch(self._handle, items, t)
        finally:
            self._exit(token)
        if code != _ffi.SLUICE_OK:
            # The library says which request was bad (`result`), if one was.
            context = "check_batch of {} requests".format(len(items))
            if code == _ffi.SLUICE_ERR_TIME:
                context += " at now_ms={}".format(t)
            if result is not None:
                context += ": request {} has a key of {} bytes".format(result, len(items[result][0]))
            raise error(code, context=context)
        return [Decision._from_c(raw, self) for raw in result]

    # ---- headers and statistics --------------------------------------------------------------

    def _headers(self, decision, style):
        try:
            c_style = HEADER_STYLES[style]
        except (KeyError, TypeError):
            raise InvalidArgumentError(
                _ffi.SLUICE_ERR_ARGUMENT,
                "unknown header style {!r}: expected one of {}".format(
                    style, ", ".join(map(repr, HEADER_STYLES))
                ),
            ) from None
        raw = decision._to_c()
        token = object()
        try:
            self._enter(token)
            n, block = _ffi.headers(self._handle, raw, c_style, _HEADERS_INITIAL_CAP)
        finally:
            self._exit(token)
        if n < 0:
            raise error(n, context="headers of {!r}".format(decision))
        out = {}
        for line in block.decode("utf-8").split("\r\n"):
            if line:
                name, sep, value = line.partition(": ")
                if not sep:
                    raise SluiceError(
                        _ffi.SLUICE_ERR_ARGUMENT, "malformed header line {!r}".format(line)
                    )
                out[name] = value
        return out

    def superseded(self) -> Optional[str]:
        """The path of the table that replaced this one (``sluice migrate`` carried its keys
        there, or renamed a new table over this path), or None while this table is current or
        lives in private memory. A process that shares a table file with others (an nginx
        whose reload migrated the table, say) polls this now and then (on a timer, not per
        request) and, once it is not None, closes this limiter and opens that path."""
        token = object()
        try:
            self._enter(token)
            n, path = _ffi.superseded(self._handle)
        finally:
            self._exit(token)
        if n < 0:
            raise error(n, context="superseded")
        return None if path is None else os.fsdecode(path)

    def stats(self, now_ms: Optional[int] = None) -> Stats:
        """Table-wide and per-rule counts (a ``Stats`` named tuple); ``locked_keys`` is judged
        at ``now_ms`` (None: the library's clock)."""
        now = _time(now_ms)
        token = object()
        try:
            self._enter(token)
            code, table, rules = _ffi.stats(self._handle, now)
        finally:
            self._exit(token)
        if code != _ffi.SLUICE_OK:
            context = "stats" if table is None else "rule_stats of rule {}".format(table)
            raise error(code, context=context)
        return Stats(rules=rules, **table)


# ---- the native methods ------------------------------------------------------------------------
# On CPython (not free-threaded, not SLUICE_PYTHON_FAST=0) check, peek, failure and allow are
# replaced by method descriptors that the library builds (src/ffi/python.rs): CPython calls
# them directly, and they call the engine with no ctypes conversion. They handle the common
# case (a str or bytes key, a category the policy names, now_ms None or a non-negative int);
# for anything else they call the Python methods below (PYTHON_METHODS, the ctypes path) with
# the same arguments, and for an error code from the library _native_error, so both paths give
# the same results and the same exceptions.
#
# The handle's lifetime on the native path: a method reads ``limiter._address`` (the handle as
# an int) and calls the engine with the GIL held from that read to the call's return, running
# no Python code in between; close() sets ``_address`` to 0 before it frees the table, and is
# Python code, so it runs either before the read (the method reads 0 and the Python method
# raises ClosedError) or after the engine call has returned. As for the PyDLL path above, the
# GIL is what makes this right; a free-threaded build never gets the native methods.

_OPS = ("check", "peek", "failure", "allow")
#: The Python (ctypes) methods, whichever the class uses.
PYTHON_METHODS = {name: Limiter.__dict__[name] for name in _OPS}
_SIGNATURES = {name: "{}($self, key, category='global', now_ms=None)".format(name) for name in _OPS}


def _native_error(limiter, code, op, key, category, now_ms):
    """Raise what the ctypes path raises for ``code`` from the library (the native methods
    call this with the call's own arguments; category and now_ms None when not given)."""
    if code == _ffi.SLUICE_ERR_NULL and limiter._cell.value is None:
        raise _closed()
    k = key if type(key) is bytes else key.encode()
    raise limiter._call_error(
        code,
        _OPS[op],
        k,
        GLOBAL if category is None else category,
        _ffi.SLUICE_NOW if now_ms is None else now_ms,
    )


def _handle_offset():
    """The byte offset of the ``_address`` slot in a Limiter, checked on one (written through
    the slot, read back at the offset), or 0 if it cannot be told (the native methods then
    look the attribute up by name)."""
    probe = Limiter.__new__(Limiter)
    marker = object()
    offset = object.__basicsize__  # slots follow the base's part; Limiter's base is object
    probe._address = marker
    try:
        found = _ffi.pointer_at(id(probe) + offset)
    finally:
        del probe._address
    return offset if found == id(marker) else 0


def _native_objects(handle_offset=None):
    """The objects the library's native methods need, by the names it gives them."""
    objects = {
        "limiter_type": Limiter,
        "decision_type": Decision,
        "statuses": _STATUS_BY_CODE,
        "py_true": True,
        "py_false": False,
        "py_none": None,
        "str_type": str,
        "bytes_type": bytes,
        "int_type": int,
        "handle_attribute": sys.intern("_address"),
        "handle_offset": _handle_offset() if handle_offset is None else handle_offset,
        "kw_key": sys.intern("key"),
        "kw_category": sys.intern("category"),
        "kw_now_ms": sys.intern("now_ms"),
        "error": _native_error,
    }
    for name in _OPS:
        objects["python_" + name] = PYTHON_METHODS[name]
        doc = inspect.cleandoc(PYTHON_METHODS[name].__doc__ or "")
        objects["doc_" + name] = "{}\n--\n\n{}".format(_SIGNATURES[name], doc)
    return objects


def _install_native():
    """Put the library's native methods on Limiter: None, or why they are not used."""
    if os.environ.get("SLUICE_PYTHON_FAST", "") == "0":
        return "SLUICE_PYTHON_FAST=0"
    if _FREE_THREADED:
        return "a free-threaded build (no GIL to keep close() out of a call)"
    try:
        methods = _ffi.native_methods(_native_objects())
    except RuntimeError as e:
        return str(e)
    for name, method in zip(_OPS, methods):
        setattr(Limiter, name, method)
    return None


#: Why the native methods are not in use (None when they are).
NATIVE_UNAVAILABLE: Optional[str] = _install_native()
#: The path of check, peek, failure and allow: ``"native"`` (the library's CPython methods)
#: or ``"ctypes"``.
FAST_PATH: str = "ctypes" if NATIVE_UNAVAILABLE else "native"


def library_version() -> str:
    """The loaded library's version (``sluice_version()``)."""
    return _ffi.LIBRARY_VERSION
