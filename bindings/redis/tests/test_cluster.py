"""Redis Cluster routes each command by its key: two masters, each key's state on the node
that owns its slot, hash tags keep keys together."""

import time

import pytest
import redis
from redis.cluster import RedisCluster

from conftest import decision


def wait_for(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_cluster_routes_by_key(servers, now):
    flags = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "2000")
    a = servers("a", extra=flags).start()
    b = servers("b", extra=flags).start()
    ra, rb = a.client(), b.client()
    ra.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
    rb.execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
    ra.execute_command("CLUSTER", "MEET", "127.0.0.1", b.port)
    for r in (ra, rb):
        wait_for(lambda r=r: r.cluster("info")["cluster_state"] == "ok", "cluster state ok")
    wait_for(lambda: len(ra.cluster("nodes")) == 2 and len(rb.cluster("nodes")) == 2, "both nodes known")

    rc = RedisCluster(host="127.0.0.1", port=a.port)
    keys = [f"ip:{i}" for i in range(40)]
    for k in keys:
        for i in range(5):
            assert decision(rc.execute_command("SLUICE.CHECK", k, "search", "AT", now + i))["allowed"] == 1
        assert decision(rc.execute_command("SLUICE.CHECK", k, "search", "AT", now + 5))["allowed"] == 0
    on_a = on_b = 0
    for k in keys:
        slot = ra.execute_command("CLUSTER", "KEYSLOT", k)
        owner, other = (ra, rb) if slot <= 8191 else (rb, ra)
        on_a += owner is ra
        on_b += owner is rb
        assert owner.exists(k) == 1
        # The other node redirects to the owner.
        with pytest.raises(redis.exceptions.MovedError) as moved:
            other.execute_command("SLUICE.PEEK", k, "search", "AT", now + 6)
        owner_port = a.port if owner is ra else b.port
        assert str(moved.value) == f"{slot} 127.0.0.1:{owner_port}"
    assert on_a and on_b  # the keys were spread over both nodes
    # Hash tags: two keys of one user on one slot.
    assert ra.execute_command("CLUSTER", "KEYSLOT", "{user42}:login") == ra.execute_command(
        "CLUSTER", "KEYSLOT", "{user42}:api")
    rc.close()
