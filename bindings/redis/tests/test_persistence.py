"""RDB (SAVE and restart, DEBUG RELOAD), AOF (replay and rewrite) and replication keep every
key's state: a locked key stays locked with the right retry_after."""

import random
import time

import pytest
import redis

from conftest import decision

KEYS = ("alice", "bob", "carol", "dave")
CATEGORIES = ("global", "search", "write", "auth")


def populate(r, now, seed=1, n=300, at=True):
    """Random traffic, then a lock on alice's auth. Returns the time after it."""
    rnd = random.Random(seed)
    t = now - 30_000
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        t += rnd.choice((0, 1, 10, 100))
        key = rnd.choice(KEYS[1:])
        op = rnd.choice(("CHECK", "CHECK", "CHECK", "FAILURE", "SUCCESS"))
        cat = "auth" if op != "CHECK" else rnd.choice(CATEGORIES)
        pipe.execute_command("SLUICE." + op, key, cat, *(("AT", t) if at else ()))
    for _ in range(3):
        t += 1
        pipe.execute_command("SLUICE.FAILURE", "alice", "auth", *(("AT", t) if at else ()))
    pipe.execute()
    return t


def peeks(r, t):
    return {
        (k, c): decision(r.execute_command("SLUICE.PEEK", k, c, "AT", t))
        for k in KEYS
        for c in CATEGORIES
    }


def expiries(r):
    return {k: r.execute_command("PEXPIRETIME", k) for k in KEYS}


def assert_locked(r, t_locked, later):
    d = decision(r.execute_command("SLUICE.PEEK", "alice", "auth", "AT", t_locked + later))
    assert d["status"] == "locked" and d["allowed"] == 0
    assert d["retry_after"] == 60 - later // 1000


def test_save_and_restart(servers, now):
    s = servers("p").start()
    r = s.client()
    t = populate(r, now)
    before, exp = peeks(r, t + 10_000), expiries(r)
    assert r.save()
    s.stop()
    s2 = servers("p").start()
    r2 = s2.client()
    assert r2.dbsize() == len(KEYS)
    assert peeks(r2, t + 10_000) == before
    assert expiries(r2) == exp
    assert_locked(r2, t, 10_000)


def test_debug_reload(servers, now):
    r = servers().start().client()
    t = populate(r, now, seed=2)
    before, exp = peeks(r, t + 5_000), expiries(r)
    assert r.execute_command("DEBUG", "RELOAD") == b"OK"
    assert peeks(r, t + 5_000) == before
    assert expiries(r) == exp
    assert_locked(r, t, 5_000)


def wait_rewrite(r):
    deadline = time.monotonic() + 20
    while True:
        info = r.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            assert info["aof_last_bgrewrite_status"] == "ok"
            return
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def test_aof_replay_and_rewrite(servers, now):
    aof = ("--appendonly", "yes", "--aof-use-rdb-preamble", "no", "--appendfsync", "always")
    s = servers("a", extra=aof).start()
    r = s.client()
    t = populate(r, now, seed=3)
    before, exp = peeks(r, t + 1_000), expiries(r)
    # Replay of the commands as written (each with the time it was decided at).
    s.stop()
    s = servers("a", extra=aof).start()
    r = s.client()
    assert peeks(r, t + 1_000) == before
    assert expiries(r) == exp
    # A rewrite: the AOF then rebuilds each key with SLUICE.RESTORE.
    r.bgrewriteaof()
    wait_rewrite(r)
    base = list((s.dir / "appendonlydir").glob("*.base.aof"))
    assert base and b"SLUICE.RESTORE" in base[0].read_bytes()
    s.stop()
    s = servers("a", extra=aof).start()
    r = s.client()
    assert peeks(r, t + 1_000) == before
    assert expiries(r) == exp
    assert_locked(r, t, 1_000)


def test_aof_replay_without_client_time(servers, now):
    """The server's own clock decides, and replay reaches the same state (AT is accepted
    from the AOF even when clients may not give it)."""
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    s = servers("n", client_time=False, extra=aof).start()
    r = s.client()
    populate(r, now, seed=4, n=100, at=False)
    exp = expiries(r)
    assert exp["alice"] > now + 60_000
    s.stop()
    r = servers("n", client_time=False, extra=aof).start().client()
    assert expiries(r) == exp
    d = decision(r.execute_command("SLUICE.CHECK", "alice", "auth"))
    assert d["status"] == "locked" and 55 <= d["retry_after"] <= 60
    assert "SLUICE" not in s.log_text().split("Ready to accept")[-1]


def start_replica(servers, primary, name, client_time=True):
    rep = servers(name, client_time=client_time, extra=("--replicaof", "127.0.0.1", str(primary.port))).start()
    rr = rep.client()
    deadline = time.monotonic() + 20
    while rr.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, rep.log_text()
        time.sleep(0.05)
    return rr


def test_replica_reaches_the_same_decisions(servers, now):
    primary = servers("primary").start()
    rp = primary.client()
    populate(rp, now - 1000, seed=5, n=50)  # before the replica: a full sync (RDB)
    rr = start_replica(servers, primary, "replica")
    plain = start_replica(servers, primary, "plain", client_time=False)
    rp.execute_command("SLUICE.RESET", "alice", "auth")  # replicated as it is
    t = populate(rp, now, seed=6)  # after: the replication stream
    assert rp.execute_command("WAIT", 2, 10_000) == 2
    for later in (0, 10_000, 70_000):
        assert peeks(rr, t + later) == peeks(rp, t + later)
    assert expiries(rr) == expiries(rp)
    assert_locked(rr, t, 10_000)
    # A replica whose clients may not give AT still applies the primary's AT.
    assert expiries(plain) == expiries(rp)
    d = decision(plain.execute_command("SLUICE.PEEK", "alice", "auth"))
    assert d["status"] == "locked"
    # Replicas refuse writes from clients.
    with pytest.raises(redis.exceptions.ReadOnlyError):
        rr.execute_command("SLUICE.CHECK", "alice", "auth", "AT", t)
    # The digests agree: by stream, and on a replica full-synced after all the traffic.
    fresh = start_replica(servers, primary, "fresh")
    assert rp.execute_command("WAIT", 3, 10_000) == 3
    want = digests(rp)
    assert all(want.values()) and len(set(want.values())) == len(KEYS)
    for replica in (rr, plain, fresh):
        assert digests(replica) == want
        assert replica.execute_command("DEBUG", "DIGEST") == rp.execute_command("DEBUG", "DIGEST")
    # A digest follows the state: one more check on the primary changes it, on every node.
    rp.execute_command("SLUICE.CHECK", "alice", "search", "AT", t + 1)
    assert rp.execute_command("WAIT", 3, 10_000) == 3
    changed = digests(rp)
    assert changed["alice"] != want["alice"] and changed["bob"] == want["bob"]
    for replica in (rr, plain, fresh):
        assert digests(replica) == changed


def digests(r):
    """Each key's DEBUG DIGEST-VALUE (the module's digest over the key's logical state)."""
    return {k: r.execute_command("DEBUG", "DIGEST-VALUE", k)[0] for k in KEYS}


CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def module_id(name, encver):
    """The 64-bit id an RDB file stores before a module value: the type name, 6 bits a
    character, then the encoding version in the low 10 bits."""
    mid = 0
    for ch in name:
        mid = (mid << 6) | CHARSET.index(ch)
    return (mid << 10) | encver


def test_a_newer_encoding_is_refused(servers, now):
    s = servers("v").start()
    r = s.client()
    populate(r, now, seed=7, n=20)
    assert r.save()
    s.stop()
    dump = s.dir / "dump.rdb"
    data = dump.read_bytes()
    old = b"\x81" + module_id("sluice-rl", 2).to_bytes(8, "big")
    assert old in data
    dump.write_bytes(data.replace(old, b"\x81" + module_id("sluice-rl", 3).to_bytes(8, "big")))
    # (The file's checksum no longer matches: skip it, so the version is what refuses it.)
    s2 = servers("v", extra=("--rdbchecksum", "no")).start(wait=False)
    s2.wait_exit()  # the server stops (redis-check-rdb decides its exit status)
    log = s2.log_text()
    assert "Ready to accept connections" not in log.split("Loading RDB")[-1], log
    assert "a value of encoding version 3 in the RDB file; this module reads versions up to 2" in log, log


def test_a_newer_text_encoding_in_the_aof_is_refused(servers, now):
    aof = ("--appendonly", "yes", "--aof-use-rdb-preamble", "no")
    s = servers("t", extra=aof).start()
    r = s.client()
    populate(r, now, seed=8, n=20)
    r.bgrewriteaof()
    wait_rewrite(r)
    s.stop()
    base = next((s.dir / "appendonlydir").glob("*.base.aof"))
    text = base.read_bytes()
    assert text.count(b"v1 ") == len(KEYS)
    base.write_bytes(text.replace(b"v1 ", b"v9 ", 1))  # same length: the RESP stays valid
    r = servers("t", extra=aof).start().client()
    log = s.log_text()
    assert 'SLUICE.RESTORE of key' in log and 'encoding "v9" is not v1' in log, log
    assert r.dbsize() == len(KEYS) - 1


def aof_commands(directory):
    """The commands of a server's incremental AOF files, each a list of bytes arguments."""
    out = []
    for f in sorted((directory / "appendonlydir").glob("*.incr.aof")):
        data, i = f.read_bytes(), 0
        while i < len(data):
            assert data[i:i + 1] == b"*", data[i:i + 40]
            end = data.index(b"\r\n", i)
            argc, i = int(data[i + 1:end]), end + 2
            args = []
            for _ in range(argc):
                end = data.index(b"\r\n", i)
                n = int(data[i + 1:end])
                args.append(data[end + 2:end + 2 + n])
                i = end + 2 + n + 2
            out.append(args)
    return out


def test_every_write_is_logged_with_its_time_and_counts_for_save(servers):
    """Writes decided by the server's clock, many within one millisecond: each is counted
    for the save points and written to the AOF with the time it was decided at."""
    aof = ("--appendonly", "yes", "--aof-use-rdb-preamble", "no", "--appendfsync", "always")
    s = servers("w", client_time=False, extra=aof).start()
    r = s.client()
    changes = lambda: r.info("persistence")["rdb_changes_since_last_save"]
    before_changes = changes()
    start = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.execute_command("SLUICE.CHECK", f"k{i % 3}", ("search", "global")[i % 2])
    for i in range(5):
        pipe.execute_command("SLUICE.FAILURE", "k0", "auth")
    pipe.execute_command("SLUICE.SUCCESS", "k0", "auth")
    pipe.execute_command("SLUICE.PEEK", "k1", "search")  # not a write
    replies = pipe.execute()
    end = int(time.time() * 1000)
    assert sum(1 for d in replies[:200] if d[0] == 0) > 0  # refused checks are writes too
    assert changes() - before_changes == 206
    logged = [c for c in aof_commands(s.dir) if c[0].upper().startswith(b"SLUICE.")]
    assert len(logged) == 206
    times = []
    for i, c in enumerate(logged):
        want = (
            [b"SLUICE.CHECK", f"k{i % 3}".encode(), (b"search", b"global")[i % 2]]
            if i < 200
            else [b"SLUICE.FAILURE" if i < 205 else b"SLUICE.SUCCESS", b"k0", b"auth"]
        )
        assert c[:3] == want and c[3] == b"AT" and len(c) == 5, c
        times.append(int(c[4]))
    assert start <= times[0] and times == sorted(times) and times[-1] <= end
    # Replayed, the log reaches the same state (the same counts, well within the windows).
    def state():
        return {
            (k, c): r.execute_command("SLUICE.PEEK", k, c)[:4] + [r.execute_command("PEXPIRETIME", k)]
            for k in ("k0", "k1", "k2")
            for c in ("search", "global", "auth")
        }

    want = state()
    s.stop()
    r = servers("w", client_time=False, extra=aof).start().client()
    assert state() == want
