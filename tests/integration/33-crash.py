#!/usr/bin/env python3
"""interestd end to end: kill -9 the daemon mid-stream and start it again; the final
Redis state equals the offline replay of all events (each event applied exactly once:
events_applied equal). Then a second consumer group re-reads the whole topic from
offset 0 into the same Redis keys: every event is skipped as a duplicate by the
per-user markers and Redis still equals the replay."""
import os
import re
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 150, 4000

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
csv_path = os.path.join(env["HARNESS_TMP"], "events.csv")
e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=33)
expected = e2e.offline_replay(model, csv_path, os.path.join(env["HARNESS_TMP"], "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]

conf = e2e.write_config(env, model, "d1")
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
producer = threading.Thread(target=e2e.replay_to_kafka, args=(env, csv_path), kwargs={"rate": 800})
producer.start()


def applied_total():
    return sum(e2e.events_applied(r, prefix, list(want)).values())


if harness.wait_for(lambda: applied_total() >= N_EVENTS // 3, 60, 0.1) is None:
    d.dump()
    e2e.fail("the daemon did not apply a third of the events within 60 s")
before = applied_total()
d.kill9()
e2e.ok(f"killed -9 mid-stream after {before} of {N_EVENTS} events were in Redis")
d.start()
producer.join()
done, got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"after the restart {len(short)} users differ, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
e2e.ok("after kill -9 and restart Redis equals the offline replay; events_applied exact")
rc = d.stop()
if rc != 0:
    e2e.fail(f"exit {rc} after SIGTERM")
m = re.findall(r"event=stats consumed=(\d+) applied=(\d+) duplicates=(\d+)", d.current_log())
e2e.ok(f"second run: consumed/applied/duplicates = {m[-1] if m else '?'}")

# A new group from offset 0: the markers make every event a duplicate.
conf2 = e2e.write_config(env, model, "d2", group=env["HARNESS_PREFIX"] + "g-again")
d2 = e2e.Daemon(env, conf2, "d2").start()
rx = re.compile(r"event=stats consumed=(\d+) applied=(\d+) duplicates=(\d+)")
d2.wait_log(r"event=assigned .*owned=4", 60)
# Wait for the group to have read everything: committed offsets reach the end.
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": env["HARNESS_PREFIX"] + "probe"})
ends = {p: c.get_watermark_offsets(TopicPartition(env["EVENTS_TOPIC"], p), timeout=10)[1] for p in range(4)}
c.close()
if harness.wait_for(lambda: e2e.committed_offsets(env, env["HARNESS_PREFIX"] + "g-again",
                                                  env["EVENTS_TOPIC"]) == ends, 60, 0.5) is None:
    d2.dump()
    e2e.fail("the second group did not commit to the end")
rc = d2.stop()
stats = rx.findall(d2.current_log())
if rc != 0 or not stats:
    d2.dump()
    e2e.fail(f"second group: exit {rc}, stats {stats}")
consumed, applied, dups = map(int, stats[-1])
if (consumed, applied, dups) != (N_EVENTS, 0, N_EVENTS):
    e2e.fail(f"re-read from 0: consumed={consumed} applied={applied} duplicates={dups}, "
             f"want {N_EVENTS}/0/{N_EVENTS}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"after the re-read {len(diffs)} differences:\n  " + "\n  ".join(diffs[:20]))
e2e.ok(f"re-read from offset 0: all {N_EVENTS} events skipped as duplicates, Redis unchanged")
d.assert_clean()
d2.assert_clean()
harness.stop()
print("PASS")
