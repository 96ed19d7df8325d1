"""Fixtures: Redis servers with the module loaded, on 127.0.0.1, each in its own directory,
always stopped when the test ends."""

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

MODULE = os.environ.get("SLUICE_REDIS_MODULE", "")

POLICY = """\
global 20/1m
search 5/1m
write 3/10s
write 10/1h
auth 4/1m
auth lockout 3/15m for 1m..8m
"""

FIELDS = ("allowed", "status", "limit", "remaining", "reset", "retry_after", "rule", "window_ms")


def decision(reply):
    """A SLUICE.CHECK/PEEK/FAILURE reply as a dict."""
    assert isinstance(reply, list) and len(reply) == len(FIELDS), reply
    d = dict(zip(FIELDS, reply))
    if isinstance(d["status"], bytes):
        d["status"] = d["status"].decode()
    return d


def free_port():
    """A free high port whose cluster bus port (+10000) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if 20000 <= port <= 55535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class Server:
    """One redis-server process."""

    def __init__(self, directory, policy_file, client_time=True, extra=(), module_args=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.dir / "redis.log"
        margs = module_args if module_args is not None else (
            ["POLICY", str(policy_file)] + (["CLIENT-TIME", "yes"] if client_time else [])
        )
        self.argv = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--save", "", "--appendonly", "no",
            "--logfile", str(self.log),
            "--enable-debug-command", "local", "--enable-module-command", "local",
            "--loadmodule", MODULE, *margs, *extra,
        ]
        self.proc = None

    def start(self, wait=True):
        assert MODULE, "SLUICE_REDIS_MODULE is not set (run bindings/redis/run_tests.sh)"
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait:
            return self
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log_text()}")
            time.sleep(0.02)

    def wait_exit(self, timeout=10):
        return self.proc.wait(timeout=timeout)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def log_text(self):
        try:
            return self.log.read_text()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "test.policy"
    p.write_text(POLICY)
    return p


@pytest.fixture
def servers(tmp_path):
    """A factory of servers; every one is stopped at the end of the test."""
    made = []

    def make(name="r", policy_file=None, **kw):
        if policy_file is None:
            policy_file = tmp_path / "test.policy"
            if not policy_file.exists():
                policy_file.write_text(POLICY)
        s = Server(tmp_path / name, policy_file, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def r(servers):
    """A client of a fresh server (CLIENT-TIME yes)."""
    return servers().start().client()


@pytest.fixture
def now():
    """A time near the server's clock (keys expire by it), in Unix ms."""
    return int(time.time() * 1000)
