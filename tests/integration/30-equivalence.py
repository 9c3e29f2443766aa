#!/usr/bin/env python3
"""interestd end to end: 5000 events of 200 users through Kafka (4 partitions) and
the daemon; what lands in Redis equals the offline replay of the same events
(`interestctl replay`): vectors within 1e-5, the same top-N ids, the same tier
weights, the same events_applied. Also: the tier names are written, the offsets
are committed to the end, snapshots reach the snapshot topic, SIGTERM exits 0."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 200, 5000

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
csv_path = os.path.join(env["HARNESS_TMP"], "events.csv")
rows = e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=30)
expected = e2e.offline_replay(model, csv_path, os.path.join(env["HARNESS_TMP"], "replay.jsonl"))
if sum(u["events_applied"] for u in expected.values()) != N_EVENTS:
    e2e.fail("offline replay did not apply every event (test data uses catalog items only)")
e2e.ok(f"offline replay: {len(expected)} users")

conf = e2e.write_config(env, model, "d1", snapshot__every_events=10)
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
e2e.replay_to_kafka(env, csv_path)
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
done, got, short = e2e.wait_applied(r, prefix, {u: v["events_applied"] for u, v in expected.items()}, 120)
if not done:
    d.dump()
    e2e.fail(f"{len(short)} users incomplete, e.g. {list(short.items())[:5]}")
e2e.ok(f"all {N_EVENTS} events applied to {len(expected)} users")

diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
e2e.ok("Redis equals the offline replay (vec 1e-5, top-N ids, tiers, events_applied)")

names = r.hgetall(prefix + "tiers")
if not names or b"0" not in names:
    e2e.fail(f"tier names missing in {prefix}tiers: {list(names)[:5]}")
e2e.ok(f"{len(names)} tier names in {prefix}tiers")

rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"SIGTERM: exit status {rc}, want 0")
if "event=stopped exit=0" not in d.log_text():
    e2e.fail("no 'event=stopped exit=0' line")
e2e.ok("SIGTERM: orderly exit 0")

group = env["HARNESS_PREFIX"] + "g"
committed = e2e.committed_offsets(env, group, env["EVENTS_TOPIC"])
per_part = {}
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": group + "-probe"})
for p in range(4):
    lo, hi = c.get_watermark_offsets(TopicPartition(env["EVENTS_TOPIC"], p), timeout=10)
    per_part[p] = hi
c.close()
if committed != per_part:
    e2e.fail(f"committed offsets {committed} != end offsets {per_part}")
e2e.ok(f"committed offsets at the end of every partition: {committed}")

# every_events=10 (< K): each user's snapshots carry exactly its events, 10 at a
# time; the rest (fewer than 10) go out when the daemon stops after its last
# commit, so the feed holds every event exactly once.
per_user = {}
for row in rows:
    per_user[row["user_id"]] = per_user.get(row["user_id"], 0) + 1
want_snaps = sum(-(-n // 10) for n in per_user.values())
snaps = e2e.read_snapshots(env, want_snaps + 1, 20)
if len(snaps) != want_snaps:
    e2e.fail(f"{len(snaps)} snapshots, want {want_snaps} (one per 10 events of a user, "
             "and one for the rest at shutdown)")
seen = {}
for s in snaps:
    if not 1 <= len(s["events"]) <= 10 or len(s["vector"]) != len(next(iter(expected.values()))["vec"]):
        e2e.fail(f"snapshot of {s['user_id']}: {len(s['events'])} events, {len(s['vector'])}-d vector")
    seen.setdefault(s["user_id"], []).append([(e["item_id"], e["ts"]) for e in s["events"]])
for u, parts in seen.items():
    mine = [(row["item_id"], row["ts"]) for row in rows if row["user_id"] == u]
    if [e for part in parts for e in part] != mine:
        e2e.fail(f"snapshots of {u} do not hold exactly its events in order:\n{parts[:2]}\n{mine[:12]}")
    if any(len(part) != 10 for part in parts[:-1]):
        e2e.fail(f"snapshots of {u}: sizes {[len(p) for p in parts]}, want 10 each but the last")
if set(seen) != set(per_user):
    e2e.fail(f"{len(set(per_user) - set(seen))} users have no snapshot")
e2e.ok(f"{len(snaps)} snapshots: every user's events exactly once, in order, 10 at a time")

d.assert_clean()
e2e.ok("no sanitizer reports")
harness.stop()
print("PASS")
