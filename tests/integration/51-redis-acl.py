#!/usr/bin/env python3
"""interestd against Redis as a least-privilege ACL user (docs/SECURITY.md): allowed
only the test's key prefix (~<prefix>*, which covers the user keys, <prefix>tiers and
<prefix>epoch:*) and only the commands the daemon sends, directly or from its Lua
script. The daemon applies every event (events_applied exact per user), ui:tiers and
the owner epochs are written, and Redis logs no ACL denial for the user; the same user
is refused a key outside the prefix and a command outside the list (the ACL is really
enforced). EVALSHA revoked while running: one error line names a permission problem,
the user, the command and the keys (not "Redis unavailable"), nothing is applied, and
granting it back heals the daemon without a restart. With a wrong password the daemon fails clearly: it logs the refused AUTH
and exits non-zero without applying anything."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 40, 600
# What interestd sends (daemon/sink_redis.c): AUTH at connect, SCRIPT LOAD and EVALSHA
# of the per-user write script, whose redis.call()s Redis checks against the same ACL
# (GET HMGET SET DEL HSET ZADD EXPIRE PERSIST), GETRANGE of state blobs and HMGET of
# markers on load, GET of flushed-through markers, the claim/release/marker scripts
# (GET SET DEL of epochs, leases and markers inside), MULTI/DEL/HSET/EXEC of ui:tiers, WAIT
# with redis.wait_replicas. Keep in step with docs/SECURITY.md.
COMMANDS = ["auth", "script|load", "evalsha", "get", "getrange", "hmget", "set", "del", "hset",
            "zadd", "expire", "persist", "multi", "exec", "wait"]
PASSWORD = "acl-test-Secret-9f3b"

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
prefix = env["REDIS_KEY_PREFIX"]
user = env["HARNESS_PREFIX"] + "interestd"
admin = e2e.redis_client(env)

acl = ["on", f">{PASSWORD}", f"~{prefix}*", "resetchannels", "-@all"] + \
    [f"+{c}" for c in COMMANDS]
admin.execute_command("ACL", "SETUSER", user, "reset", *acl)
harness.on_exit(lambda: admin.execute_command("ACL", "DELUSER", user))
e2e.ok(f"ACL user: ACL SETUSER {user} {' '.join(acl[:1] + ['>***'] + acl[2:])}")

# The ACL is enforced: a key outside the prefix and a command outside the list fail.
import redis  # noqa: E402
limited = redis.Redis(host=env.get("REDIS_HOST", "127.0.0.1"), port=int(env["REDIS_PORT"]),
                      username=user, password=PASSWORD)
limited.set(f"{prefix}probe", b"1")
for what, call in (("a key outside the prefix", lambda: limited.get("other:probe")),
                   ("FLUSHALL", lambda: limited.flushall()),
                   ("KEYS", lambda: limited.keys(f"{prefix}*"))):
    try:
        call()
        e2e.fail(f"the ACL user may use {what}")
    except redis.exceptions.NoPermissionError:
        pass
limited.close()
admin.execute_command("ACL", "LOG", "RESET")
e2e.ok("the ACL user is refused a key outside the prefix, FLUSHALL and KEYS")

pwfile = os.path.join(tmp, "redis.password")
with open(pwfile, "w") as f:
    f.write(PASSWORD + "\n")
os.chmod(pwfile, 0o600)

csv_path = os.path.join(tmp, "events.csv")
rows = e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=51)
want = {}
for row in rows:
    want[row["user_id"]] = want.get(row["user_id"], 0) + 1

# A wrong password first: nothing may be applied by it.
badpw = os.path.join(tmp, "redis.badpassword")
with open(badpw, "w") as f:
    f.write("not-the-password\n")
os.chmod(badpw, 0o600)
bad_conf = e2e.write_config(env, model, "bad", redis__user=user, redis__password_file=badpw)
bad = e2e.Daemon(env, bad_conf, "bad").start()
t0 = time.monotonic()
try:
    rc = bad.proc.wait(60)
except subprocess.TimeoutExpired:
    bad.dump()
    e2e.fail("with a wrong Redis password the daemon is still running after 60 s")
text = bad.log_text()
m = re.search(r"^.*AUTH.*$", text, re.M)
if rc == 0 or m is None or not re.search(r"WRONGPASS|invalid username-password", text):
    bad.dump()
    e2e.fail(f"wrong password: exit {rc}, want non-zero and a log line naming the refused AUTH")
bad.assert_clean()
e2e.ok(f"wrong password: exit {rc} after {time.monotonic() - t0:.1f} s, log: {m.group(0).strip()}")

admin.execute_command("ACL", "LOG", "RESET")  # forget the refused AUTH

conf = e2e.write_config(env, model, "acl", redis__user=user, redis__password_file=pwfile)
d = e2e.Daemon(env, conf, "acl").start()
d.wait_log(r"event=assigned .*owned=4", 60)
e2e.replay_to_kafka(env, csv_path)
done, last, short = e2e.wait_applied(admin, prefix, want, 90)
if not done:
    d.dump()
    noperm = re.findall(r"NOPERM[^\"]*", d.log_text())
    if noperm:
        e2e.fail(f"the daemon needs a command the documented ACL lacks ({noperm[0]}): "
                 "update docs/SECURITY.md and COMMANDS here")
    e2e.fail(f"as the ACL user, events_applied short for {len(short)} users: "
             f"{dict(list(short.items())[:5])}")
e2e.ok(f"as the ACL user: {N_EVENTS} events applied to {len(want)} users, each count exact")

names = admin.hgetall(f"{prefix}tiers")
epochs = admin.keys(f"{prefix}epoch:*")
if not names or not epochs:
    e2e.fail(f"ui:tiers has {len(names)} names, {len(epochs)} epoch keys")
denied = []
for entry in admin.execute_command("ACL", "LOG"):
    fields = dict(zip(entry[::2], entry[1::2])) if isinstance(entry, list) else entry
    if isinstance(fields, dict):
        u = fields.get(b"username", fields.get("username"))
        if u in (user, user.encode()):
            denied.append(fields)  # any entry: a denied command, key or AUTH
if denied:
    e2e.fail(f"Redis logged ACL denials for {user}: {denied[:3]}")
e2e.ok(f"{prefix}tiers has {len(names)} names, {len(epochs)} owner epochs; no ACL denial logged")

# EVALSHA taken away while running: an error line calls it a permission problem and
# names the command and the keys, the partitions pause; granting it back heals the
# daemon without a restart.
more_path = os.path.join(tmp, "more.csv")
more = e2e.make_events(more_path, items, N_USERS, 60, seed=510, t0_ms=rows[-1]["ts"] + 1000)
for row in more:
    want[row["user_id"]] = want.get(row["user_id"], 0) + 1
mark = d.mark()
admin.execute_command("ACL", "SETUSER", user, "-evalsha")
e2e.replay_to_kafka(env, more_path)
m = d.wait_log(r"level=error event=redis_permission_denied during=\S+ user=(\S+) "
               r"error=\"([^\"]*)\"[^\n]*action=pause_and_retry", 60, since=mark)
# The first call to meet it is a user write ({prefix}{u}:*), a lease renewal (the
# partition's epoch and lease keys) or a batch's in-flight record, whichever comes first.
if m.group(1) != user or "NOPERM" not in m.group(2) or "evalsha" not in m.group(2).lower() or \
        not any(k in m.group(2) for k in (f"{prefix}{{", f"{prefix}epoch:", f"{prefix}inflight:")):
    e2e.fail(f"the permission error does not name the user, the command and the keys: "
             f"{m.group(0)}")
tail = d.current_log()[mark:]
if re.search(r"event=redis_unavailable", tail):
    e2e.fail("a NOPERM refusal was also reported as Redis being unavailable")
e2e.ok(f"EVALSHA revoked: {m.group(0).strip()[:300]}")
time.sleep(3)  # a few retries with backoff: still one line for the one reason
n_lines = len(re.findall(r"event=redis_permission_denied", d.current_log()[mark:]))
if n_lines != 1:
    e2e.fail(f"{n_lines} permission-denied lines for one reason within seconds, want 1")
if e2e.events_applied(admin, prefix, list(want)) == want:
    e2e.fail("events applied while EVALSHA was refused")
admin.execute_command("ACL", "SETUSER", user, "+evalsha")
done, last, short = e2e.wait_applied(admin, prefix, want, 60)
if not done or not d.alive():
    d.dump()
    e2e.fail(f"EVALSHA granted again: not healed without a restart ({len(short)} users short)")
d.wait_log(r"event=redis_recovered", 30, since=mark)
e2e.ok(f"one error line for the refusal; EVALSHA granted again: healed without a restart, "
       f"{N_EVENTS + len(more)} events applied, each count exact")

rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"SIGTERM: exit {rc}")
d.assert_clean()
e2e.ok("SIGTERM: exit 0, no sanitizer report")
