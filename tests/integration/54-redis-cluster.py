#!/usr/bin/env python3
"""daemon/redis_cluster.c against a real Redis Cluster of 3 masters with 1 replica each
(tests/lib/redis_cluster.py: redis-server --cluster-enabled yes, redis-cli --cluster
create, loopback ports). For 3,000 keys (the daemon's user keys, random bytes, keys with
empty, unclosed and nested braces) the slot interestd computes equals the server's
CLUSTER KEYSLOT, the master its slot map names is the one CLUSTER SLOTS gives for that
slot, and a GET sent to another master answers MOVED naming that slot and master, which
interestd's parser reads back.

Then the cluster pipeline (rcluster_run) under a reshard: rounds of one pipelined INCR
per key for 2,000 keys run while `redis-cli --cluster reshard` moves a quarter of the
slots (4,096) from one master to another; the pipeline follows the MOVED and ASK replies
(both counted, both must occur) and every INCR runs exactly once: each reply is its
round's number and every key ends at the number of rounds.

Last, a master is killed -9: once its replica is promoted the map read from a survivor
serves every slot, the killed master's slots from the promoted replica."""
import os
import random
import subprocess
import sys
import tempfile
import time

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
    if head[4:6] != ["shards_same", "1"]:
        e2e.fail(f"the slot map read from CLUSTER SHARDS differs from CLUSTER SLOTS': {head}")
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

    # The pipeline under a reshard of a quarter of the slots.
    incr_keys = [f"ui:{{reshard-{i}}}:n".encode() for i in range(2000)]
    stop = os.path.join(tmp, "stop-incr")
    src, dst = sorted(masters)[1], sorted(masters)[2]
    probe_p = subprocess.Popen([PROBE, HOST, str(src), "--incr-until", stop],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    probe_p.stdin.write("".join(k.hex() + "\n" for k in incr_keys))
    probe_p.stdin.close()
    probe_p.stdin = None  # communicate() below reads only
    time.sleep(1)
    ids = {p: cluster.client(p).execute_command("CLUSTER MYID").decode() for p in (src, dst)}
    rs = subprocess.run(["redis-cli", "--cluster", "reshard", f"{HOST}:{src}",
                         "--cluster-from", ids[src], "--cluster-to", ids[dst],
                         "--cluster-slots", "4096", "--cluster-yes"],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    alive_after_reshard = probe_p.poll() is None
    open(stop, "w").close()
    try:
        out, err = probe_p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        probe_p.kill()
        e2e.fail("the INCR pipeline did not stop within 60 s of being told to")
    if rs.returncode != 0:
        e2e.fail(f"redis-cli --cluster reshard failed ({rs.returncode}): {rs.stderr[-1500:]}")
    if not alive_after_reshard:
        e2e.fail(f"the INCR pipeline ended before the reshard did: {out} {err[-1500:]}")
    if probe_p.returncode != 0:
        e2e.fail(f"the INCR pipeline failed during the reshard: {err[-2000:]}")
    f = dict(zip(out.split()[0::2], map(int, out.split()[1::2])))
    if f["bad"] != 0:
        e2e.fail(f"{f['bad']} INCR replies were not their round's number: {err[-2000:]}")
    if f["moved"] == 0 or f["ask"] == 0:
        e2e.fail(f"the reshard produced no MOVED or no ASK for the pipeline ({f}): "
                 "the test did not exercise the redirects")
    cluster.wait_ok(60)
    after = cluster.masters()
    moved_slots = sum(b - a + 1 for a, b in after.get(dst, [])) - \
        sum(b - a + 1 for a, b in masters[dst])
    if moved_slots != 4096:
        e2e.fail(f"the reshard moved {moved_slots} slots to {dst}, want 4096")
    from redis.cluster import RedisCluster as PyCluster  # noqa: E402
    rcl = PyCluster(host=HOST, port=src)
    values = [int(rcl.get(k) or 0) for k in incr_keys]
    rcl.close()
    wrong = [(k, v) for k, v in zip(incr_keys, values) if v != f["rounds"]]
    if wrong:
        e2e.fail(f"{len(wrong)} keys not at {f['rounds']} after the rounds, e.g. {wrong[:3]}")
    e2e.ok(f"reshard of 4,096 slots during {f['rounds']} pipelined rounds of 2,000 INCRs: "
           f"{f['moved']} MOVED and {f['ask']} ASK followed, every INCR ran once")
    check_map(cluster, cluster.ports[0], keys, "after the reshard")
    masters = after

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
