"""WSGI and ASGI middleware, the client address behind trusted proxies, and a helper for login
views. No web framework is needed: the middleware speaks plain WSGI (PEP 3333) and ASGI 3.

>>> import sluice
>>> from sluice.middleware import ClientAddress
>>> ClientAddress(trusted_proxies=["10.0.0.0/8"]).resolve("10.0.0.5", ["203.0.113.9, 10.0.0.7"])
'203.0.113.9'
>>> ClientAddress().resolve("198.51.100.7", ["203.0.113.9"])   # an untrusted peer: ignored
'198.51.100.7'
"""

import ipaddress
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ._limiter import GLOBAL, HEADER_STYLES, Decision, Limiter

__all__ = [
    "ClientAddress",
    "WSGIMiddleware",
    "ASGIMiddleware",
    "LoginGuard",
    "CategoryMap",
    "ENVIRON_CLIENT",
    "ENVIRON_DECISION",
]

#: The WSGI environ key (and ASGI scope key) where the middleware leaves the client's address.
ENVIRON_CLIENT = "sluice.client"
#: ... and the decision of the request (absent for a request no category applied to).
ENVIRON_DECISION = "sluice.decision"

Environ = Dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Route prefixes to categories (None: not limited), or a function from the request (the WSGI
#: environ or the ASGI scope) to a category or None.
CategoryMap = Union[Mapping[str, Optional[str]], Callable[[MutableMapping[str, Any]], Optional[str]]]

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: The peer name of a request that came over a Unix socket (no address): list it in
#: ``trusted_proxies`` when the proxy in front talks to the application over one.
UNIX_PEER = "unix"


def _parse_address(text: str) -> Optional[Address]:
    """An address as a peer or an X-Forwarded-For entry writes it: ``1.2.3.4``,
    ``1.2.3.4:port``, ``2001:db8::1``, ``[2001:db8::1]`` or ``[2001:db8::1]:port``; an
    IPv4-mapped IPv6 address is its IPv4 one. None if it is none of these."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and not text[end + 1 :].startswith(":")):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    if "%" in text:  # a zone index names an interface of the proxy, not a client
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddress:
    """Which address a request comes from.

    The peer of the connection, unless that peer is a trusted proxy: then ``X-Forwarded-For``
    is walked from the right (the entry the nearest proxy appended) past every trusted hop, and
    the first untrusted address is the client. The leftmost entry is never taken just for being
    first (a client writes whatever it likes there); an entry that is not an address stops the
    walk at the last trusted hop. From an untrusted peer the header is ignored, however many
    lines of it arrive. Several header lines from a trusted peer are read in order, as one
    comma-separated list.

    ``trusted_proxies``: addresses or networks (``"10.0.0.0/8"``, ``"127.0.0.1"``,
    ``"::1"``), and ``"unix"`` for a peer on a Unix socket. ``ipv6_prefix``: an IPv6 client
    is keyed by its network of this many bits (64 by default: one subscriber usually holds a
    whole /64, and would otherwise get 2^64 keys); 128 keys each address.
    """

    def __init__(self, trusted_proxies: Iterable[str] = (), ipv6_prefix: int = 64) -> None:
        if isinstance(trusted_proxies, (str, bytes)):
            raise TypeError("trusted_proxies is a list of addresses or networks, not one string")
        if not isinstance(ipv6_prefix, int) or isinstance(ipv6_prefix, bool) or not 1 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix is a prefix length from 1 to 128, not {!r}".format(ipv6_prefix))
        self.ipv6_prefix = ipv6_prefix
        self.trust_unix = False
        networks: List[Network] = []
        for entry in trusted_proxies:
            if entry == UNIX_PEER:
                self.trust_unix = True
                continue
            try:
                network = ipaddress.ip_network(entry.strip(), strict=False)
            except (ValueError, AttributeError):
                raise ValueError(
                    "trusted_proxies: {!r} is not an address or a network such as 10.0.0.0/8, "
                    "nor \"unix\"".format(entry)
                ) from None
            networks.append(network)
        self.trusted: Tuple[Network, ...] = tuple(networks)

    def is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self.trusted)

    def _key(self, address: Address) -> str:
        if isinstance(address, ipaddress.IPv6Address) and self.ipv6_prefix < 128:
            network = ipaddress.IPv6Network((address, self.ipv6_prefix), strict=False)
            return str(network)
        return str(address)

    def resolve(self, peer: Optional[str], forwarded_for: Sequence[str] = ()) -> str:
        """The client of a request from ``peer`` (the connection's address, or None for a
        Unix socket) that carried these ``X-Forwarded-For`` header values, in the order
        received. Returns the key text: an address, or for IPv6 its network, or ``"unix"``."""
        if peer is None or peer == "" or peer == UNIX_PEER:
            if not self.trust_unix:
                return UNIX_PEER
            last: Optional[Address] = None
            last_text = UNIX_PEER
        else:
            last = _parse_address(peer)
            if last is None:
                return peer  # not an address (a test client's name): itself
            if not self.is_trusted(last):
                return self._key(last)
            last_text = self._key(last)
        entries = [e for value in forwarded_for for e in value.split(",")]
        for entry in reversed(entries):
            address = _parse_address(entry)
            if address is None:
                break  # a trusted hop wrote something that is not an address: stop at it
            if not self.is_trusted(address):
                return self._key(address)
            last, last_text = address, self._key(address)
        return last_text

    def from_environ(self, environ: Mapping[str, Any]) -> str:
        """The client of a WSGI request (``REMOTE_ADDR``, ``HTTP_X_FORWARDED_FOR``)."""
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        return self.resolve(environ.get("REMOTE_ADDR"), [forwarded] if forwarded else [])

    def from_scope(self, scope: Mapping[str, Any]) -> str:
        """The client of an ASGI request (``scope["client"]``, the ``x-forwarded-for``
        header lines)."""
        client = scope.get("client")
        peer = client[0] if client else None
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers") or ()
            if name.lower() == b"x-forwarded-for"
        ]
        return self.resolve(peer, forwarded)


def _prefix_matches(path: str, prefix: str) -> bool:
    """``/auth`` matches ``/auth`` and ``/auth/login``, not ``/authors``; ``/static/``
    matches everything under it."""
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


class _Rules:
    """What the two middlewares share: the category of a request, its key, and the responses."""

    def __init__(
        self,
        limiter: Limiter,
        categories: Optional[CategoryMap],
        default: Optional[str],
        trusted_proxies: Iterable[str],
        ipv6_prefix: int,
        key: Optional[Callable[[MutableMapping[str, Any]], str]],
        header_style: str,
        send_headers: bool,
    ) -> None:
        if not isinstance(limiter, Limiter):
            raise TypeError("limiter is a sluice.Limiter, not {}".format(type(limiter).__name__))
        if header_style not in HEADER_STYLES:
            raise ValueError(
                "header_style is one of {}, not {!r}".format(
                    ", ".join(map(repr, HEADER_STYLES)), header_style
                )
            )
        self.limiter = limiter
        self.default = default
        self.client = ClientAddress(trusted_proxies, ipv6_prefix)
        self.key = key
        self.header_style = header_style
        self.send_headers = send_headers
        self.function: Optional[Callable[[MutableMapping[str, Any]], Optional[str]]] = None
        self.prefixes: List[Tuple[str, Optional[str]]] = []
        if callable(categories):
            self.function = categories
        elif categories is not None:
            for prefix, category in categories.items():
                if not isinstance(prefix, str) or not prefix.startswith("/"):
                    raise ValueError("a route prefix starts with /: {!r}".format(prefix))
                self.prefixes.append((prefix, category))
            self.prefixes.sort(key=lambda item: len(item[0]), reverse=True)  # longest first
        # Unknown categories are an error now, not at the first request.
        for category in [c for _, c in self.prefixes] + [default]:
            if category is not None:
                limiter.category_id(category)

    def category(self, request: MutableMapping[str, Any], path: str) -> Optional[str]:
        if self.function is not None:
            return self.function(request)
        for prefix, category in self.prefixes:
            if _prefix_matches(path, prefix):
                return category
        return self.default

    def refusal(self, decision: Decision) -> Tuple[List[Tuple[str, str]], bytes]:
        """The headers and body of a 429."""
        headers = list(decision.headers(self.header_style).items())
        if not any(name == "Retry-After" for name, _ in headers):
            headers.append(("Retry-After", str(max(1, decision.retry_after))))
        body = "Too Many Requests: retry in {} s\n".format(max(1, decision.retry_after)).encode()
        headers += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        return headers, body


class WSGIMiddleware:
    """Rate-limits a WSGI application.

    ``categories``: route prefixes to categories (``{"/login": "auth", "/api/": "write",
    "/static/": None}``, the longest matching prefix decides, None exempts), or a function from
    the environ to a category (or None); a request nothing matches gets ``default``
    (``"global"``; None exempts it). Each request is checked for its client (see
    ``ClientAddress``: ``trusted_proxies``, ``ipv6_prefix``) or for ``key(environ)``. A refused
    request gets ``429 Too Many Requests`` with ``Retry-After`` and the rate-limit headers of
    ``header_style`` (``"x-ratelimit"`` or ``"ietf"``); an admitted one goes to the
    application, its response carrying those headers too unless ``send_headers=False``. The
    environ gets the client (``"sluice.client"``) and the decision (``"sluice.decision"``).
    """

    def __init__(
        self,
        app: WSGIApp,
        limiter: Limiter,
        categories: Optional[CategoryMap] = None,
        *,
        default: Optional[str] = GLOBAL,
        trusted_proxies: Iterable[str] = (),
        ipv6_prefix: int = 64,
        key: Optional[Callable[[MutableMapping[str, Any]], str]] = None,
        header_style: str = "x-ratelimit",
        send_headers: bool = True,
    ) -> None:
        self.app = app
        self.rules = _Rules(
            limiter, categories, default, trusted_proxies, ipv6_prefix, key, header_style, send_headers
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        rules = self.rules
        client = rules.client.from_environ(environ)
        environ[ENVIRON_CLIENT] = client
        category = rules.category(environ, environ.get("PATH_INFO") or "/")
        if category is None:
            return self.app(environ, start_response)
        key = rules.key(environ) if rules.key is not None else client
        decision = rules.limiter.check(key, category)
        environ[ENVIRON_DECISION] = decision
        if not decision.allowed:
            headers, body = rules.refusal(decision)
            start_response("429 Too Many Requests", headers)
            return [body]
        if not rules.send_headers:
            return self.app(environ, start_response)
        extra = list(decision.headers(rules.header_style).items())

        def start_with_headers(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            headers = list(headers) + [(n, v) for n, v in extra if n.lower() not in present]
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            return start_response(status, headers)

        return self.app(environ, start_with_headers)


class ASGIMiddleware:
    """Rate-limits an ASGI 3 application (HTTP requests; other scopes pass through). The
    options are ``WSGIMiddleware``'s; a ``categories`` or ``key`` function gets the scope. The
    scope gets ``"sluice.client"`` and ``"sluice.decision"``."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        categories: Optional[CategoryMap] = None,
        *,
        default: Optional[str] = GLOBAL,
        trusted_proxies: Iterable[str] = (),
        ipv6_prefix: int = 64,
        key: Optional[Callable[[MutableMapping[str, Any]], str]] = None,
        header_style: str = "x-ratelimit",
        send_headers: bool = True,
    ) -> None:
        self.app = app
        self.rules = _Rules(
            limiter, categories, default, trusted_proxies, ipv6_prefix, key, header_style, send_headers
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        rules = self.rules
        client = rules.client.from_scope(scope)
        scope[ENVIRON_CLIENT] = client
        category = rules.category(scope, scope.get("path") or "/")
        if category is None:
            await self.app(scope, receive, send)
            return
        key = rules.key(scope) if rules.key is not None else client
        decision = rules.limiter.check(key, category)
        scope[ENVIRON_DECISION] = decision
        if not decision.allowed:
            headers, body = rules.refusal(decision)
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        if not rules.send_headers:
            await self.app(scope, receive, send)
            return
        extra = [
            (n.lower().encode("latin-1"), v.encode("latin-1"))
            for n, v in decision.headers(rules.header_style).items()
        ]

        async def send_with_headers(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {bytes(name).lower() for name, _ in headers}
                message = dict(message)
                message["headers"] = headers + [(n, v) for n, v in extra if n not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LoginGuard:
    """Brute-force lockouts for a login view, on a category with a ``lockout`` line.

    ``by``: whom a wrong password counts against: ``"ip"`` (the client address: the key the
    middleware uses, so a locked-out address is refused on every route of that category),
    ``"account"`` (the account name, from any address: protects one account from a spread-out
    attack, but lets an attacker lock a victim out for the ban's length), or ``"both"`` (the
    address and the account joined: one address guessing one account).

    In the view: ``locked(...)`` first (the decision to refuse with, or None), then the
    password check, then ``failure(...)`` or ``success(...)``.
    """

    BY = ("ip", "account", "both")

    def __init__(self, limiter: Limiter, category: str = "auth", by: str = "ip") -> None:
        if by not in self.BY:
            raise ValueError("by is one of {}, not {!r}".format(", ".join(map(repr, self.BY)), by))
        if not isinstance(limiter, Limiter):
            raise TypeError("limiter is a sluice.Limiter, not {}".format(type(limiter).__name__))
        limiter.category_id(category)  # an unknown category fails now
        self.limiter = limiter
        self.category = category
        self.by = by

    def key(self, ip: Optional[str] = None, account: Optional[str] = None) -> str:
        """The key a failure counts against: the address, ``"account:NAME"``, or ``"ADDRESS
        NAME"``. Accounts are prefixed, so an account named like an address never shares that
        address's lockout; an address never contains a space, so the joined key is
        unambiguous."""
        if self.by in ("ip", "both") and not ip:
            raise ValueError("LoginGuard(by={!r}) needs the client's ip".format(self.by))
        if self.by in ("account", "both") and not account:
            raise ValueError("LoginGuard(by={!r}) needs the account".format(self.by))
        if self.by == "ip":
            return str(ip)
        if self.by == "account":
            return "account:" + str(account)
        return "{} {}".format(ip, account)

    def locked(self, ip: Optional[str] = None, account: Optional[str] = None) -> Optional[Decision]:
        """The refusal to answer with (status ``"locked"``, ``retry_after`` the rest of the
        lock) if the key is locked out, else None. Records nothing."""
        decision = self.limiter.peek(self.key(ip, account), self.category)
        return decision if decision.status == "locked" else None

    def failure(self, ip: Optional[str] = None, account: Optional[str] = None) -> Decision:
        """A wrong password: the key's state after it (``"locked"`` when this one locked it,
        else ``"passed"`` with ``remaining`` failures left)."""
        return self.limiter.failure(self.key(ip, account), self.category)

    def success(self, ip: Optional[str] = None, account: Optional[str] = None) -> None:
        """A right password: the key's failures are forgotten (its lockout level is kept)."""
        self.limiter.success(self.key(ip, account), self.category)
