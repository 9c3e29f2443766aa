#!/usr/bin/env python3
"""interestd's online metrics (README "Online metrics") where a user's kept top-N goes
away. Events come in rounds, one per user, the next round once every event is applied and
written, and after each step /metrics must hold the exact counts: events graded
(interestd_online_events_total + interestd_online_repeats_total, per model_version) and
interestd_online_unmeasured_total. A user's first event is unmeasured and its next one
graded; then each path below makes the next event unmeasured, and the one after it graded
again:
  1. an erasure (`interestctl erase --wait`): only the erased user's; and events not
     applied (kept out by the erasure, a dead letter, a duplicate) count nowhere;
  2. a refused write (stale: the user's marker in Redis bumped past ours, as another
     owner's newer write leaves it): the event is still graded against the old list, its
     write refused and the user dropped from the cache; its next event loads it from Redis;
  3. a SIGHUP to a model whose catalog does not start with the old one's items (model B
     with two item ids traded): every list forgotten, logged once;
  4. eviction (cache.max_users = 1000 and 1,000 new users): which users go is not fixed, so
     after one more event for everyone the unmeasured ones must be exactly those loaded
     from Redis (interestd_users_loaded_total), at least as many as were evicted;
  5. a restart: the new process has no list.
(A swap to the same catalog keeps the lists: 63-online-metrics.py.)"""
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS = 8
FILLERS = 1000  # new users past cache.max_users = 1000, its minimum

env = harness.start()
model_a, model_b, va, vb, sample = e2e.two_test_models()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
model_c = os.path.join(tmp, "reordered.imdl")  # model B's weights, items 0 and 1 traded
e2e.model_items_swapped(model_b, model_c)
d, live, conf = e2e.online_daemon(env, model_a, cache__max_users=1000)
rng = random.Random(64)
users = [f"u{i}" for i in range(N_USERS)]
applied = {}  # user -> events_applied Redis must show
n_events = 0
last_eid = {}  # user -> id of its last event produced
want = {"unmeasured": 0, "graded": {}}  # the counters /metrics must show
addr = None


def start():
    global addr
    addr = d.start_serving()
    want["unmeasured"], want["graded"] = 0, {}


def event(u, item=None, ts=None, eid=None):
    """A message of one event of u: a random catalog item at the wall clock (so after any
    erasure) under a new event id, unless given."""
    global n_events
    n_events += 1
    ts = int(time.time() * 1000) if ts is None else ts
    last_eid[u] = eid or f"e{n_events}"
    return (u.encode(), e2e.single_object(u, item or rng.choice(items), ts, last_eid[u],
                                          rng.choice(e2e.TYPES)))


def produce(who):
    """One event for each user of who."""
    e2e.produce_raw(env, [event(u) for u in who])


def play(who, what, n_unmeasured=None, check=True):
    """One event per user of who, waited for in Redis; then, with check, /metrics must show
    n_unmeasured of them (default: all) unmeasured more, the others graded under the model
    serving."""
    produce(who)
    for u in who:
        applied[u] = applied.get(u, 0) + 1
    done, _got, short = e2e.wait_applied(r, prefix, {u: applied[u] for u in who}, 60,
                                         daemon=d, interval_s=0.1)
    if not done:
        d.dump()
        e2e.fail(f"{what}: not written within 60 s: {short}")
    if check:
        expect(len(who), len(who) if n_unmeasured is None else n_unmeasured, what)


def expect(n, n_unmeasured, what):
    """Adds n events, n_unmeasured of them unmeasured and the others graded under the model
    serving, to the expected counters and checks /metrics against them."""
    want["unmeasured"] += n_unmeasured
    if n > n_unmeasured:
        want["graded"][serving] = want["graded"].get(serving, 0) + n - n_unmeasured
    cells, unmeasured = e2e.online_counters(addr)
    graded = {}
    for (v, _type), c in cells.items():
        graded[v] = graded.get(v, 0) + int(c["events"] + c["repeats"])
    if unmeasured != want["unmeasured"] or graded != want["graded"]:
        d.dump()
        e2e.fail(f"{what}: unmeasured {unmeasured}, graded {graded}; want "
                 f"{want['unmeasured']}, {want['graded']}")
    e2e.ok(f"{what}: unmeasured {int(unmeasured)}, graded by model_version {graded}")


def metric(sample):
    """The value of one sample on /metrics, named with its labels as rendered."""
    m = re.search(rf"^{re.escape(sample)} (\d+)$", e2e.metrics_text(addr), re.M)
    if not m:
        e2e.fail(f"/metrics: no {sample}")
    return int(m.group(1))


def wait_metrics(values, timeout_s=30):
    """Waits until every sample named in values has its value on /metrics."""
    def reached():
        if not d.alive():
            d.dump()
            e2e.fail("the daemon exited")
        return all(metric(k) == v for k, v in values.items())
    if harness.wait_for(reached, timeout_s, 0.1) is None:
        d.dump()
        e2e.fail(f"/metrics: {[(k, metric(k)) for k in values]}, not {values} within "
                 f"{timeout_s} s")


serving = va
start()
play(users, "first events")
play(users, "second events", 0)

# 1. Erasure: the erased user's list is gone with its state.
erased = users[0]
p = subprocess.run([e2e.tool("interestctl"), "-c", conf, "erase", erased, "--wait"],
                   capture_output=True, text=True, timeout=90)
if p.returncode != 0 or "erased:" not in p.stdout:
    d.dump()
    e2e.fail(f"interestctl erase {erased}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
d.wait_log(rf"event=user_erased user={erased} .*result=erased", 30)
applied[erased] = 0  # starts afresh
play(users, f"after erasing {erased}: only it unmeasured", 1)
play(users, "the round after", 0)

# Events not applied count nowhere: one of the erased user from before the erasure (kept
# out), one of an unknown item (a dead letter), one under an event id taken (a duplicate).
skipped = {'interestd_events_erased_skipped_total': 1,
           'interestd_dead_letters_total{reason="unknown_item"}': 1,
           'interestd_events_duplicate_total{reason="event_id"}': 1}
e2e.produce_raw(env, [event(erased, ts=1_700_000_000_000), event(users[2], item="no-such-item"),
                      event(users[3], eid=last_eid[users[3]])])
wait_metrics(skipped)
expect(0, 0, "an event kept out by the erasure, a dead letter, a duplicate: not counted")
play(users, "the round after", 0)

# 2. A refused write: stale, the user's marker in Redis past ours (another owner wrote it).
stale = users[1]
meta = f"{prefix}{{{stale}}}:meta"
offset = r.hget(meta, "offset")
r.hset(meta, "offset", 1 << 50)
mark = d.mark()
produce([stale])
d.wait_log(r"event=flush_refused stale=1 fenced=0 erased=0", 30, since=mark)
r.hset(meta, "offset", offset)
expect(1, 0, f"{stale}'s event whose write was refused (stale): graded")
play([stale], f"{stale} after the refused write (reloaded)")
play([stale], f"{stale}, the event after", 0)

# 3. A model swap to a catalog that no longer starts with the old one's items.
e2e.install(model_c, live)
mark = d.mark()
d.send(signal.SIGHUP)
d.wait_log(rf"event=model_reloaded .*old_version={va} version={vb}", 30, since=mark)
d.wait_log(r"event=online_lists_forgotten reason=catalog_changed", 10, since=mark)
serving = vb
play(users, "after the swap to a reordered catalog")
play(users, "the round after", 0)
n_forgotten = len(re.findall(r"event=online_lists_forgotten", d.current_log()))
if n_forgotten != 1:
    e2e.fail(f"event=online_lists_forgotten logged {n_forgotten} times, want 1 (the swap)")

# 4. Eviction: FILLERS new users push users out of the cache (cache.max_users = 1000,
# dropped down to 900 in rounds: which users go is not fixed). Then one event for every
# user: each whose state is read back from Redis (all the evicted ones, and any evicted
# meanwhile) is unmeasured, every other one graded.
fillers = [f"f{i}" for i in range(FILLERS)]
mark = d.mark()
play(fillers, f"{FILLERS} new users")
d.wait_log(r"event=cache_evicted users=\d+", 30, since=mark)
evicted = sum(int(n) for n in re.findall(r"event=cache_evicted users=(\d+)",
                                          d.current_log()[mark:]))
everyone = users + fillers
loaded = metric("interestd_users_loaded_total")
play(everyone, "everyone once more", check=False)
loaded = metric("interestd_users_loaded_total") - loaded
if loaded < evicted:
    e2e.fail(f"{loaded} users loaded from Redis, fewer than the {evicted} evicted")
expect(len(everyone), loaded, f"every user once more, {loaded} of them loaded from "
       f"Redis ({evicted} evicted before): those unmeasured")

# 5. A restart: a new process keeps no list.
if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
start()
play(users, "after a restart")
play(users, "the round after", 0)
if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
d.assert_clean()
harness.stop()
print("PASS")
