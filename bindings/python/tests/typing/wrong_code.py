"""Misuses that the annotations must catch: ``mypy --strict`` reports an error on every line
marked ``# error`` (tests/test_typing.py), which it could not if the API were untyped (Any)."""

import sluice

limiter = sluice.Limiter("global 5/1m")
d = limiter.check("k")
limiter.check(42)  # error: a key is str or bytes
limiter.check("k", now_ms="now")  # error: now_ms is an int or None
n: str = d.remaining  # error: remaining is an int
ok: str = limiter.allow("k")  # error: allow answers a bool
h: int = d.headers()  # error: headers are a dict of str
s: int = limiter.stats().rules  # error: rules are a list of dicts
limiter.success("k", 3)  # error: a category is a name
x: None = d.rule  # error: rule is an int or None
sluice.Limiter(policy=3)  # error: a policy is text
from sluice.middleware import ClientAddress, LoginGuard, WSGIMiddleware  # noqa: E402

WSGIMiddleware(42, limiter)  # error: an application is a WSGI callable
w: str = LoginGuard(limiter).failure(ip="1.2.3.4")  # error: failure returns a Decision
ClientAddress().resolve("10.0.0.5", 7)  # error: the header values are strings
