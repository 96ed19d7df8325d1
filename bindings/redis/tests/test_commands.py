"""The commands and their replies, lockouts, reset, the policy, expiry and bad input."""

import math
import random

import pytest
import redis

from conftest import POLICY, decision


def check(r, key, cat, at):
    return decision(r.execute_command("SLUICE.CHECK", key, cat, "AT", at))


def peek(r, key, cat, at):
    return decision(r.execute_command("SLUICE.PEEK", key, cat, "AT", at))


def failure(r, key, cat, at):
    return decision(r.execute_command("SLUICE.FAILURE", key, cat, "AT", at))


def test_reply_shape(r, now):
    reply = r.execute_command("SLUICE.CHECK", "k", "search", "AT", now)
    assert len(reply) == 8
    assert reply[0] == 1 and reply[1] == b"passed"
    assert all(isinstance(v, int) for i, v in enumerate(reply) if i != 1)
    d = decision(reply)
    # search 5/1m is the tighter of global 20/1m and search 5/1m: it decides.
    assert (d["limit"], d["remaining"], d["rule"], d["window_ms"]) == (5, 4, 1, 60_000)
    assert d["reset"] == math.ceil((now + 60_000) / 1000)
    assert d["retry_after"] == 0


def test_check_is_exact_over_n(r, now):
    for i in range(5):
        d = check(r, "k", "search", now + i * 1000)
        assert d["allowed"] == 1 and d["remaining"] == 4 - i, (i, d)
    refused = check(r, "k", "search", now + 10_000)
    assert refused["allowed"] == 0 and refused["status"] == "limited"
    assert refused["rule"] == 1 and refused["remaining"] == 0
    # The oldest of the five leaves the window at now + 60 s: 50 s from now + 10 s.
    assert refused["retry_after"] == 50
    # Refused requests do not count: just before the first leaves, still refused...
    assert check(r, "k", "search", now + 59_999)["allowed"] == 0
    # ...and once it has left, exactly one place is free.
    assert check(r, "k", "search", now + 60_000)["allowed"] == 1
    assert check(r, "k", "search", now + 60_001)["allowed"] == 0
    # Other keys and other categories' own rules are untouched.
    assert check(r, "other", "search", now + 60_001)["remaining"] == 4
    d = check(r, "k", "write", now + 60_001)
    assert d["allowed"] == 1 and d["rule"] == 2 and d["remaining"] == 2


def test_global_rule_counts_every_category(r, now):
    # global 20/1m: 5 search + 3 write + 4 auth + ... all count.
    n = 0
    for cat, count in (("search", 5), ("write", 3), ("auth", 4)):
        for _ in range(count):
            assert check(r, "k", cat, now + n)["allowed"] == 1
            n += 1
    d = check(r, "k", "global", now + n)
    assert d["allowed"] == 1 and d["remaining"] == 20 - n - 1 and d["rule"] == 0


def test_peek_records_nothing_and_creates_nothing(r, now):
    d = peek(r, "fresh", "search", now)
    assert d["allowed"] == 1 and d["remaining"] == 4
    assert r.exists("fresh") == 0
    check(r, "k", "search", now)
    for _ in range(3):
        assert peek(r, "k", "search", now + 1)["remaining"] == 3
    assert check(r, "k", "search", now + 2)["remaining"] == 3


def test_lockout_after_f_failures(r, now):
    d = failure(r, "u", "auth", now)
    assert d["status"] == "passed" and d["allowed"] == 1 and d["remaining"] == 2 and d["limit"] == 3
    assert failure(r, "u", "auth", now + 1)["remaining"] == 1
    d = failure(r, "u", "auth", now + 2)
    assert d["status"] == "locked" and d["allowed"] == 0 and d["retry_after"] == 60
    d = check(r, "u", "auth", now + 10_002)
    assert d["status"] == "locked" and d["allowed"] == 0 and d["retry_after"] == 50
    # Failures while locked neither count nor extend the lock.
    d = failure(r, "u", "auth", now + 20_002)
    assert d["status"] == "locked" and d["retry_after"] == 40
    # A locked check charges no rule: the global rule still has all its places.
    assert peek(r, "u", "global", now + 20_003)["remaining"] == 19
    # Other categories are not locked.
    assert check(r, "u", "search", now + 20_003)["allowed"] == 1
    # Once the lock ends, the key may try again; the next lockout doubles (1m..8m).
    assert check(r, "u", "auth", now + 60_002)["status"] == "passed"
    for i in range(3):
        d = failure(r, "u", "auth", now + 70_000 + i)
    assert d["status"] == "locked" and d["retry_after"] == 120


def test_success_clears_failures(r, now):
    failure(r, "u", "auth", now)
    failure(r, "u", "auth", now + 1)
    assert r.execute_command("SLUICE.SUCCESS", "u", "auth", "AT", now + 2) == b"OK"
    assert failure(r, "u", "auth", now + 3)["remaining"] == 2
    assert failure(r, "u", "auth", now + 4)["status"] == "passed"


def test_reset_makes_a_new_key(r, now):
    for i in range(3):
        failure(r, "u", "auth", now + i)
    for i in range(4):
        check(r, "u", "search", now + i)
    assert check(r, "u", "auth", now + 10)["status"] == "locked"
    assert r.execute_command("SLUICE.RESET", "u", "auth") == b"OK"
    d = check(r, "u", "auth", now + 11)
    assert d["status"] == "passed" and d["remaining"] == 3  # auth 4/1m, as new
    # The level went with it: three failures lock for BAN again.
    for i in range(3):
        d = failure(r, "u", "auth", now + 20 + i)
    assert d["retry_after"] == 60
    # reset(auth) cleared the global log but not search's own.
    assert peek(r, "u", "search", now + 30)["remaining"] == 0
    # A missing key: OK, and nothing is created.
    assert r.execute_command("SLUICE.RESET", "nobody", "auth") == b"OK"
    assert r.exists("nobody") == 0


def test_policy(r):
    assert r.execute_command("SLUICE.POLICY").decode() == POLICY


def test_time_never_goes_back_for_a_key(r, now):
    for i in range(3):
        failure(r, "u", "auth", now + i)
    # A time 10 minutes earlier is taken as the newest the key has seen.
    d = check(r, "u", "auth", now - 600_000)
    assert d["status"] == "locked" and d["retry_after"] == 60
    d = peek(r, "u", "auth", now - 600_000)
    assert d["retry_after"] == 60


def held(ms):
    """The expiry Redis holds for a state that matters until `ms`: rounded up to a second."""
    return -(-ms // 1000) * 1000


def test_expiry_is_set_from_the_state(r, now):
    now = now // 1000 * 1000 + 1  # just past a whole second
    check(r, "k", "search", now)
    # Nothing in the key matters once its one timestamp has left the 1-minute windows; Redis
    # holds that time rounded up to the second.
    assert r.execute_command("PEXPIRETIME", "k") == held(now + 60_000) == now + 60_999
    check(r, "k", "write", now + 1000)  # write 10/1h keeps it for an hour
    assert r.execute_command("PEXPIRETIME", "k") == held(now + 1000 + 3_600_000)
    assert r.type("k") == b"sluice-rl"


def test_expiry_moves_once_a_second(r, now):
    now = now // 1000 * 1000 + 1
    check(r, "k", "search", now)
    first = r.execute_command("PEXPIRETIME", "k")
    # Checks later in the same second need the key no longer than the held expiry.
    for t in (now + 1, now + 500, now + 998):
        check(r, "k", "search", t)
        assert r.execute_command("PEXPIRETIME", "k") == first
    # The next second's check needs it past that: the expiry moves by the second.
    check(r, "k", "search", now + 1000)
    assert r.execute_command("PEXPIRETIME", "k") == first + 1000
    # A key is never held shorter than its state matters, nor a second longer.
    for t in range(now + 1001, now + 1050, 7):
        check(r, "k", "global", t)
        got = r.execute_command("PEXPIRETIME", "k")
        assert t + 60_000 <= got < t + 60_000 + 1000


def test_expiry_after_a_passed_check_is_the_one_the_whole_state_gives(r, now):
    """A passed check moves the expiry without reading every log; a write that reads them all
    (SLUICE.SUCCESS on a key without failures changes nothing else) must land on the same."""
    rnd = random.Random(11)
    t = now - 120_000
    for _ in range(400):
        t += rnd.choice((0, 1, 100, 2000, 20_000))
        key = rnd.choice(("a", "b"))
        d = check(r, key, rnd.choice(("global", "search", "write", "write", "auth")), t)
        moved = r.execute_command("PEXPIRETIME", key)
        assert r.execute_command("SLUICE.SUCCESS", key, "auth", "AT", t) == b"OK"
        assert r.execute_command("PEXPIRETIME", key) == moved, (d, t)


def test_a_key_that_expired_is_new(r, now):
    past = now - 3_600_000
    check(r, "old", "search", past)
    # Its state stopped mattering an hour ago: the key is gone.
    assert r.exists("old") == 0
    assert check(r, "old", "search", now)["remaining"] == 4


def test_memory_usage(r, now):
    check(r, "k", "search", now)
    # The whole state: every rule's ring of timestamps and the lockout, in 8-byte words.
    assert r.memory_usage("k") >= 8 * (20 + 5 + 3 + 10 + 4 + 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (("SLUICE.CHECK", "k", "nope"), 'unknown category "nope"'),
        (("SLUICE.CHECK", "", "search"), "the key is empty"),
        (("SLUICE.CHECK", "k", "search", "AT", "soon"), 'AT "soon" is not an integer'),
        (("SLUICE.CHECK", "k", "search", "AT"), "AT needs a time"),
        (("SLUICE.CHECK", "k", "search", "AT", "-5"), "before 1970"),
        (("SLUICE.CHECK", "k", "search", "NOW"), 'unknown argument "NOW"'),
        (("SLUICE.CHECK", "k", "search", "AT", "1", "AT", "2"), 'unknown argument "AT"'),
        (("SLUICE.CHECK", "k"), "wrong number of arguments"),
        (("SLUICE.PEEK", "k", "nope"), 'unknown category "nope"'),
        (("SLUICE.RESET", "k", "auth", "AT", "1"), 'unknown argument "AT"'),
        (("SLUICE.FAILURE", "k", "search"), "search"),
        (("SLUICE.SUCCESS", "k", "search"), "search"),
        (("SLUICE.POLICY", "x"), "wrong number of arguments"),
        (("SLUICE.RESTORE", "k", "v1 0 0 0"), "runs only while loading"),
    ],
)
def test_bad_input(r, args, message):
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command(*args)
    assert message in str(e.value)
    assert r.dbsize() == 0


def test_wrongtype(r, now):
    r.set("s", "x")
    for cmd in ("SLUICE.CHECK", "SLUICE.PEEK", "SLUICE.FAILURE", "SLUICE.SUCCESS"):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            r.execute_command(cmd, "s", "auth", "AT", now)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.execute_command("SLUICE.RESET", "s", "auth")
    assert r.get("s") == b"x"


def test_at_needs_client_time(servers, now):
    r = servers(client_time=False).start().client()
    with pytest.raises(redis.ResponseError, match="CLIENT-TIME yes"):
        r.execute_command("SLUICE.CHECK", "k", "search", "AT", now)
    # Without AT the server's clock decides.
    d = decision(r.execute_command("SLUICE.CHECK", "k", "search"))
    assert d["allowed"] == 1 and d["remaining"] == 4
    assert abs(r.execute_command("PEXPIRETIME", "k") - (now + 60_000)) < 30_000


@pytest.mark.parametrize(
    "policy, module_args, message",
    [
        ("search 5/1m\nsearch 3/\n", None, "policy file @: invalid policy: line 2, column 10"),
        (None, ["POLICY", "/nonexistent/x.policy"], "cannot read the policy file /nonexistent/x.policy"),
        ("search 5/1m\n", [], "no POLICY given"),
        ("search 5/1m\n", ["POLICY", "@", "COLOUR", "red"], 'unknown argument "COLOUR"'),
        ("search 5/1m\n", ["POLICY", "@", "CLIENT-TIME", "maybe"], 'CLIENT-TIME "maybe" is not yes or no'),
        ("search 5/1m\n", ["POLICY"], "POLICY needs a value"),
    ],
)
def test_bad_load(servers, tmp_path, policy, module_args, message):
    p = tmp_path / "bad.policy"
    if policy is not None:
        p.write_text(policy)
    if module_args is not None:
        module_args = [str(p) if a == "@" else a for a in module_args]
    message = message.replace("@", str(p))
    s = servers(policy_file=p, module_args=module_args).start(wait=False)
    assert s.wait_exit() != 0
    log = s.log_text()
    assert "sluice: not loaded: " + message in log, log


def test_reset_of_everything_deletes_the_key(r, now):
    check(r, "k", "auth", now)
    assert r.exists("k") == 1
    r.execute_command("SLUICE.RESET", "k", "auth")
    # Nothing was left in it: the key is gone rather than kept empty.
    assert r.exists("k") == 0
    check(r, "k", "search", now)
    r.execute_command("SLUICE.RESET", "k", "auth")  # search's own log remains
    assert r.exists("k") == 1 and peek(r, "k", "search", now)["remaining"] == 3


def test_copy_is_independent(r, now):
    for i in range(4):
        check(r, "k", "search", now + i)
    assert r.copy("k", "k2")
    assert r.execute_command("PEXPIRETIME", "k2") == r.execute_command("PEXPIRETIME", "k")
    assert check(r, "k2", "search", now + 10)["remaining"] == 0
    assert check(r, "k2", "search", now + 11)["allowed"] == 0
    # The original still has its fifth place.
    d = peek(r, "k", "search", now + 12)
    assert d["allowed"] == 1 and d["remaining"] == 0


def test_concurrent_clients_get_exactly_n(servers):
    """8 threads, each with its own connection, on one key: exactly N admitted."""
    import threading

    s = servers(client_time=False).start()
    admitted = []
    barrier = threading.Barrier(8)

    def client():
        c = s.client()
        barrier.wait()
        admitted.append(sum(c.execute_command("SLUICE.CHECK", "hot", "global")[0] for _ in range(25)))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 8 and sum(admitted) == 20  # global 20/1m


def test_key_positions(r):
    r.set_response_callback("COMMAND", lambda reply, **kw: reply)  # the raw reply
    for cmd in ("SLUICE.CHECK", "SLUICE.PEEK", "SLUICE.FAILURE", "SLUICE.SUCCESS", "SLUICE.RESET"):
        assert r.execute_command("COMMAND", "GETKEYS", cmd, "{u}:k", "auth") == [b"{u}:k"]
    info = r.execute_command("COMMAND", "INFO", "SLUICE.CHECK")[0]
    assert info[3:6] == [1, 1, 1]
    assert b"write" in info[2]
    assert b"readonly" in r.execute_command("COMMAND", "INFO", "SLUICE.PEEK")[0][2]
