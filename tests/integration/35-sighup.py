#!/usr/bin/env python3
"""interestd end to end: SIGHUP mid-stream to a new model file swaps the model without
losing an event (ui:{u}:meta model_version becomes the new version for users with
later events, users re-warm, the sum of events_applied equals the events sent, each
user's count exact); SIGHUP to a corrupt model file is refused with a log line naming
the bad section, and the old model keeps serving (more events still applied)."""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 120, 3000

env = harness.start()
model_a, model_b, va, vb, sample = e2e.two_test_models()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
csv_path = os.path.join(tmp, "events.csv")
rows = e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=35)
want = {}
for row in rows:
    want[row["user_id"]] = want.get(row["user_id"], 0) + 1
live = os.path.join(tmp, "live.imdl")
e2e.install(model_a, live)

d = e2e.Daemon(env, e2e.write_config(env, live, "d1"), "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
half = N_EVENTS // 2
e2e.replay_to_kafka(env, csv_path, limit=half)
if harness.wait_for(lambda: sum(e2e.events_applied(r, prefix, list(want)).values()) == half, 60, 0.2) is None:
    e2e.fail("first half not applied")
versions = {int(r.hget(f"{prefix}{{{u}}}:meta", "model_version")) for u in e2e.events_applied(r, prefix, list(want))}
if versions != {va}:
    e2e.fail(f"before the swap model_version {versions}, want {{{va}}}")
e2e.ok(f"first half applied with model {va}")

# Swap to model B while the second half streams in.
producer = threading.Thread(target=e2e.replay_to_kafka, args=(env, csv_path),
                            kwargs={"skip": half, "rate": 1000})
producer.start()
time.sleep(0.5)
e2e.install(model_b, live)
d.send(signal.SIGHUP)
d.wait_log(rf"event=model_reloaded .*old_version={va} version={vb}", 30)
e2e.ok(f"SIGHUP: model {va} -> {vb} mid-stream")

# A corrupt file is refused; B keeps serving.
time.sleep(0.5)
e2e.corrupt_copy(model_a, live + ".bad", b"WGHT")
os.rename(live + ".bad", live)
d.send(signal.SIGHUP)
m = d.wait_log(r"model reload FAILED: .*", 30)
if "WGHT" not in m.group(0):
    e2e.fail(f"reload failure does not name the bad section: {m.group(0)}")
e2e.ok(f"corrupt model refused: '{m.group(0)[:120]}'")
producer.join()
ok, got, short = e2e.wait_applied(r, prefix, want, 120)
if not ok:
    d.dump()
    e2e.fail(f"{len(short)} users incomplete after the swaps, e.g. {list(short.items())[:5]}")
total = sum(got.values())
if total != N_EVENTS:
    e2e.fail(f"sum of events_applied {total} != {N_EVENTS}")
e2e.ok(f"nothing lost: events_applied sum {total} == events sent, every user exact")

versions = {}
for u in want:
    v = int(r.hget(f"{prefix}{{{u}}}:meta", "model_version"))
    versions[v] = versions.get(v, 0) + 1
if set(versions) - {va, vb} or versions.get(vb, 0) == 0:
    e2e.fail(f"model_version per user after the swap: {versions}")
e2e.ok(f"ui:{{u}}:meta model_version after the swap: {versions}")
if not d.alive():
    e2e.fail("daemon died")
if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
stats = [line for line in d.log_text().splitlines() if "event=stats" in line][-1]
rew = int(re.search(r"rewarmed=(\d+)", stats).group(1))
if rew == 0:
    e2e.fail(f"no user was re-warmed after the swap: {stats}")
e2e.ok(f"{rew} users re-warmed from their rings")
d.assert_clean()
harness.stop()
print("PASS")
