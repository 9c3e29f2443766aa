#!/usr/bin/env python3
"""interestd end to end, duplicates by event id and keys that are not the user id
(schemas/state.md "event ids"; README "Duplicates"): a stream of 20 users x 8 events
is produced, then produced again with the same event ids at new offsets, and the
second copy reaches a restarted daemon (the ids come back from the state in Redis):
Redis equals the offline replay of one copy, events_applied counts every event once,
and interestd_events_duplicate_total{reason="event_id"} counts the 160 copies. Two
copies of one new event in the same batch apply once. A message keyed by another
user than its user_id goes to the dead-letter topic with reason key_mismatch (its
user unchanged); after SIGHUP with events.key_mismatch = accept, such a message is
applied; a bad value of the key is refused naming it (exit 78)."""
import os
import signal
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, PER_USER = 20, 8  # per user under the 16 ids a state remembers
T0 = 1_700_000_000_000

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
def scrape(d):
    """{name{labels}: value} from the daemon's /metrics."""
    addr = d.wait_log(r"event=metrics_listening addr=(\S+)", 10).group(1)
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


DUP_EVENT_ID = 'interestd_events_duplicate_total{reason="event_id"}'
DUP_MARKER = 'interestd_events_duplicate_total{reason="marker"}'
DLQ_KEY = 'interestd_dead_letters_total{reason="key_mismatch"}'


def wait_metric(d, name, want, timeout_s=60):
    if harness.wait_for(lambda: scrape(d).get(name) == want, timeout_s, 0.5) is None:
        d.dump()
        e2e.fail(f"{name} = {scrape(d).get(name)}, want {want}")


# Every user's 8 events interleaved in time order (the replay's order is the Kafka order).
rows = [{"user_id": f"dup-{k % N_USERS}", "item_id": items[(7 * k) % len(items)],
         "type": "CLICK", "ts": T0 + 1000 * k} for k in range(N_USERS * PER_USER)]
csv_path = os.path.join(tmp, "events.csv")
e2e.write_events(csv_path, rows)
expected = e2e.offline_replay(model, csv_path, os.path.join(tmp, "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
if set(want.values()) != {PER_USER}:
    e2e.fail(f"offline replay: events per user {sorted(set(want.values()))}")


def replay_same_ids():
    """The CSV through scripts/replay with fixed event ids (dup49:<row>)."""
    subprocess.run([os.path.join(harness.ROOT, "scripts", "replay"), "--bootstrap",
                    env["KAFKA_BOOTSTRAP"], "--topic", env["EVENTS_TOPIC"],
                    "--event-id-prefix", "dup49:", csv_path], check=True,
                   stdout=subprocess.DEVNULL)


conf = e2e.write_config(env, model, "d1", metrics__listen="127.0.0.1:0")
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
replay_same_ids()
done, got, short = e2e.wait_applied(r, prefix, want, 60)
if not done:
    d.dump()
    e2e.fail(f"first copy not applied: {short}")
wait_metric(d, DUP_EVENT_ID, 0)
if d.stop() != 0:
    e2e.fail("d1 did not stop cleanly")
e2e.ok(f"{len(rows)} events of {N_USERS} users applied once, no duplicate counted")

# The same events again at new offsets, read by a new process: the ids come from Redis.
d.start()
d.wait_log(r"event=assigned .*owned=4", 60)
replay_same_ids()
wait_metric(d, DUP_EVENT_ID, len(rows))
wait_metric(d, 'interestd_events_applied_total', 0)
diffs = e2e.compare(r, prefix, expected)
if diffs:
    d.dump()
    e2e.fail(f"{len(diffs)} differences from one application:\n  " + "\n  ".join(diffs[:20]))
e2e.ok(f"the {len(rows)} events produced again at new offsets: all skipped by event id "
       f"(counted {len(rows)}), Redis equals one application")

# Two copies of one new event in one batch: applied once.
user = "dup-3"
ts = T0 + 10_000_000
e2e.produce_raw(env, [(user.encode(), e2e.single_object(user, items[1], ts, "dup49:twice")),
                      (user.encode(), e2e.single_object(user, items[1], ts, "dup49:twice"))])
done, got, short = e2e.wait_applied(r, prefix, {user: PER_USER + 1}, 60)
wait_metric(d, DUP_EVENT_ID, len(rows) + 1)
if not done or e2e.events_applied(r, prefix, [user])[user] != PER_USER + 1:
    d.dump()
    e2e.fail(f"two copies in one batch: events_applied {got}, want {PER_USER + 1}")
e2e.ok("two copies of a new event back to back: applied once, one duplicate counted")

# A message keyed by another user: dead-lettered as key_mismatch, its user untouched.
victim, other = "dup-5", "dup-6"
e2e.produce_raw(env, [(other.encode(), e2e.single_object(victim, items[2], ts, "dup49:mismatch"))])
letters = e2e.consume_all(env, env["DLQ_TOPIC"], 1, 30)
heads = [{k: v.decode() for k, v in (m.headers() or [])} for m in letters]
if len(letters) != 1 or heads[0].get("interestd.reason") != "key_mismatch" or \
        letters[0].key() != other.encode() or victim in heads[0].get("interestd.detail", victim):
    d.dump()
    e2e.fail(f"dead letters: {heads}")
wait_metric(d, DLQ_KEY, 1)
if e2e.events_applied(r, prefix, [victim, other]) != {victim: PER_USER, other: PER_USER}:
    e2e.fail(f"key mismatch changed a user: {e2e.events_applied(r, prefix, [victim, other])}")
e2e.ok(f"a message keyed {other} with user_id {victim}: dead-lettered as key_mismatch "
       f"(detail {heads[0].get('interestd.detail')!r}), no user changed")

# events.key_mismatch = accept (reloadable): the same kind of message is applied.
with open(conf, "a") as f:
    f.write("events.key_mismatch = accept\n")
since = d.mark()
d.send(signal.SIGHUP)
d.wait_log(r"event=model_reloaded", 60, since=since)
e2e.produce_raw(env, [(other.encode(), e2e.single_object(victim, items[2], ts, "dup49:accepted"))])
done, got, short = e2e.wait_applied(r, prefix, {victim: PER_USER + 1, other: PER_USER}, 60)
if not done:
    d.dump()
    e2e.fail(f"with events.key_mismatch = accept: {short}")
if scrape(d).get(DLQ_KEY) != 1:
    e2e.fail(f"accepted message dead-lettered: {scrape(d).get(DLQ_KEY)}")
e2e.ok("after SIGHUP with events.key_mismatch = accept, a mismatched key is applied")

if d.stop() != 0:
    e2e.fail("d1 did not stop cleanly")
d.assert_clean()

# A bad value names the key.
bad = e2e.write_config(env, model, "bad", events__key_mismatch="drop")
p = subprocess.run([e2e.tool("interestd"), "-n", "-c", bad], capture_output=True, text=True)
if p.returncode != 78 or "events.key_mismatch" not in p.stderr:
    e2e.fail(f"events.key_mismatch = drop: exit {p.returncode}, stderr {p.stderr!r}")
e2e.ok(f"events.key_mismatch = drop refused: {p.stderr.strip().splitlines()[-1]}")
