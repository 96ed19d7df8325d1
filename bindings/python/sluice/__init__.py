"""sluice: an exact, lock-free rate limiter with brute-force lockouts (Python bindings).

Loads the sluice C library (``libsluice.so``) through ctypes: the copy inside the package (a
wheel's), else ``$SLUICE_LIBRARY``, else a checkout's ``target/release`` (see ``sluice._ffi``).
``sluice.middleware`` has WSGI and ASGI middleware and a login helper;
``sluice.limits_storage`` a ``sluice://`` storage for the ``limits`` package.

>>> import sluice
>>> with sluice.Limiter("global 3/10s") as limiter:
...     d = limiter.check("198.51.100.7", now_ms=1_767_225_600_000)
...     (d.allowed, d.status, d.remaining, d.reset)
(True, 'passed', 2, 1767225610)
"""

from ._ffi import (
    DEFAULT_POLICY,
    LIBRARY_PATH,
    LIBRARY_VERSION,
    SLUICE_ERR_ARGUMENT,
    SLUICE_ERR_SIZE,
    SLUICE_ERR_READ_ONLY,
    SLUICE_ERR_MIGRATION,
    SLUICE_ERR_EMPTY_KEY,
    SLUICE_ERR_IO,
    SLUICE_ERR_KEY_TOO_LONG,
    SLUICE_ERR_NO_LOCKOUT,
    SLUICE_ERR_NULL,
    SLUICE_ERR_PANIC,
    SLUICE_ERR_POLICY,
    SLUICE_ERR_POLICY_TOO_LARGE,
    SLUICE_ERR_TIME,
    SLUICE_ERR_UNKNOWN_CATEGORY,
    SLUICE_ERR_UNSUPPORTED,
    SLUICE_ERR_NOT_A_TABLE,
    SLUICE_ERR_FORMAT_VERSION,
    SLUICE_ERR_POLICY_MISMATCH,
    SLUICE_ERR_NO_TABLE,
    SLUICE_ERR_UTF8,
    SLUICE_NOW,
    SLUICE_OK,
    LibraryNotFoundError,
)
from ._errors import (
    ClosedError,
    InvalidArgumentError,
    InvalidKeyError,
    NoLockoutError,
    PolicyError,
    SluiceError,
    TimeRangeError,
    UnknownCategoryError,
    UnsupportedError,
    TableFileError,
    NotATableError,
    FormatVersionError,
    PolicyMismatchError,
    NoTableError,
    ReadOnlyError,
    MigrationError,
)
from ._limiter import (
    GLOBAL,
    HEADER_STYLES,
    STATUS_NAMES,
    Decision,
    Limiter,
    Migration,
    Stats,
    library_version,
    migrate,
)

__version__ = "0.2.0"

#: The decision statuses, as ``Decision.status`` spells them.
STATUSES = tuple(STATUS_NAMES[code] for code in sorted(STATUS_NAMES))

__all__ = [
    "DEFAULT_POLICY",
    "Limiter",
    "Decision",
    "Stats",
    "Migration",
    "migrate",
    "GLOBAL",
    "STATUSES",
    "HEADER_STYLES",
    "library_version",
    "LIBRARY_PATH",
    "LIBRARY_VERSION",
    "SluiceError",
    "PolicyError",
    "UnknownCategoryError",
    "NoLockoutError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "TimeRangeError",
    "UnsupportedError",
    "TableFileError",
    "NotATableError",
    "FormatVersionError",
    "PolicyMismatchError",
    "NoTableError",
    "ReadOnlyError",
    "MigrationError",
    "ClosedError",
    "LibraryNotFoundError",
    "SLUICE_OK",
    "SLUICE_ERR_NULL",
    "SLUICE_ERR_UTF8",
    "SLUICE_ERR_EMPTY_KEY",
    "SLUICE_ERR_KEY_TOO_LONG",
    "SLUICE_ERR_TIME",
    "SLUICE_ERR_ARGUMENT",
    "SLUICE_ERR_SIZE",
    "SLUICE_ERR_READ_ONLY",
    "SLUICE_ERR_MIGRATION",
    "SLUICE_ERR_POLICY",
    "SLUICE_ERR_POLICY_TOO_LARGE",
    "SLUICE_ERR_UNKNOWN_CATEGORY",
    "SLUICE_ERR_NOT_A_TABLE",
    "SLUICE_ERR_FORMAT_VERSION",
    "SLUICE_ERR_POLICY_MISMATCH",
    "SLUICE_ERR_NO_TABLE",
    "SLUICE_ERR_NO_LOCKOUT",
    "SLUICE_ERR_IO",
    "SLUICE_ERR_UNSUPPORTED",
    "SLUICE_ERR_PANIC",
    "SLUICE_NOW",
]
