#!/usr/bin/env python3
"""interestd end to end: limits on what comes from the wire and from Redis.
A message too large for the dead-letter producer (kafka.producer.message.max.bytes set
low) is dead-lettered cut to fit with interestd.truncated = the original sizes, instead
of stopping the daemon; a tombstone whose key is longer than a user id may be is
dead-lettered as too_large with its key cut to 4096 bytes; a ui:{u}:state of 300 KiB is not
read (bounded GETRANGE): the user starts fresh, logged and counted (states_oversized)."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

MAX_MSG = 20000
VALUE_ROOM = MAX_MSG - 4096 - 2048  # daemon/dlq.c: DLQ_KEY_MAX_BYTES, DLQ_HEADROOM_BYTES

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]

r.set(f"{prefix}{{bigstate}}:state", b"\x5a" * (300 * 1024))
conf = e2e.write_config(env, model, "d1", kafka__producer__message__max__bytes=MAX_MSG)
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)

big_value = bytes(range(256)) * 120  # 30720 bytes, not an event
long_key = b"k" * 5000
e2e.produce_raw(env, [(b"big", big_value), (long_key, None)])
rows = [{"user_id": "bigstate", "item_id": items[i], "type": "VIEW", "ts": 1_700_000_000_000 + i}
        for i in range(3)]
e2e.write_events(os.path.join(tmp, "good.csv"), rows)
e2e.replay_to_kafka(env, os.path.join(tmp, "good.csv"))
done, got, _short = e2e.wait_applied(r, prefix, {"bigstate": 3}, 60)
if not done:
    d.dump()
    e2e.fail(f"bigstate: events_applied {got}, want 3 (fresh start)")
d.wait_log(r"event=state_oversized user=bigstate bytes_at_least=\d+ action=fresh_state", 10)
e2e.ok("a 300 KiB stored state is not read: the user starts fresh, logged")

letters = e2e.consume_all(env, env["DLQ_TOPIC"], 2, 30)
by_key = {}
for m in letters:
    by_key[m.key()[:3]] = ({k: v.decode() for k, v in (m.headers() or [])}, m)
if set(by_key) != {b"big", b"kkk"}:
    d.dump()
    e2e.fail(f"dead letters keyed {sorted(by_key)}")
h, m = by_key[b"big"]
if h.get("interestd.truncated") != f"key=3 value={len(big_value)}" or \
        m.value() != big_value[:VALUE_ROOM]:
    e2e.fail(f"oversized letter: headers {h}, value {len(m.value())} bytes")
e2e.ok(f"a {len(big_value)}-byte message over the DLQ producer's {MAX_MSG}: dead-lettered "
       f"cut to {VALUE_ROOM} bytes, interestd.truncated='{h['interestd.truncated']}'")
h, m = by_key[b"kkk"]
if h.get("interestd.reason") != "too_large" or m.key() != long_key[:4096] or \
        h.get("interestd.truncated") != "key=5000 value=0" or "5000" not in h.get("interestd.detail", ""):
    e2e.fail(f"long-key tombstone: headers {h}, key {len(m.key())} bytes")
e2e.ok(f"a tombstone with a 5000-byte key: too_large, key cut to 4096, detail "
       f"'{h['interestd.detail']}'")
if not d.alive():
    e2e.fail("the daemon stopped")
rc = d.stop()
m = re.findall(r"event=stats .* states_oversized=(\d+)", d.current_log())
if rc != 0 or not m or m[-1] != "1":
    d.dump()
    e2e.fail(f"exit {rc}, states_oversized {m}")
e2e.ok("exit 0; states_oversized=1")
d.assert_clean()
harness.stop()
print("PASS")
