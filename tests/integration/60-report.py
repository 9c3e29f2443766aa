#!/usr/bin/env python3
"""interestctl report against a real interestd and Redis: after a user's events went
through Kafka, `interestctl report ID -o FILE.svg` writes an SVG that parses with
xml.etree, names the user's top tier-1 interests (as ui:tiers names them), draws one
arc per weighted tier node in the long-term sunburst, and has one timeline point and
one event marker per event of the ring, whose types are the user's last events in
order. `-o FILE.html` writes an HTML page holding the SVG; an unknown user fails with a
message and writes nothing."""
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

sys.path.insert(0, os.path.join(harness.ROOT, "scripts"))
from interestd_py import container  # noqa: E402

NS = "{http://www.w3.org/2000/svg}"
FAN, FAN_EVENTS = "fan-1", 40

env = harness.start()
model, sample = e2e.test_model()
cat = container.load(model)
ring_len = e2e.ring_len(model)
tmp = env["HARNESS_TMP"]
csv_path = os.path.join(tmp, "events.csv")

# Background users, then one user whose events are mostly in one tier-1 node (A) and
# partly in another (B), so the report must name A and B.
rows = e2e.make_events(csv_path, e2e.catalog_item_ids(sample), 30, 600, seed=9)
by_t1 = {}
for i, t in enumerate(cat.itir[:, 0]):
    by_t1.setdefault(int(t), []).append(cat.item_ids[i])
a_t1, b_t1 = sorted(by_t1, key=lambda t: -len(by_t1[t]))[:2]
rng = random.Random(3)
t = rows[-1]["ts"]
fan_rows = []
for k in range(FAN_EVENTS):
    t += rng.randrange(60_000, 3_600_000)
    pool = by_t1[a_t1] if k % 3 else by_t1[b_t1]
    fan_rows.append({"user_id": FAN, "item_id": rng.choice(pool),
                     "type": rng.choice(["VIEW", "CLICK", "LIKE", "PURCHASE"]), "ts": t})
e2e.write_events(csv_path, rows + fan_rows)
want = {}
for row in rows + fan_rows:
    want[row["user_id"]] = want.get(row["user_id"], 0) + 1

conf = e2e.write_config(env, model, "d1")
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
e2e.replay_to_kafka(env, csv_path)
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
done, _got, short = e2e.wait_applied(r, prefix, want, 120)
if not done:
    d.dump()
    e2e.fail(f"{len(short)} users short, e.g. {list(short.items())[:5]}")
e2e.ok(f"{len(rows) + FAN_EVENTS} events applied")

user = e2e.read_user(r, prefix, FAN)
names = {k.decode(): v.decode() for k, v in r.hgetall(prefix + "tiers").items()}
long_w = {node: float(v.split()[1]) for node, v in user["tiers"].items()}
top1 = sorted((n for n in long_w if "/" not in n), key=lambda n: -long_w[n])
if top1[:2] != [str(a_t1), str(b_t1)]:
    e2e.fail(f"{FAN}: top tier-1 nodes {top1[:2]}, expected {[a_t1, b_t1]}: {user['tiers']}")

ctl = e2e.tool("interestctl")
svg_path = os.path.join(tmp, "fan.svg")
p = subprocess.run([ctl, "-c", conf, "report", FAN, "-o", svg_path], capture_output=True,
                   text=True, timeout=60)
if p.returncode != 0 or not os.path.exists(svg_path):
    e2e.fail(f"interestctl report: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
try:
    root = ET.parse(svg_path).getroot()
except ET.ParseError as e:
    e2e.fail(f"{svg_path} does not parse: {e}")
if root.tag != NS + "svg":
    e2e.fail(f"root element {root.tag}")
texts = ["".join(x.itertext()) for x in root.iter(NS + "text")]
for node in top1[:3]:
    if names[node] not in texts:
        e2e.fail(f"tier {node} name {names[node]!r} not in the report's texts")
if FAN not in texts[0] and not any(FAN in x for x in texts):
    e2e.fail("user id not shown")
e2e.ok(f"report parses and names the top tiers: "
       f"{', '.join(f'{n} ({names[n]})' for n in top1[:3])}")

sun = next(g for g in root.iter(NS + "g") if g.get("id") == "sunburst-long-term")
arcs = {x.get("data-node") for x in sun.iter(NS + "path")}
weighted = {n for n, w in long_w.items() if w > 0}
if arcs != weighted:
    e2e.fail(f"long-term arcs {sorted(arcs)} != weighted nodes {sorted(weighted)}")
lines = [x for x in root.iter(NS + "polyline") if x.get("class") == "tl-line"]
marks = [x for x in root.iter(NS + "g") if x.get("class") == "tl-event"]
if not lines or any(len(x.get("points").split()) != ring_len for x in lines):
    e2e.fail(f"timeline: {[len(x.get('points').split()) for x in lines]} points per line, "
             f"ring holds {ring_len}")
if lines[0].get("data-node") != str(a_t1):
    e2e.fail(f"first timeline line is {lines[0].get('data-node')}, expected {a_t1}")
types = [x.get("data-type") for x in marks]
if types != [row["type"] for row in fan_rows[-ring_len:]]:
    e2e.fail(f"event markers {types} != the user's last {ring_len} events "
             f"{[row['type'] for row in fan_rows[-ring_len:]]}")
e2e.ok(f"one arc per weighted node ({len(arcs)}); {len(lines)} timeline lines of {ring_len} "
       f"points; markers = the last {ring_len} event types in order")

html_path = os.path.join(tmp, "fan.html")
p = subprocess.run([ctl, "-c", conf, "report", FAN, "-o", html_path], capture_output=True,
                   text=True, timeout=60)
with open(html_path, encoding="utf-8") as f:
    html = f.read()
if p.returncode != 0 or not html.startswith("<!DOCTYPE html>") or "<svg " not in html:
    e2e.fail(f"HTML report: exit {p.returncode}, starts {html[:60]!r}")
missing = os.path.join(tmp, "nobody.svg")
p = subprocess.run([ctl, "-c", conf, "report", "nobody", "-o", missing], capture_output=True,
                   text=True, timeout=60)
if p.returncode != 1 or "no state" not in p.stderr or os.path.exists(missing):
    e2e.fail(f"unknown user: exit {p.returncode}, {p.stderr!r}, file {os.path.exists(missing)}")
e2e.ok("HTML report written; an unknown user fails with 'no state' and writes nothing")

d.stop()
d.assert_clean()
e2e.ok("interestd stopped cleanly")
