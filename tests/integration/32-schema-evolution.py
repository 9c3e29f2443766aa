#!/usr/bin/env python3
"""interestd end to end: events written by a newer producer (schemas/behaviour_event_v2.avsc:
reordered fields, an extra optional field, an extra array field, a new enum symbol
BOOKMARK) and by an older one (schemas/behaviour_event_v0.avsc: no dwell_ms/context,
int value), each in single-object and Confluent framing, are all applied as the reader
schema resolves them (BOOKMARK becomes the enum default VIEW): Redis equals the offline
replay of the same events read as reader-schema events; nothing is dead-lettered."""
import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 60, 1600
V2 = os.path.join(harness.ROOT, "schemas", "behaviour_event_v2.avsc")
V0 = os.path.join(harness.ROOT, "schemas", "behaviour_event_v0.avsc")

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
all_csv = os.path.join(tmp, "all.csv")
rows = e2e.make_events(all_csv, items, N_USERS, N_EVENTS, seed=32)
segments = [("v2 single-object", V2, "single-object", None),
            ("v2 confluent id 11", V2, "confluent", 11),
            ("v0 single-object", V0, "single-object", None),
            ("v0 confluent id 10", V0, "confluent", 10)]
q = N_EVENTS // len(segments)
bookmarks = 0
for k, (name, schema, framing, sid) in enumerate(segments):
    part = [dict(r) for r in rows[k * q:(k + 1) * q]]
    if schema == V2:
        for i in range(0, len(part), 7):
            part[i]["type"] = "BOOKMARK"  # unknown to the reader: its default, VIEW
            rows[k * q + i]["type"] = "VIEW"
            bookmarks += 1
    e2e.write_events(os.path.join(tmp, f"seg{k}.csv"), part)
e2e.write_events(all_csv, rows)  # what the reader should see
expected = e2e.offline_replay(model, all_csv, os.path.join(tmp, "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}

# snapshot.every_events above the ring size K: snapshots come every K events instead.
conf = e2e.write_config(env, model, "d1", schema__writers=f"11:{V2},10:{V0}",
                        snapshot__every_events=1000)
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
for k, (name, schema, framing, sid) in enumerate(segments):
    e2e.replay_to_kafka(env, os.path.join(tmp, f"seg{k}.csv"), framing=framing, schema=schema,
                        schema_id=sid)
e2e.ok(f"produced {N_EVENTS} events in 4 writer schema/framing segments ({bookmarks} BOOKMARK)")
r = e2e.redis_client(env)
done, got, short = e2e.wait_applied(r, env["REDIS_KEY_PREFIX"], want, 90)
if not done:
    d.dump()
    e2e.fail(f"{len(short)} users incomplete, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, env["REDIS_KEY_PREFIX"], expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
e2e.ok("every segment applied; Redis equals the replay with BOOKMARK read as VIEW")
if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
if " dlq=0 " not in [line for line in d.log_text().splitlines() if "event=stats" in line][-1]:
    e2e.fail("something was dead-lettered")
e2e.ok("nothing dead-lettered")
K = e2e.ring_len(model)
# Every K events (the ring's size), and the rest of each user at shutdown.
want_snaps = sum(-(-n // K) for n in want.values())
snaps = e2e.read_snapshots(env, want_snaps + 1, 20)
sizes = {}
for s in snaps:
    sizes.setdefault(s["user_id"], []).append(len(s["events"]))
bad = {u: z for u, z in sizes.items()
       if sum(z) != want[u] or any(n != K for n in z[:-1]) or not 1 <= z[-1] <= K}
if len(snaps) != want_snaps or bad or set(sizes) != set(want):
    e2e.fail(f"{len(snaps)} snapshots, want {want_snaps}; users with wrong sizes: "
             f"{list(bad.items())[:5]}")
e2e.ok(f"every_events 1000 > K={K}: {len(snaps)} snapshots of K events (the ring's size), "
       "each user's rest at shutdown")
d.assert_clean()
harness.stop()
print("PASS")
