#!/usr/bin/env python3
"""interestd end to end: one malformed message of each kind (truncated, wrong magic,
unknown fingerprint, unknown schema id, a plain body that is not Avro, missing user, absurd timestamp, unknown item)
lands on the dead-letter topic with its original key and value, the reason header
and the source topic/partition/offset headers; every good message around them is
applied (events_applied per user in Redis); the daemon keeps running and commits
past the dead letters."""
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fastavro  # noqa: E402
from fastavro.schema import fingerprint, to_parsing_canonical_form  # noqa: E402

import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
schema = fastavro.schema.load_schema(os.path.join(harness.ROOT, "schemas", "behaviour_event.avsc"))
fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def body(user, item, ts, eid):
    b = io.BytesIO()
    fastavro.schemaless_writer(b, schema, {"event_id": eid, "user_id": user, "item_id": item,
                                           "type": "CLICK", "ts": ts, "dwell_ms": None,
                                           "value": None, "context": None})
    return b.getvalue()


def so(user, item, ts, eid):
    return b"\xc3\x01" + fp + body(user, item, ts, eid)


T0 = 1_700_000_000_000
good_users = [f"dl-user-{i}" for i in range(6)]
bad = [  # (reason, key, value)
    ("truncated", b"dl-user-0", so("dl-user-0", items[0], T0, "bad-1")[:-7]),
    ("bad_magic", b"dl-user-1", b"\xc3\x07" + fp + body("dl-user-1", items[1], T0, "bad-2")),
    ("malformed", b"dl-user-2", b"\x07" + body("dl-user-2", items[1], T0, "bad-2b")),
    ("unknown_fingerprint", b"dl-user-2", b"\xc3\x01" + bytes(8) + body("dl-user-2", items[2], T0, "bad-3")),
    ("unknown_schema_id", b"dl-user-3", b"\x00\x00\x00\x03\xe7" + body("dl-user-3", items[3], T0, "bad-4")),
    ("missing_user", b"dl-user-4", so("", items[4], T0, "bad-5")),
    ("bad_timestamp", b"dl-user-5", so("dl-user-5", items[5], 1000, "bad-6")),
    ("unknown_item", b"dl-user-0", so("dl-user-0", "no-such-item-xyz", T0, "bad-7")),
]
msgs = []
want = {u: 0 for u in good_users}
n = 0
for k, (reason, key, value) in enumerate(bad):
    for j in range(5):  # good messages around each bad one
        u = good_users[(k + j) % len(good_users)]
        n += 1
        msgs.append((u.encode(), so(u, items[n % len(items)], T0 + n * 1000, f"good-{n}"), None))
        want[u] += 1
    msgs.append((key, value, reason))
for j in range(5):
    u = good_users[j]
    n += 1
    msgs.append((u.encode(), so(u, items[n % len(items)], T0 + n * 1000, f"good-{n}"), None))
    want[u] += 1

conf = e2e.write_config(env, model, "d1")
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)

# Produce in order, remembering where each bad message landed.
from confluent_kafka import Producer  # noqa: E402
p = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "acks": "all"})
where = {}
errors = []


def on_dr(reason):
    def cb(err, m):
        if err:
            errors.append(err)
        elif reason:
            where[reason] = (m.topic(), m.partition(), m.offset())
    return cb


for key, value, reason in msgs:
    p.produce(env["EVENTS_TOPIC"], key=key, value=value, on_delivery=on_dr(reason))
    p.flush(10)  # one at a time: the order above is the order in each partition
if errors or len(where) != len(bad):
    e2e.fail(f"produce: {errors}")

r = e2e.redis_client(env)
done, got, short = e2e.wait_applied(r, env["REDIS_KEY_PREFIX"], want, 60)
if not done:
    d.dump()
    e2e.fail(f"good events not all applied: {short}")
e2e.ok(f"all {sum(want.values())} good events applied around the bad ones: {got}")

letters = e2e.consume_all(env, env["DLQ_TOPIC"], len(bad), 30)
by_reason = {}
for m in letters:
    h = {k: v.decode() for k, v in (m.headers() or [])}
    by_reason[h.get("interestd.reason")] = (h, m)
for reason, key, value in bad:
    if reason not in by_reason:
        d.dump()
        e2e.fail(f"no dead letter with reason {reason}; got {sorted(by_reason, key=str)}")
    h, m = by_reason[reason]
    topic, part, off = where[reason]
    if (h.get("interestd.topic"), h.get("interestd.partition"), h.get("interestd.offset")) != \
            (topic, str(part), str(off)):
        e2e.fail(f"{reason}: source headers {h} != {topic}/{part}/{off}")
    if m.key() != key or m.value() != value:
        e2e.fail(f"{reason}: key/value not the original message's")
    if "interestd.detail" not in h:
        e2e.fail(f"{reason}: no interestd.detail header")
    e2e.ok(f"dead letter {reason}: from {topic}/{part}/{off}, detail '{h['interestd.detail']}'")
if len(letters) != len(bad):
    e2e.fail(f"{len(letters)} dead letters, want exactly {len(bad)}")

rc = d.stop()
if rc != 0:
    e2e.fail(f"exit {rc} after SIGTERM")
stats = [line for line in d.log_text().splitlines() if "event=stats" in line][-1]
for field in (f"dlq={len(bad)}", "dlq_malformed=1", "dlq_truncated=1", "dlq_bad_magic=1", "dlq_unknown_fingerprint=1",
              "dlq_unknown_schema_id=1", "dlq_missing_user=1", "dlq_unknown_item=1",
              "dlq_bad_timestamp=1", f"applied={sum(want.values())}"):
    if f" {field} " not in stats + " ":
        e2e.fail(f"final stats line lacks {field}: {stats}")
e2e.ok("final stats line counts every dead letter by reason")
group = env["HARNESS_PREFIX"] + "g"
committed = e2e.committed_offsets(env, group, env["EVENTS_TOPIC"])
for reason, (topic, part, off) in where.items():
    if committed.get(part, -1) <= off:
        e2e.fail(f"offset of the {reason} letter ({part}/{off}) not committed: {committed}")
e2e.ok(f"offsets committed past every dead letter: {committed}")
d.assert_clean()
harness.stop()
print("PASS")
