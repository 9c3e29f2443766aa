#!/usr/bin/env python3
"""interestd end to end: a newer owner's epoch stops an instance, and nothing it could not
write is committed (schemas/redis.md "Partition ownership").

The daemon owns the 4 partitions and has applied and committed a first half of the events.
Then another owner takes every partition in Redis, as an instance that Kafka has given
them would: the epoch key one above the daemon's and a live lease under another owner id.
The second half is produced. The daemon's writes are refused (fenced); it must log each
partition fenced, write nothing of the second half, and commit nothing past the first
half while the other lease is live (the old code dropped the refused users and committed
their offsets: those events were lost). When the other lease runs out, the daemon asks
Kafka (a commit of the unchanged offset from its current group generation), claims a new
epoch above the other owner's, reads again from the committed offset, and Redis ends equal
to the offline replay of every event, events_applied exact."""
import collections
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS, SPLIT = 80, 2000, 1000
OTHER_LEASE_MS = 6000

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
rows = e2e.make_events(os.path.join(tmp, "all.csv"), items, N_USERS, N_EVENTS, seed=46)
e2e.write_events(os.path.join(tmp, "a.csv"), rows[:SPLIT])
e2e.write_events(os.path.join(tmp, "b.csv"), rows[SPLIT:])
expected = e2e.offline_replay(model, os.path.join(tmp, "all.csv"), os.path.join(tmp, "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
want_a = dict(collections.Counter(r["user_id"] for r in rows[:SPLIT]))
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
group = env["HARNESS_PREFIX"] + "g"
topic = env["EVENTS_TOPIC"]

conf = e2e.write_config(env, model, "d1", redis__lease_ms=3000)
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)

e2e.replay_to_kafka(env, os.path.join(tmp, "a.csv"))
done, _got, short = e2e.wait_applied(r, prefix, want_a, 120)
if not done:
    d.dump()
    e2e.fail(f"first half: {len(short)} users short, e.g. {list(short.items())[:5]}")
committed_a = harness.wait_for(
    lambda: (lambda c: c if sum(v for v in c.values() if v > 0) == SPLIT else None)(
        e2e.committed_offsets(env, group, topic)), 60, 0.3)
if committed_a is None:
    d.dump()
    e2e.fail("the first half was not committed")
epochs = {p: int(r.get(f"{prefix}epoch:{topic}:{p}")) for p in range(4)}
leases = {p: r.get(f"{prefix}lease:{topic}:{p}") for p in range(4)}
if any(v is None or not v.decode().startswith(f"{epochs[p]} ") for p, v in leases.items()):
    e2e.fail(f"the daemon's leases {leases} do not carry its epochs {epochs}")
e2e.ok(f"first half applied and committed {committed_a}; epochs {epochs}, leases held")

# Another owner takes every partition: a newer epoch and a live lease that is not ours.
mark = d.mark()
for p in range(4):
    e = r.incr(f"{prefix}epoch:{topic}:{p}")
    r.set(f"{prefix}lease:{topic}:{p}", f"{e} other-instance:1:0", px=OTHER_LEASE_MS)
t_taken = time.monotonic()
e2e.replay_to_kafka(env, os.path.join(tmp, "b.csv"))
for p in range(4):
    d.wait_log(rf"event=partition_fenced topic={re.escape(topic)} partition={p} "
               rf"epoch={epochs[p]} .*action=stop_until_kafka_confirms_ownership", 30,
               since=mark)
e2e.ok("every partition logged fenced by the newer epoch")

# While the other lease is live: nothing of the second half in Redis, nothing committed.
checks = 0
while time.monotonic() - t_taken < OTHER_LEASE_MS / 1000 - 1.0:
    now = e2e.committed_offsets(env, group, topic)
    if now != committed_a:
        d.dump()
        e2e.fail(f"offsets committed past refused writes: {now} != {committed_a}")
    got = e2e.events_applied(r, prefix, list(want_a))
    if got != want_a:
        extra = {u: (got.get(u), n) for u, n in want_a.items() if got.get(u) != n}
        e2e.fail(f"a fenced instance wrote: {list(extra.items())[:5]}")
    checks += 1
    time.sleep(0.5)
if checks < 3:
    e2e.fail(f"only {checks} checks inside the other owner's lease")
e2e.ok(f"while the other lease was live ({checks} checks): committed offsets stayed at the "
       "first half and Redis held none of the second")

# The other lease runs out: Kafka confirms the daemon, it claims above, reads again.
for p in range(4):
    d.wait_log(rf"event=partition_claimed topic={re.escape(topic)} partition={p} "
               r"epoch=(\d+) .*new_epoch=1", 60, since=mark)
d.wait_log(r"event=ownership_confirmed", 5, since=mark)
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"after the re-claim {len(short)} users differ, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
new_epochs = {p: int(r.get(f"{prefix}epoch:{topic}:{p}")) for p in range(4)}
if any(new_epochs[p] != epochs[p] + 2 for p in range(4)):
    e2e.fail(f"epochs after the re-claim {new_epochs}; want the other owner's + 1")
end = harness.wait_for(
    lambda: (lambda c: c if sum(c.values()) == N_EVENTS else None)(
        e2e.committed_offsets(env, group, topic)), 60, 0.3)
if end is None:
    d.dump()
    e2e.fail("the second half was not committed after the re-claim")
e2e.ok(f"re-claimed with epochs {new_epochs}; Redis equals the offline replay of all "
       f"{N_EVENTS} events (events_applied exact); committed {end}")
metrics = d.current_log()
rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"exit {rc} after SIGTERM")
for p in range(4):
    if r.get(f"{prefix}lease:{topic}:{p}") is not None:
        e2e.fail(f"lease of partition {p} still held after an orderly stop")
e2e.ok("an orderly stop released every lease")
print("PASS")
