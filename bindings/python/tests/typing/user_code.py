"""A user's file that calls every public function of ``sluice`` with the types a user would
write: ``mypy --strict`` must find no error in it (tests/test_typing.py)."""

import os
import tempfile
from typing import Any, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple

import sluice
from sluice.middleware import (
    ENVIRON_CLIENT,
    ENVIRON_DECISION,
    ASGIMiddleware,
    ClientAddress,
    LoginGuard,
    WSGIMiddleware,
)

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


def wsgi_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(environ.get(ENVIRON_CLIENT)).encode()]


async def asgi_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": repr(scope.get(ENVIRON_DECISION)).encode()})


def category_of(request: MutableMapping[str, Any]) -> Optional[str]:
    return "auth" if str(request.get("PATH_INFO", "")).startswith("/login") else None


def use_middleware() -> List[str]:
    seen: List[str] = []
    limiter = sluice.Limiter(POLICY)
    wsgi = WSGIMiddleware(
        wsgi_app,
        limiter,
        {"/login": "auth", "/static/": None},
        default=sluice.GLOBAL,
        trusted_proxies=["10.0.0.0/8", "unix"],
        ipv6_prefix=64,
        header_style="ietf",
        send_headers=True,
    )
    wsgi_by_function = WSGIMiddleware(wsgi_app, limiter, category_of, key=lambda environ: "k")
    asgi = ASGIMiddleware(asgi_app, limiter, {"/login": "auth"}, trusted_proxies=["127.0.0.1"])

    def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> None:
        seen.append(status)

    environ: Dict[str, Any] = {"PATH_INFO": "/login", "REMOTE_ADDR": "10.0.0.5"}
    seen.extend(b.decode() for b in wsgi(environ, start_response))
    seen.extend(b.decode() for b in wsgi_by_function(dict(environ), start_response))
    client = ClientAddress(["10.0.0.0/8"], ipv6_prefix=128)
    seen.append(client.resolve("10.0.0.5", ["203.0.113.9"]))
    seen.append(client.from_environ(environ))
    seen.append(client.from_scope({"client": ("10.0.0.5", 1), "headers": []}))
    guard = LoginGuard(limiter, "auth", by="both")
    locked: Optional[sluice.Decision] = guard.locked(ip="10.0.0.5", account="alice")
    after: sluice.Decision = guard.failure(ip="10.0.0.5", account="alice")
    guard.success(ip="10.0.0.5", account="alice")
    key: str = guard.key(ip="10.0.0.5", account="alice")
    seen.append(repr((locked, after, key, asgi)))
    limiter.close()
    return seen


def migrate_and_follow(path: str) -> Optional[str]:
    report: sluice.Migration = sluice.migrate(path, path + ".new", None)
    moved: bool = report.in_place
    with sluice.Limiter(path=path) as old:
        return old.superseded() if not moved else None


if __name__ == "__main__":
    print(len(use_everything()) + len(use_middleware()))

