#!/usr/bin/env python3
"""interestd end to end: erasure (schemas/redis.md "Erasure"). A tombstone (null value)
keyed by a user id on the events topic, and `interestctl erase ID --wait`, delete every
key of the user in Redis but the erasure marker, leave the other users equal to the offline
replay and are logged (event=user_erased). A second consumer group re-reading the whole
topic from offset 0 does not bring the erased users back (their events are at or below the
tombstone). Afterwards an event of an erased user with an event time before the erasure
stays out, and new events (later offset and time) start the user afresh: equal to the
offline replay of those events alone."""
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 80, 2000

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
csv_path = os.path.join(tmp, "events.csv")
e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=42)
expected = e2e.offline_replay(model, csv_path, os.path.join(tmp, "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
topic = env["EVENTS_TOPIC"]
x, y = sorted(want, key=lambda u: -want[u])[:2]  # the two busiest users
others = {u: v for u, v in expected.items() if u not in (x, y)}


def user_keys(u):
    return sorted(k.decode() for k in r.scan_iter(match=f"{prefix}{{{u}}}:*", count=1000))


def committed_to_end(group):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": group + "-probe"})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(4)}
    c.close()
    return harness.wait_for(lambda: e2e.committed_offsets(env, group, topic) == ends, 60, 0.3)


conf = e2e.write_config(env, model, "d1", metrics__listen="127.0.0.1:0")
d = e2e.Daemon(env, conf, "d1").start()
maddr = d.wait_log(r"event=metrics_listening addr=(\S+)", 30).group(1)
d.wait_log(r"event=assigned .*owned=4", 60)
e2e.replay_to_kafka(env, csv_path)
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"{len(short)} users short, e.g. {list(short.items())[:5]}")
e2e.ok(f"{N_EVENTS} events applied; erasing {x} ({want[x]} events) and {y} ({want[y]} events)")

# x: a raw tombstone; y: interestctl erase --wait.
e2e.produce_raw(env, [(x.encode(), None)])
p = subprocess.run([e2e.tool("interestctl"), "-c", conf, "erase", y, "--wait"],
                   capture_output=True, text=True, timeout=120)
if p.returncode != 0 or "erased:" not in p.stdout:
    d.dump()
    e2e.fail(f"interestctl erase {y}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
for u in (x, y):
    if harness.wait_for(lambda: user_keys(u) == [f"{prefix}{{{u}}}:erased"], 30, 0.2) is None:
        d.dump()
        e2e.fail(f"{u}: keys after the erase request: {user_keys(u)}")
    marker = {k.decode(): v.decode() for k, v in r.hgetall(f"{prefix}{{{u}}}:erased").items()}
    if set(marker) != {"partition", "offset", "ts", "erased_at"} or r.ttl(f"{prefix}{{{u}}}:erased") != -1:
        e2e.fail(f"{u}: erasure marker {marker}, ttl {r.ttl(f'{prefix}{{{u}}}:erased')}")
    d.wait_log(rf"event=user_erased user={re.escape(u)} partition={marker['partition']} "
               rf"offset={marker['offset']} .*result=erased", 10)
diffs = e2e.compare(r, prefix, others)
if diffs:
    e2e.fail(f"other users changed:\n  " + "\n  ".join(diffs[:20]))
e2e.ok(f"{x} (tombstone) and {y} (interestctl erase) erased: only the persistent erasure "
       f"marker left, logged; the other {len(others)} users still equal the replay")
if not committed_to_end(env["HARNESS_PREFIX"] + "g"):
    e2e.fail("the erase requests were not committed")
with urllib.request.urlopen(f"http://{maddr}/metrics", timeout=5) as resp:
    metrics = resp.read().decode()
if not re.search(r"^interestd_erasures_total 2$", metrics, re.M):
    e2e.fail("/metrics: interestd_erasures_total is not 2:\n" +
             "\n".join(x for x in metrics.splitlines() if "erase" in x))
e2e.ok("/metrics: interestd_erasures_total 2")
rc = d.stop()
if rc != 0:
    e2e.fail(f"exit {rc}")

# A new group re-reads everything from offset 0: the erased users stay erased.
group2 = env["HARNESS_PREFIX"] + "g-again"
conf2 = e2e.write_config(env, model, "d2", group=group2)
d2 = e2e.Daemon(env, conf2, "d2").start()
d2.wait_log(r"event=assigned .*owned=4", 60)
if not committed_to_end(group2):
    d2.dump()
    e2e.fail("the second group did not commit to the end")
for u in (x, y):
    if user_keys(u) != [f"{prefix}{{{u}}}:erased"]:
        e2e.fail(f"{u} came back after the re-read: {user_keys(u)}")
diffs = e2e.compare(r, prefix, others)
if diffs:
    e2e.fail(f"after the re-read other users differ:\n  " + "\n  ".join(diffs[:20]))
e2e.ok(f"re-read from offset 0 by a new group: {x} and {y} stay erased, the others unchanged")

# Later: an old-time event of y stays out; new events of x start it afresh.
now_ms = int(time.time() * 1000) + 60_000
old = [{"user_id": y, "item_id": items[0], "type": "CLICK", "ts": 1_700_000_000_000}]
new = [{"user_id": x, "item_id": items[i * 7 % len(items)], "type": "VIEW", "ts": now_ms + i * 1000}
       for i in range(5)]
e2e.write_events(os.path.join(tmp, "late.csv"), old + new)
e2e.write_events(os.path.join(tmp, "new.csv"), new)
e2e.replay_to_kafka(env, os.path.join(tmp, "late.csv"))
exp_new = e2e.offline_replay(model, os.path.join(tmp, "new.csv"), os.path.join(tmp, "new.jsonl"))
done, got, short = e2e.wait_applied(r, prefix, {x: len(new)}, 60)
if not done:
    d2.dump()
    e2e.fail(f"{x}: events_applied {got.get(x)} after {len(new)} new events")
diffs = e2e.compare(r, prefix, exp_new)
if diffs:
    e2e.fail(f"{x} after the erasure differs from the replay of its new events:\n  " + "\n  ".join(diffs))
if not committed_to_end(group2):
    e2e.fail("late events not committed")
if user_keys(y) != [f"{prefix}{{{y}}}:erased"]:
    e2e.fail(f"{y}: an event older than the erasure brought it back: {user_keys(y)}")
e2e.ok(f"{x} starts afresh with its {len(new)} new events (equal to their replay); "
       f"an event of {y} older than the erasure stays out")
rc = d2.stop()
m = re.findall(r"event=stats .* erasures=(\d+) erased_skipped=(\d+)", d2.current_log())
if rc != 0 or not m:
    e2e.fail(f"exit {rc}, stats {m}")
erasures, skipped = map(int, m[-1])
if erasures != 0 or skipped != want[x] + want[y] + 1:
    e2e.fail(f"second group: erasures={erasures} erased_skipped={skipped}, want 0 and "
             f"{want[x] + want[y] + 1} (tombstones re-read are duplicates)")
e2e.ok(f"second group: {skipped} events of the erased users kept out, tombstones not re-applied")
d.assert_clean()
d2.assert_clean()
harness.stop()
print("PASS")
