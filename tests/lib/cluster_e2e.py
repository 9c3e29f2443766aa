"""Helpers for the daemon's end-to-end tests against a Redis Cluster (redis.cluster = true;
tests/integration/56-*, 57-*): what the daemon wrote, read through a cluster-aware client,
compared with the offline replay; waits with a deadline that fail at once when a daemon
or a cluster node dies; which master holds which keys; the flushed-through markers' tags.

    import cluster_e2e as ce
    ce.wait_applied(cluster, prefix, want, 120, [d], "batch 1")   # fails the test if not
    diffs = ce.compare(cluster, prefix, expected)
    ce.user_keys_by_master(cluster, prefix)  # {master port: n user keys}

Every read opens a fresh redis-py cluster client on the live nodes (its slot map read
anew), so a read during a reshard or right after a failover sees the map of the moment.
"""

import os
import re
import time
import types

import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as PyCluster
from redis.crc import key_slot

import interestd_e2e as e2e
from redis_cluster import HOST
from servers import ClusterError

TRANSIENT = (redis.RedisError, OSError)


def batches(env, n_users, sizes, seed):
    """The test model and one event stream of n_users users cut into batches of sizes:
    HARNESS_TMP/b<i>.csv (batch i, from 1) and upto<i>.csv (batches 1..i), and the offline
    replay of each upto<i> (each must apply every event). Returns a namespace: model,
    rows, cuts (rows[cuts[i]:cuts[i + 1]] is batch i + 1), expected[i] and want[i]
    ({user: events_applied}) after batches 1..i + 1, users, csv(name) -> path."""
    tmp = env["HARNESS_TMP"]
    model, sample = e2e.test_model()
    rows = e2e.make_events(os.path.join(tmp, "all.csv"), e2e.catalog_item_ids(sample), n_users,
                           sum(sizes), seed=seed)
    cuts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    expected, want = [], []
    for i in range(len(sizes)):
        e2e.write_events(os.path.join(tmp, f"b{i + 1}.csv"), rows[cuts[i]:cuts[i + 1]])
        e2e.write_events(os.path.join(tmp, f"upto{i + 1}.csv"), rows[:cuts[i + 1]])
        x = e2e.offline_replay(model, os.path.join(tmp, f"upto{i + 1}.csv"),
                               os.path.join(tmp, f"replay-{i + 1}.jsonl"))
        if sum(u["events_applied"] for u in x.values()) != cuts[i + 1]:
            e2e.fail(f"offline replay of batches 1-{i + 1} did not apply every event")
        expected.append(x)
        want.append({u: v["events_applied"] for u, v in x.items()})
    return types.SimpleNamespace(model=model, rows=rows, cuts=cuts, expected=expected,
                                 want=want, users=sorted(want[-1]),
                                 csv=lambda name: os.path.join(tmp, f"{name}.csv"))


def live_ports(cluster):
    return [p for p in cluster.ports if cluster.procs[p].poll() is None and p not in cluster.killed]


def client(cluster):
    """A redis-py cluster client seeded with every live node."""
    return PyCluster(startup_nodes=[ClusterNode(HOST, p) for p in live_ports(cluster)],
                     socket_timeout=5, socket_connect_timeout=2)


def check_alive(daemons, cluster, what):
    """Fails the test when a daemon (SIGSTOPped ones count as alive) or a node not
    killed on purpose has exited."""
    for d in daemons:
        if not d.alive():
            d.dump()
            e2e.fail(f"{d.name} exited ({d.proc.returncode if d.proc else None}) while {what}")
    if cluster is not None:
        try:
            cluster.alive_or_raise(what)
        except ClusterError as ex:
            e2e.fail(str(ex))


def wait(pred, timeout_s, what, daemons=(), cluster=None, interval_s=0.3, detail=None):
    """Polls pred() (Redis errors mean "not yet") until truthy; returns its value. Fails
    the test after timeout_s, or at once when a daemon or a node dies; detail() is added
    to the failure message."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive(daemons, cluster, what)
        try:
            v = pred()
        except TRANSIENT:
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            for d in daemons:
                d.dump()
            e2e.fail(f"not {what} within {timeout_s} s" + (f": {detail()}" if detail else ""))
        time.sleep(interval_s)


def end_offsets(env, topic, parts):
    """{partition: end offset} of the topic's partitions 0..parts-1."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"],
                  "group.id": env["HARNESS_PREFIX"] + "watermarks"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(parts)}
    finally:
        c.close()


def wait_committed(env, group, topic, parts, daemons, cluster, what):
    """Waits until group's committed offsets are the topic's end offsets; returns them."""
    ends = end_offsets(env, topic, parts)
    wait(lambda: e2e.committed_offsets(env, group, topic, parts) == ends, 60,
         f"offsets committed to the end {ends} ({what})", daemons, cluster,
         detail=lambda: f"committed {e2e.committed_offsets(env, group, topic, parts)}")
    return ends


def events_applied(cluster, prefix, users):
    """{user: meta.events_applied} of the users present (a cluster pipeline: one batch
    per node)."""
    rc = client(cluster)
    try:
        p = rc.pipeline(transaction=False)
        for u in users:
            p.hget(f"{prefix}{{{u}}}:meta", "events_applied")
        return {u: int(v) for u, v in zip(users, p.execute()) if v is not None}
    finally:
        rc.close()


def metas(cluster, prefix, users):
    """{user: meta hash (str -> str)} of the users present."""
    rc = client(cluster)
    try:
        p = rc.pipeline(transaction=False)
        for u in users:
            p.hgetall(f"{prefix}{{{u}}}:meta")
        return {u: {a.decode(): b.decode() for a, b in m.items()}
                for u, m in zip(users, p.execute()) if m}
    finally:
        rc.close()


def wait_applied(cluster, prefix, want, timeout_s, daemons, what):
    """Waits until every user's events_applied equals want[user]; fails the test if not."""
    last = {}

    def done():
        nonlocal last
        last = events_applied(cluster, prefix, list(want))
        return all(last.get(u) == n for u, n in want.items())

    def short():
        s = {u: (last.get(u), n) for u, n in want.items() if last.get(u) != n}
        return f"{len(s)} users short (have, want), e.g. {list(s.items())[:5]}"
    wait(done, timeout_s, f"every event applied ({what})", daemons, cluster, 0.5, short)
    return last


def total_applied(cluster, prefix, users):
    try:
        return sum(events_applied(cluster, prefix, users).values())
    except TRANSIENT:
        return None


def compare(cluster, prefix, expected):
    """e2e.compare through a cluster client (each read_user pipeline is one user's slot)."""
    rc = client(cluster)
    try:
        return e2e.compare(rc, prefix, expected)
    finally:
        rc.close()


def assert_equal_replay(cluster, prefix, expected, what):
    diffs = compare(cluster, prefix, expected)
    if diffs:
        e2e.fail(f"{what}: {len(diffs)} differences from the offline replay:\n  " +
                 "\n  ".join(diffs[:20]))


def keys_of(cluster, port, prefix):
    """The keys with prefix that node port holds (SCAN on that node only)."""
    c = cluster.client(port)
    return [k.decode() for k in c.scan_iter(match=prefix.replace("{", "\\{") + "*", count=1000)]


def user_keys_by_master(cluster, prefix):
    """{master port: number of user keys (prefix{user}:...) it holds}."""
    out = {}
    for port in cluster.masters():
        out[port] = sum(1 for k in keys_of(cluster, port, prefix)
                        if re.match(re.escape(prefix) + r"\{[^}]*\}:(vec|top|tiers|meta|state)$", k)
                        and not k[len(prefix):].startswith("{p:"))
    return out


def slot_tag(slot):
    """The smallest decimal integer string whose key slot is slot (the tag of a master's
    flushed-through markers, schemas/redis.md)."""
    i = 0
    while key_slot(str(i).encode()) != slot:
        i += 1
    return str(i)


def key_kinds(prefix, topic, group, keys):
    """Classifies keys by the cluster-mode layout; returns {kind: [keys]} where kind is
    user, tiers, partition, flushed or unknown."""
    p = re.escape(prefix)
    t = re.escape(topic)
    g = re.escape(group)
    pats = [
        ("partition", rf"{p}\{{p:{t}:\d+\}}:(epoch|lease|inflight:{g})$"),
        ("flushed", rf"{p}\{{\d+\}}:flushed:{g}:{t}:\d+$"),
        ("user", rf"{p}\{{[^}}]*\}}:(vec|top|tiers|meta|state|erased)$"),
        ("tiers", rf"{p}tiers$"),
    ]
    out = {}
    for k in keys:
        kind = next((name for name, rx in pats if re.match(rx, k)), "unknown")
        out.setdefault(kind, []).append(k)
    return out
