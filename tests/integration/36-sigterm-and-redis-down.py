#!/usr/bin/env python3
"""interestd end to end, on a private stack: Redis becomes unreachable mid-stream
(redis-server frozen with SIGSTOP, its data kept): the daemon logs it, pauses its
partitions and keeps running; when Redis answers again it resumes and the final
state equals the offline replay. Then Redis freezes again with events pending and the
daemon gets SIGTERM: it exits 0 without committing what it could not write, and a
restarted daemon applies those events: still equal to the replay, nothing lost. A
second SIGTERM while the shutdown waits on Redis exits 1 at once, and still nothing
is lost."""
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 100, 3000

h = harness.Harness(private=True)
env = h.start()
freeze, thaw = e2e.redis_freezer(h, env)
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
csv_path = os.path.join(env["HARNESS_TMP"], "events.csv")
e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=36)
expected = e2e.offline_replay(model, csv_path, os.path.join(env["HARNESS_TMP"], "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
conf = e2e.write_config(env, model, "d1", redis__timeout_ms=500, metrics__listen="127.0.0.1:0")


def scrape(path="/metrics"):
    """The daemon's metrics as {name{labels}: value}; (status, dict)."""
    import urllib.error
    import urllib.request
    addr = d.wait_log(r"event=metrics_listening addr=(\S+)", 10).group(1)
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as resp:
            text = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as ex:
        return ex.code, {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return status, out


d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)

first = N_EVENTS * 2 // 3
producer = threading.Thread(target=e2e.replay_to_kafka, args=(env, csv_path),
                            kwargs={"rate": 600, "limit": first})
producer.start()
if harness.wait_for(lambda: sum(e2e.events_applied(r, prefix, list(want)).values()) >= N_EVENTS // 4,
                    60, 0.1) is None:
    e2e.fail("a quarter of the events not applied within 60 s")
freeze()
d.wait_log(r"event=redis_unavailable .*action=pause", 30)
time.sleep(4)
if not d.alive():
    d.dump()
    e2e.fail("the daemon exited while Redis was unreachable")
e2e.ok("Redis frozen mid-stream: the daemon paused its partitions and keeps running")
st, mx = scrape()
if st != 200 or mx.get("interestd_redis_up") != 0 or mx.get("interestd_events_applied_total", 0) <= 0:
    e2e.fail(f"metrics while Redis is down: status {st}, redis_up {mx.get('interestd_redis_up')}")
e2e.ok(f"/metrics answers while Redis is down: redis_up 0, "
       f"{int(mx['interestd_events_applied_total'])} events applied, "
       f"{int(mx['interestd_flush_failures_total'])} flush failures")
thaw()
d.wait_log(r"event=redis_recovered .*action=resume", 30)
producer.join()
e2e.ok("Redis back: the daemon resumed")
st, mx = scrape()
if mx.get("interestd_redis_up") != 1 or mx.get("interestd_partitions_owned") != 4:
    e2e.fail(f"metrics after recovery: {mx}")
if scrape("/other")[0] != 404:
    e2e.fail("a path other than /metrics is not 404")
e2e.ok("/metrics after recovery: redis_up 1, 4 partitions owned; other paths 404")

# Everything of the first part applied, then Redis freezes with new events pending.
part1 = {}
with open(csv_path) as f:
    next(f)
    for i, line in enumerate(f):
        if i >= first:
            break
        u = line.split(",")[0]
        part1[u] = part1.get(u, 0) + 1
done, got, short = e2e.wait_applied(r, prefix, part1, 60)
if not done:
    d.dump()
    e2e.fail(f"first part incomplete after the outage: {list(short.items())[:5]}")
e2e.ok(f"all {first} events of the first part applied across the outage")

freeze()
e2e.replay_to_kafka(env, csv_path, skip=first)
time.sleep(2)  # the daemon polls them, applies in memory, cannot flush
rc = d.stop(timeout_s=60)
thaw()
if rc != 0:
    d.dump()
    e2e.fail(f"SIGTERM with Redis down: exit {rc}, want 0")
if "shutdown_flush" not in d.current_log() and "event=redis_unavailable" not in d.current_log():
    d.dump()
    e2e.fail("no log line about the flush that could not happen")
e2e.ok("SIGTERM while Redis is unreachable: exit 0, unflushed events left uncommitted")

d.start()
done, got, short = e2e.wait_applied(r, prefix, want, 90)
if not done:
    d.dump()
    e2e.fail(f"after the restart {len(short)} users incomplete, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
e2e.ok("after the restart Redis equals the offline replay of all events: nothing lost")

# A second SIGTERM while the first one's shutdown waits on Redis: exit 1 at once.
late_csv = os.path.join(env["HARNESS_TMP"], "late.csv")
e2e.make_events(late_csv, items, 1, 10, seed=99, t0_ms=1_700_100_000_000, user_prefix="late-")
freeze()
e2e.replay_to_kafka(env, late_csv)
d.wait_log(r"event=redis_unavailable", 30)
d.send(signal.SIGTERM)
time.sleep(0.2)
t0 = time.monotonic()
d.send(signal.SIGTERM)
try:
    rc = d.proc.wait(5)
except Exception:  # noqa: BLE001
    rc = None
thaw()
if rc != 1:
    d.dump()
    e2e.fail(f"second SIGTERM: exit {rc}, want 1 at once")
e2e.ok(f"second SIGTERM during shutdown: exit 1 after {time.monotonic() - t0:.2f} s")
d.fp.close()
d.start()
done, got, short = e2e.wait_applied(r, prefix, {"late-0": 10}, 60)
if not done:
    d.dump()
    e2e.fail(f"events pending at the abrupt exit were lost: {got}")
e2e.ok("events pending at the abrupt exit applied by the next run")
if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
d.assert_clean()
h.stop()
print("PASS")
