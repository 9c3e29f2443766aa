#!/usr/bin/env python3
"""interestd end to end: a message that kills the daemon does not crash-loop it
(schemas/redis.md "Poison messages").

The test-only build build/tools/interestd-crashhook aborts when it reads the message at
INTERESTD_TEST_CRASH_AT (partition 0, offset 5 here), as a decoder or model bug would.
Restarted after each death (what systemd does), the daemon must first narrow the range
that was in flight to that one message (one message per batch), then, once it has died
poll.max_crashes (2) times with that message alone in flight, dead-letter it with reason
`crashed` instead of reading it again, and go on: every other event applied (Redis equal
to the offline replay for every other user; the poison's user short by exactly that one
event), exactly one dead letter, from partition 0 offset 5."""
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 30, 300
AT_P, AT_O = 0, 5

env = harness.start()
hook = os.path.join(e2e.build_dir(), "tools", "interestd-crashhook")
if not os.access(hook, os.X_OK):
    e2e.fail(f"{hook} not built (make all)")
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
rows = e2e.make_events(os.path.join(tmp, "all.csv"), items, N_USERS, N_EVENTS, seed=48)
e2e.replay_to_kafka(env, os.path.join(tmp, "all.csv"))
topic = env["EVENTS_TOPIC"]

# The poison: whatever landed at partition 0, offset 5 (a user's events all share its
# partition, in order: the k-th message of its key there is its k-th event).
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": env["HARNESS_PREFIX"] + "peek",
              "enable.auto.commit": False})
c.assign([TopicPartition(topic, AT_P, 0)])
head = []
deadline = harness.time.monotonic() + 30
while len(head) <= AT_O and harness.time.monotonic() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error():
        head.append(m)
c.close()
if len(head) <= AT_O or head[AT_O].offset() != AT_O:
    e2e.fail(f"no message at partition {AT_P} offset {AT_O}")
victim = head[AT_O].key().decode()
value = head[AT_O].value()
k = sum(1 for m in head[:AT_O] if m.key().decode() == victim)
mine = [i for i, row in enumerate(rows) if row["user_id"] == victim]
poison_row = mine[k]
others = [r for i, r in enumerate(rows) if i != poison_row]
e2e.write_events(os.path.join(tmp, "others.csv"), others)
expected = e2e.offline_replay(model, os.path.join(tmp, "others.csv"),
                              os.path.join(tmp, "replay.jsonl"))
want = dict(collections.Counter(r["user_id"] for r in others))
e2e.ok(f"poison: partition {AT_P} offset {AT_O}, an event of {victim} ({len(others)} others)")

r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
conf = e2e.write_config(env, model, "d1", poll__max_crashes=2)
d = e2e.Daemon(env, conf, "d1", binary=hook,
               extra_env={"INTERESTD_TEST_CRASH_AT": f"{AT_P}:{AT_O}"})
deaths = 0
for run in range(6):
    d.start()
    rc = harness.wait_for(lambda: d.proc.poll(), 60, 0.2) if deaths < 3 else None
    if rc is None:
        break
    if "event=test_crash" not in d.current_log():
        d.dump()
        e2e.fail(f"run {run + 1} exited {rc} without the test crash")
    deaths += 1
log = d.log_text()
if deaths != 3:
    d.dump()
    e2e.fail(f"{deaths} deaths; want 3 (a range, then the message alone twice)")
if "event=died_in_flight" not in log or "action=one_message_per_batch" not in log:
    e2e.fail("no run narrowed the in-flight range (event=died_in_flight)")
d.wait_log(rf"event=poison_message topic=\S+ partition={AT_P} offset={AT_O} crashes=2 "
           r"action=dead_letter_as_crashed", 30)
e2e.ok(f"{deaths} deaths, then the message was named poison after 2 deaths alone in flight")

done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"{len(short)} users short after the poison was skipped, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the replay without the poison:\n  "
             + "\n  ".join(diffs[:20]))
letters = e2e.consume_all(env, env["DLQ_TOPIC"], 2, timeout_s=20, settle_s=3)
if len(letters) != 1:
    e2e.fail(f"{len(letters)} dead letters; want exactly the poison")
h = {k: v.decode() for k, v in (letters[0].headers() or [])}
if (h.get("interestd.reason"), h.get("interestd.partition"), h.get("interestd.offset")) != \
        ("crashed", str(AT_P), str(AT_O)) or letters[0].value() != value:
    e2e.fail(f"dead letter headers {h}")
e2e.ok(f"dead letter reason=crashed from {AT_P}/{AT_O} with the original value; every other "
       f"event applied, Redis equals the replay without it")
rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"exit {rc} after SIGTERM")
print("PASS")
