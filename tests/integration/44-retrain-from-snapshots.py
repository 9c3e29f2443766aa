#!/usr/bin/env python3
"""Retraining from the daemon's own snapshots (docs/RETRAINING.md), on MovieLens-100K
in time order: interestd runs the first half of the events under a model trained
on the first 20 % (1 epoch, model_version 100), with snapshot.every_events=10 and
snapshot.max_interval_s=1 so its snapshots cover every event; scripts/retrain dumps
the snapshot topic and retrains against the live model (interest-train --current):
the dump holds exactly the first half (each event once, each user's in time order),
the new model is accepted (exit 0, written over model.path, version above 100) and
the daemon is sent SIGHUP; a deliberately bad model (0 epochs) is then refused
(exit 3, model.path byte-identical, no candidate left) and a --model-version not
above the current one is a usage error (64). The second half streams in under the
new model: ui:{u}:meta model_version is the new version for every user with events
after the swap, the old one for the others, and the sum of events_applied equals
the events sent (nothing lost)."""
import collections
import csv
import hashlib
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

ROOT = harness.ROOT
CURRENT_VERSION = 100
EVERY_EVENTS = 10
T0 = time.monotonic()


def ml100k_dir():
    """ML-100K under DATA_ROOT (default ../shared/data beside the repository);
    a missing one fails the test, it is part of the setup."""
    d = os.path.join(ROOT, os.environ.get("DATA_ROOT") or os.path.join("..", "shared", "data"),
                     "ml-100k")
    if not os.path.exists(os.path.join(d, "u.data")):
        e2e.fail(f"no MovieLens-100K at {d} (set DATA_ROOT to the folder holding ml-100k/)")
    return d


def read_rows(path):
    with open(path, newline="") as f:
        return [(r["user_id"], r["item_id"], r["type"], int(r["ts"])) for r in csv.DictReader(f)]


def write_rows(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "item_id", "type", "ts"])
        w.writerows(rows)


def prepare():
    """Converted ML-100K, its catalog, the events in time order and the current model
    (first 20 %, 1 epoch), cached under BUILD/test-retrain/<key>/ keyed by the inputs."""
    data = ml100k_dir()
    train = e2e.tool("interest-train")
    scripts = [os.path.join(ROOT, "scripts", s) for s in ("convert-movielens", "catalog")]
    pylib = os.path.join(ROOT, "scripts", "interestd_py")
    libs = sorted(os.path.join(pylib, f) for f in os.listdir(pylib) if f.endswith(".py"))
    key = e2e._digest(scripts + libs + [train, os.path.join(data, "u.data")],
                      f"v{CURRENT_VERSION} first20 epochs1 hidden32")
    out = os.path.join(e2e.build_dir(), "test-retrain", key)
    if os.path.exists(os.path.join(out, "current.imdl")):
        return out
    tmp = out + f".tmp{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    e2e._run([scripts[0], "--in", data, "--out", tmp])
    e2e._run([scripts[1], "build", "--items", os.path.join(tmp, "items.csv"),
              "--out", os.path.join(tmp, "catalog.icat"), "--seed", "1"])
    rows = read_rows(os.path.join(tmp, "interactions.csv"))
    order = sorted(range(len(rows)), key=lambda i: (rows[i][3], i))  # time, ties in file order
    rows = [rows[i] for i in order]
    write_rows(os.path.join(tmp, "events.csv"), rows)
    write_rows(os.path.join(tmp, "first20.csv"), rows[:len(rows) // 5])
    e2e._run(["nice", train, "--catalog", os.path.join(tmp, "catalog.icat"),
              "--interactions", os.path.join(tmp, "first20.csv"),
              "--out", os.path.join(tmp, "current.imdl"), "--epochs", "1", "--hidden", "32",
              "--threads", "1", "--seed", "1", "--model-version", str(CURRENT_VERSION)])
    try:
        os.rename(tmp, out)
    except OSError:
        pass  # another run built it meanwhile
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot_end(env):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"],
                  "group.id": env["HARNESS_PREFIX"] + "probe"})
    try:
        return c.get_watermark_offsets(TopicPartition(env["SNAPSHOTS_TOPIC"], 0), timeout=10)[1]
    finally:
        c.close()


env = harness.start()
prep = prepare()
tmp = env["HARNESS_TMP"]
events_csv = os.path.join(prep, "events.csv")
rows = read_rows(events_csv)
n = len(rows)
half = n // 2
first, second = rows[:half], rows[half:]
want = collections.Counter(r[0] for r in rows)
e2e.ok(f"MovieLens-100K: {n} events of {len(want)} users in time order; first half {half} "
       f"({time.monotonic() - T0:.0f} s)")

live = os.path.join(tmp, "model.imdl")
e2e.install(os.path.join(prep, "current.imdl"), live)
if e2e.model_version(live) != CURRENT_VERSION:
    e2e.fail(f"current model version {e2e.model_version(live)}")
if EVERY_EVENTS >= e2e.ring_len(live):
    e2e.fail(f"snapshot.every_events {EVERY_EVENTS} must be below the ring ({e2e.ring_len(live)})")
conf = e2e.write_config(env, live, "d1", snapshot__every_events=EVERY_EVENTS,
                        snapshot__max_interval_s=1)
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]

# First half under the current model.
e2e.replay_to_kafka(env, events_csv, limit=half)
want1 = collections.Counter(u for u, _i, _t, _ts in first)
ok, got, short = e2e.wait_applied(r, prefix, want1, 120)
if not ok:
    d.dump()
    e2e.fail(f"first half: {len(short)} users incomplete, e.g. {list(short.items())[:5]}")
versions = collections.Counter(int(r.hget(f"{prefix}{{{u}}}:meta", "model_version")) for u in want1)
if set(versions) != {CURRENT_VERSION}:
    e2e.fail(f"first half: model_version {dict(versions)}, want {CURRENT_VERSION}")
e2e.ok(f"first half applied: {sum(got.values())} events, {len(want1)} users, model_version "
       f"{CURRENT_VERSION} ({time.monotonic() - T0:.0f} s)")

# The pending tails go out within snapshot.max_interval_s: wait for the topic to settle.
last, stable_since = -1, time.monotonic()
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    end = snapshot_end(env)
    if end != last:
        last, stable_since = end, time.monotonic()
    elif end > 0 and time.monotonic() - stable_since >= 3:
        break
    time.sleep(0.5)
else:
    e2e.fail(f"snapshot topic did not settle (end offset {last})")
e2e.ok(f"snapshot topic settled at {last} snapshots")

# Retrain: scripts/retrain = snapshots dump + interest-train --current, then SIGHUP.
work = os.path.join(tmp, "retrain")
t_train = time.monotonic()
res = subprocess.run(
    [os.path.join(ROOT, "scripts", "retrain"), "--bootstrap", env["KAFKA_BOOTSTRAP"],
     "--topic", env["SNAPSHOTS_TOPIC"], "--current", live, "--work", work,
     "--until-idle", "5", "--train", e2e.tool("interest-train"), "--sighup-pid",
     str(d.proc.pid), "--", "--epochs", "2", "--threads", "1", "--seed", "1",
     "--budget-s", "10"],
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
print(res.stdout, file=sys.stderr)
if res.returncode != 0:
    e2e.fail(f"scripts/retrain exited {res.returncode}, want 0 (accepted)")
m = re.search(r"new ndcg@10 ([\d.]+) .*current ndcg@10 ([\d.]+)", res.stdout)
if m is None or "decision: accepted" not in res.stdout:
    e2e.fail("no accepted decision with both figures in the output")
# The retraining ran the settings search (validation items only) and the model file keeps it.
chose = re.search(r"^chose: (.*)$", res.stdout, re.M)
if chose is None or not re.search(r"^search: try 1: ", res.stdout, re.M):
    e2e.fail("the retraining printed no settings search (search: try 1 ... chose: ...)")
shown = subprocess.run([e2e.tool("interestctl"), "model", live], capture_output=True, text=True,
                       timeout=60)
if shown.returncode != 0 or ("chose: " + chose.group(1)) not in shown.stdout:
    e2e.fail(f"interestctl model does not show the search's choice:\n{shown.stdout}{shown.stderr}")
e2e.ok(f"settings search recorded in the model file: {chose.group(1)}")
new_version = e2e.model_version(live)
if new_version <= CURRENT_VERSION:
    e2e.fail(f"new model_version {new_version} not above {CURRENT_VERSION}")
if os.path.exists(live + ".candidate"):
    e2e.fail("a candidate file was left beside model.path")
e2e.ok(f"retrained in {time.monotonic() - t_train:.0f} s and accepted: NDCG@10 new "
       f"{m.group(1)} vs current {m.group(2)}; model_version {CURRENT_VERSION} -> {new_version}")

# The dump: every first-half event exactly once, each user's in time order.
dump = read_rows(os.path.join(work, "snapshots.csv"))
if len(dump) != half:
    e2e.fail(f"dump holds {len(dump)} events, want {half} (the first half)")
if collections.Counter(dump) != collections.Counter(first):
    missing = collections.Counter(first) - collections.Counter(dump)
    extra = collections.Counter(dump) - collections.Counter(first)
    e2e.fail(f"dump differs from the first half: {sum(missing.values())} missing "
             f"(e.g. {list(missing)[:3]}), {sum(extra.values())} extra (e.g. {list(extra)[:3]})")
prev = {}
for u, _i, _t, ts in dump:
    if ts < prev.get(u, ts):
        e2e.fail(f"dump: user {u}'s events not in time order")
    prev[u] = ts
e2e.ok(f"dump: {len(dump)} events == the first half, each exactly once, per-user time order")

d.wait_log(rf"event=model_reloaded .*old_version={CURRENT_VERSION} version={new_version}", 60,
           current=False)
e2e.ok(f"SIGHUP: daemon now serves model_version {new_version}")

# The gate refuses a worse model and leaves model.path alone.
before = sha256(live)
res = subprocess.run([e2e.tool("interest-train"), "--current", live, "--interactions",
                      os.path.join(work, "snapshots.csv"), "--out", live, "--epochs", "0",
                      "--threads", "1", "--seed", "1"],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
if res.returncode != 3 or "decision: refused" not in res.stdout:
    print(res.stdout, file=sys.stderr)
    e2e.fail(f"untrained model: exit {res.returncode}, want 3 (refused)")
if sha256(live) != before or os.path.exists(live + ".candidate"):
    e2e.fail("a refused model changed model.path or left its candidate")
e2e.ok("untrained model refused: " + re.search(r"decision: .*", res.stdout).group(0)[:110])
res = subprocess.run([e2e.tool("interest-train"), "--current", live, "--interactions",
                      os.path.join(work, "snapshots.csv"), "--out", live, "--model-version",
                      str(new_version)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)
if res.returncode != 64 or sha256(live) != before:
    e2e.fail(f"--model-version not above the current: exit {res.returncode}, want 64")
e2e.ok("--model-version not above the current one: usage error, nothing written")

# Second half under the new model; nothing lost.
e2e.replay_to_kafka(env, events_csv, skip=half)
ok, got, short = e2e.wait_applied(r, prefix, want, 180)
if not ok:
    d.dump()
    e2e.fail(f"{len(short)} users incomplete, e.g. {list(short.items())[:5]}")
if sum(got.values()) != n:
    e2e.fail(f"sum of events_applied {sum(got.values())} != {n} events sent")
e2e.ok(f"nothing lost: events_applied sum {n} == events sent, every user exact")
later = {u for u, _i, _t, _ts in second}
bad = []
for u in want:
    v = int(r.hget(f"{prefix}{{{u}}}:meta", "model_version"))
    if v != (new_version if u in later else CURRENT_VERSION):
        bad.append((u, v))
if bad:
    e2e.fail(f"{len(bad)} users with the wrong model_version, e.g. {bad[:5]}")
e2e.ok(f"model_version {new_version} for the {len(later)} users with events after the swap, "
       f"{CURRENT_VERSION} for the other {len(want) - len(later)}")

if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
d.assert_clean()
harness.stop()
print(f"PASS ({time.monotonic() - T0:.0f} s)")
