#!/usr/bin/env python3
"""interestd with redis.cluster = true and redis.wait_replicas = 0: a master's failover
that loses writes the daemon had committed past is found by that master's own
flushed-through marker (schemas/redis.md "Redis Cluster": one marker per master).

A cluster of 3 masters with 1 replica each. Batch 1 is applied and committed. Then the
replica of one master M (not the seed) is frozen with SIGSTOP and M drops it (its
replication output buffer overflows), so it stops receiving M's writes; batch 2 is
applied and committed (M acknowledges alone). M is killed -9 and
its replica thawed; the cluster promotes it with what it had: batch 2's writes to M's
slots are gone, and so is M's marker raised after them, while the other masters keep
theirs. Batch 3 is produced: the daemon's writes to M's slots fail, it reconnects,
re-claims its partitions and reads every master's marker: the promoted one is below
the committed offset, `event=redis_rollback_detected`, and it reads again from there.
Redis ends equal to the offline replay of all three batches (events_applied exact):
nothing lost, nothing applied twice."""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster_e2e as ce  # noqa: E402
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from redis_cluster import HOST, RedisCluster  # noqa: E402
from servers import ClusterError  # noqa: E402

N_USERS, N_EVENTS, PARTS = 120, 3000, 4
B1, B2 = 1000, 2000

env = harness.start()
tmp = env["HARNESS_TMP"]
topic = env["EVENTS_TOPIC"]
prefix = env["REDIS_KEY_PREFIX"]
group = env["HARNESS_PREFIX"] + "g"
st = ce.batches(env, N_USERS, [B1, B2 - B1, N_EVENTS - B2], seed=58)
model, users, expected = st.model, st.users, st.expected[-1]
want = dict(zip(("b1", "upto2", "all"), st.want))

cluster = RedisCluster(tempfile.mkdtemp(prefix="rcluster.", dir=tmp), masters=3,
                       replicas=1).start()
masters = cluster.masters()
seed = sorted(masters)[0]
victim = max((m for m in masters if m != seed), key=lambda m: sum(b - a + 1 for a, b in masters[m]))
victim_slots = {s for a, b in masters[victim] for s in range(a, b + 1)}
victim_users = [u for u in users if key_slot(u.encode()) in victim_slots]
replica = next(p for p in cluster.ports if p not in masters and
               cluster.client(p).info("replication").get("master_port") == victim)
if not victim_users:
    e2e.fail(f"no user lives on master {victim}: the test would show nothing")
e2e.ok(f"cluster: masters {sorted(masters)}; victim {victim} ({len(victim_users)} users) "
       f"with replica {replica}")

conf = e2e.write_config(env, model, "d", redis__cluster="true", redis__host=HOST,
                        redis__port=seed, redis__wait_replicas=0)
d = e2e.Daemon(env, conf, "d").start()
d.wait_log(r"event=assigned .*owned=4", 60)
for p in range(PARTS):
    d.wait_log(rf"event=partition_claimed topic=\S+ partition={p} ", 30)


def wait_committed(what):
    return ce.wait_committed(env, group, topic, PARTS, [d], cluster, what)


def applied_on(port, who):
    """Sum of events_applied of users who, read on node port itself (READONLY: a
    replica answers instead of redirecting)."""
    p = cluster.client(port).pipeline(transaction=False)
    p.execute_command("READONLY")
    for u in who:
        p.hget(f"{prefix}{{{u}}}:meta", "events_applied")
    return sum(int(v) for v in p.execute()[1:] if v is not None)


# ---- batch 1: applied, committed, replicated ----------------------------------------
e2e.replay_to_kafka(env, os.path.join(tmp, "b1.csv"))
ce.wait_applied(cluster, prefix, want["b1"], 120, [d], "batch 1")
wait_committed("batch 1")
ce.wait(lambda: applied_on(replica, victim_users) == applied_on(victim, victim_users), 30,
        f"replica {replica} caught up with {victim}", [d], cluster)
on_replica = applied_on(replica, victim_users)
e2e.ok(f"batch 1 applied and committed; {on_replica} events of {victim}'s users on its replica")

# ---- batch 2 with the replica cut off: the master acknowledges alone -----------------
# A frozen replica would still get what the kernel buffered for it, so the master drops
# it: a 1 MB hard limit on its replication output and 16 MB written to a key of its own
# slot while the replica is stopped. Writes after that never reach the replica.
vc = cluster.client(victim)
vc.config_set("client-output-buffer-limit", "replica 1mb 0 0")
junk_tag = ce.slot_tag(min(victim_slots))
mark = d.mark()  # the daemon may meet the failover before batch 3 (a lease renewal)
cluster.procs[replica].send_signal(19)  # SIGSTOP
try:
    vc.set(f"junk{{{junk_tag}}}", b"x" * (16 << 20))
    ce.wait(lambda: vc.info("replication").get("connected_slaves") == 0, 30,
            f"{victim} dropped its frozen replica", [d], cluster)
    e2e.replay_to_kafka(env, os.path.join(tmp, "b2.csv"))
    ce.wait_applied(cluster, prefix, want["upto2"], 120, [d], "batch 2")
    ends2 = wait_committed("batch 2")
    on_victim = applied_on(victim, victim_users)
    if on_victim <= on_replica:
        e2e.fail(f"batch 2 wrote nothing to {victim}'s users ({on_victim} vs {on_replica})")
    cluster.kill(victim)
finally:
    cluster.procs[replica].send_signal(18)  # SIGCONT
t_kill = time.monotonic()
e2e.ok(f"batch 2 applied and committed ({ends2}) with {victim}'s replica frozen: "
       f"{on_victim - on_replica} events of its users acknowledged by {victim} alone; "
       f"{victim} killed -9, replica thawed")
survivors = [p for p in cluster.ports if p != victim]


def settled():
    try:
        cluster.wait_ok(1, survivors)
        return True
    except ClusterError:
        return False


ce.wait(settled, 90, f"replica {replica} promoted", [d], cluster)
if replica not in cluster.masters():
    e2e.fail(f"{replica} was not promoted: masters {sorted(cluster.masters())}")
# Cut off before batch 2 (connected_slaves fell to 0), the replica has batch 1 only; it
# cannot be read again to show it: the daemon may already be writing to it.
lost = on_victim - on_replica
e2e.ok(f"replica {replica} promoted in {time.monotonic() - t_kill:.1f} s, missing {lost} "
       "acknowledged and committed events")

# ---- batch 3: the daemon meets the failover, finds the rollback, re-applies ----------
e2e.replay_to_kafka(env, os.path.join(tmp, "b3.csv"))
m = d.wait_log(r"event=redis_rollback_detected topic=\S+ partition=(\d+) committed=(\d+) "
               r"flushed=(\d+)", 90, since=mark)
if int(m.group(3)) >= int(m.group(2)) or int(m.group(2)) != ends2[int(m.group(1))]:
    e2e.fail(f"rollback line {m.group(0)!r}: want committed = batch 2's end "
             f"{ends2[int(m.group(1))]} above flushed")
ce.wait_applied(cluster, prefix, want["all"], 180, [d], "all batches after the rollback")
ce.assert_equal_replay(cluster, prefix, expected, "after the rollback")
e2e.ok(f"rollback found by the promoted master's marker (partition {m.group(1)}: committed "
       f"{m.group(2)}, flushed {m.group(3)}); all {N_EVENTS} events applied once, Redis "
       "equals the offline replay")
wait_committed("batch 3")
rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"SIGTERM: exit status {rc}, want 0")
d.assert_clean()
cluster.stop()
harness.stop()
print("PASS")
