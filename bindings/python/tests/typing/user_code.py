"""A user's file that calls every public function of ``sluice`` with the types a user would
write: ``mypy --strict`` must find no error in it (tests/test_typing.py)."""

import os
import tempfile
from typing import Dict, List, Optional, Tuple

import sluice

POLICY = "global 5/1m\nauth 3/1m\nauth lockout 2/15m for 15m..1h\n"


def decision_fields(d: sluice.Decision) -> Tuple[bool, str, int, int, int, int, int, int, Optional[int]]:
    return (
        d.allowed,
        d.status,
        d.limit,
        d.remaining,
        d.reset,
        d.reset_after,
        d.retry_after,
        d.window_ms,
        d.rule,
    )


def use_everything() -> List[str]:
    seen: List[str] = []
    limiter: sluice.Limiter
    with sluice.Limiter(POLICY) as limiter:
        d: sluice.Decision = limiter.check("198.51.100.7", "auth", now_ms=1_767_225_600_000)
        seen.append(repr(decision_fields(d)))
        headers: Dict[str, str] = d.headers()
        ietf: Dict[str, str] = d.headers("ietf")
        seen.extend(headers)
        seen.extend(ietf.values())
        ok: bool = limiter.allow(b"client-1")
        seen.append(str(ok))
        peeked: sluice.Decision = limiter.peek(bytearray(b"client-1"), sluice.GLOBAL, None)
        failed: sluice.Decision = limiter.failure("alice", "auth")
        limiter.success("alice", "auth")
        limiter.reset(memoryview(b"alice"), "auth")
        batch: List[sluice.Decision] = limiter.check_batch([("a", "auth"), b"b", "c"])
        stats: sluice.Stats = limiter.stats()
        capacity: int = stats.capacity
        rules: List[Dict[str, int]] = stats.rules
        category: int = limiter.category_id("auth")
        policy: str = limiter.policy
        path: Optional[str] = limiter.path
        closed: bool = limiter.closed
        as_dict = peeked.as_dict()
        seen.extend(as_dict)
        seen.append(repr((failed == peeked, hash(failed), batch, capacity, rules, category, policy, path, closed)))
    limiter.close()
    made = sluice.Decision(True, "passed", 5, 4, 0, 0, 0, 60_000, 0)
    seen.append(repr(made))
    directory = tempfile.mkdtemp()
    table = os.path.join(directory, "t.sluice")
    with sluice.Limiter("global 5/1m", path=table, mode=0o660, huge_pages=False) as shared:
        shared.check("k")
        with sluice.Limiter(path=table, read_only=True) as viewer:
            try:
                viewer.check("k")
            except sluice.ReadOnlyError as e:
                code: int = e.code
                name: str = e.name
                message: str = e.message
                seen.append("{} {} {}".format(code, name, message))
    os.remove(table)
    os.rmdir(directory)
    try:
        sluice.Limiter("global 5 per minute")
    except sluice.PolicyError as e:
        seen.append(e.message)
    try:
        with sluice.Limiter("global 1/1m") as l:
            l.check("k", "nope")
    except sluice.UnknownCategoryError as e:
        missing: Optional[str] = e.category
        seen.append(str(missing))
    errors: Tuple[type, ...] = (
        sluice.SluiceError,
        sluice.NoLockoutError,
        sluice.InvalidArgumentError,
        sluice.InvalidKeyError,
        sluice.TimeRangeError,
        sluice.UnsupportedError,
        sluice.TableFileError,
        sluice.NotATableError,
        sluice.FormatVersionError,
        sluice.PolicyMismatchError,
        sluice.NoTableError,
        sluice.ClosedError,
        sluice.LibraryNotFoundError,
    )
    seen.append(repr(errors))
    version: str = sluice.library_version()
    library: str = str(sluice.LIBRARY_PATH)
    default: str = sluice.DEFAULT_POLICY
    statuses: Tuple[str, ...] = sluice.STATUSES
    styles: Dict[str, int] = sluice.HEADER_STYLES
    codes: List[int] = [sluice.SLUICE_OK, sluice.SLUICE_ERR_POLICY, sluice.SLUICE_NOW]
    seen.append(repr((version, library, default, statuses, styles, codes, sluice.LIBRARY_VERSION, sluice.__version__)))
    return seen


if __name__ == "__main__":
    print(len(use_everything()))
