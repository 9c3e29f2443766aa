#!/usr/bin/env python3
"""interestd end to end: live catalog updates (schemas/items.md "Items topic").
Users with events in one theme (jazz records) and users of another (kitchen);
`scripts/catalog follow --once` embeds a brand-new jazz item with the bundled
LLM model and publishes it (creating the compacted topic; the catalog item in
the same file is skipped and counted); without a restart (same process) the
daemon adds it, and the next event of each user writes a top-N that holds the
new item for the jazz users, ranked better than for the kitchen users; an
event naming the new item is applied, not dead-lettered; an update of the
wrong dim is dead-lettered as bad_item_update:dim; /metrics counts it all;
after a restart the live item is read back before the first event and still
known (the bad update is dead-lettered again, same source offset); a
tombstone withdraws it."""
import csv
import json
import os
import re
import subprocess
import sys
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

sys.path.insert(0, os.path.join(harness.ROOT, "scripts"))
from interestd_py import catalog_follow  # noqa: E402

N_PER_THEME, EVENTS_PER_USER = 12, 12
NEW_ID = "live-jazz-1"
NEW_ROW = [NEW_ID, "Carla Nyman Quartet: Blue Midnight Sessions",
           "Remastered jazz LP on 180-gram vinyl: saxophone solos and cool jazz trumpet. "
           "Side B brings a hard-swinging rhythm section.", "Jazz Records|Bebop"]

env = harness.start()
model, sample = e2e.test_model()
catalog = os.path.join(sample, "catalog.icat")
tmp = env["HARNESS_TMP"]
prefix = env["REDIS_KEY_PREFIX"]
items_topic = env["HARNESS_PREFIX"] + "interest-items"
r = e2e.redis_client(env)

with open(os.path.join(sample, "items.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
theme = {"jazz": [x["item_id"] for x in rows if x["categories"].startswith("Jazz Records")],
         "kitchen": [x["item_id"] for x in rows if x["categories"].startswith("Kitchen")]}
users = {t: [f"{t}{i}" for i in range(N_PER_THEME)] for t in theme}
events, ts = [], 1_700_000_000_000
for k in range(EVENTS_PER_USER):
    for t in theme:
        for i, u in enumerate(users[t]):
            ts += 1000
            events.append({"user_id": u, "item_id": theme[t][(i * 5 + k) % len(theme[t])],
                           "type": "VIEW" if k % 3 else "CLICK", "ts": ts})
csv_path = os.path.join(tmp, "events.csv")
e2e.write_events(csv_path, events)
want = {}
for ev in events:
    want[ev["user_id"]] = want.get(ev["user_id"], 0) + 1

conf = e2e.write_config(env, model, "d1", topic__items=items_topic,
                        items__apply_interval_ms=200, metrics__listen="127.0.0.1:0")
d = e2e.Daemon(env, conf, "d1").start()
maddr = d.wait_log(r"event=metrics_listening addr=(\S+)", 30).group(1)
d.wait_log(r"event=items_catch_up .*partitions=0", 30)
d.wait_log(r"event=assigned .*owned=4", 60)
pid = d.proc.pid
e2e.replay_to_kafka(env, csv_path)
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"{len(short)} users short: {list(short.items())[:5]}")
e2e.ok(f"{len(events)} events of {2 * N_PER_THEME} users applied (jazz and kitchen themes)")
for u in users["jazz"] + users["kitchen"]:
    if NEW_ID in [t[0] for t in e2e.read_user(r, prefix, u)["top"]]:
        e2e.fail(f"{u}: {NEW_ID} in a top-N before it was published")


def metrics():
    with urllib.request.urlopen(f"http://{maddr}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def follow(*args):
    p = subprocess.run([os.path.join(harness.ROOT, "scripts", "catalog"), "follow",
                        "--catalog", catalog, "--bootstrap", env["KAFKA_BOOTSTRAP"],
                        "--topic", items_topic, "--once"] + list(args),
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        e2e.fail(f"catalog follow {args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


# 1. Publish a new jazz item (and a catalog item, skipped) with scripts/catalog follow.
new_items = os.path.join(tmp, "new-items.csv")
with open(new_items, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["item_id", "title", "text", "categories"])
    w.writerow([theme["jazz"][0], "already there", "", "Jazz Records"])
    w.writerow(NEW_ROW)
mark = d.mark()
out = follow("--items", new_items)
if not re.search(r"batch 1: 2 rows, 1 published, 1 already in the catalog", out):
    e2e.fail(f"catalog follow summary: {out}")
if "created topic" not in out:
    e2e.fail(f"catalog follow did not create the topic: {out}")
e2e.ok("catalog follow --once: " + [x for x in out.splitlines() if "batch 1" in x][0])
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402
admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP"]})
res = ConfigResource(ConfigResource.Type.TOPIC, items_topic)
cfgs = list(admin.describe_configs([res]).values())[0].result(30)
if cfgs["cleanup.policy"].value != "compact":
    e2e.fail(f"items topic cleanup.policy {cfgs['cleanup.policy'].value}")
e2e.ok("items topic created with cleanup.policy=compact")

d.wait_log(r"event=live_items_applied live_items=1 items=301 before=300", 60, since=mark)
if d.proc.pid != pid or not d.alive() or d.log_text().count("event=started") != 1:
    e2e.fail("the daemon restarted")
e2e.ok(f"daemon (pid {pid}, not restarted) swapped in the model with the live item")

# 2. The next event of every user: the new item in the jazz users' top-N.
more_path = os.path.join(tmp, "more.csv")


def next_view(who, step, offset, what):
    """One more VIEW for each (theme, i, user) of who, of its theme's item i * step + offset;
    waits until applied."""
    global ts
    more = []
    for t, i, u in who:
        ts += 1000
        more.append({"user_id": u, "item_id": theme[t][(i * step + offset) % len(theme[t])],
                     "type": "VIEW", "ts": ts})
        want[u] += 1
    e2e.write_events(more_path, more)
    e2e.replay_to_kafka(env, more_path)
    done, _got, short = e2e.wait_applied(r, prefix, want, 60)
    if not done:
        d.dump()
        e2e.fail(f"{what}: events not applied: {list(short.items())[:5]}")


ts += 60_000
next_view([(t, i, u) for t in theme for i, u in enumerate(users[t])], 7, 3, "next events")


def rank(u):
    top = [t[0] for t in e2e.read_user(r, prefix, u)["top"]]
    return (top.index(NEW_ID) + 1 if NEW_ID in top else None), len(top)


ranks = {t: [rank(u) for u in users[t]] for t in theme}
jazz_in = [k for k, _n in ranks["jazz"] if k is not None]
kitchen_in = [k for k, _n in ranks["kitchen"] if k is not None]
top_n = ranks["jazz"][0][1]
if len(jazz_in) < N_PER_THEME * 3 // 4:
    d.dump()
    e2e.fail(f"{NEW_ID} in the top-{top_n} of only {len(jazz_in)}/{N_PER_THEME} jazz users: "
             f"{ranks['jazz']}")


def mean_rank(rs):
    return sum(k if k is not None else n + 1 for k, n in rs) / len(rs)


mj, mk = mean_rank(ranks["jazz"]), mean_rank(ranks["kitchen"])
if not mj < mk or any(k == 1 for k in kitchen_in):
    e2e.fail(f"{NEW_ID}: mean rank jazz {mj:.1f}, kitchen {mk:.1f} ({ranks['kitchen']})")
e2e.ok(f"{NEW_ID} in the top-{top_n} of {len(jazz_in)}/{N_PER_THEME} jazz users "
       f"(mean rank {mj:.1f}), {len(kitchen_in)}/{N_PER_THEME} kitchen users "
       f"(mean rank {mk:.1f}, never first)")

# The new item's score against a catalog item of the same tier-2 node (same tier terms):
# s_new - s_j = u.(e_new - e_j) + ib_new - ib_j, with e_new = LLM embedding + mean R of
# the node's items and ib_new their mean bias (schemas/items.md "Items topic").
rec = catalog_follow.Encoder().decode(e2e.consume_all(env, items_topic, 1, 30)[0].value())
mf = catalog_follow.container.load(model)
R, ib = mf.weights["R"].reshape(mf.n_items, mf.dim), mf.weights["ib"]
nodes = [(int(a), int(b)) for a, b in mf.itir]
same = [i for i, n in enumerate(nodes) if n == (rec["tier1"], rec["tier2"])]
if not same:
    same = [i for i, n in enumerate(nodes) if n[0] == rec["tier1"]]
e_new = np.frombuffer(rec["embedding"], dtype="<f4") + R[same].mean(axis=0)
ib_new = float(ib[same].mean())
index = {x: i for i, x in enumerate(mf.item_ids)}
checked, worst = 0, 0.0
for u in users["jazz"]:
    got = e2e.read_user(r, prefix, u)
    score = dict((t[0], t[1]) for t in got["top"])
    vec = np.array(got["vec"], dtype=np.float64)
    if NEW_ID not in score:
        continue
    for j, sj in score.items():
        k = index.get(j)
        if k is None or nodes[k] != (rec["tier1"], rec["tier2"]):
            continue
        e_j = mf.emb[k].astype(np.float64) + R[k]
        want_diff = float(vec @ (e_new - e_j)) + ib_new - float(ib[k])
        worst = max(worst, abs((score[NEW_ID] - sj) - want_diff))
        checked += 1
if checked == 0 or worst > 2e-3:
    e2e.fail(f"new item's score vs its tier-2 neighbours: {checked} pairs, worst error {worst}")
e2e.ok(f"{NEW_ID}'s score matches the model (LLM + mean residual and bias of its tier-2 "
       f"node): {checked} pairs with catalog items of the node, worst error {worst:.2g}")

# 3. An event naming the new item is applied, and the item leaves that user's top-N.
u0 = users["jazz"][0]
ts += 1000
e2e.write_events(more_path, [{"user_id": u0, "item_id": NEW_ID, "type": "PURCHASE", "ts": ts}])
e2e.replay_to_kafka(env, more_path)
want[u0] += 1
done, _got, short = e2e.wait_applied(r, prefix, want, 60)
if not done:
    d.dump()
    e2e.fail(f"the event naming {NEW_ID} was not applied: {short}")
if rank(u0)[0] is not None:
    e2e.fail(f"{u0} purchased {NEW_ID} but it is still in the top-N")
e2e.ok(f"event naming {NEW_ID} applied ({u0}: events_applied {want[u0]}, item left its top-N)")

# 4. A bad update (wrong dim) is dead-lettered with its reason.
enc = catalog_follow.Encoder()
cat_ct = catalog_follow.container.read_container(catalog)
bad = enc.encode({"item_id": "bad-dim", "title": "x",
                  "embedder": catalog_follow.container.load(catalog).embedder,
                  "dim": 8, "embedding": b"\0" * 32, "tier1": 0, "tier2": 20,
                  "tree": catalog_follow.tree_fingerprint(cat_ct), "ts": 0})
e2e.produce_raw(env, [(b"bad-dim", bad)], topic=items_topic)
letters = e2e.consume_all(env, env["DLQ_TOPIC"], 1, 30)
if len(letters) != 1:
    e2e.fail(f"{len(letters)} dead letters, want 1 (the bad item update)")
h = {k: v.decode() for k, v in (letters[0].headers() or [])}
if h.get("interestd.reason") != "bad_item_update:dim" or h.get("interestd.topic") != items_topic \
        or letters[0].key() != b"bad-dim" or letters[0].value() != bad:
    e2e.fail(f"dead letter headers {h}, key {letters[0].key()}")
e2e.ok(f"wrong dim dead-lettered: reason {h['interestd.reason']}, detail "
       f"'{h.get('interestd.detail')}'")
mx = harness.wait_for(lambda: (lambda m: m if m.get(
    'interestd_live_items_refused_total{reason="dim"}') == 1 else None)(metrics()), 30, 0.3)
if mx is None:
    e2e.fail(f"/metrics: {json.dumps({k: v for k, v in metrics().items() if 'item' in k})}")
for k, v in (("interestd_live_items_added_total", 1), ("interestd_live_items", 1),
             ("interestd_model_items", 301), ("interestd_live_items_withdrawn_total", 0)):
    if mx.get(k) != v:
        e2e.fail(f"/metrics {k} = {mx.get(k)}, want {v}")
if any("unknown_item" in k and v for k, v in mx.items()):
    e2e.fail("an event was dead-lettered as unknown_item")
e2e.ok("/metrics: live_items_added_total 1, live_items 1, refused{reason=\"dim\"} 1, "
       "model_items 301")

# 5. Restart, now with the tiered top-N search on the smallest budget: the live item is
# read back before the first event and placed in the search's cells.
if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
d.conf = e2e.write_config(env, model, "d1", topic__items=items_topic,
                          items__apply_interval_ms=200, metrics__listen="127.0.0.1:0",
                          topn__search="tiered", topn__probe_items=16)
d.start()
d.wait_log(r"event=started .*topn_search=tiered", 60)
d.wait_log(r"event=items_caught_up .*live_items=1", 60)
d.wait_log(r"event=live_items_applied live_items=1 items=301", 30)
d.wait_log(r"event=assigned .*owned=4", 60)
next_view([("jazz", i, u) for i, u in enumerate(users["jazz"][1:])], 11, 5, "tiered")
tiered_in = [k for k, _n in (rank(u) for u in users["jazz"][1:]) if k is not None]
if len(tiered_in) < (N_PER_THEME - 1) * 3 // 4:
    d.dump()
    e2e.fail(f"tiered search: {NEW_ID} in the top-N of only {len(tiered_in)}/"
             f"{N_PER_THEME - 1} jazz users")
e2e.ok(f"tiered search (topn.probe_items 16): {NEW_ID} in the top-N of {len(tiered_in)}/"
       f"{N_PER_THEME - 1} jazz users after the restart")
u1 = users["kitchen"][0]
ts += 1000
e2e.write_events(more_path, [{"user_id": u1, "item_id": NEW_ID, "type": "VIEW", "ts": ts}])
e2e.replay_to_kafka(env, more_path)
want[u1] += 1
done, _got, short = e2e.wait_applied(r, prefix, want, 60)
if not done:
    d.dump()
    e2e.fail(f"after the restart, the event naming {NEW_ID} was not applied: {short}")
if d.current_log().count("event=items_caught_up") != 1:
    e2e.fail("items not caught up once at start")
e2e.ok(f"after a restart {NEW_ID} is still known: {u1}'s event naming it applied")

# 6. A tombstone withdraws it: events naming it are unknown items again.
empty = os.path.join(tmp, "empty.csv")
with open(empty, "w") as f:
    f.write("item_id,title\n")
mark = d.mark()
out = follow("--items", empty, "--withdraw", NEW_ID)
if "withdrew 1 items" not in out:
    e2e.fail(f"catalog follow --withdraw: {out}")
d.wait_log(r"event=live_items_applied live_items=0 items=300", 60, since=mark)
ts += 1000
e2e.write_events(more_path, [{"user_id": u1, "item_id": NEW_ID, "type": "VIEW", "ts": ts}])
e2e.replay_to_kafka(env, more_path)
# Each start reads the whole compacted topic: the bad update is dead-lettered again
# (same source offset), then the unknown item.
letters = e2e.consume_all(env, env["DLQ_TOPIC"], 3, 30)
hs = [{k: v.decode() for k, v in (m.headers() or [])} for m in letters]
reasons = sorted(h.get("interestd.reason") for h in hs)
src = {(h["interestd.topic"], h["interestd.offset"]) for h in hs
       if h.get("interestd.reason") == "bad_item_update:dim"}
if reasons != ["bad_item_update:dim", "bad_item_update:dim", "unknown_item"] or len(src) != 1:
    e2e.fail(f"after the restart and the tombstone, dead letters {reasons} from {src}")
e2e.ok(f"tombstone withdrew {NEW_ID}: an event naming it is dead-lettered as unknown_item")

if d.stop() != 0:
    e2e.fail("exit status after SIGTERM")
d.assert_clean()
harness.stop()
print("PASS")
