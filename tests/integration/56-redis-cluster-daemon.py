#!/usr/bin/env python3
"""interestd with redis.cluster = true against a real Redis Cluster of 3 masters with
1 replica each (tests/lib/redis_cluster.py), the run's shared Kafka (4 partitions).
Three batches of the same event stream; after each, Redis (read through a cluster
client) equals the offline replay of every event so far, events_applied exact: nothing
lost, nothing applied twice.

1. Equivalence: the first batch is applied; the users' keys are spread over all three
   masters; every key the daemon wrote has the cluster-mode name (user keys under
   {user}, the partitions' epoch/lease/inflight under {p:<topic>:<partition>}, the
   flushed-through markers under the tag of each master's lowest slot: the smallest
   decimal integer string hashing to it), and every master's marker of every partition
   equals the committed offset (past the last offset of its users of the partition).
2. A live reshard: while the daemon applies the second batch (produced at a bounded
   rate), `redis-cli --cluster reshard` moves 4,096 slots from one master to another;
   the daemon follows MOVED/ASK (interestd_redis_redirects_total > 0). SIGTERM then
   exits 0 with every offset committed.
3. A new daemon (a new group, a new cluster: it applies batches 1-2 from the topic)
   with redis.wait_replicas = 1; the master with the most slots (not the seed) killed
   -9 mid-stream: while its slots wait for the replica's promotion the
   other masters' users go on being written (event=redis_slots_unavailable, no global
   pause), then the daemon recovers (event=redis_slots_recovered),
   the master's replica is promoted, the killed node comes back as a replica (so WAIT 1
   can be met again), the daemon recovers; SIGTERM exits 0."""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cluster_e2e as ce  # noqa: E402
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from redis_cluster import HOST, RedisCluster  # noqa: E402
from servers import ClusterError  # noqa: E402

N_USERS, N_EVENTS, PARTS = 150, 4500, 4
B1, B2 = 1500, 3000  # batch 1 = rows[:B1], batch 2 = rows[B1:B2], batch 3 = rows[B2:]
RATE = 200  # events/s of batches 2 and 3: the daemon is still applying during the faults

env = harness.start()
tmp = env["HARNESS_TMP"]
topic = env["EVENTS_TOPIC"]
prefix = env["REDIS_KEY_PREFIX"]
group = env["HARNESS_PREFIX"] + "g"
st = ce.batches(env, N_USERS, [B1, B2 - B1, N_EVENTS - B2], seed=56)
model, rows, users = st.model, st.rows, st.users
expected = dict(zip(("b1", "upto2", "all"), st.expected))
want = dict(zip(("b1", "upto2", "all"), st.want))
e2e.ok(f"offline replays: {len(users)} users, batches of {B1}, {B2 - B1}, {N_EVENTS - B2}")

cluster = RedisCluster(tempfile.mkdtemp(prefix="rcluster.", dir=tmp), masters=3, replicas=1).start()
masters = cluster.masters()
seed = sorted(masters)[0]
e2e.ok(f"redis cluster: masters {sorted(masters)} (seed {seed}), replicas "
       f"{sorted(set(cluster.ports) - set(masters))}")


def wait_committed(daemons, what):
    return ce.wait_committed(env, group, topic, PARTS, daemons, cluster, what)


class Producer(threading.Thread):
    """scripts/replay of one batch at RATE events/s, in the background."""

    def __init__(self, csv):
        super().__init__(daemon=True)
        self.csv = csv
        self.error = None

    def run(self):
        try:
            e2e.replay_to_kafka(env, self.csv, rate=RATE)
        except BaseException as ex:  # noqa: BLE001 - e2e.fail raises SystemExit here
            self.error = ex

    def finish(self, daemons):
        ce.wait(lambda: not self.is_alive(), 120, f"{self.csv} produced", daemons, cluster)
        if self.error is not None:
            e2e.fail(f"producing {self.csv} failed: {self.error!r}")


def settled(ports=None):
    """cluster_state:ok and one slot map of live masters on every live node (or ports)."""
    try:
        cluster.wait_ok(1, ports)
        return True
    except ClusterError:
        return False


def redirects(d):
    """interestd_redis_redirects_total {moved, ask} from d's /metrics."""
    addr = d.wait_log(r"event=metrics_listening addr=(\S+)", 10).group(1)
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for kind in ("moved", "ask"):
        m = re.search(rf'^interestd_redis_redirects_total{{kind="{kind}"}} (\d+)$', text, re.M)
        if m is None:
            e2e.fail(f"{d.name}: no interestd_redis_redirects_total{{kind=\"{kind}\"}} in /metrics")
        out[kind] = int(m.group(1))
    return out


def stop_ok(d):
    rc = d.stop()
    if rc != 0:
        d.dump()
        e2e.fail(f"{d.name}: SIGTERM: exit status {rc}, want 0")
    if "event=stopped exit=0" not in d.current_log():
        d.dump()
        e2e.fail(f"{d.name}: no 'event=stopped exit=0' line")
    d.assert_clean()


# ---- 1. equivalence, spread over the masters, the cluster-mode key names ------------
conf1 = e2e.write_config(env, model, "d1", redis__cluster="true", redis__host=HOST,
                         redis__port=seed, metrics__listen="127.0.0.1:0")
d1 = e2e.Daemon(env, conf1, "d1").start()
d1.wait_log(r"event=assigned .*owned=4", 60)
e2e.replay_to_kafka(env, os.path.join(tmp, "b1.csv"))
ce.wait_applied(cluster, prefix, want["b1"], 120, [d1], "batch 1")
ce.assert_equal_replay(cluster, prefix, expected["b1"], "batch 1")
e2e.ok(f"batch 1: all {B1} events applied; Redis Cluster equals the offline replay "
       "(vec 1e-5, top-N ids, tiers, events_applied)")

per_master = ce.user_keys_by_master(cluster, prefix)
if len(per_master) != 3 or any(n == 0 for n in per_master.values()):
    e2e.fail(f"user keys per master {per_master}: want keys on each of the 3 masters")
n_user_keys = sum(per_master.values())
if n_user_keys < 5 * len(want["b1"]):
    e2e.fail(f"{n_user_keys} user keys for {len(want['b1'])} users: want vec, top, tiers, "
             "meta and state of each")
e2e.ok(f"user keys per master {per_master}")

ends1 = wait_committed([d1], "batch 1")
all_keys = [k for port in masters for k in ce.keys_of(cluster, port, prefix)]
kinds = ce.key_kinds(prefix, topic, group, all_keys)
if kinds.get("unknown"):
    e2e.fail(f"{len(kinds['unknown'])} keys not named as cluster mode names them, e.g. "
             f"{sorted(kinds['unknown'])[:8]}")
rc1 = ce.client(cluster)
for p in range(PARTS):
    ep = rc1.get(f"{prefix}{{p:{topic}:{p}}}:epoch")
    lease = rc1.get(f"{prefix}{{p:{topic}:{p}}}:lease")
    if ep is None or int(ep) < 1:
        e2e.fail(f"partition {p}: no epoch under {prefix}{{p:{topic}:{p}}}:epoch ({ep!r})")
    if lease is None or not lease.decode().startswith(f"{int(ep)} "):
        e2e.fail(f"partition {p}: lease {lease!r} does not carry the epoch {int(ep)}")
if not rc1.hgetall(prefix + "tiers"):
    e2e.fail(f"no tier names in {prefix}tiers")
e2e.ok(f"key layout: {({k: len(v) for k, v in kinds.items()})}; the partitions' epoch and "
       "lease under {p:<topic>:<partition>}")

# Flushed-through markers: one per master, under the tag of the master's lowest slot.
metas = ce.metas(cluster, prefix, list(want["b1"]))
slot_owner = {}
for port, ranges in masters.items():
    for a, b in ranges:
        for s in range(a, b + 1):
            slot_owner[s] = port
tags = {port: ce.slot_tag(min(a for a, _ in ranges)) for port, ranges in masters.items()}
for port, tag in tags.items():
    if cluster.client(port).execute_command("CLUSTER KEYSLOT", tag) != min(a for a, _ in masters[port]):
        e2e.fail(f"tag {tag} does not hash to master {port}'s lowest slot")
want_markers = {}
for u, m in metas.items():
    port = slot_owner[key_slot(u.encode())]
    key = (port, int(m["partition"]))
    want_markers[key] = max(want_markers.get(key, 0), int(m["offset"]) + 1)
expected_marker_keys = {f"{prefix}{{{tags[port]}}}:flushed:{group}:{topic}:{p}"
                        for port in tags for p in range(PARTS)}
stray = set(kinds.get("flushed", [])) - expected_marker_keys
if stray:
    e2e.fail(f"flushed-through markers under a tag that is no master's lowest slot: "
             f"{sorted(stray)[:6]} (tags {tags})")
if len(want_markers) != 3 * PARTS:
    e2e.fail(f"users of every partition on every master expected, got {sorted(want_markers)}")
for port in tags:
    for p in range(PARTS):
        # Raised on every master of the map before each commit, to the offset committed.
        key = f"{prefix}{{{tags[port]}}}:flushed:{group}:{topic}:{p}"
        v = cluster.client(port).get(key)
        if v is None:
            e2e.fail(f"master {port}: no flushed-through marker {key}")
        if int(v) != ends1[p] or int(v) < want_markers[(port, p)]:
            e2e.fail(f"marker {key} = {int(v)}: want the committed offset {ends1[p]}, at least "
                     f"{want_markers[(port, p)]} (its users' last offset + 1)")
e2e.ok(f"{3 * PARTS} flushed-through markers (master x partition) under tags {tags}: each at "
       f"the committed offset {ends1}, past its users' last offsets")

# ---- 2. a reshard of 4,096 slots while the daemon applies batch 2 ---------------------
src, dst = sorted(masters)[1], sorted(masters)[2]
ids = {p: cluster.client(p).execute_command("CLUSTER MYID").decode() for p in (src, dst)}
prod = Producer(os.path.join(tmp, "b2.csv"))
prod.start()
ce.wait(lambda: (ce.total_applied(cluster, prefix, users) or 0) >= B1 + 200, 60,
        "the first 200 events of batch 2 applied", [d1], cluster)
applied_before_rs = ce.total_applied(cluster, prefix, users)
rs_log = os.path.join(tmp, "reshard.log")  # a file, not a pipe: it prints a line per key
with open(rs_log, "w") as f:
    rs = subprocess.Popen(["redis-cli", "--cluster", "reshard", f"{HOST}:{src}",
                           "--cluster-from", ids[src], "--cluster-to", ids[dst],
                           "--cluster-slots", "4096", "--cluster-yes"],
                          stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
t_rs = time.monotonic()
ce.wait(lambda: rs.poll() is not None, 240, "the reshard finished", [d1], cluster)
applied_rs = ce.total_applied(cluster, prefix, users)
if rs.returncode != 0:
    with open(rs_log) as f:
        e2e.fail(f"redis-cli --cluster reshard failed ({rs.returncode}): {f.read()[-1500:]}")
if applied_before_rs is None or applied_before_rs >= B2:
    e2e.fail(f"batch 2 was all in Redis ({applied_before_rs}) before the reshard began: "
             "the reshard did not run mid-stream")
ce.wait(settled, 60, "one slot map on every node after the reshard", [d1], cluster)
after = cluster.masters()
moved = sum(b - a + 1 for a, b in after.get(dst, [])) - sum(b - a + 1 for a, b in masters[dst])
if moved != 4096:
    e2e.fail(f"the reshard moved {moved} slots to {dst}, want 4096")
dst_slots = {s for a, b in after[dst] for s in range(a, b + 1)}
moved_users = [u for u in users if slot_owner[key_slot(u.encode())] == src and
               key_slot(u.encode()) in dst_slots]
if not moved_users:
    e2e.fail("no user lives in the moved slots: the reshard did not move any user's keys")
e2e.ok(f"reshard of 4,096 slots {src} -> {dst} in {time.monotonic() - t_rs:.1f} s, "
       f"{len(moved_users)} users' slots moved, while the daemon applied batch 2 "
       f"({applied_before_rs} of {B2} events in Redis when it began, {applied_rs} when it ended)")
prod.finish([d1])
ce.wait_applied(cluster, prefix, want["upto2"], 120, [d1], "batch 2 after the reshard")
ce.assert_equal_replay(cluster, prefix, expected["upto2"], "after the reshard")
e2e.ok(f"batches 1-2: all {B2} events applied once; Redis equals the offline replay")
rd = redirects(d1)
if rd["moved"] + rd["ask"] == 0:
    e2e.fail(f"the daemon followed no MOVED or ASK across the reshard ({rd}): its writes to "
             "the moved slots were not exercised")
e2e.ok(f"redirects followed: {rd}")
ends2 = wait_committed([d1], "batch 2")
stop_ok(d1)
if e2e.committed_offsets(env, group, topic, PARTS) != ends2:
    e2e.fail("committed offsets moved after SIGTERM")
e2e.ok(f"d1: SIGTERM exit 0, offsets committed to the end {ends2}")

# ---- 3. a master killed -9 mid-stream, redis.wait_replicas = 1 ------------------------
# A fresh cluster and a new group: in one run, the failover of a master that had
# just received a reshard's slots left the old cluster refusing every command
# (CLUSTERDOWN) for over a minute after the killed node came back; the scenarios do
# not share that history. d2 applies batches 1-2 from the topic into it first.
cluster.stop()
cluster = RedisCluster(tempfile.mkdtemp(prefix="rcluster3.", dir=tmp), masters=3,
                       replicas=1).start()
masters = cluster.masters()
seed = sorted(masters)[0]
group = group + "-3"
conf2 = e2e.write_config(env, model, "d2", group=group, redis__cluster="true",
                         redis__host=HOST, redis__port=seed, redis__wait_replicas=1)
d2 = e2e.Daemon(env, conf2, "d2").start()
d2.wait_log(r"event=assigned .*owned=4", 60)
for p in range(PARTS):
    d2.wait_log(rf"event=partition_claimed topic=\S+ partition={p} ", 30)
ce.wait_applied(cluster, prefix, want["upto2"], 120, [d2], "batches 1-2 into a new cluster")
victim = max((m for m in masters if m != seed),
             key=lambda m: sum(b - a + 1 for a, b in masters[m]))  # the one with most slots
victim_slots = {s for a, b in masters[victim] for s in range(a, b + 1)}
victim_users = [u for u in users if key_slot(u.encode()) in victim_slots]
b3_users = {r["user_id"] for r in rows[B2:]}
if not set(victim_users) & b3_users:
    e2e.fail(f"no user of batch 3 lives on master {victim}: the kill would test nothing")
prod = Producer(os.path.join(tmp, "b3.csv"))
prod.start()
ce.wait(lambda: (ce.total_applied(cluster, prefix, users) or 0) >= B2 + 300, 60,
        "the first 300 events of batch 3 applied", [d2], cluster)
other_users = [u for u in users if u not in set(victim_users)]
at = d2.mark()
other_at_kill = sum(ce.events_applied(cluster, prefix, other_users).values())
cluster.kill(victim)
t_kill = time.monotonic()
survivors = [p for p in cluster.ports if p != victim]
# Before the cluster can promote the replica (cluster-node-timeout 2 s, then an
# election), the other masters' users must keep flowing: the lost slots only wait.
time.sleep(1.5)
ce.check_alive([d2], cluster, f"{victim} was down")
other_in_outage = sum(ce.events_applied(cluster, prefix, other_users).values())
still_down = victim in {int(m[1]) for _, _, m, *_ in
                        cluster.client(survivors[0]).execute_command("CLUSTER SLOTS")}
log_outage = d2.current_log()[at:]
if not still_down:
    e2e.fail(f"{victim}'s slots were served elsewhere 1.5 s after the kill: the outage "
             "window this test measures did not happen")
if other_in_outage <= other_at_kill:
    d2.dump()
    e2e.fail(f"the other masters' users got no event during {victim}'s outage "
             f"({other_at_kill} -> {other_in_outage} events applied): the writes stopped "
             "for every slot")
if "event=redis_unavailable " in log_outage or "event=redis_slots_unavailable " not in log_outage:
    d2.dump()
    e2e.fail("during the outage of one master the daemon should log "
             "event=redis_slots_unavailable (its users kept) and not pause everything "
             "(event=redis_unavailable)")
e2e.ok(f"{victim} down 1.5 s (its slots unserved): the other masters' users went on, "
       f"{other_in_outage - other_at_kill} more events in Redis; "
       "event=redis_slots_unavailable logged, no global pause")
ce.wait(lambda: settled(survivors), 60, f"master {victim}'s replica promoted", [d2], cluster)
now = cluster.masters()
promoted = [p for p, ranges in now.items() if any(s in ranges for s in masters[victim])]
if victim in now or len(now) != 3 or not promoted:
    e2e.fail(f"after the kill of {victim} the masters are {now}")
applied_kill = ce.total_applied(cluster, prefix, users)
e2e.ok(f"master {victim} killed -9 ({len(victim_users)} users' slots) with batch 3 in flight; "
       f"replica {promoted[0]} promoted in {time.monotonic() - t_kill:.1f} s "
       f"({applied_kill} of {N_EVENTS} events in Redis then)")
# The old master comes back as the promoted one's replica: WAIT 1 can be met again.
cluster._start_node(victim)
cluster.killed.discard(victim)
t_restart = time.monotonic()
replicate_sent = []


def rejoined():
    i = cluster.client(victim).info("replication")
    if i.get("role") == "slave" and i.get("master_link_status") == "up" and \
            i.get("master_port") == promoted[0]:
        return settled()
    if time.monotonic() - t_restart > 20 and not replicate_sent:
        # Redis turns a returning old master into the new one's replica by itself; once
        # (seen in 1 of ~10 runs) it had not after 60 s: tell it, as an operator would.
        pid = cluster.client(promoted[0]).execute_command("CLUSTER MYID").decode()
        cluster.client(victim).execute_command("CLUSTER REPLICATE", pid)
        replicate_sent.append(time.monotonic() - t_restart)
        e2e.log(f"{victim} not a replica of {promoted[0]} 20 s after its restart "
                f"({i.get('role')}, master_port {i.get('master_port')}): CLUSTER REPLICATE sent")
    return False


def rejoin_state():
    try:
        i = cluster.client(victim).info("replication")
        nodes = cluster.client(victim).execute_command("CLUSTER NODES").decode()
        return (f"role={i.get('role')} master_port={i.get('master_port')} "
                f"link={i.get('master_link_status')} settled={settled()}; CLUSTER NODES:\n{nodes}")
    except Exception as ex:  # noqa: BLE001 - only for the failure message
        return repr(ex)


ce.wait(rejoined, 60, f"{victim} back as a replica of {promoted[0]}", [d2], cluster,
        detail=rejoin_state)
e2e.ok(f"{victim} restarted: a replica of {promoted[0]}" +
       (" (after CLUSTER REPLICATE)" if replicate_sent else ""))
# WAIT 1 is met again only once the old master's replication link is up: the daemon
# sees that at its next flush (every 100 ms), so the line may follow the link by a turn.
d2.wait_log(r"event=redis_slots_recovered ", 30, since=at)
prod.finish([d2])
ce.wait_applied(cluster, prefix, want["all"], 180, [d2], "batch 3 after the failover")
ce.assert_equal_replay(cluster, prefix, expected["all"], "after the failover")
e2e.ok(f"all {N_EVENTS} events applied once after the failover: Redis equals the offline "
       "replay (events_applied exact)")
ends3 = wait_committed([d2], "batch 3")
rollbacks = d2.current_log().count("event=redis_rollback_detected")
stop_ok(d2)
e2e.ok(f"d2: SIGTERM exit 0, offsets committed to the end {ends3} "
       f"({rollbacks} redis_rollback_detected lines)")
cluster.stop()
harness.stop()
print("PASS")
