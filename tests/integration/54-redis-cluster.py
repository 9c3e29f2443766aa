#!/usr/bin/env python3
"""daemon/redis_cluster.c against a real Redis Cluster of 3 masters with 1 replica each
(tests/lib/redis_cluster.py: redis-server --cluster-enabled yes, redis-cli --cluster
create, loopback ports). For 3,000 keys (the daemon's user keys, random bytes, keys with
empty, unclosed and nested braces) the slot interestd computes equals the server's
CLUSTER KEYSLOT, the master its slot map names is the one CLUSTER SLOTS gives for that
slot, and a GET sent to another master answers MOVED naming that slot and master, which
interestd's parser reads back. Then a master is killed -9: once its replica is promoted
the map read from a survivor serves every slot, the killed master's slots from the
promoted replica."""
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import interestd_e2e as e2e  # noqa: E402
from redis_cluster import HOST, RedisCluster  # noqa: E402

PROBE = os.path.join(e2e.build_dir(), "tools", "redis-cluster-probe")


def test_keys(rng, n):
    keys = [f"ui:{{user-{i}}}:vec".encode() for i in range(n // 3)]
    keys += [f"ui:{{{rng.getrandbits(64):x}}}:meta".encode() for _ in range(n // 6)]
    keys += [b"{}", b"{", b"}", b"a{}b", b"foo{}{bar}", b"foo{{bar}}zap", b"foo{bar}{zap}",
             b"{user1000}.following", b"\x00{\x00}\xff"]
    while len(keys) < n:
        alphabet = b"{}ab:\x00\xff0123456789"
        keys.append(bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))))
    return keys


def probe(port, keys):
    r = subprocess.run([PROBE, HOST, str(port)], input="".join(k.hex() + "\n" for k in keys),
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        e2e.fail(f"redis-cluster-probe exit {r.returncode}: {r.stderr[-2000:]}")
    lines = r.stdout.splitlines()
    head = lines[0].split()
    rows = {}
    for line in lines[1:]:
        hexkey, slot, node, moved = line.split()
        rows[bytes.fromhex(hexkey)] = (int(slot), node, moved == "1")
    return int(head[1]), int(head[3]), rows


def owner_of(masters):
    own = {}
    for port, ranges in masters.items():
        for first, last in ranges:
            for s in range(first, last + 1):
                own[s] = f"{HOST}:{port}"
    return own


def check_map(cluster, seed, keys, what):
    n_nodes, unserved, rows = probe(seed, keys)
    masters = cluster.masters()
    own = owner_of(masters)
    if n_nodes != len(masters) or unserved != 0:
        e2e.fail(f"{what}: map of {n_nodes} masters, {unserved} slots unserved; "
                 f"CLUSTER SLOTS has {len(masters)} masters")
    c = cluster.client(seed)
    bad_slot = [k for k in keys if rows[k][0] != c.execute_command("CLUSTER KEYSLOT", k)]
    bad_owner = [k for k in keys if rows[k][1] != own[rows[k][0]]]
    bad_moved = [k for k in keys if not rows[k][2]]
    if bad_slot:
        k = bad_slot[0]
        e2e.fail(f"{what}: {len(bad_slot)} keys whose slot differs from CLUSTER KEYSLOT, "
                 f"e.g. {k!r}: {rows[k][0]} vs {c.execute_command('CLUSTER KEYSLOT', k)}")
    if bad_owner:
        e2e.fail(f"{what}: {len(bad_owner)} keys routed to the wrong master, e.g. "
                 f"{bad_owner[0]!r}")
    if bad_moved:
        e2e.fail(f"{what}: {len(bad_moved)} keys whose MOVED from another master did not "
                 f"parse to their slot and master, e.g. {bad_moved[0]!r}")
    return masters


rng = random.Random(54)
keys = test_keys(rng, 3000)
with tempfile.TemporaryDirectory(prefix="interestd-cluster.") as tmp:
    cluster = RedisCluster(tmp, masters=3, replicas=1).start()
    masters = check_map(cluster, cluster.ports[0], keys, "3 masters")
    e2e.ok(f"{len(keys)} keys: slot = CLUSTER KEYSLOT, master = CLUSTER SLOTS's, MOVED from "
           f"another master parsed to both ({len(masters)} masters)")

    victim = sorted(masters)[0]
    lost = masters[victim]
    cluster.kill(victim)
    survivors = [p for p in cluster.ports if p != victim]
    cluster.wait_ok(60, survivors)
    after = check_map(cluster, survivors[0], keys, "after a master was killed")
    if victim in after or len(after) != 3:
        e2e.fail(f"killed master {victim} still in the map: {sorted(after)}")
    promoted = [p for p, ranges in after.items() if any(r in ranges for r in lost)]
    e2e.ok(f"master {victim} killed -9: its replica {promoted} promoted, the map read from a "
           f"survivor serves every slot and routes every key as the server does")
    cluster.stop()
