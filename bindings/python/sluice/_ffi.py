"""The C ABI of libsluice (``include/sluice.h``) through ctypes.

This is the only module that touches ctypes. It finds and loads the library, mirrors the
header's structs field by field, declares ``argtypes``/``restype`` for every function of the
header, defines the header's constants, and wraps each call in a small function that takes and
returns plain Python values (the rest of the package uses those, and never imports ctypes; the
one exception is the common case of check/peek/failure, which passes C values made ready here:
``decider_function``, ``KEY_SIZES``, ``DecisionBuffer``, ``C_NOW``).
``tests/test_header_drift.py`` parses the header and fails if anything here drifts from it.

Type mapping (C -> ctypes), the one the drift test checks:

=========================  =============================================================
``int``                    ``c_int``
``int32_t`` / ``int64_t``  ``c_int32`` / ``c_int64``
``uint8_t`` .. ``uint64``  ``c_uint8`` .. ``c_uint64``
``size_t``                 ``c_size_t``
``const char *``           ``c_char_p`` (NUL-terminated input, or a static string returned)
``char *``                 ``POINTER(c_char)`` (a writable buffer: ``create_string_buffer``)
``const void *``           ``c_char_p``: a key's bytes, passed as a Python ``bytes`` object
                           without copying (its length travels separately, so embedded NULs
                           are fine)
``[const] struct X *``     ``POINTER(X)``; ``struct X **`` is ``POINTER(POINTER(X))``
``void`` (return)          ``None``
=========================  =============================================================

The library is loaded with ``ctypes.CDLL``: those foreign calls release the GIL. The four
per-request calls of the fast path (check, peek, failure, allow: short, never blocking, no
lock) go through a second load of the same library with ``ctypes.PyDLL`` (``held_lib``),
which holds the GIL through the call: cheaper, and what makes the Limiter's lock-free handle
guard on that path correct (see ``Limiter`` in ``_limiter.py``).

Where the library is looked for, in order (the first that exists wins):

1. ``libsluice.so`` (``.dylib`` / ``sluice.dll``) inside this package's directory: the copy a
   wheel built by ``build_wheel.sh`` carries, made for exactly this version of the bindings.
2. ``$SLUICE_LIBRARY``: a path to the shared library. If it is set (and no library is bundled),
   it must exist.
3. ``target/release/libsluice.so`` in the package's directory or any directory above it
   (a source checkout, an editable install).
4. The same, walking up from the source directory recorded when the package was built
   (``_build_info.py``, written by ``setup.py``; for ``pip install ./bindings/python``).
5. The same, walking up from the current working directory.
"""

import ctypes
import os
import struct
import sys
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
)
from pathlib import Path
from typing import Any, Tuple

# ---- constants (#define in include/sluice.h) ------------------------------------------------

SLUICE_VERSION = "0.2.0"
SLUICE_VERSION_MAJOR = 0
SLUICE_VERSION_MINOR = 2
SLUICE_VERSION_PATCH = 0

SLUICE_OK = 0
SLUICE_ERR_NULL = -1
SLUICE_ERR_UTF8 = -2
SLUICE_ERR_EMPTY_KEY = -3
SLUICE_ERR_KEY_TOO_LONG = -4
SLUICE_ERR_TIME = -5
SLUICE_ERR_ARGUMENT = -6
SLUICE_ERR_SIZE = -7
SLUICE_ERR_POLICY = -10
SLUICE_ERR_POLICY_TOO_LARGE = -11
SLUICE_ERR_UNKNOWN_CATEGORY = -20
SLUICE_ERR_NO_LOCKOUT = -21
SLUICE_ERR_IO = -30
SLUICE_ERR_UNSUPPORTED = -31
SLUICE_ERR_NOT_A_TABLE = -32
SLUICE_ERR_FORMAT_VERSION = -33
SLUICE_ERR_POLICY_MISMATCH = -34
SLUICE_ERR_NO_TABLE = -35
SLUICE_ERR_READ_ONLY = -36
SLUICE_ERR_MIGRATION = -37
SLUICE_ERR_PANIC = -99

SLUICE_NOW = -(2**63)  # INT64_MIN

SLUICE_OPEN_HUGE_PAGES = 1
SLUICE_OPEN_READ_ONLY = 2

SLUICE_STATUS_PASSED = 0
SLUICE_STATUS_LIMITED = 1
SLUICE_STATUS_LOCKED = 2
SLUICE_STATUS_FULL = 3
SLUICE_STATUS_DRY_RUN_LIMITED = 4

SLUICE_HEADERS_X_RATELIMIT = 0
SLUICE_HEADERS_IETF = 1

SLUICE_RULE_WINDOW = 0
SLUICE_RULE_LOCKOUT = 1
SLUICE_RULE_STRICT = 1
SLUICE_RULE_DRY_RUN = 2

# Not in the header: the ranges the C types impose, checked before a call (ctypes would
# silently wrap an out-of-range integer).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1

#: Names of the error codes, for messages and ``SluiceError.name``.
ERROR_NAMES = {
    value: name
    for name, value in sorted(globals().items())
    if name.startswith("SLUICE_ERR_") or name == "SLUICE_OK"
}

# ---- structs ----------------------------------------------------------------------------------


class sluice(Structure):
    """``struct sluice``: opaque; only ever handled through a pointer."""

    _fields_ = []


# Every struct but the opaque one starts with ``size`` (sizeof the struct, set before a call;
# the library sets it to the bytes it wrote): see "Structs that grow" in sluice.h.


class sluice_decision(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("allowed", c_uint8),
        ("status", c_uint8),
        ("limit", c_uint32),
        ("remaining", c_uint32),
        ("reset_after", c_uint32),
        ("retry_after", c_uint32),
        ("rule", c_int32),
        ("reset", c_int64),
        ("window_ms", c_int64),
    ]


class sluice_request(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("category", c_int),
        # const void *: assign a bytes object (ctypes keeps it alive in _objects).
        ("key", c_char_p),
        ("key_len", c_size_t),
    ]


class sluice_packed_request(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("key_offset", c_uint64),
        ("key_len", c_uint32),
        ("category", c_int32),
    ]


class sluice_open_options(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("flags", c_uint32),
        ("mode", c_uint32),
    ]


class sluice_table_stats(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("capacity", c_uint64),
        ("live_keys", c_uint64),
        ("locked_keys", c_uint64),
        ("installing", c_uint64),
        ("evictions", c_uint64),
        ("reclaimed", c_uint64),
        ("full", c_uint64),
        ("bytes_per_key", c_uint64),
        ("rules", c_uint32),
        ("categories", c_uint32),
    ]


class sluice_rule_counts(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("passed", c_uint64),
        ("limited", c_uint64),
        ("dry_run_limited", c_uint64),
        ("locked", c_uint64),
        ("lockouts", c_uint64),
    ]


class sluice_category_info(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("name", c_char_p),
        ("rules", c_uint32),
        ("lockout_rule", c_int32),
    ]


class sluice_rule_info(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("category_name", c_char_p),
        ("category", c_int32),
        ("kind", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("limit", c_uint32),
        ("line", c_uint32),
        ("window_ms", c_int64),
        ("ban_ms", c_int64),
        ("max_ban_ms", c_int64),
    ]


class sluice_migration(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("keys", c_uint64),
        ("locked_keys", c_uint64),
        ("expired", c_uint64),
        ("dropped", c_uint64),
        ("locks_of_removed_lockouts", c_uint64),
        ("from_capacity", c_uint64),
        ("to_capacity", c_uint64),
        ("from_format", c_uint64),
        ("in_place", c_uint8),
    ]


def sized(cls):
    """A new ``cls`` with its ``size`` set, ready to pass to the library."""
    value = cls()
    value.size = ctypes.sizeof(cls)
    return value


#: C struct name -> ctypes class (the drift test compares these with the header).
STRUCTS = {
    "sluice": sluice,
    "sluice_decision": sluice_decision,
    "sluice_request": sluice_request,
    "sluice_packed_request": sluice_packed_request,
    "sluice_open_options": sluice_open_options,
    "sluice_table_stats": sluice_table_stats,
    "sluice_rule_counts": sluice_rule_counts,
    "sluice_category_info": sluice_category_info,
    "sluice_rule_info": sluice_rule_info,
    "sluice_migration": sluice_migration,
}

# ---- functions --------------------------------------------------------------------------------

_handle = POINTER(sluice)
_key = c_char_p  # const void *: a bytes object

#: name -> (restype, argtypes), every function of the header.
FUNCTIONS = {
    "sluice_open": (c_int, [c_char_p, c_char_p, POINTER(_handle), POINTER(c_char), c_size_t]),
    "sluice_open_flags": (
        c_int,
        [c_char_p, c_char_p, c_uint32, POINTER(_handle), POINTER(c_char), c_size_t],
    ),
    "sluice_open_with": (
        c_int,
        [
            c_char_p,
            c_char_p,
            POINTER(sluice_open_options),
            POINTER(_handle),
            POINTER(c_char),
            c_size_t,
        ],
    ),
    "sluice_close": (None, [_handle]),
    "sluice_category": (c_int, [_handle, c_char_p]),
    "sluice_check": (c_int, [_handle, c_int, _key, c_size_t, c_int64, POINTER(sluice_decision)]),
    "sluice_peek": (c_int, [_handle, c_int, _key, c_size_t, c_int64, POINTER(sluice_decision)]),
    "sluice_failure": (
        c_int,
        [_handle, c_int, _key, c_size_t, c_int64, POINTER(sluice_decision)],
    ),
    "sluice_allow": (c_int, [_handle, c_int, _key, c_size_t, c_int64]),
    "sluice_success": (c_int, [_handle, c_int, _key, c_size_t, c_int64]),
    "sluice_reset": (c_int, [_handle, c_int, _key, c_size_t, c_int64]),
    "sluice_check_batch": (
        c_int,
        [
            _handle,
            POINTER(sluice_request),
            c_size_t,
            c_int64,
            POINTER(sluice_decision),
            POINTER(c_size_t),
        ],
    ),
    "sluice_check_packed": (
        c_int,
        [
            _handle,
            _key,
            c_size_t,
            POINTER(sluice_packed_request),
            c_size_t,
            c_int64,
            POINTER(sluice_decision),
            POINTER(c_size_t),
        ],
    ),
    "sluice_headers": (
        c_int,
        [_handle, POINTER(sluice_decision), c_int, POINTER(c_char), c_size_t],
    ),
    "sluice_stats": (c_int, [_handle, c_int64, POINTER(sluice_table_stats)]),
    "sluice_rule_stats": (c_int, [_handle, c_int32, POINTER(sluice_rule_counts)]),
    "sluice_describe_category": (c_int, [_handle, c_int, POINTER(sluice_category_info)]),
    "sluice_describe_rule": (c_int, [_handle, c_int32, POINTER(sluice_rule_info)]),
    "sluice_strerror": (c_char_p, [c_int]),
    "sluice_version": (c_char_p, []),
    "sluice_default_policy": (c_char_p, []),
    "sluice_policy": (c_char_p, [_handle]),
    "sluice_migrate": (
        c_int,
        [c_char_p, c_char_p, c_char_p, POINTER(sluice_migration), POINTER(c_char), c_size_t],
    ),
    "sluice_superseded": (c_int, [_handle, POINTER(c_char), c_size_t]),
    "sluice_python_needs": (c_char_p, []),
    "sluice_python_methods": (
        c_int,
        [POINTER(ctypes.c_void_p), c_size_t, POINTER(ctypes.c_void_p), c_size_t],
    ),
}

# ---- finding the library ----------------------------------------------------------------------


class LibraryNotFoundError(ImportError):
    """libsluice could not be found or loaded (raised when ``sluice`` is imported)."""


if sys.platform == "darwin":
    LIBRARY_NAME = "libsluice.dylib"
elif sys.platform == "win32":
    LIBRARY_NAME = "sluice.dll"
else:
    LIBRARY_NAME = "libsluice.so"

_PACKAGE_DIR = Path(__file__).resolve().parent


def _recorded_source_dir():
    """The directory the package was built from (``setup.py`` records it), if any."""
    try:
        from . import _build_info  # type: ignore[attr-defined]
    except ImportError:
        return None
    source = getattr(_build_info, "SOURCE_DIR", None)
    return Path(source) if source else None


def _walk_up(start):
    """``start`` and each directory above it, each joined with target/release/LIBRARY."""
    start = Path(start)
    for directory in [start, *start.parents]:
        yield directory / "target" / "release" / LIBRARY_NAME


def candidates():
    """Where the library is looked for, in order, as (where-it-came-from, path) pairs.

    ``$SLUICE_LIBRARY`` is not among them: it is looked at after the first (the package
    directory), and when it is set nothing after it is.
    """
    seen = set()
    starts = [("package directory", _PACKAGE_DIR)]
    recorded = _recorded_source_dir()
    if recorded is not None:
        starts.append(("source directory recorded at install", recorded))
    try:
        starts.append(("current directory", Path.cwd()))
    except OSError:  # the working directory was removed
        pass
    out = [("package directory", _PACKAGE_DIR / LIBRARY_NAME)]
    for label, start in starts:
        for path in _walk_up(start):
            if path not in seen:
                seen.add(path)
                out.append(("walking up from the " + label, path))
    return out


def find_library() -> Path:
    """The path of the library to load (see the module docs), or LibraryNotFoundError."""
    bundled = _PACKAGE_DIR / LIBRARY_NAME
    if bundled.is_file():
        return bundled
    explicit = os.environ.get("SLUICE_LIBRARY")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise LibraryNotFoundError(
                "SLUICE_LIBRARY is set to {!r}, which is not a file. Point it at the shared "
                "library ({} after `cargo build --release`, in target/release/) or unset "
                "it.".format(explicit, LIBRARY_NAME)
            )
        return path
    looked = []
    for label, path in candidates():
        if path.is_file():
            return path
        looked.append("  {} ({})".format(path, label))
    raise LibraryNotFoundError(
        "cannot find the sluice C library ({}). Looked in:\n{}\nFix: run `cargo build "
        "--release` in the sluice repository (it makes target/release/{}), or set "
        "SLUICE_LIBRARY to the library's path.".format(LIBRARY_NAME, "\n".join(looked), LIBRARY_NAME)
    )


def _load() -> "Tuple[ctypes.CDLL, Path, str]":
    path = find_library()
    try:
        # CDLL: the GIL is released during every call (PyDLL would hold it).
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise LibraryNotFoundError(
            "cannot load the sluice C library {}: {}. Rebuild it with `cargo build --release` "
            "or point SLUICE_LIBRARY at a working copy.".format(path, e)
        ) from e
    for name, (restype, argtypes) in FUNCTIONS.items():
        try:
            function = getattr(lib, name)
        except AttributeError as e:
            raise LibraryNotFoundError(
                "{} has no function {}: it is older than these bindings (which follow "
                "sluice.h {}). Rebuild it with `cargo build --release`.".format(
                    path, name, SLUICE_VERSION
                )
            ) from e
        function.restype = restype
        function.argtypes = argtypes
    version = lib.sluice_version().decode("utf-8", "replace")
    # sluice.h: compare sluice_version() with SLUICE_VERSION to detect a mismatch. Before 1.0
    # a minor version may change the ABI.
    if version.split(".")[:2] != SLUICE_VERSION.split(".")[:2]:
        raise LibraryNotFoundError(
            "{} is sluice {}, but these bindings follow sluice.h {}: the C ABI may differ. "
            "Use a matching library (SLUICE_LIBRARY) or matching bindings.".format(
                path, version, SLUICE_VERSION
            )
        )
    return lib, path, version


lib: Any
LIBRARY_PATH: Path
LIBRARY_VERSION: str
lib, LIBRARY_PATH, LIBRARY_VERSION = _load()
#: The same library, its calls holding the GIL (the fast path's per-request functions only).
held_lib: Any = ctypes.PyDLL(str(LIBRARY_PATH))

#: The default policy that ships with sluice (``sluice_default_policy()``).
DEFAULT_POLICY: str = lib.sluice_default_policy().decode("utf-8")


def strerror(code: int) -> str:
    """The library's description of a return code (``sluice_strerror``)."""
    return lib.sluice_strerror(code).decode("utf-8", "replace")


# ---- calls with plain Python values -----------------------------------------------------------
# Keys and names are bytes; handles are opaque; decisions travel as tuples in the C field order
# of sluice_decision (DECISION_FIELDS). Return codes are returned, not raised: _limiter turns
# them into exceptions.

DECISION_FIELDS = tuple(name for name, _ in sluice_decision._fields_)
STATS_FIELDS = tuple(
    name for name, _ in sluice_table_stats._fields_ if name not in ("size", "rules", "categories")
)
RULE_STATS_FIELDS = tuple(name for name, _ in sluice_rule_counts._fields_ if name != "size")


def _unpacker(cls):
    """A struct.Struct reading ``cls`` in one call (much faster than field by field). Native
    alignment is C's; the offsets are checked against ctypes' own layout."""
    codes = {c_uint8: "B", c_uint32: "I", c_int32: "i", c_int64: "q", c_size_t: "N"}
    fmt = "@"
    for name, ctype in cls._fields_:
        fmt += codes[ctype]
        if struct.calcsize(fmt) - struct.calcsize(codes[ctype]) != getattr(cls, name).offset:
            raise LibraryNotFoundError(
                "internal error: struct layout of {}.{} differs from ctypes'".format(cls.__name__, name)
            )
    return struct.Struct(fmt)


_unpack_decision = _unpacker(sluice_decision).unpack_from


def open_limiter(policy, path, flags=0, mode=0, err_cap=4096):
    """``sluice_open_with``: (code, handle or None, error message or None)."""
    out = POINTER(sluice)()
    err = ctypes.create_string_buffer(err_cap)
    options = sized(sluice_open_options)
    options.flags = flags
    options.mode = mode
    code = lib.sluice_open_with(policy, path, ctypes.byref(options), ctypes.byref(out), err, err_cap)
    if code != SLUICE_OK:
        return code, None, err.value.decode("utf-8", "replace") or None
    if not out:
        return SLUICE_ERR_NULL, None, "sluice_open_with returned SLUICE_OK but no handle"
    return code, out, None


def policy(handle):
    """``sluice_policy``: the limiter's policy text (the file's, for a table attached by path)."""
    return lib.sluice_policy(handle).decode("utf-8", "replace")


def close(handle):
    lib.sluice_close(handle)


def category(handle, name):
    """``sluice_category``: the id (>= 0) or a negative code."""
    return lib.sluice_category(handle, name)


#: The per-request functions' declarations, which the fast callers below rely on. FUNCTIONS is
#: what the drift test checks against the header, so a change there fails that test and this.
_DECIDER_ARGTYPES = [_handle, c_int, _key, c_size_t, c_int64, POINTER(sluice_decision)]

#: Keys are 1 to 65535 bytes (sluice.h); longer ones get SLUICE_ERR_KEY_TOO_LONG.
MAX_KEY_LEN = 65_535


def raw_handle(handle):
    """The handle as the ``c_void_p`` the fast callers take."""
    return ctypes.c_void_p(ctypes.cast(handle, ctypes.c_void_p).value)


def allower_function(hold_gil=False):
    """``sluice_allow`` without ``argtypes``, as ``decider_function`` (checked against
    FUNCTIONS): ``(raw_handle, int, key bytes, c_size_t, c_int64) -> 1, 0 or a negative
    code``."""
    restype, argtypes = FUNCTIONS["sluice_allow"]
    assert restype is c_int and [str(t) for t in argtypes] == [
        str(t) for t in _DECIDER_ARGTYPES[:5]
    ], "sluice_allow: the fast caller no longer matches the declaration"
    function = (held_lib if hold_gil else lib)["sluice_allow"]
    function.restype = c_int
    function.argtypes = None
    return function


def decider_function(name, hold_gil=False):
    """``name`` (sluice_check, sluice_peek or sluice_failure) as a function object without
    ``argtypes``, for callers that pass every argument as the exact C type of its declaration
    (checked here against FUNCTIONS): ``(raw_handle, int, key bytes, c_size_t, c_int64,
    DecisionBuffer)``. ctypes' per-call conversion through ``argtypes`` costs ~2.7 us of a
    ~3.5 us call on the bench machine; passing ready-made C values costs ~0.8 us.
    ``hold_gil``: from ``held_lib`` (PyDLL), the GIL held through the call."""
    restype, argtypes = FUNCTIONS[name]
    assert restype is c_int and [str(t) for t in argtypes] == [
        str(t) for t in _DECIDER_ARGTYPES
    ], "{}: the fast caller no longer matches the declaration".format(name)
    # A second function object: no argtypes, so no conversion.
    function = (held_lib if hold_gil else lib)[name]
    function.restype = c_int
    function.argtypes = None
    return function


class DecisionBuffer(ctypes.Array):
    """Room for one ``struct sluice_decision``, written by the library. An array, so a
    foreign call without ``argtypes`` passes it as a pointer (no ``byref``); read it with
    ``unpack_decision``. Hashable by identity: the Limiter uses each call's buffer as that
    call's token in its set of calls in flight. Before the call, set its first word to
    ``DECISION_SIZE_WORD`` (the struct's ``size``; ``new_decision_buffer`` does both):
    ``buf = DecisionBuffer(); buf[0] = DECISION_SIZE_WORD`` costs ~50 ns,
    ``DecisionBuffer(DECISION_SIZE_WORD)`` ~350 ns."""

    _type_ = c_int64
    _length_ = -(-ctypes.sizeof(sluice_decision) // ctypes.sizeof(c_int64))
    __hash__ = object.__hash__


if ctypes.alignment(sluice_decision) > ctypes.alignment(DecisionBuffer):
    raise LibraryNotFoundError("internal error: DecisionBuffer is less aligned than sluice_decision")

#: The first word of a DecisionBuffer holding a decision whose ``size`` is set and whose other
#: fields are zero (the size itself wherever size_t is 8 bytes; made from the struct, so right
#: on any platform).
DECISION_SIZE_WORD = DecisionBuffer.from_buffer_copy(
    bytes(sized(sluice_decision)).ljust(ctypes.sizeof(DecisionBuffer), b"\0")
)[0]


def new_decision_buffer():
    """A DecisionBuffer ready for a call: its ``size`` set."""
    buf = DecisionBuffer()
    buf[0] = DECISION_SIZE_WORD
    return buf

#: ``c_size_t`` of every key length 0..MAX_KEY_LEN, made on first use (``key_size``) and then
#: shared: a foreign call copies the value, and nothing ever changes these objects, so one
#: object serves every thread. (Made lazily: 65,536 of them up front would be ~9 MB.)
KEY_SIZES = [None] * (MAX_KEY_LEN + 1)


def key_size(n):
    """The shared ``c_size_t(n)`` for 0 <= n <= MAX_KEY_LEN (a fresh one above). Two threads
    may both make one for a new length; either object is fine."""
    if 0 <= n <= MAX_KEY_LEN:
        size = KEY_SIZES[n]
        if size is None:
            size = KEY_SIZES[n] = c_size_t(n)
        return size
    return c_size_t(n)


#: ``now_ms`` = SLUICE_NOW as the C value, made once.
C_NOW = c_int64(SLUICE_NOW)
unpack_decision = _unpack_decision


def _decider(name):
    """A caller of ``name`` with plain values: ``(raw, category, key, now_ms) -> (code,
    decision tuple or None)`` (the Limiter inlines the same steps on its fast path)."""
    function = decider_function(name)
    unpack = _unpack_decision
    new_buffer = new_decision_buffer
    size, int64, now = key_size, c_int64, C_NOW

    def call(raw, category, key, now_ms):
        """``raw`` from raw_handle(); ``category`` an int; ``key`` bytes; ``now_ms`` an int
        within int64 (the caller checks)."""
        out = new_buffer()
        code = function(
            raw,
            category,
            key,
            size(len(key)),
            now if now_ms == SLUICE_NOW else int64(now_ms),
            out,
        )
        return code, (unpack(out) if code == SLUICE_OK else None)

    call.__name__ = name[len("sluice_") :]
    call.__doc__ = "``{}``: (code, decision tuple or None).".format(name)
    return call


def _clearer(name):
    function = getattr(lib, name)

    def call(handle, category, key, now_ms):
        return function(handle, category, key, len(key), now_ms)

    call.__name__ = name[len("sluice_") :]
    call.__doc__ = "``{}``: the return code.".format(name)
    return call


check = _decider("sluice_check")
peek = _decider("sluice_peek")
failure = _decider("sluice_failure")
allow = _clearer("sluice_allow")  # returns 1, 0 or a negative code
success = _clearer("sluice_success")
reset = _clearer("sluice_reset")


#: ``size_t``'s largest value: "no index" for sluice_check_batch's ``bad_request``.
SIZE_MAX = (1 << (8 * ctypes.sizeof(c_size_t))) - 1


def check_batch(handle, requests, now_ms):
    """``sluice_check_packed`` of (key bytes, category id) pairs, the keys joined into one
    buffer (no ctypes object per key): (code, [decision tuples]) on success, (code, index of
    the invalid request or None) on an error."""
    n = len(requests)
    c_requests = (sluice_packed_request * n)()
    size = ctypes.sizeof(sluice_packed_request)
    offset = 0
    for r, (key, cat) in zip(c_requests, requests):
        r.size = size
        r.key_offset = offset
        r.key_len = len(key)
        r.category = cat
        offset += len(key)
    keys = b"".join(key for key, _ in requests)
    decisions = (sluice_decision * n)()
    if n:
        decisions[0].size = ctypes.sizeof(sluice_decision)  # the array's element size
    bad = c_size_t(SIZE_MAX)
    code = lib.sluice_check_packed(
        handle, keys, len(keys), c_requests, n, now_ms, decisions, ctypes.byref(bad)
    )
    if code != SLUICE_OK:
        return code, (None if bad.value == SIZE_MAX else bad.value)
    return code, [_unpack_decision(d) for d in decisions]


def headers(handle, decision, style, cap):
    """``sluice_headers`` of a decision tuple (DECISION_FIELDS order, ``size`` first, which is
    set here whatever the tuple says): (length or negative code, block bytes or None).
    Tries a buffer of ``cap`` bytes first; if the block does not fit, calls again with one
    sized from the returned length."""
    d = sluice_decision(*decision)
    d.size = ctypes.sizeof(sluice_decision)
    while True:
        buf = ctypes.create_string_buffer(cap) if cap else None
        n = lib.sluice_headers(handle, ctypes.byref(d), style, buf, cap)
        if n < 0:
            return n, None
        if n < cap:
            return n, buf.raw[:n]
        cap = n + 1  # nothing was written: room for the block and its NUL


def migrate(from_path, to_path, policy, err_cap=4096):
    """``sluice_migrate``: (code, {field: value} or None, error message or None)."""
    report = sized(sluice_migration)
    err = ctypes.create_string_buffer(err_cap)
    code = lib.sluice_migrate(from_path, to_path, policy, ctypes.byref(report), err, err_cap)
    if code != SLUICE_OK:
        return code, None, err.value.decode("utf-8", "replace") or None
    return code, {name: getattr(report, name) for name, _ in sluice_migration._fields_[1:]}, None


def superseded(handle):
    """``sluice_superseded``: (code or length, the path as bytes or None)."""
    cap = 256
    while True:
        buf = ctypes.create_string_buffer(cap)
        n = lib.sluice_superseded(handle, buf, cap)
        if n <= 0:
            return n, None
        if n < cap:
            return n, buf.raw[:n]
        cap = n + 1


def stats(handle, now_ms):
    """``sluice_stats`` (locked keys judged at ``now_ms``) and ``sluice_rule_stats`` of every
    rule: (code, {field: count}, [{field: count}, ...]); on an error the code, the index of the
    failing rule or None, None."""
    st = sized(sluice_table_stats)
    code = lib.sluice_stats(handle, now_ms, ctypes.byref(st))
    if code != SLUICE_OK:
        return code, None, None
    rules = []
    rs = sized(sluice_rule_counts)
    for i in range(st.rules):
        code = lib.sluice_rule_stats(handle, i, ctypes.byref(rs))
        if code != SLUICE_OK:
            return code, i, None
        rules.append({f: getattr(rs, f) for f in RULE_STATS_FIELDS})
    return code, {f: getattr(st, f) for f in STATS_FIELDS}, rules


# ---- the native methods (CPython only) --------------------------------------------------------


def address(handle):
    """The handle's address as an int (what the native methods read; 0 is "closed")."""
    return ctypes.cast(handle, ctypes.c_void_p).value or 0


def pointer_at(address):
    """The pointer stored at ``address`` (of a live object's memory), as an int."""
    return ctypes.c_void_p.from_address(address).value or 0


def native_methods(objects):
    """The library's native methods of check, peek, failure and allow (``sluice_python_methods``),
    or raise ``RuntimeError`` saying why they cannot be had. ``objects``: name -> object, for
    every object name of ``sluice_python_needs``; the C-API functions it names come from
    ``ctypes.pythonapi`` (this interpreter's). The objects are kept by the library for the
    process's life; the call holds the GIL (PyDLL), as the library's C-API calls need."""
    if sys.implementation.name != "cpython":
        raise RuntimeError("not CPython ({})".format(sys.implementation.name))
    if hasattr(sys, "getobjects"):  # Py_TRACE_REFS: another object header
        raise RuntimeError("a CPython built with Py_TRACE_REFS")
    needs = held_lib.sluice_python_needs
    needs.restype, needs.argtypes = FUNCTIONS["sluice_python_needs"]
    names = needs().decode("ascii").split()
    values = []
    keep = []  # the objects stay referenced until the library has taken its own references
    for name in names:
        if name.startswith("Py"):
            try:
                values.append(ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)
            except AttributeError:
                raise RuntimeError("this Python has no C-API function " + name) from None
        else:
            try:
                obj = objects[name]
            except KeyError:
                raise RuntimeError("the library needs an object the package lacks: " + name) from None
            keep.append(obj)
            values.append(id(obj))
    c_values = (ctypes.c_void_p * len(values))(*values)
    out = (ctypes.c_void_p * 4)()
    build = held_lib.sluice_python_methods
    build.restype, build.argtypes = FUNCTIONS["sluice_python_methods"]
    code = build(c_values, len(values), out, len(out))
    if code != SLUICE_OK:
        raise RuntimeError("sluice_python_methods: {} ({})".format(ERROR_NAMES.get(code, code), strerror(code)))
    # Each is a new reference of ours: reading it as a py_object takes another, so drop one.
    release = ctypes.pythonapi.Py_DecRef
    release.restype, release.argtypes = None, [ctypes.py_object]
    made = []
    for p in out:
        method = ctypes.cast(p, ctypes.py_object).value
        release(method)
        made.append(method)
    return made
