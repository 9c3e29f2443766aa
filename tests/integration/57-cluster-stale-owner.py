#!/usr/bin/env python3
"""interestd with redis.cluster = true: a stale owner woken after its successor's claim
writes nothing (schemas/redis.md, "Redis Cluster", fencing a user's write).

A Redis Cluster of 3 masters; two instances A and B in one consumer group, 2 partitions
each, short timeouts (session.timeout.ms 6000, max.poll.interval.ms 7000, A's lease 3 s).
A flushes only every 10 s (flush.when_caught_up = false), so after the second batch it
holds applied events of its partitions that are not in Redis yet (its users_dirty gauge
> 0, and Redis lacks exactly its share of the batch). A is frozen (SIGSTOP) past the
session timeout: Kafka gives its partitions to B, B claims newer epochs, applies A's
share of batch 2 and all of batch 3; Redis then equals the offline replay. A is woken
(SIGCONT) with its old epochs and its dirty users: it must drop them (fenced,
`event=partition_fenced`, by its overdue lease renewal or its pre-flush epoch read, or
told by Kafka that its partitions are lost, `event=partitions_lost`) and write nothing:
every user's meta hash (updated_at included) is unchanged once A has rejoined the group.
A fourth batch is then applied by both; Redis equals the replay, events_applied exact.

Last, the pre-flush epoch read itself, deterministic (46-fenced-owner.py in cluster
mode): A stops (SIGTERM, exit 0), B owns all 4 partitions; right after B renewed its
leases (B renews every 10 s: its lease is 30 s), another owner takes every partition
in Redis (its {p:<topic>:<p>}:epoch one above B's, a live lease under another owner
id) and a fifth batch is produced. B's flush must read the newer epochs first and log
every partition fenced (during=flush), write nothing and commit nothing while that
lease is live; when it runs out, B re-claims above it and Redis equals the replay of
every event; B exits 0."""
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster_e2e as ce  # noqa: E402
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402
from redis_cluster import HOST, RedisCluster  # noqa: E402

N_USERS, PARTS = 120, 4
SIZES = [1000, 1000, 1000, 600, 600]  # batches 1-5
OTHER_LEASE_MS = 6000
A_FLUSH_MS = 10000

env = harness.start()
tmp = env["HARNESS_TMP"]
topic = env["EVENTS_TOPIC"]
prefix = env["REDIS_KEY_PREFIX"]
group = env["HARNESS_PREFIX"] + "g"
st = ce.batches(env, N_USERS, SIZES, seed=57)
model, rows, cuts, expected, want, users = st.model, st.rows, st.cuts, st.expected, st.want, st.users

cluster = RedisCluster(tempfile.mkdtemp(prefix="rcluster.", dir=tmp), masters=3, replicas=0).start()
seed = sorted(cluster.masters())[0]
e2e.ok(f"redis cluster: masters {sorted(cluster.masters())}")

common = dict(redis__cluster="true", redis__host=HOST, redis__port=seed,
              kafka__consumer__session__timeout__ms=6000,
              kafka__consumer__max__poll__interval__ms=7000, redis__lease_ms=3000)
da = e2e.Daemon(env, e2e.write_config(env, model, "A", flush__interval_ms=A_FLUSH_MS,
                                      flush__when_caught_up="false",
                                      metrics__listen="127.0.0.1:0", **common), "A")
# B renews its leases every 10 s (a third of 30 s), so that in the last part its flush,
# not a renewal, is what meets the newer epoch: the pre-flush epoch read is under test.
db = e2e.Daemon(env, e2e.write_config(env, model, "B", **dict(common, redis__lease_ms=30000)),
                "B")
both = [da, db]
da.start()
da.wait_log(r"event=assigned .*owned=4", 60)
at = da.mark()
db.start()
db.wait_log(r"event=assigned .*owned=2", 60)
da.wait_log(r"event=(revoked|assigned) .*owned=2", 60, since=at)
b_parts = sorted(int(p) for p in re.search(r"event=assigned topic=\S+ partitions=([\d,]+)",
                                           db.current_log()).group(1).split(","))
a_parts = sorted(set(range(PARTS)) - set(b_parts))
metrics_addr = da.wait_log(r"event=metrics_listening addr=(\S+)", 10).group(1)
e2e.ok(f"A owns partitions {a_parts}, B owns {b_parts}")


def a_metrics():
    with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for name in ("interestd_events_applied_total", "interestd_users_dirty"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        if m is None:
            e2e.fail(f"A's /metrics has no {name}")
        out[name] = int(float(m.group(1)))
    return out


# ---- batch 1: both apply and commit -----------------------------------------------------
e2e.replay_to_kafka(env, os.path.join(tmp, "b1.csv"))
ce.wait_applied(cluster, prefix, want[0], 60, both, "batch 1")
ce.assert_equal_replay(cluster, prefix, expected[0], "batch 1")
hw1 = ce.wait_committed(env, group, topic, PARTS, both, cluster, "batch 1")
if a_metrics()["interestd_events_applied_total"] != sum(hw1[p] for p in a_parts):
    e2e.fail(f"A applied {a_metrics()} events, its partitions hold {[hw1[p] for p in a_parts]}")
e2e.ok(f"batch 1 applied and committed {hw1}; Redis equals the offline replay")

# ---- batch 2: A applies its share and holds it unflushed; then A is frozen ---------------
e2e.replay_to_kafka(env, os.path.join(tmp, "b2.csv"))
t_b2 = time.monotonic()
hw2 = ce.end_offsets(env, topic, PARTS)
a_share = sum(hw2[p] - hw1[p] for p in a_parts)
b_share = sum(hw2[p] - hw1[p] for p in b_parts)
if a_share == 0 or b_share == 0:
    e2e.fail(f"batch 2 has {a_share} events in A's partitions and {b_share} in B's")
a_target = sum(hw2[p] for p in a_parts)
m = ce.wait(lambda: (lambda x: x if x["interestd_events_applied_total"] == a_target and
                     x["interestd_users_dirty"] > 0 else None)(a_metrics()),
            A_FLUSH_MS / 1000 - 3, "A holding its share of batch 2 applied, not flushed", both,
            cluster, 0.1, detail=lambda: f"A's metrics {a_metrics()}, want applied {a_target}")
da.send(signal.SIGSTOP)
t_stop = time.monotonic()
harness.on_exit(lambda: os.kill(da.proc.pid, signal.SIGCONT) if da.alive() else None)
e2e.ok(f"A frozen (SIGSTOP) {t_stop - t_b2:.1f} s after batch 2 was produced, holding "
       f"{m['interestd_users_dirty']} dirty users ({a_share} events of partitions {a_parts})")
# B flushes its share; A's share is not in Redis.
ce.wait(lambda: ce.total_applied(cluster, prefix, users) == cuts[1] + b_share, 30,
        "B's share of batch 2 in Redis", both, cluster,
        detail=lambda: f"{ce.total_applied(cluster, prefix, users)} in Redis, want "
                       f"{cuts[1] + b_share}")
e2e.ok(f"Redis holds batch 1 and B's {b_share} events of batch 2, none of A's {a_share}")

# ---- B takes A's partitions and applies A's share and batch 3 ----------------------------
at = db.mark()
db.wait_log(r"event=assigned .*owned=4", 60, since=at)
for p in a_parts:
    db.wait_log(rf"event=partition_claimed topic=\S+ partition={p} .*new_epoch=1", 30, since=at)
if not da.alive():
    e2e.fail("A exited while frozen")
e2e.ok(f"B owns all 4 partitions {time.monotonic() - t_stop:.1f} s after A froze, with new "
       f"epochs for {a_parts}")
e2e.replay_to_kafka(env, os.path.join(tmp, "b3.csv"))
ce.wait_applied(cluster, prefix, want[2], 90, both, "A's share of batch 2 and batch 3 by B")
ce.assert_equal_replay(cluster, prefix, expected[2], "batches 1-3 with A frozen")
hw3 = ce.wait_committed(env, group, topic, PARTS, both, cluster, "batches 1-3")
before = ce.metas(cluster, prefix, users)
epochs = {}
rc = ce.client(cluster)
for p in range(PARTS):
    epochs[p] = int(rc.get(f"{prefix}{{p:{topic}:{p}}}:epoch"))
rc.close()
stale = {u: mt for u, mt in before.items()
         if int(mt["partition"]) in a_parts and int(mt.get("epoch", 0)) != epochs[int(mt["partition"])]
         and u in {r["user_id"] for r in rows[cuts[1]:cuts[3]]}}
if stale:
    e2e.fail(f"users of A's partitions with events since the freeze not last written by B's "
             f"epoch {epochs}: {list(stale.items())[:3]}")
e2e.ok(f"batches 1-3 in Redis (equal to the replay) after {time.monotonic() - t_stop:.1f} s "
       f"of A frozen; epochs now {epochs}")

# ---- A wakes: it must write nothing ------------------------------------------------------
at_a, at_b = da.mark(), db.mark()
da.send(signal.SIGCONT)
t_cont = time.monotonic()
how = da.wait_log(r"event=(partition_fenced|partitions_lost) [^\n]*", 30, since=at_a).group(0)
da.wait_log(r"event=assigned .*owned=[1-9]", 60, since=at_a)
ce.wait(lambda: sorted({int(x) for x in re.findall(
    r"event=partition_claimed topic=\S+ partition=(\d+)", da.current_log()[at_a:])}), 30,
    "A claimed the partitions Kafka gave it again", both, cluster)
time.sleep(1.5)  # a stale write would have landed by now: A flushes its due users first
after = ce.metas(cluster, prefix, users)
changed = {u: (before.get(u), after.get(u)) for u in users if before.get(u) != after.get(u)}
if changed:
    da.dump()
    e2e.fail(f"{len(changed)} users written after A woke with nothing new produced (A's stale "
             f"flush), e.g. {list(changed.items())[:2]}")
ce.assert_equal_replay(cluster, prefix, expected[2], "after A woke")
e2e.ok(f"A woke ({how.split()[0]}) and rejoined in {time.monotonic() - t_cont:.1f} s; every "
       f"user's meta unchanged: A wrote nothing stale")

# ---- batch 4 with both instances ---------------------------------------------------------
e2e.replay_to_kafka(env, os.path.join(tmp, "b4.csv"))
ce.wait_applied(cluster, prefix, want[3], 90, both, "batch 4")
ce.assert_equal_replay(cluster, prefix, expected[3], "all batches")
hw4 = ce.wait_committed(env, group, topic, PARTS, both, cluster, "all batches")
e2e.ok(f"batches 1-4 applied once: Redis equals the offline replay (events_applied exact), "
       f"committed {hw4}")

# ---- another owner's newer epoch in Redis fences B's flushes (46-fenced-owner in cluster
# mode): the pre-flush read of the partitions' epochs must stop B before it writes ----------
at = db.mark()
if da.stop() != 0:
    da.dump()
    e2e.fail("A: SIGTERM: exit status not 0")
da.assert_clean()
gained = db.wait_log(r"event=assigned topic=\S+ partitions=([\d,]+) .*owned=4", 60,
                     since=at).group(1)  # its claims are logged before this line
rc = ce.client(cluster)
epochs = {p: int(rc.get(f"{prefix}{{p:{topic}:{p}}}:epoch")) for p in range(PARTS)}
before = ce.metas(cluster, prefix, users)


def just_renewed(last=[None]):
    """True right after B renewed its leases (the lease's PTTL went up)."""
    c = ce.client(cluster)
    try:
        t = c.pttl(f"{prefix}{{p:{topic}:0}}:lease")
    finally:
        c.close()
    up = last[0] is not None and t > last[0]
    last[0] = t
    return up


ce.wait(just_renewed, 20, "B renewing its leases", [db], cluster, 0.05)
mark = db.mark()
for p in range(PARTS):
    e = rc.incr(f"{prefix}{{p:{topic}:{p}}}:epoch")
    rc.set(f"{prefix}{{p:{topic}:{p}}}:lease", f"{e} other-instance:1:0", px=OTHER_LEASE_MS)
rc.close()
t_taken = time.monotonic()
e2e.replay_to_kafka(env, os.path.join(tmp, "b5.csv"))
for p in range(PARTS):
    db.wait_log(rf"event=partition_fenced topic={re.escape(topic)} partition={p} "
                rf"epoch={epochs[p]} .*during=flush .*action=stop_until_kafka_confirms_ownership",
                30, since=mark)
checks = 0
while time.monotonic() - t_taken < OTHER_LEASE_MS / 1000 - 1.0:
    ce.check_alive([db], cluster, "another owner's lease is live")
    if e2e.committed_offsets(env, group, topic, PARTS) != hw4:
        db.dump()
        e2e.fail(f"offsets committed past fenced partitions: "
                 f"{e2e.committed_offsets(env, group, topic, PARTS)} != {hw4}")
    now = ce.metas(cluster, prefix, users)
    if now != before:
        e2e.fail(f"a fenced instance wrote: "
                 f"{[(u, now.get(u)) for u in users if now.get(u) != before.get(u)][:3]}")
    checks += 1
    time.sleep(0.5)
if checks < 3:
    e2e.fail(f"only {checks} checks inside the other owner's lease")
e2e.ok(f"B (it took partitions {gained} from A) fenced on every partition by its pre-flush "
       f"read of a newer epoch (during=flush): nothing of batch 5 written, nothing "
       f"committed while the other lease was live ({checks} checks)")
for p in range(PARTS):
    db.wait_log(rf"event=partition_claimed topic={re.escape(topic)} partition={p} "
                r"epoch=(\d+) .*new_epoch=1", 60, since=mark)
ce.wait_applied(cluster, prefix, want[4], 90, [db], "batch 5 after the re-claim")
ce.assert_equal_replay(cluster, prefix, expected[4], "all batches")
rc = ce.client(cluster)
new_epochs = {p: int(rc.get(f"{prefix}{{p:{topic}:{p}}}:epoch")) for p in range(PARTS)}
rc.close()
if any(new_epochs[p] != epochs[p] + 2 for p in range(PARTS)):
    e2e.fail(f"epochs after the re-claim {new_epochs}; want the other owner's + 1 ({epochs} + 2)")
hw5 = ce.wait_committed(env, group, topic, PARTS, [db], cluster, "all batches")
e2e.ok(f"B re-claimed (epochs {new_epochs}); all {cuts[-1]} events applied once: Redis "
       f"equals the offline replay (events_applied exact), committed {hw5}")
if db.stop() != 0:
    db.dump()
    e2e.fail("B: SIGTERM: exit status not 0")
db.assert_clean()
e2e.ok("A and B: SIGTERM exit 0")
cluster.stop()
harness.stop()
print("PASS")
