"""sluice.middleware with plain WSGI and ASGI calls (no framework): the client address behind
trusted proxies, categories by route prefix or function, 429 with Retry-After and the headers
of each style, the headers on admitted responses, and the login helper's lockouts."""

import asyncio

import pytest

import sluice
from sluice.middleware import (
    ENVIRON_CLIENT,
    ENVIRON_DECISION,
    ASGIMiddleware,
    ClientAddress,
    LoginGuard,
    WSGIMiddleware,
)

POLICY = """
global  3/1m
auth    2/1m
auth    lockout 3/15m for 15m..1h
api     5/1m
"""


# ---- the client address ------------------------------------------------------------------------

TRUST = ClientAddress(trusted_proxies=["10.0.0.0/8", "::1"])


def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert TRUST.resolve("198.51.100.7", []) == "198.51.100.7"
    # A forged header from the client itself, one line or several: ignored.
    assert TRUST.resolve("198.51.100.7", ["1.2.3.4"]) == "198.51.100.7"
    assert TRUST.resolve("198.51.100.7", ["1.2.3.4", "10.0.0.1, 5.6.7.8"]) == "198.51.100.7"
    assert TRUST.resolve("198.51.100.7", ["1.2.3.4\r\n\t5.6.7.8"]) == "198.51.100.7"
    # Nothing trusted at all: even a loopback peer's header is ignored.
    assert ClientAddress().resolve("127.0.0.1", ["1.2.3.4"]) == "127.0.0.1"


def test_walked_from_the_right_past_trusted_hops_never_the_leftmost_entry():
    # The client wrote "6.6.6.6" itself; the first proxy appended the real peer 203.0.113.9,
    # the second proxy appended the first (10.0.0.7).
    assert TRUST.resolve("10.0.0.5", ["6.6.6.6, 203.0.113.9, 10.0.0.7"]) == "203.0.113.9"
    # The same, as several header lines, read in order.
    assert TRUST.resolve("10.0.0.5", ["6.6.6.6", "203.0.113.9", "10.0.0.7"]) == "203.0.113.9"
    assert TRUST.resolve("10.0.0.5", ["6.6.6.6, 203.0.113.9", "10.0.0.7"]) == "203.0.113.9"
    # Through a trusted proxy without a header: the proxy itself.
    assert TRUST.resolve("10.0.0.5", []) == "10.0.0.5"
    # Only trusted hops: the leftmost of them (still a trusted address, not a client's claim).
    assert TRUST.resolve("10.0.0.5", ["10.1.1.1, 10.0.0.7"]) == "10.1.1.1"
    # Garbage written by a trusted hop stops the walk there: never past it to the left.
    assert TRUST.resolve("10.0.0.5", ["6.6.6.6, unknown, 10.0.0.7"]) == "10.0.0.7"
    assert TRUST.resolve("10.0.0.5", ["6.6.6.6, ,"]) == "10.0.0.5"
    assert TRUST.resolve("10.0.0.5", ["6.6.6.6, 1.2.3.4.5"]) == "10.0.0.5"


def test_address_forms_ports_ipv6_and_mapped_addresses():
    assert TRUST.resolve("10.0.0.5", ["203.0.113.9:4711"]) == "203.0.113.9"
    assert TRUST.resolve("10.0.0.5", ["[2001:db8::1]:443"]) == "2001:db8::/64"
    assert TRUST.resolve("::1", ["2001:db8:0:0:ffff::1"]) == "2001:db8::/64"
    assert TRUST.resolve("::ffff:10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"  # mapped peer
    assert TRUST.resolve("10.0.0.5", ["::ffff:203.0.113.9"]) == "203.0.113.9"
    exact = ClientAddress(trusted_proxies=["10.0.0.0/8"], ipv6_prefix=128)
    assert exact.resolve("10.0.0.5", ["2001:db8::1"]) == "2001:db8::1"
    assert exact.resolve("2001:db8::2", []) == "2001:db8::2"
    # Unix-socket peers: trusted only when listed.
    assert ClientAddress().resolve(None, ["203.0.113.9"]) == "unix"
    assert ClientAddress(["unix"]).resolve(None, ["203.0.113.9"]) == "203.0.113.9"


def test_bad_trusted_proxies_say_what_is_wrong():
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        ClientAddress(["10.0.0.300"])
    with pytest.raises(TypeError, match="list"):
        ClientAddress("10.0.0.0/8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ipv6_prefix"):
        ClientAddress(ipv6_prefix=0)


def test_from_environ_and_from_scope():
    environ = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9"}
    assert TRUST.from_environ(environ) == "203.0.113.9"
    scope = {
        "client": ("10.0.0.5", 5000),
        "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"host", b"x"), (b"X-Forwarded-For", b"203.0.113.9")],
    }
    assert TRUST.from_scope(scope) == "203.0.113.9"
    assert TRUST.from_scope({"client": None, "headers": []}) == "unix"


# ---- WSGI ---------------------------------------------------------------------------------------


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def wsgi_get(app, path="/", peer="198.51.100.7", forwarded=None):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": peer}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    got = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return got["status"], got["headers"], body, environ


def test_wsgi_refuses_with_429_retry_after_and_headers():
    with sluice.Limiter(POLICY) as limiter:
        app = WSGIMiddleware(hello, limiter)
        for remaining in (2, 1, 0):
            status, headers, body, environ = wsgi_get(app)
            assert (status, body) == ("200 OK", b"hello")
            assert headers["X-RateLimit-Limit"] == "3"
            assert headers["X-RateLimit-Remaining"] == str(remaining)
            assert headers["Content-Type"] == "text/plain"
            assert environ[ENVIRON_CLIENT] == "198.51.100.7"
            assert environ[ENVIRON_DECISION].remaining == remaining
        status, headers, body, _ = wsgi_get(app)
        assert status == "429 Too Many Requests"
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert headers["X-RateLimit-Remaining"] == "0"
        assert headers["Content-Length"] == str(len(body)) and b"Too Many Requests" in body
        # Another client is not affected.
        assert wsgi_get(app, peer="198.51.100.8")[0] == "200 OK"


def test_wsgi_ietf_style_and_no_headers_on_admitted_responses():
    with sluice.Limiter(POLICY) as limiter:
        app = WSGIMiddleware(hello, limiter, header_style="ietf", send_headers=False)
        for _ in range(3):
            status, headers, _, _ = wsgi_get(app)
            assert status == "200 OK" and set(headers) == {"Content-Type"}
        status, headers, _, _ = wsgi_get(app)
        assert status.startswith("429")
        assert headers["RateLimit-Policy"] == '"global";q=3;w=60'
        assert headers["RateLimit"].startswith('"global";r=0;t=')
        assert "Retry-After" in headers and "X-RateLimit-Limit" not in headers
    with pytest.raises(ValueError, match="header_style"):
        WSGIMiddleware(hello, sluice.Limiter(POLICY), header_style="draft")


def test_wsgi_route_prefixes_pick_the_category_the_longest_first():
    with sluice.Limiter(POLICY) as limiter:
        app = WSGIMiddleware(
            hello, limiter, {"/login": "auth", "/api/": "api", "/api/health": None, "/static/": None}
        )
        # /login is auth (2/1m, and global 3/1m applies to every category too).
        assert wsgi_get(app, "/login")[1]["X-RateLimit-Limit"] == "2"
        assert wsgi_get(app, "/login/again")[0] == "200 OK"
        assert wsgi_get(app, "/login")[0].startswith("429")
        # /loginx is not under /login: the default, global, which has one request left.
        assert wsgi_get(app, "/loginx")[0] == "200 OK"
        assert wsgi_get(app, "/loginx")[0].startswith("429")
        # Exempt prefixes are never checked, even for a client that is refused elsewhere.
        for _ in range(10):
            assert wsgi_get(app, "/static/app.css")[0] == "200 OK"
            assert wsgi_get(app, "/api/health")[0] == "200 OK"
        assert ENVIRON_DECISION not in wsgi_get(app, "/static/x")[3]
    with pytest.raises(sluice.UnknownCategoryError):
        WSGIMiddleware(hello, sluice.Limiter(POLICY), {"/x": "nope"})
    with pytest.raises(ValueError, match="starts with /"):
        WSGIMiddleware(hello, sluice.Limiter(POLICY), {"login": "auth"})


def test_wsgi_category_function_default_none_and_key_function():
    def category(environ):
        return "api" if environ.get("REQUEST_METHOD") == "GET" else None

    with sluice.Limiter(POLICY) as limiter:
        app = WSGIMiddleware(hello, limiter, category, key=lambda environ: "tenant-1")
        for i in range(3):  # global 3/1m is the tighter of api's rules
            assert wsgi_get(app, peer="198.51.100.{}".format(i))[0] == "200 OK"
        assert wsgi_get(app, peer="198.51.100.99")[0].startswith("429")  # one tenant key
        assert limiter.peek("tenant-1", "api").remaining == 0
        assert limiter.peek("198.51.100.1", "api").remaining == 2  # as a first check reports
    with sluice.Limiter(POLICY) as limiter:
        app = WSGIMiddleware(hello, limiter, {"/api/": "api"}, default=None)
        for _ in range(10):
            assert wsgi_get(app, "/")[0] == "200 OK"


def test_wsgi_behind_a_trusted_proxy_keys_the_forwarded_client():
    with sluice.Limiter(POLICY) as limiter:
        app = WSGIMiddleware(hello, limiter, trusted_proxies=["10.0.0.0/8"])
        # Through the proxy, each forwarded client has its own budget; a client forging the
        # leftmost entry does not escape its own.
        for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
            status, _, _, environ = wsgi_get(app, peer="10.0.0.5", forwarded=forged + ", 203.0.113.9")
            assert status == "200 OK" and environ[ENVIRON_CLIENT] == "203.0.113.9"
        assert wsgi_get(app, peer="10.0.0.5", forwarded="4.4.4.4, 203.0.113.9")[0].startswith("429")
        assert wsgi_get(app, peer="10.0.0.5", forwarded="203.0.113.10")[0] == "200 OK"
        # A client that is not the proxy cannot pick its key with the header.
        for i in range(3):
            wsgi_get(app, peer="198.51.100.7", forwarded="9.9.9.{}".format(i))
        assert wsgi_get(app, peer="198.51.100.7", forwarded="9.9.9.9")[0].startswith("429")


def test_wsgi_admitted_headers_do_not_override_the_applications_own():
    def app_with_own(environ, start_response):
        start_response("200 OK", [("X-RateLimit-Limit", "app")])
        return [b""]

    with sluice.Limiter(POLICY) as limiter:
        _, headers, _, _ = wsgi_get(WSGIMiddleware(app_with_own, limiter))
        assert headers["X-RateLimit-Limit"] == "app"
        assert headers["X-RateLimit-Remaining"] == "2"


# ---- ASGI ---------------------------------------------------------------------------------------


async def asgi_hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def asgi_get(app, path="/", client=("198.51.100.7", 5000), headers=(), type_="http"):
    scope = {"type": type_, "path": path, "method": "GET", "client": client, "headers": list(headers)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent, scope


def test_asgi_refuses_with_429_and_sends_headers_on_admitted_responses():
    with sluice.Limiter(POLICY) as limiter:
        app = ASGIMiddleware(asgi_hello, limiter, {"/login": "auth"}, header_style="ietf")
        sent, scope = asgi_get(app, "/login")
        start = sent[0]
        assert start["status"] == 200
        headers = dict(start["headers"])
        assert headers[b"content-type"] == b"text/plain"
        assert headers[b"ratelimit-policy"] == b'"auth";q=2;w=60'
        assert headers[b"ratelimit"] == b'"auth";r=1;t=60'
        assert sent[1]["body"] == b"hello"
        assert scope[ENVIRON_CLIENT] == "198.51.100.7" and scope[ENVIRON_DECISION].allowed
        asgi_get(app, "/login")
        sent, _ = asgi_get(app, "/login")
        assert sent[0]["status"] == 429
        headers = dict(sent[0]["headers"])
        assert 1 <= int(headers[b"retry-after"]) <= 60
        assert headers[b"ratelimit"].startswith(b'"auth";r=0;t=')
        assert b"Too Many Requests" in sent[1]["body"]
        assert len(sent) == 2  # the application was not called


def test_asgi_trusted_proxy_header_lines_and_other_scopes():
    with sluice.Limiter(POLICY) as limiter:
        app = ASGIMiddleware(asgi_hello, limiter, trusted_proxies=["127.0.0.1"])
        lines = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.9")]
        _, scope = asgi_get(app, client=("127.0.0.1", 1), headers=lines)
        assert scope[ENVIRON_CLIENT] == "203.0.113.9"
        _, scope = asgi_get(app, client=("198.51.100.7", 1), headers=lines)
        assert scope[ENVIRON_CLIENT] == "198.51.100.7"
        assert limiter.peek("203.0.113.9").remaining == 1  # one checked: a second would leave 1
        # Lifespan and websocket scopes go straight to the application, unchecked.
        sent, scope = asgi_get(app, type_="lifespan")
        assert ENVIRON_DECISION not in scope and sent[0]["status"] == 200
        assert limiter.peek("198.51.100.7").remaining == 1  # its one http request only


def test_asgi_category_function_key_function_and_no_headers():
    def category(scope):
        return "api" if scope["path"].startswith("/v1/") else None

    with sluice.Limiter(POLICY) as limiter:
        app = ASGIMiddleware(asgi_hello, limiter, category, key=lambda scope: "tenant-1", send_headers=False)
        for i in range(3):
            sent, _ = asgi_get(app, "/v1/items", client=("198.51.100.{}".format(i), 1))
            assert sent[0]["status"] == 200 and dict(sent[0]["headers"]) == {b"content-type": b"text/plain"}
        sent, _ = asgi_get(app, "/v1/items", client=("198.51.100.99", 1))
        assert sent[0]["status"] == 429 and b"x-ratelimit-remaining" in dict(sent[0]["headers"])
        for _ in range(5):  # not under /v1/: unchecked
            assert asgi_get(app, "/health")[0][0]["status"] == 200
        assert limiter.peek("tenant-1", "api").remaining == 0


# ---- the login helper ---------------------------------------------------------------------------


def test_login_guard_by_ip_locks_the_address_and_the_middleware_refuses_it():
    with sluice.Limiter(POLICY) as limiter:
        guard = LoginGuard(limiter, "auth", by="ip")
        assert guard.locked(ip="198.51.100.7") is None
        assert guard.failure(ip="198.51.100.7").remaining == 2
        assert guard.failure(ip="198.51.100.7").remaining == 1
        d = guard.failure(ip="198.51.100.7")
        assert (d.status, d.allowed) == ("locked", False) and d.retry_after == 15 * 60
        locked = guard.locked(ip="198.51.100.7")
        assert locked is not None and locked.status == "locked"
        # The same key as the middleware's: the address is refused on the auth routes.
        app = WSGIMiddleware(hello, limiter, {"/login": "auth"})
        status, headers, _, _ = wsgi_get(app, "/login")
        assert status.startswith("429") and int(headers["Retry-After"]) > 60
        assert guard.locked(ip="198.51.100.8") is None


def test_login_guard_by_account_and_by_both():
    with sluice.Limiter(POLICY) as limiter:
        by_account = LoginGuard(limiter, by="account")
        for ip in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):  # spread over addresses
            by_account.failure(ip=ip, account="alice")
        assert by_account.locked(account="alice") is not None
        assert by_account.locked(account="bob") is None
        # An account named like an address does not share that address's lockout.
        assert LoginGuard(limiter, by="ip").locked(ip="alice") is None
        assert by_account.key(account="1.1.1.1") == "account:1.1.1.1"

        both = LoginGuard(limiter, by="both")
        for _ in range(3):
            both.failure(ip="1.1.1.1", account="carol")
        assert both.locked(ip="1.1.1.1", account="carol") is not None
        assert both.locked(ip="2.2.2.2", account="carol") is None  # another address
        assert both.locked(ip="1.1.1.1", account="dave") is None  # another account
        # success forgets the failures (two, then success, then two more: not locked).
        for _ in range(2):
            both.failure(ip="9.9.9.9", account="erin")
        both.success(ip="9.9.9.9", account="erin")
        for _ in range(2):
            both.failure(ip="9.9.9.9", account="erin")
        assert both.locked(ip="9.9.9.9", account="erin") is None
        with pytest.raises(ValueError, match="needs the account"):
            both.key(ip="1.1.1.1")
        with pytest.raises(ValueError, match="needs the client's ip"):
            LoginGuard(limiter, by="ip").failure(account="x")
    with pytest.raises(ValueError, match="'ip', 'account', 'both'"):
        LoginGuard(sluice.Limiter(POLICY), by="user")
    with pytest.raises(sluice.NoLockoutError):
        LoginGuard(sluice.Limiter(POLICY), "api").failure(ip="1.1.1.1")


def test_module_docstring_examples():
    import doctest

    import sluice.middleware as module

    failures, tried = doctest.testmod(module, verbose=False)
    assert tried > 0 and failures == 0
