#!/usr/bin/env python3
"""interestd's online metrics (README "Online metrics") equal an offline replay's. Events
come in rounds: in each round one event for each of N_USERS users, and the next round
starts once every event of it is applied and written to Redis, so the list each event is
measured against is the top-N after its user's previous event, which
`interestctl replay --online` computes. Half the events pick an item from the user's
current top-N in Redis (at a rank up to 20, so hits land inside and outside the first
10), some repeat an item the user consumed before, the rest are random; four event types.
The counters on /metrics (events, repeats, hits k=10 and k=n, unmeasured) equal the
replay's exactly, the reciprocal-rank and NDCG@10 sums to 1e-9 relative. Then a SIGHUP
to a second model: the first round after it is still measured against the lists the
first model wrote (counted under its model_version, again equal to the replay), and
the later rounds are counted under the new model_version."""
import json
import os
import random
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, ROUNDS, ROUNDS_AFTER = 50, 10, 3
TYPES = ["VIEW", "CLICK", "PURCHASE", "LIKE"]

env = harness.start()
model_a, model_b, va, vb, sample = e2e.two_test_models()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
d, live, _conf = e2e.online_daemon(env, model_a)
addr = d.start_serving()

rng = random.Random(63)
users = [f"u{i}" for i in range(N_USERS)]
history = {u: [] for u in users}
rows = []
ts = 1_700_000_000_000
kinds = {"from_top": 0, "repeat": 0, "random": 0}


def current_top(u):
    raw = r.get(f"{prefix}{{{u}}}:top")
    return [x[0] for x in json.loads(raw)] if raw else []


def play_round(k):
    """One event per user, produced; waits until all are applied and written."""
    global ts
    msgs = []
    for u in users:
        top, roll = current_top(u), rng.random()
        if top and roll < 0.5:
            item, kind = top[min(len(top), rng.randint(1, 20)) - 1], "from_top"
        elif history[u] and roll < 0.7:
            item, kind = rng.choice(history[u]), "repeat"
        else:
            item, kind = rng.choice(items), "random"
        kinds[kind] += 1
        ts += rng.randrange(1000, 60_000)
        row = {"user_id": u, "item_id": item, "type": rng.choice(TYPES), "ts": ts}
        rows.append(row)
        history[u].append(item)
        msgs.append((u.encode(), e2e.single_object(u, item, ts, f"e{len(rows)}", row["type"])))
    e2e.produce_raw(env, msgs)

    def applied():
        if not d.alive():
            e2e.fail(f"daemon died in round {k}")
        got = e2e.events_applied(r, prefix, users)
        return all(got.get(u) == k for u in users)
    if harness.wait_for(applied, 60, 0.1) is None:
        d.dump()
        e2e.fail(f"round {k}: not every event applied and written within 60 s")


def replay(model, n_rows, name):
    """interestctl replay --online over the first n_rows events, in online_counters' shape."""
    csv_path = os.path.join(tmp, f"{name}.csv")
    e2e.write_events(csv_path, rows[:n_rows])
    out = os.path.join(tmp, f"{name}.json")
    e2e.offline_replay(model, csv_path, os.path.join(tmp, f"{name}.jsonl"),
                       extra=["--online", out])
    with open(out) as f:
        doc = json.load(f)
    cells = {(c["model_version"], c["type"]): {k: float(c[k]) for k in
                                                ("events", "repeats", "hits_10", "hits_n",
                                                 "reciprocal_rank_sum", "ndcg10_sum")}
             for c in doc["counters"]}
    return cells, float(doc["unmeasured"])


def compare(got, want, what):
    if set(got) != set(want):
        e2e.fail(f"{what}: cells {sorted(got)} vs replay {sorted(want)}")
    for key, w in want.items():
        g = got[key]
        for f, wv in w.items():
            gv = g.get(f)
            exact = not f.endswith("_sum")
            if gv is None or (gv != wv if exact else abs(gv - wv) > 1e-9 * max(1.0, abs(wv))):
                e2e.fail(f"{what}: {key} {f}: daemon {gv}, replay {wv}")


for k in range(1, ROUNDS + 1):
    play_round(k)
got, unmeasured = e2e.online_counters(addr)
want, want_unmeasured = replay(model_a, len(rows), "part1")
compare(got, want, f"{ROUNDS} rounds")
if unmeasured != want_unmeasured or unmeasured != N_USERS:
    e2e.fail(f"unmeasured: daemon {unmeasured}, replay {want_unmeasured}, want {N_USERS}")
tot = {f: sum(c[f] for c in want.values()) for f in ("events", "repeats", "hits_10", "hits_n")}
if len({t for _, t in want}) < 2 or tot["repeats"] == 0 or tot["hits_10"] == 0 or \
        tot["hits_n"] <= tot["hits_10"] or tot["events"] <= tot["hits_n"]:
    e2e.fail(f"the rounds do not exercise every case: {tot}, types {sorted(want)}")
e2e.ok(f"{len(rows)} events in {ROUNDS} rounds ({kinds}): daemon == replay in "
       f"{len(want)} (version, type) cells; totals {tot}, first events unmeasured {N_USERS}")

# A second model: the first round after the SIGHUP is measured against model A's lists.
e2e.install(model_b, live)
d.send(signal.SIGHUP)
d.wait_log(rf"event=model_reloaded .*old_version={va} version={vb}", 30)
n_before = len(rows)
for k in range(ROUNDS + 1, ROUNDS + 1 + ROUNDS_AFTER):
    play_round(k)
got, unmeasured = e2e.online_counters(addr)
want, _ = replay(model_a, n_before + N_USERS, "part2")
compare({key: c for key, c in got.items() if key[0] == va}, want,
        "model A after the swap")
after = [c for key, c in got.items() if key[0] == vb]
n_b = sum(c["events"] + c["repeats"] for c in after)
if n_b != N_USERS * (ROUNDS_AFTER - 1) or unmeasured != N_USERS or \
        any(not c["hits_10"] <= c["hits_n"] <= c["events"] for c in after):
    e2e.fail(f"model B: {n_b} events counted, want {N_USERS * (ROUNDS_AFTER - 1)}; "
             f"unmeasured {unmeasured}; cells {after}")
e2e.ok(f"after SIGHUP {va} -> {vb}: the first round counted under {va} (== replay), the "
       f"next {ROUNDS_AFTER - 1} rounds ({n_b} events) under {vb}")
if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
d.assert_clean()
harness.stop()
print("PASS")
