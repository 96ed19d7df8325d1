"""Drives a real nginx with the sluice module: each test gets its own prefix directory under
/tmp, a free port on 127.0.0.1, a master and 4 workers (as `nobody` when run as root), and
stops it afterwards whatever happened.

Environment: SLUICE_NGINX_MODULE (the .so, from build.sh), SLUICE_BIN (the `sluice` command),
NGINX (the nginx binary, default `nginx`)."""

import http.client
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE = os.environ.get(
    "SLUICE_NGINX_MODULE", os.path.join(REPO, "target", "nginx", "ngx_http_sluice_module.so")
)
SLUICE_BIN = os.environ.get("SLUICE_BIN", os.path.join(REPO, "target", "release", "sluice"))
NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
IS_ROOT = os.geteuid() == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # name (lower case) -> value; repeated names joined by ", "
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.headers)


class Nginx:
    """One nginx instance in its own prefix directory."""

    def __init__(self):
        # run_tests.sh gives each run a parent directory, to stop whatever a killed run left
        parent = os.environ.get("SLUICE_NGINX_TEST_DIR") or None
        self.prefix = tempfile.mkdtemp(prefix="sluice-nginx-test.", dir=parent)
        os.chmod(self.prefix, 0o755)  # workers run as nobody: they read html/ in here
        self.port = free_port()
        self.proc = None
        self.conf = os.path.join(self.prefix, "nginx.conf")
        self.table = os.path.join(self.prefix, "api.sluice")
        self.policy = os.path.join(self.prefix, "api.policy")
        html = os.path.join(self.prefix, "html")
        os.mkdir(html)
        os.chmod(html, 0o755)
        for name, text in [("index.html", "index\n"), ("a.html", "a\n"), ("404.html", "gone\n")]:
            self.write(os.path.join("html", name), text)
        os.makedirs(os.path.join(html, "media"))
        self.write(os.path.join("html", "media", "m.html"), "media\n")
        os.makedirs(os.path.join(html, "free"))
        self.write(os.path.join("html", "free", "f.html"), "free\n")
        os.chmod(os.path.join(html, "media"), 0o755)
        os.chmod(os.path.join(html, "free"), 0o755)

    def path(self, name):
        return os.path.join(self.prefix, name)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o644)
        return p

    def configure(self, policy, http="", server="", table_args=None, top="", variables=True):
        """Writes api.policy and nginx.conf; returns the line number of each line of the
        configuration (for messages naming it)."""
        if policy is not None:
            self.write("api.policy", policy)
        if table_args is None:
            table_args = "path=%s policy=%s" % (self.table, self.policy)
        p = self.prefix
        variables = (
            """
        add_header X-Sluice-Status $sluice_status always;
        add_header X-Sluice-Remaining $sluice_remaining always;
        add_header X-Sluice-Retry-After $sluice_retry_after always;"""
            if variables
            else ""
        )
        user = "user nobody nogroup;" if IS_ROOT else ""
        text = f"""load_module {MODULE};
{user}
daemon off;
master_process on;
worker_processes 4;
pid {p}/nginx.pid;
error_log {p}/error.log info;
{top}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    sluice_table api {table_args};
{http}
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        root {p}/html;
        add_header X-Worker $pid always;
{variables}
{server}
    }}
}}
"""
        with open(self.conf, "w") as f:
            f.write(text)
        return text

    def conf_line(self, needle):
        with open(self.conf) as f:
            for i, line in enumerate(f, 1):
                if needle in line:
                    return i
        raise AssertionError("%r not in nginx.conf" % needle)

    def run(self, *args):
        return subprocess.run(
            [NGINX, "-p", self.prefix + "/", "-c", self.conf, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def test_config(self):
        r = self.run("-t")
        return r.returncode, r.stderr

    def start(self):
        assert self.proc is None
        self.proc = subprocess.Popen(
            [NGINX, "-p", self.prefix + "/", "-c", self.conf],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace")
                self.proc = None
                raise AssertionError("nginx exited at start: %s\n%s" % (out, self.error_log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                if len(self.workers()) == 4:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("nginx did not start: " + self.error_log())

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            for pid in self.workers():
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdout.close()
        self.proc = None

    def workers(self):
        """Pids of the master's live children."""
        master = self.proc.pid
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == master and fields[0] != "Z":
                pids.append(int(entry))
        return sorted(pids)

    def uid_of(self, pid):
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
        raise AssertionError("no Uid line")

    def reload(self):
        r = self.run("-s", "reload")
        assert r.returncode == 0, r.stderr
        return r

    def error_log(self):
        try:
            with open(self.path("error.log")) as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.error_log():
                return
            time.sleep(0.05)
        raise AssertionError("%r never in the error log:\n%s" % (needle, self.error_log()))

    def get(self, path, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            h = {"Connection": "close"}
            h.update(headers or {})
            conn.request("GET", path, headers=h)
            resp = conn.getresponse()
            body = resp.read()
            got = {}
            for name, value in resp.getheaders():
                name = name.lower()
                got[name] = got[name] + ", " + value if name in got else value
            return Response(resp.status, got, body)
        finally:
            conn.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture
def nginx():
    n = Nginx()
    try:
        yield n
    finally:
        n.cleanup()


@pytest.fixture(scope="session", autouse=True)
def module_built():
    if not os.path.isfile(MODULE):
        pytest.fail("no module at %s: run bindings/nginx/build.sh" % MODULE)
    if IS_ROOT:
        pwd.getpwnam("nobody")
