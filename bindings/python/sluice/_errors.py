"""Exceptions. Every error of the library is a ``SluiceError`` with the C return code."""

from typing import Any, Dict, Optional, Tuple, Type

from . import _ffi


class SluiceError(Exception):
    """An error reported by libsluice (or by these bindings on its behalf).

    ``code`` is the C return code (one of ``sluice.SLUICE_ERR_*``, negative), ``name`` its
    name (e.g. ``"SLUICE_ERR_POLICY"``), ``message`` the text (also ``str(error)``).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code: int = code
        self.message: str = message

    @property
    def name(self) -> str:
        return _ffi.ERROR_NAMES.get(self.code, "unknown error code {}".format(self.code))

    def __repr__(self) -> str:
        return "{}(code={}, message={!r})".format(type(self).__name__, self.code, self.message)

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        return (type(self), (self.code, self.message))


class PolicyError(SluiceError, ValueError):
    """The policy does not parse (SLUICE_ERR_POLICY: the message names the line and column),
    is not valid UTF-8 (SLUICE_ERR_UTF8), or cannot be laid out (SLUICE_ERR_POLICY_TOO_LARGE)."""


class UnknownCategoryError(SluiceError, LookupError):
    """A category name the policy does not define (SLUICE_ERR_UNKNOWN_CATEGORY).

    A ``LookupError`` (the base of ``KeyError``), deliberately not a ``KeyError``: ``KeyError``
    prints its message with quotes around it. ``category`` is the name asked for.
    """

    def __init__(self, code: int, message: str, category: Optional[str] = None) -> None:
        super().__init__(code, message)
        self.category: Optional[str] = category

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        return (type(self), (self.code, self.message, self.category))


class NoLockoutError(SluiceError):
    """``failure``/``success`` on a category without a lockout (SLUICE_ERR_NO_LOCKOUT)."""


class InvalidArgumentError(SluiceError, ValueError):
    """An argument the library refused (SLUICE_ERR_ARGUMENT, SLUICE_ERR_UTF8)."""


class InvalidKeyError(InvalidArgumentError):
    """An empty key or one longer than 65535 bytes (SLUICE_ERR_EMPTY_KEY,
    SLUICE_ERR_KEY_TOO_LONG)."""


class TimeRangeError(InvalidArgumentError):
    """``now_ms`` neither None nor Unix milliseconds from 0 to 2**42 - 2 (SLUICE_ERR_TIME)."""


class UnsupportedError(SluiceError):
    """Not available in this build of the library (SLUICE_ERR_UNSUPPORTED)."""


class TableFileError(SluiceError):
    """A table file could not be opened or attached. The message names the path and what is
    wrong; the file was not changed. Subclasses say which case it is; this class itself is an
    operating-system refusal (SLUICE_ERR_IO: a missing directory, no permission, ...)."""


class NotATableError(TableFileError):
    """The file is not a usable sluice table (SLUICE_ERR_NOT_A_TABLE): too short, zeros, a bad
    magic number, a corrupt header, truncated."""


class FormatVersionError(TableFileError):
    """The table file has a format version this library does not read
    (SLUICE_ERR_FORMAT_VERSION)."""


class PolicyMismatchError(TableFileError):
    """The table file was made for another policy (SLUICE_ERR_POLICY_MISMATCH); the message
    names the rules that differ. Open it with ``policy=None`` to use the file's own policy."""


class NoTableError(TableFileError):
    """No table file at the path, and no policy was given to create one
    (SLUICE_ERR_NO_TABLE)."""


class MigrationError(TableFileError):
    """A migration could not be made (SLUICE_ERR_MIGRATION): the new path exists, the capacity
    change is one the source cannot support, or a locked key found no free slot in the new
    table. Nothing was created and the source is unchanged."""


class ReadOnlyError(SluiceError):
    """The limiter was opened with ``read_only=True`` (SLUICE_ERR_READ_ONLY): the call would
    have recorded something, and recorded nothing."""


class ClosedError(SluiceError, ValueError):
    """The Limiter was closed. ``code`` is SLUICE_ERR_NULL: the handle is gone."""


_BY_CODE: Dict[int, Type[SluiceError]] = {
    _ffi.SLUICE_ERR_UTF8: InvalidArgumentError,
    _ffi.SLUICE_ERR_EMPTY_KEY: InvalidKeyError,
    _ffi.SLUICE_ERR_KEY_TOO_LONG: InvalidKeyError,
    _ffi.SLUICE_ERR_TIME: TimeRangeError,
    _ffi.SLUICE_ERR_ARGUMENT: InvalidArgumentError,
    _ffi.SLUICE_ERR_SIZE: InvalidArgumentError,
    _ffi.SLUICE_ERR_POLICY: PolicyError,
    _ffi.SLUICE_ERR_POLICY_TOO_LARGE: PolicyError,
    _ffi.SLUICE_ERR_UNKNOWN_CATEGORY: UnknownCategoryError,
    _ffi.SLUICE_ERR_NO_LOCKOUT: NoLockoutError,
    _ffi.SLUICE_ERR_UNSUPPORTED: UnsupportedError,
    _ffi.SLUICE_ERR_IO: TableFileError,
    _ffi.SLUICE_ERR_NOT_A_TABLE: NotATableError,
    _ffi.SLUICE_ERR_FORMAT_VERSION: FormatVersionError,
    _ffi.SLUICE_ERR_POLICY_MISMATCH: PolicyMismatchError,
    _ffi.SLUICE_ERR_NO_TABLE: NoTableError,
    _ffi.SLUICE_ERR_READ_ONLY: ReadOnlyError,
    _ffi.SLUICE_ERR_MIGRATION: MigrationError,
}


def error(
    code: int,
    message: Optional[str] = None,
    context: Optional[str] = None,
    cls: Optional[Type[SluiceError]] = None,
) -> SluiceError:
    """The exception for return code ``code``: ``message`` if given (sluice_open's err_buf),
    else ``sluice_strerror(code)``, followed by ``context`` (what the call was about)."""
    if message is None:
        message = _ffi.strerror(code)
    if context:
        message = "{} ({})".format(message, context)
    return (cls or _BY_CODE.get(code, SluiceError))(code, message)
