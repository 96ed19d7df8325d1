"""The sluice nginx module against a real nginx (see conftest.py)."""

import concurrent.futures
import os
import pwd
import time

from conftest import IS_ROOT


def test_exact_across_four_workers(nginx):
    nginx.configure("global 20/1m\n", server="location / { sluice api; }")
    nginx.start()
    workers = nginx.workers()
    assert len(workers) == 4
    if IS_ROOT:
        # workers never open the 0600 root-owned file: they use the master's mapping
        nobody = pwd.getpwnam("nobody").pw_uid
        assert {nginx.uid_of(pid) for pid in workers} == {nobody}
        assert os.stat(nginx.table).st_mode & 0o777 == 0o600

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: nginx.get("/a.html"), range(200)))

    statuses = [r.status for r in responses]
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 180, statuses
    for r in responses:
        if r.status == 429:
            assert 1 <= int(r.header("Retry-After")) <= 60, r
            assert r.header("X-Sluice-Status") == "LIMITED"
            assert r.header("X-RateLimit-Remaining") == "0"
        else:
            assert r.header("Retry-After") is None, r
            assert r.header("X-Sluice-Status") == "PASSED"
    # the requests were spread over the workers, which shared one table
    assert len({r.header("X-Worker") for r in responses}) >= 2
    assert sorted(int(r.header("X-RateLimit-Remaining")) for r in responses if r.status == 200) == list(
        range(20)
    )


def test_headers_on_admitted_responses(nginx):
    nginx.configure(
        "global 100/1m\nmedia 5/1m\n",
        server="location /media/ { sluice api category=media; }",
    )
    nginx.start()
    before = time.time()
    got = [nginx.get("/media/m.html") for _ in range(5)]
    after = time.time()
    for i, r in enumerate(got):
        assert r.status == 200 and r.body == b"media\n"
        assert r.header("X-RateLimit-Limit") == "5"
        assert r.header("X-RateLimit-Remaining") == str(4 - i)
        reset = int(r.header("X-RateLimit-Reset"))
        assert int(before) + 60 <= reset <= int(after) + 61
        assert r.header("Retry-After") is None
        assert r.header("X-Sluice-Status") == "PASSED"
        assert r.header("X-Sluice-Remaining") == str(4 - i)
        assert r.header("X-Sluice-Retry-After") == "0"
    refused = nginx.get("/media/m.html")
    assert refused.status == 429
    assert refused.header("X-RateLimit-Limit") == "5"
    assert refused.header("X-RateLimit-Remaining") == "0"
    assert 58 <= int(refused.header("Retry-After")) <= 60
    assert refused.header("X-Sluice-Retry-After") == refused.header("Retry-After")


def test_ietf_headers(nginx):
    nginx.configure(
        "global 100/1m\nmedia 2/1m\n",
        http="sluice_headers ietf;",
        server="location /media/ { sluice api category=media; }",
    )
    nginx.start()
    first = nginx.get("/media/m.html")
    assert first.status == 200
    assert first.header("RateLimit-Policy") == '"media";q=2;w=60'
    assert first.header("RateLimit") in ('"media";r=1;t=60', '"media";r=1;t=59')
    assert first.header("X-RateLimit-Limit") is None
    assert nginx.get("/media/m.html").header("RateLimit").startswith('"media";r=0;')
    refused = nginx.get("/media/m.html")
    assert refused.status == 429
    assert refused.header("RateLimit").startswith('"media";r=0;t=')
    assert 1 <= int(refused.header("Retry-After")) <= 60


def test_headers_off_status_and_dry_run(nginx):
    nginx.configure(
        "global 2/1m\n",
        server="""
        location /free/ { sluice off; }
        location = /a.html { sluice api; sluice_headers off; sluice_status 503; }
        location = /index.html { sluice api; sluice_dry_run on; }
        location /media/ { sluice api key=$http_x_api_key; }
        """,
        http="sluice api;",
    )
    nginx.start()
    # sluice off: never limited, no headers, no variables
    for _ in range(5):
        r = nginx.get("/free/f.html")
        assert r.status == 200 and r.header("X-RateLimit-Limit") is None
        assert r.header("X-Sluice-Status") is None
    # headers off, another status
    assert [nginx.get("/a.html").status for _ in range(3)] == [200, 200, 503]
    r = nginx.get("/a.html")
    assert r.status == 503 and r.header("Retry-After") is None
    assert r.header("X-RateLimit-Limit") is None and r.header("X-Sluice-Status") == "LIMITED"
    # dry run: the key is over its limit, yet admitted and marked
    r = nginx.get("/index.html")
    assert r.status == 200 and r.header("X-Sluice-Status") == "DRY_RUN_LIMITED"
    assert r.header("Retry-After") is None
    nginx.wait_log("sluice: LIMITED request (dry run)")
    # an empty key is not limited; a key of its own has its own allowance
    for _ in range(4):
        r = nginx.get("/media/m.html")
        assert r.status == 200 and r.header("X-Sluice-Status") is None
    assert [nginx.get("/media/m.html", {"X-Api-Key": "k1"}).status for _ in range(3)] == [200, 200, 429]


def test_internal_redirects_charge_once(nginx):
    nginx.configure(
        "global 4/1m\n",
        server="""
        location / { sluice api; index index.html; try_files $uri $uri/ /index.html; }
        error_page 404 /404.html;
        """,
    )
    nginx.start()
    # "/" (index), "/nowhere" (try_files) are internal redirects: one charge each
    got = [nginx.get(p) for p in ["/", "/nowhere", "/", "/a.html"]]
    assert [r.status for r in got] == [200] * 4
    assert [r.header("X-RateLimit-Remaining") for r in got] == ["3", "2", "1", "0"]
    r = nginx.get("/")
    assert r.status == 429 and r.header("Retry-After") is not None
    assert r.header("X-RateLimit-Remaining") == "0"


def test_bad_policy_fails_nginx_t_naming_file_and_line(nginx):
    nginx.configure("global 20/1m\nmedia 10/1 minute\n", server="location / { sluice api; }")
    rc, err = nginx.test_config()
    assert rc != 0
    line = nginx.conf_line("sluice_table api")
    assert nginx.policy in err and "line 2" in err, err
    assert "%s:%d" % (nginx.conf, line) in err, err
    assert not os.path.exists(nginx.table)
    with_start = nginx.run()
    assert with_start.returncode != 0 and "line 2" in with_start.stderr


def test_unknown_category_fails_nginx_t(nginx):
    nginx.configure("global 20/1m\n", server="location / {\n sluice api category=nope;\n }")
    rc, err = nginx.test_config()
    assert rc != 0
    line = nginx.conf_line("category=nope")
    assert 'no category "nope"' in err and nginx.policy in err, err
    assert "%s:%d" % (nginx.conf, line) in err, err


def test_other_bad_directives_fail_nginx_t(nginx):
    cases = [
        (dict(table_args="policy=%s" % nginx.policy), "missing path="),
        (dict(table_args="path=%s" % nginx.table), "missing policy="),
        (dict(table_args="path=%s policy=%s mode=0777" % (nginx.table, nginx.policy)), "mode=0777"),
        (dict(table_args="path=%s policy=%s color=red" % (nginx.table, nginx.policy)), 'invalid parameter "color=red"'),
        (dict(table_args="path=%s policy=%s/missing.policy" % (nginx.table, nginx.prefix)), "cannot open the policy file"),
        (dict(server="location / { sluice other; }"), 'no table "other"'),
        (dict(server="location / { sluice api key=; }"), "empty key="),
        (dict(server="location / { sluice api; sluice_failure_status 401; }"), "has no lockout"),
        (dict(server="location / { sluice_failure_status 401; }"), 'location without "sluice"'),
        (dict(server="location / { sluice api; sluice_status 200; }"), "between 400 and 599"),
        (dict(server="location / { sluice api; sluice_headers both; }"), "invalid value \"both\""),
    ]
    for kwargs, needle in cases:
        nginx.configure("global 20/1m\nauth 5/1m\n", **kwargs)
        rc, err = nginx.test_config()
        assert rc != 0, (kwargs, err)
        assert needle in err and nginx.conf + ":" in err, (needle, err)


def test_table_of_another_policy_passes_nginx_t_with_a_notice(nginx):
    nginx.configure("global 20/1m\n", server="location / { sluice api; }")
    # neither nginx -t nor the signaller creates the table; the master does
    rc, err = nginx.test_config()
    assert rc == 0, err
    assert not os.path.exists(nginx.table)
    r = nginx.run("-s", "reload")  # no master runs: the signal fails, after parsing
    assert "nginx.pid" in r.stderr and not os.path.exists(nginx.table), r.stderr
    nginx.start()
    assert os.path.exists(nginx.table)
    assert nginx.get("/a.html").status == 200
    nginx.stop()
    # a file of another policy: nginx -t says a start or reload will migrate it, and checks
    # the new policy; a bad one still fails, naming the file and line
    nginx.configure("global 30/1m\n", server="location / { sluice api; }")
    rc, err = nginx.test_config()
    assert rc == 0, err
    assert "made for another policy" in err and nginx.table in err, err
    assert "%s:%d" % (nginx.conf, nginx.conf_line("sluice_table api")) in err, err
    nginx.write("api.policy", "global 30/1x\n")
    rc, err = nginx.test_config()
    assert rc != 0 and "api.policy" in err, err


class Backend:
    """A tiny upstream on 127.0.0.1: /login answers 401, /login?ok answers 200; counts hits."""

    def __init__(self):
        import http.server
        import threading

        backend = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                backend.hits += 1
                status = 200 if "ok" in self.path else 401
                body = b"welcome\n" if status == 200 else b"wrong password\n"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def login_conf(nginx, backend, extra=""):
    nginx.configure(
        "global 100/1m\nauth 50/1m\nauth lockout 3/1m for 30s\n",
        server="""
        location /login {
            sluice api category=auth;
            sluice_failure_status 401 403;
            %s
            proxy_pass http://127.0.0.1:%d;
        }
        location / { sluice api; }
        """
        % (extra, backend.port),
    )


def test_lockout_after_failures_and_unlock(nginx):
    import subprocess

    from conftest import SLUICE_BIN

    backend = Backend()
    try:
        login_conf(nginx, backend)
        nginx.start()
        got = [nginx.get("/login") for _ in range(3)]
        assert [r.status for r in got] == [401, 401, 401]
        assert backend.hits == 3
        locked = nginx.get("/login")
        assert locked.status == 429 and backend.hits == 3
        assert 28 <= int(locked.header("Retry-After")) <= 30, locked
        assert locked.header("X-Sluice-Status") == "LOCKED"
        assert locked.header("X-RateLimit-Limit") is None  # a lockout counts failures, not requests
        # the right password does not get through a lock either
        right = nginx.get("/login?ok")
        assert right.status == 429 and backend.hits == 3
        assert right.header("X-Sluice-Status") == "LOCKED"
        nginx.wait_log('sluice: key "127.0.0.1" locked out of category "auth" of table "api" for 30 s')
        # the lock covers its category only
        assert nginx.get("/a.html").status == 200
        # an operator lifts it
        r = subprocess.run([SLUICE_BIN, "unlock", nginx.table, "127.0.0.1", "auth"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        again = nginx.get("/login")
        assert again.status == 401 and backend.hits == 4
        assert again.header("X-Sluice-Status") == "PASSED"
    finally:
        backend.close()


def test_success_status_clears_failures(nginx):
    backend = Backend()
    try:
        login_conf(nginx, backend, "sluice_success_status 200;")
        nginx.start()
        assert [nginx.get("/login").status for _ in range(2)] == [401, 401]
        assert nginx.get("/login?ok").status == 200
        # the log was cleared: two more failures do not lock, the third does
        assert [nginx.get("/login").status for _ in range(3)] == [401, 401, 401]
        assert nginx.get("/login").status == 429
        assert backend.hits == 6
    finally:
        backend.close()


def test_state_survives_reload(nginx):
    nginx.configure("global 5/1m\n", server="location / { sluice api; }")
    nginx.start()
    assert [nginx.get("/a.html").header("X-RateLimit-Remaining") for _ in range(3)] == ["4", "3", "2"]
    old = set(nginx.workers())
    nginx.reload()
    deadline = time.monotonic() + 15
    while set(nginx.workers()) & old or len(nginx.workers()) != 4:
        assert time.monotonic() < deadline, "the old workers did not go"
        time.sleep(0.05)
    got = [nginx.get("/a.html") for _ in range(3)]
    assert [r.status for r in got] == [200, 200, 429]
    assert [r.header("X-RateLimit-Remaining") for r in got] == ["1", "0", "0"]
    assert not {int(r.header("X-Worker")) for r in got} & old


def test_policy_change_on_reload_migrates_and_keeps_the_lockout(nginx):
    backend = Backend()
    try:
        login_conf(nginx, backend)
        nginx.start()
        assert [nginx.get("/login").status for _ in range(3)] == [401, 401, 401]
        locked = nginx.get("/login")
        assert locked.status == 429 and locked.header("X-Sluice-Status") == "LOCKED"
        before = int(locked.header("Retry-After"))
        assert nginx.get("/a.html").header("X-RateLimit-Limit") == "100"
        old = set(nginx.workers())
        # the global limit changes; the lockout of "auth" does not
        nginx.write("api.policy", "global 200/1m\nauth 50/1m\nauth lockout 3/1m for 30s\n")
        rc, err = nginx.test_config()
        assert rc == 0, err
        assert "was made for another policy: starting or reloading nginx migrates it" in err, err
        nginx.reload()
        nginx.wait_log("the policy changed: migrated the table file")
        deadline = time.monotonic() + 15
        while set(nginx.workers()) & old or len(nginx.workers()) != 4:
            assert time.monotonic() < deadline, "the old workers did not go"
            time.sleep(0.05)
        # the new policy is in force, and the key is still locked out, with the same end
        r = nginx.get("/a.html")
        assert r.status == 200 and r.header("X-RateLimit-Limit") == "200", r
        still = nginx.get("/login?ok")
        assert still.status == 429 and still.header("X-Sluice-Status") == "LOCKED", still
        assert before - 3 <= int(still.header("Retry-After")) <= before, still
        assert backend.hits == 3
    finally:
        backend.close()


def test_python_and_nginx_share_one_table(nginx):
    import sluice

    nginx.configure("global 6/1m\n", server="location / { sluice api; }")
    nginx.start()
    assert nginx.get("/a.html").header("X-RateLimit-Remaining") == "5"
    with sluice.Limiter(path=nginx.table) as limiter:  # the file's own policy
        assert limiter.peek("127.0.0.1").remaining == 4  # what a check would leave
        assert [limiter.check("127.0.0.1").remaining for _ in range(3)] == [4, 3, 2]
        got = [nginx.get("/a.html") for _ in range(3)]
        assert [r.status for r in got] == [200, 200, 429]
        assert [r.header("X-RateLimit-Remaining") for r in got] == ["1", "0", "0"]
        assert limiter.check("127.0.0.1").allowed is False
        # another key is untouched
        assert limiter.peek("198.51.100.7").remaining == 5


def test_mode_log_level_and_a_long_category_name(nginx):
    name = "c" + "x" * 299
    nginx.configure(
        "global 100/1m\n%s 1/1m\n" % name,
        table_args="path=%s policy=%s mode=0640" % (nginx.table, nginx.policy),
        server="location / { sluice api category=%s; sluice_headers ietf; sluice_log_level warn; }" % name,
    )
    nginx.start()
    assert os.stat(nginx.table).st_mode & 0o777 == 0o640
    first = nginx.get("/a.html")
    assert first.status == 200
    assert first.header("RateLimit-Policy") == '"%s";q=1;w=60' % name  # longer than the stack buffer
    refused = nginx.get("/a.html")
    assert refused.status == 429 and refused.header("RateLimit").startswith('"%s";r=0;' % name)
    nginx.wait_log("[warn]")
    assert "sluice: LIMITED request, key \"127.0.0.1\"" in nginx.error_log()
    assert 'category "%s", rule 1 (1 per 60000 ms), retry after ' % name in nginx.error_log()


def test_return_runs_before_the_module(nginx):
    # the documented caveat: `return` answers in the rewrite phase, before PREACCESS
    nginx.configure(
        "global 1/1m\n",
        server="location = /ret { sluice api; return 200 'x'; }\nlocation / { sluice api; }",
    )
    nginx.start()
    assert [nginx.get("/ret").status for _ in range(3)] == [200, 200, 200]
    assert nginx.get("/ret").header("X-Sluice-Status") is None
    assert [nginx.get("/a.html").status for _ in range(2)] == [200, 429]


def test_bad_policy_on_reload_keeps_the_workers(nginx):
    nginx.configure("global 5/1m\n", server="location / { sluice api; }")
    nginx.start()
    workers = nginx.workers()
    assert nginx.get("/a.html").header("X-RateLimit-Remaining") == "4"
    nginx.write("api.policy", "global 5/1m\nglobal 10 per minute\n")
    # the signaller parses the configuration first, and sends nothing when it fails
    r = nginx.run("-s", "reload")
    assert r.returncode != 0
    assert nginx.policy in r.stderr and "line 2" in r.stderr, r.stderr
    assert "%s:%d" % (nginx.conf, nginx.conf_line("sluice_table api")) in r.stderr
    # the same through the master (SIGHUP, as a service manager sends it)
    os.kill(nginx.proc.pid, 1)
    nginx.wait_log("line 2")
    time.sleep(0.3)
    assert nginx.workers() == workers
    r = nginx.get("/a.html")
    assert r.status == 200 and r.header("X-RateLimit-Remaining") == "3"


def test_headers_off_without_variables(nginx):
    # nothing reads the decision's numbers: the module checks without counting the window
    backend = Backend()
    try:
        nginx.configure(
            "global 3/1m\nauth 50/1m\nauth lockout 2/1m for 30s\n",
            http="sluice_headers off;",
            server="""
            location / { sluice api; }
            location /login { sluice api category=auth; sluice_failure_status 401;
                              proxy_pass http://127.0.0.1:%d; }
            """
            % backend.port,
            variables=False,
        )
        nginx.start()
        got = [nginx.get("/a.html") for _ in range(4)]
        assert [r.status for r in got] == [200, 200, 200, 429]
        assert all(r.header("X-RateLimit-Limit") is None and r.header("Retry-After") is None for r in got)
        nginx.wait_log(
            'sluice: LIMITED request, key "127.0.0.1", table "api", category "global", '
            "rule 0 (3 per 60000 ms), retry after 60 s"
        )
        # auth has its own rules, but global's 3 are spent: refused before the backend
        assert nginx.get("/login").status == 429 and backend.hits == 0
    finally:
        backend.close()


def test_headers_off_lockout_without_variables(nginx):
    backend = Backend()
    try:
        nginx.configure(
            "global 100/1m\nauth 50/1m\nauth lockout 2/1m for 30s\n",
            http="sluice_headers off;",
            server="location /login { sluice api category=auth; sluice_failure_status 401; proxy_pass http://127.0.0.1:%d; }"
            % backend.port,
            variables=False,
        )
        nginx.start()
        assert [nginx.get("/login").status for _ in range(3)] == [401, 401, 429]
        assert backend.hits == 2
        nginx.wait_log('sluice: LOCKED request, key "127.0.0.1", table "api", category "auth", retry after 3')
    finally:
        backend.close()


def test_state_survives_a_full_restart(nginx):
    nginx.configure("global 5/1m\n", server="location / { sluice api; }")
    nginx.start()
    assert [nginx.get("/a.html").header("X-RateLimit-Remaining") for _ in range(3)] == ["4", "3", "2"]
    nginx.stop()
    nginx.start()  # a new master attaches to the file the old one left
    got = [nginx.get("/a.html") for _ in range(3)]
    assert [r.status for r in got] == [200, 200, 429]
    assert [r.header("X-RateLimit-Remaining") for r in got] == ["1", "0", "0"]


def test_policy_dry_run_rule(nginx):
    nginx.configure("global 2/1m dry-run\n", server="location / { sluice api; }")
    nginx.start()
    got = [nginx.get("/a.html") for _ in range(4)]
    assert [r.status for r in got] == [200] * 4
    assert [r.header("X-Sluice-Status") for r in got] == ["PASSED", "PASSED", "DRY_RUN_LIMITED", "DRY_RUN_LIMITED"]
    assert all(r.header("Retry-After") is None for r in got)
    assert [r.header("X-RateLimit-Remaining") for r in got[:2]] == ["1", "0"]


def test_headers_off_internal_redirect_charges_once(nginx):
    # no headers, no variables: an admitted request keeps no context of its own, yet an
    # index redirect is not charged again
    nginx.configure(
        "global 3/1m\n",
        http="sluice_headers off;",
        server="location / { sluice api; index index.html; }",
        variables=False,
    )
    nginx.start()
    assert [nginx.get("/").status for _ in range(4)] == [200, 200, 200, 429]


def test_missing_directory_fails_nginx_t_and_start(nginx):
    missing = os.path.join(nginx.prefix, "no-such-dir", "api.sluice")
    nginx.configure("global 5/1m\n", table_args="path=%s policy=%s" % (missing, nginx.policy),
                    server="location / { sluice api; }")
    where = "%s:%d" % (nginx.conf, nginx.conf_line("sluice_table api"))
    rc, err = nginx.test_config()
    assert rc != 0 and missing in err and where in err, err
    started = nginx.run()
    assert started.returncode != 0 and missing in started.stderr and where in started.stderr, started.stderr
    assert not os.path.exists(os.path.dirname(missing))


def test_bad_reloads_keep_the_workers(nginx):
    """Each bad configuration reloaded into a running nginx (SIGHUP, as a service manager
    sends it) is refused with its file and line; the old workers keep serving."""
    good = dict(server="location / { sluice api; }")
    nginx.configure("global 50/1m\nauth 5/1m\n", **good)
    nginx.start()
    workers = nginx.workers()
    remaining = 49
    assert nginx.get("/a.html").header("X-RateLimit-Remaining") == str(remaining)
    missing = os.path.join(nginx.prefix, "no-such-dir", "api.sluice")
    cases = [
        (dict(server="location / { sluice api category=nope; }"), 'no category "nope"', "category=nope"),
        (dict(table_args="policy=%s" % nginx.policy, **good), "missing path=", "sluice_table api"),
        (dict(server="location / { sluice other; }"), 'no table "other"', "sluice other"),
        (dict(table_args="path=%s policy=%s" % (missing, nginx.policy), **good), missing, "sluice_table api"),
    ]
    for kwargs, needle, line in cases:
        nginx.configure(None, **kwargs)
        where = "%s:%d" % (nginx.conf, nginx.conf_line(line))
        before = len(nginx.error_log())
        os.kill(nginx.proc.pid, 1)
        deadline = time.monotonic() + 10
        while needle not in nginx.error_log()[before:]:
            assert time.monotonic() < deadline, (needle, nginx.error_log()[before:])
            time.sleep(0.05)
        assert where in nginx.error_log()[before:], (where, nginx.error_log()[before:])
        time.sleep(0.2)
        assert nginx.workers() == workers
        remaining -= 1
        r = nginx.get("/a.html")
        assert r.status == 200 and r.header("X-RateLimit-Remaining") == str(remaining), r
        assert int(r.header("X-Worker")) in workers
    assert not os.path.exists(os.path.dirname(missing))


def test_ietf_headers_name_the_deciding_rule_and_a_lock_sends_only_retry_after(nginx):
    backend = Backend()
    try:
        nginx.configure(
            "global 3/1m\nauth 10/90s\nauth lockout 1/1m for 20s\n",
            http="sluice_headers ietf;",
            server="location /login { sluice api category=auth; sluice_failure_status 401; "
            "proxy_pass http://127.0.0.1:%d; }" % backend.port,
        )
        nginx.start()
        first = nginx.get("/login")  # global's 3 leave less than auth's 10: global decides
        assert first.status == 401
        assert first.header("RateLimit-Policy") == '"global";q=3;w=60'
        assert first.header("RateLimit") in ('"global";r=2;t=60', '"global";r=2;t=59')
        locked = nginx.get("/login")  # the one failure locked the key
        assert locked.status == 429 and backend.hits == 1
        assert locked.header("RateLimit-Policy") is None and locked.header("RateLimit") is None
        assert 18 <= int(locked.header("Retry-After")) <= 20
    finally:
        backend.close()
