#!/usr/bin/env python3
"""interestd end to end: writes that Redis acknowledged and then lost, before their
offsets were committed, are detected at the reconnect and read again from Kafka
(schemas/redis.md "Flushed-through markers"; the failover-lost-ack case of issue 11).

What a failover with redis.wait_replicas = 0 can do: the primary acknowledges a flush,
the connection drops before the flushed-through marker is raised (so before the
commit), and the promoted replica never had the flush. Made deterministic here without a
replica: the daemon runs as an ACL user; a first half is applied and committed and every
key of the test's prefix saved (the replica's copy). Then the user loses the right to the
marker keys (it may read them, not write them), the second half is produced: the users' writes are acknowledged (Redis
shows them) but no marker can be raised, so nothing is committed. The saved keys replace
the current ones (the "replica" without the acknowledged writes: its marker equals the
committed offset, so the marker check alone sees nothing), the right is granted back
and the daemon's connections killed. On reconnect the daemon must read every owned
partition again from its committed offset: Redis ends equal to the offline replay of
every event, events_applied exact (the old daemon had marked those users clean and
committed past the lost writes)."""
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS, SPLIT = 60, 1600, 800
PASSWORD = "lost-ack-Secret-7d1e"

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
rows = e2e.make_events(os.path.join(tmp, "all.csv"), items, N_USERS, N_EVENTS, seed=47)
e2e.write_events(os.path.join(tmp, "a.csv"), rows[:SPLIT])
e2e.write_events(os.path.join(tmp, "b.csv"), rows[SPLIT:])
expected = e2e.offline_replay(model, os.path.join(tmp, "all.csv"), os.path.join(tmp, "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
want_a = dict(collections.Counter(r["user_id"] for r in rows[:SPLIT]))
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
group = env["HARNESS_PREFIX"] + "g"
topic = env["EVENTS_TOPIC"]
user = env["HARNESS_PREFIX"] + "lostack"
every_key = [f"~{prefix}*"]
# Markers readable (the failover check reads them), not writable (Redis 7 key selectors).
no_markers = [f"~{prefix}{{*", f"~{prefix}epoch:*", f"~{prefix}lease:*", f"~{prefix}inflight:*",
              f"~{prefix}tiers", f"%R~{prefix}flushed:*"]


def acl(keys):
    r.execute_command("ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}", *keys,
                      "resetchannels", "+@all")


acl(every_key)
harness.on_exit(lambda: r.execute_command("ACL", "DELUSER", user))
pwfile = os.path.join(tmp, "redis.pw")
with open(pwfile, "w") as f:
    f.write(PASSWORD + "\n")
os.chmod(pwfile, 0o600)
conf = e2e.write_config(env, model, "d1", redis__user=user, redis__password_file=pwfile)
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)

e2e.replay_to_kafka(env, os.path.join(tmp, "a.csv"))
done, _got, short = e2e.wait_applied(r, prefix, want_a, 120)
if not done:
    d.dump()
    e2e.fail(f"first half: {len(short)} users short")
committed_a = harness.wait_for(
    lambda: (lambda c: c if sum(v for v in c.values() if v > 0) == SPLIT else None)(
        e2e.committed_offsets(env, group, topic)), 60, 0.3)
if committed_a is None:
    d.dump()
    e2e.fail("the first half was not committed")
markers = {p: r.get(f"{prefix}flushed:{group}:{topic}:{p}") for p in range(4)}
if any(markers[p] is None or int(markers[p]) != committed_a[p] for p in range(4)):
    e2e.fail(f"markers {markers} != committed {committed_a}")
saved = {k: (r.dump(k), r.pttl(k)) for k in r.scan_iter(match=prefix + "*", count=1000)}
e2e.ok(f"first half committed {committed_a}, markers equal; {len(saved)} keys saved")

# The marker keys read-only: writes are acknowledged, nothing can be committed.
acl(no_markers)
mark = d.mark()
e2e.replay_to_kafka(env, os.path.join(tmp, "b.csv"))
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"second half not written: {len(short)} users short")
d.wait_log(r"event=redis_permission_denied during=mark_flushed", 30, since=mark)
now = e2e.committed_offsets(env, group, topic)
if now != committed_a:
    e2e.fail(f"committed {now} although no marker could be raised")
e2e.ok("second half acknowledged by Redis, its markers refused, nothing committed")

# The failover: Redis back at the first half (marker = committed), the daemon cut off
# (no key at all while the keys are swapped, so its retries cannot write meanwhile).
acl([])
for k in list(r.scan_iter(match=prefix + "*", count=1000)):
    r.delete(k)
for k, (blob, pttl) in saved.items():
    r.restore(k, pttl if pttl and pttl > 0 else 0, blob, replace=True)
if e2e.events_applied(r, prefix, list(want)) != want_a:
    e2e.fail("the restored keys do not hold the first half")
acl(every_key)
mark = d.mark()
killed = r.execute_command("CLIENT", "KILL", "USER", user)
e2e.ok(f"Redis lost the acknowledged second half ({killed} connections killed)")
d.wait_log(r"event=redis_recovered", 60, since=mark)
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"after the reconnect {len(short)} users differ, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
end = harness.wait_for(
    lambda: (lambda c: c if sum(c.values()) == N_EVENTS else None)(
        e2e.committed_offsets(env, group, topic)), 60, 0.3)
if end is None:
    d.dump()
    e2e.fail("not committed to the end after the reconnect")
e2e.ok(f"re-read from the committed offsets: Redis equals the offline replay of all "
       f"{N_EVENTS} events (events_applied exact), committed {end}")
rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"exit {rc} after SIGTERM")
print("PASS")
