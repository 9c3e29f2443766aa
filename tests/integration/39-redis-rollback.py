#!/usr/bin/env python3
"""interestd end to end: a Redis failover that lost committed writes is detected and
repaired from Kafka (DESIGN.md "Delivery guarantees", schemas/redis.md "Flushed-through
markers"). The first half of the events is applied and committed; every key of the test's
prefix is saved (DUMP) as a lagging replica would hold it; the second half is applied and
committed; the daemon stops; the saved keys replace the current ones (what a promotion of
that replica leaves: the flushed-through markers are behind the committed offsets). On
restart the daemon logs the rollback, re-reads the lost range and Redis equals the offline
replay of all events, events_applied exact. Without the check the second half would be
missing (the committed offsets are at the end).

Then the same while the daemon runs: the keys are saved, a third batch of events is
applied and committed, the saved keys are restored and the daemon's Redis connections
killed (CLIENT KILL: a failover as a client sees it); the next event makes the daemon
reconnect, re-claim its partitions and run the same check: Redis ends equal to the
offline replay of every event. Last, Redis loses everything (all keys of the prefix
gone, epochs included): with no flushed-through marker and a first claim (no epoch before) the
daemon re-applies every partition from the beginning, and Redis again equals the replay."""
import collections
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS, SPLIT = 120, 3000, 1500
N_LIVE = 1200  # third batch, for the failover while running

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
every = e2e.make_events(os.path.join(tmp, "every.csv"), items, N_USERS, N_EVENTS + N_LIVE + 1,
                        seed=39)
rows = every[:N_EVENTS]
e2e.write_events(os.path.join(tmp, "all.csv"), rows)
e2e.write_events(os.path.join(tmp, "a.csv"), rows[:SPLIT])
e2e.write_events(os.path.join(tmp, "b.csv"), rows[SPLIT:])
e2e.write_events(os.path.join(tmp, "c.csv"), every[N_EVENTS:N_EVENTS + N_LIVE])
e2e.write_events(os.path.join(tmp, "t.csv"), every[N_EVENTS + N_LIVE:])
expected = e2e.offline_replay(model, os.path.join(tmp, "all.csv"), os.path.join(tmp, "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
want_a = collections.Counter(r["user_id"] for r in rows[:SPLIT])
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
group = env["HARNESS_PREFIX"] + "g"
topic = env["EVENTS_TOPIC"]

from confluent_kafka import Consumer, TopicPartition  # noqa: E402


def topic_ends():
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": group + "-probe"})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(4)}
    c.close()
    return ends


def flushed_markers():
    out = {}
    for p in range(4):
        v = r.get(f"{prefix}flushed:{group}:{topic}:{p}")
        out[p] = int(v) if v is not None else None
    return out


conf = e2e.write_config(env, model, "d1")
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)

# Half one: applied, flushed, committed; then the "replica" copy of the prefix's keys.
e2e.replay_to_kafka(env, os.path.join(tmp, "a.csv"))
done, _got, short = e2e.wait_applied(r, prefix, dict(want_a), 120)
if not done:
    d.dump()
    e2e.fail(f"first half: {len(short)} users short, e.g. {list(short.items())[:5]}")
ends_a = topic_ends()
if harness.wait_for(lambda: e2e.committed_offsets(env, group, topic) == ends_a, 60, 0.3) is None:
    d.dump()
    e2e.fail(f"first half not committed to the end {ends_a}")
if harness.wait_for(lambda: flushed_markers() == ends_a, 30, 0.2) is None:
    e2e.fail(f"flushed-through markers {flushed_markers()} != committed {ends_a}")
e2e.ok(f"first half ({SPLIT} events) committed; flushed-through markers = committed = {ends_a}")
saved = {k: (r.dump(k), r.pttl(k)) for k in r.scan_iter(match=prefix + "*", count=1000)}
e2e.ok(f"saved {len(saved)} keys of prefix {prefix} (the lagging replica)")

# Half two: applied and committed, then an orderly stop.
e2e.replay_to_kafka(env, os.path.join(tmp, "b.csv"))
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"second half: {len(short)} users short, e.g. {list(short.items())[:5]}")
ends = topic_ends()
if harness.wait_for(lambda: e2e.committed_offsets(env, group, topic) == ends, 60, 0.3) is None:
    d.dump()
    e2e.fail("second half not committed to the end")
rc = d.stop()
if rc != 0:
    e2e.fail(f"exit {rc} after SIGTERM")

# The failover: Redis as the replica had it after half one.
for k in list(r.scan_iter(match=prefix + "*", count=1000)):
    r.delete(k)
for k, (blob, pttl) in saved.items():
    r.restore(k, pttl if pttl and pttl > 0 else 0, blob, replace=True)
back = e2e.events_applied(r, prefix, list(want))
if back != {u: n for u, n in want_a.items()}:
    e2e.fail("the restored keys do not hold the first half's counts")
lost = sum(ends[p] - ends_a[p] for p in range(4))
e2e.ok(f"failover simulated: Redis back at the first half, {lost} committed offsets lost; "
       f"markers {flushed_markers()} < committed {ends}")

d.start()
rolled = [p for p in range(4) if ends[p] > ends_a[p]]
for p in rolled:
    d.wait_log(rf"event=redis_rollback_detected topic={re.escape(topic)} partition={p} "
               rf"committed={ends[p]} flushed={ends_a[p]} offsets={ends[p] - ends_a[p]} "
               r"action=reapply_from_offset", 60)
e2e.ok(f"rollback logged for partitions {rolled}")
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"after the restart {len(short)} users differ, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
e2e.ok("after the rollback Redis equals the offline replay of all events; events_applied exact")
if harness.wait_for(lambda: flushed_markers() == ends, 30, 0.2) is None:
    e2e.fail(f"markers {flushed_markers()} did not return to the end {ends}")
rc = d.stop()
m = re.findall(r"event=stats consumed=(\d+) applied=(\d+) duplicates=(\d+).* rollbacks=(\d+) "
               r"rollback_offsets=(\d+)", d.current_log())
if rc != 0 or not m:
    d.dump()
    e2e.fail(f"exit {rc}, stats {m}")
consumed, applied, dups, rollbacks, roff = map(int, m[-1])
if (consumed, applied, dups, rollbacks, roff) != (lost, N_EVENTS - SPLIT, 0, len(rolled), lost):
    e2e.fail(f"restart stats consumed={consumed} applied={applied} duplicates={dups} "
             f"rollbacks={rollbacks} rollback_offsets={roff}; want {lost}/{N_EVENTS - SPLIT}/0/"
             f"{len(rolled)}/{lost}")
e2e.ok(f"restart: re-read {consumed} offsets, applied {applied}, {rollbacks} partitions rolled back")

# While running: save, apply a third batch, restore, kill the daemon's connections.
expected_all = e2e.offline_replay(model, os.path.join(tmp, "every.csv"),
                                  os.path.join(tmp, "replay-every.jsonl"))
want_all = {u: v["events_applied"] for u, v in expected_all.items()}
want_c = dict(want)
for row in every[N_EVENTS:N_EVENTS + N_LIVE]:
    want_c[row["user_id"]] = want_c.get(row["user_id"], 0) + 1
d.start()
d.wait_log(r"event=assigned .*owned=4", 60)
saved = {k: (r.dump(k), r.pttl(k)) for k in r.scan_iter(match=prefix + "*", count=1000)}
ends_b = topic_ends()
e2e.replay_to_kafka(env, os.path.join(tmp, "c.csv"))
done, _got, short = e2e.wait_applied(r, prefix, want_c, 120)
if not done:
    d.dump()
    e2e.fail(f"third batch: {len(short)} users short")
ends_c = topic_ends()
if harness.wait_for(lambda: e2e.committed_offsets(env, group, topic) == ends_c, 60, 0.3) is None:
    e2e.fail("third batch not committed to the end")
for k in list(r.scan_iter(match=prefix + "*", count=1000)):
    r.delete(k)
for k, (blob, pttl) in saved.items():
    r.restore(k, pttl if pttl and pttl > 0 else 0, blob, replace=True)
killed = r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
mark = d.mark()
e2e.replay_to_kafka(env, os.path.join(tmp, "t.csv"))  # the next event: flush fails, reconnect
live_rolled = [p for p in range(4) if ends_c[p] > ends_b[p]]
for p in live_rolled:
    d.wait_log(rf"event=redis_rollback_detected topic={re.escape(topic)} partition={p} "
               rf"committed={ends_c[p]} flushed={ends_b[p]} ", 60, since=mark)
done, _got, short = e2e.wait_applied(r, prefix, want_all, 120)
if not done:
    d.dump()
    e2e.fail(f"after the live failover {len(short)} users differ, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected_all)
if diffs:
    e2e.fail(f"after the live failover {len(diffs)} differences:\n  " + "\n  ".join(diffs[:20]))
e2e.ok(f"live failover ({killed} connections killed, Redis back before the third batch): "
       f"reconnect, rollback on partitions {live_rolled}, Redis equals the replay of all "
       f"{len(every)} events")
if d.stop() != 0:
    e2e.fail("exit status after the live failover")

# Redis lost everything: no markers, no epochs.
for k in list(r.scan_iter(match=prefix + "*", count=1000)):
    r.delete(k)
ends_t = topic_ends()
d.start()
for p in range(4):
    d.wait_log(rf"event=redis_rollback_detected topic={re.escape(topic)} partition={p} "
               rf"committed={ends_t[p]} flushed=none first_claim=1 action=reapply_from_beginning", 60)
done, _got, short = e2e.wait_applied(r, prefix, want_all, 120)
if not done:
    d.dump()
    e2e.fail(f"after losing every key {len(short)} users differ, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected_all)
if diffs:
    e2e.fail(f"after losing every key {len(diffs)} differences:\n  " + "\n  ".join(diffs[:20]))
e2e.ok("Redis emptied: every partition re-applied from the beginning, equal to the replay")
if d.stop() != 0:
    e2e.fail("exit status after the re-application from the beginning")
d.assert_clean()
harness.stop()
print("PASS")
