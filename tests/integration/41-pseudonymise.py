#!/usr/bin/env python3
"""interestd end to end with ids.hmac_key_file (schemas/redis.md "Pseudonymised user
ids"): no raw user id appears in any Redis key or value of the test's prefix, in the
snapshot topic (keys and values) or in the daemon's log; every user's keys equal the
offline replay under the pseudonym hex(HMAC-SHA256(key, id))[:32], computed here with
Python's hmac (an independent implementation); `interestctl user RAW_ID` finds the user
through the same key (from the config and from --hmac-key-file); a key file readable by
the group is refused with exit 78."""
import hashlib
import hmac
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 60, 1500
RAW = b"rawuser-"
KEY = b"0123456789abcdef-test-key-41"

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
csv_path = os.path.join(tmp, "events.csv")
e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=41, user_prefix=RAW.decode())
expected_raw = e2e.offline_replay(model, csv_path, os.path.join(tmp, "replay.jsonl"))


def pseudonym(uid):
    return hmac.new(KEY, uid.encode(), hashlib.sha256).hexdigest()[:32]


expected = {pseudonym(u): v for u, v in expected_raw.items()}
want = {u: v["events_applied"] for u, v in expected.items()}
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]

key_file = os.path.join(tmp, "hmac.key")
with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    f.write(KEY.decode() + "\n")
bad_key = os.path.join(tmp, "hmac-group.key")
with open(bad_key, "w") as f:
    f.write(KEY.decode() + "\n")
os.chmod(bad_key, 0o640)

# A key file the group can read is refused.
bad_conf = e2e.write_config(env, model, "bad", ids__hmac_key_file=bad_key)
p = subprocess.run([e2e.tool("interestd"), "-n", "-c", bad_conf], capture_output=True, text=True)
if p.returncode != 78 or "ids.hmac_key_file" not in p.stderr or "group/world" not in p.stderr:
    e2e.fail(f"group-readable key file: exit {p.returncode}, stderr {p.stderr!r}")
e2e.ok("a group-readable ids.hmac_key_file is refused (exit 78, key and rule named)")

conf = e2e.write_config(env, model, "d1", ids__hmac_key_file=key_file, snapshot__every_events=5)
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
e2e.replay_to_kafka(env, csv_path)
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"{len(short)} pseudonymised users short, e.g. {list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the replay under pseudonyms:\n  " + "\n  ".join(diffs[:20]))
e2e.ok(f"{len(want)} users under their HMAC pseudonyms equal the offline replay")

# No raw id anywhere in Redis under the prefix: keys, strings, hashes, sorted sets.
n_keys = 0
for k in r.scan_iter(match=prefix + "*", count=1000):
    n_keys += 1
    if RAW in k:
        e2e.fail(f"raw user id in Redis key {k!r}")
    t = r.type(k)
    if t == b"string":
        vals = [r.get(k)]
    elif t == b"hash":
        vals = [x for kv in r.hgetall(k).items() for x in kv]
    elif t == b"zset":
        vals = [m for m, _s in r.zrange(k, 0, -1, withscores=True)]
    else:
        vals = []
    if any(v is not None and RAW in v for v in vals):
        e2e.fail(f"raw user id in the value of {k!r}")
if n_keys < len(want) * 5:
    e2e.fail(f"only {n_keys} keys under {prefix}")
e2e.ok(f"no raw user id in {n_keys} Redis keys or their values")

snaps = e2e.consume_all(env, env["SNAPSHOTS_TOPIC"], 10 ** 6, timeout_s=15)
if len(snaps) < N_EVENTS // 5 // 2:
    e2e.fail(f"only {len(snaps)} snapshots")
for m in snaps:
    if RAW in (m.key() or b"") or RAW in (m.value() or b""):
        e2e.fail(f"raw user id in a snapshot (key {m.key()!r})")
    if m.key().decode() not in want:
        e2e.fail(f"snapshot keyed {m.key()!r}: not a pseudonym of a user")
e2e.ok(f"{len(snaps)} snapshots, keyed by pseudonyms, no raw id in keys or values")

# interestctl: the raw id through the config's key, and through --hmac-key-file.
uid = sorted(expected_raw)[0]
ctl = e2e.tool("interestctl")
for args in (["-c", conf, "user", uid], ["-H", env.get("REDIS_HOST", "127.0.0.1"), "-p",
             env["REDIS_PORT"], "-P", prefix, "user", uid, "--model", model,
             "--hmac-key-file", key_file]):
    p = subprocess.run([ctl] + args, capture_output=True, text=True)
    if p.returncode != 0 or f"pseudonym {pseudonym(uid)}" not in p.stdout or \
            f"events_applied" not in p.stdout:
        e2e.fail(f"interestctl {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
e2e.ok(f"interestctl user {uid} shows pseudonym {pseudonym(uid)} (config key and --hmac-key-file)")

rc = d.stop()
if rc != 0:
    e2e.fail(f"exit {rc}")
if RAW.decode() in d.log_text():
    e2e.fail("a raw user id in the daemon's log")
e2e.ok("no raw user id in the daemon's log")
d.assert_clean()
harness.stop()
print("PASS")
