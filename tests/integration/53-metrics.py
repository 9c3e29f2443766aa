#!/usr/bin/env python3
"""interestd's Prometheus endpoint, scraped and parsed strictly (every sample line is
`name{labels} value`, every family has HELP and TYPE before its samples, no series
twice, histogram buckets cumulative with `+Inf` == `_count`). On a private stack:
N good events, two kinds of bad ones (unknown_fingerprint, unknown_item): consumed,
applied and dead letters by reason equal what was sent. A second instance in a fresh
group re-reads the same offsets: every event is counted as a duplicate, none applied.
With Redis frozen (SIGSTOP) and events of new users arriving, the owned partitions
are paused and their lag is > 0; after Redis is back, every partition's lag returns
to 0. The batch, Redis flush and commit histograms have counted, a SIGHUP reload
reports its load time, and the README's metrics table names every family served. When
a second instance joins, the partitions given up leave the first one's lag and
committed-offset series."""
import os
import re
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 60, 600
N_UNKNOWN_FP, N_UNKNOWN_ITEM = 3, 2
N_OUTAGE_USERS, N_OUTAGE_EVENTS = 40, 200
PARTITIONS = 4

h = harness.Harness(private=True)
env = h.start()
freeze, thaw = e2e.redis_freezer(h, env)
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]

# ---- the exposition format, strictly ------------------------------------------------
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE_RX = re.compile(rf"^({NAME})(\{{(?:{LABEL})(?:,{LABEL})*\}})? (\S+)$")
FLOAT_RX = re.compile(r"^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]Inf|NaN)$")


def parse(text):
    """Checks the text; returns {family: {"type", "samples": {(name, labels): value}}}."""
    fams, help_seen, series = {}, set(), set()
    if not text.endswith("\n"):
        e2e.fail("exposition text does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            if name in help_seen:
                e2e.fail(f"line {n}: second HELP for {name}")
            help_seen.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram"):
                e2e.fail(f"line {n}: bad TYPE line {line!r}")
            if parts[2] in fams:
                e2e.fail(f"line {n}: second TYPE for {parts[2]}")
            if parts[2] not in help_seen:
                e2e.fail(f"line {n}: TYPE of {parts[2]} without a HELP before it")
            fams[parts[2]] = {"type": parts[3], "samples": {}}
            continue
        if line.startswith("#") or not line:
            e2e.fail(f"line {n}: unexpected line {line!r}")
        m = SAMPLE_RX.match(line)
        if not m or not FLOAT_RX.match(m.group(3)):
            e2e.fail(f"line {n}: not `name{{labels}} value`: {line!r}")
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        fam = name
        if name not in fams:
            for suffix in ("_bucket", "_sum", "_count"):
                base = name[: -len(suffix)]
                if name.endswith(suffix) and fams.get(base, {}).get("type") == "histogram":
                    fam = base
        if fam not in fams:
            e2e.fail(f"line {n}: sample of {name} before its TYPE line")
        if (name, labels) in series:
            e2e.fail(f"line {n}: series {name}{labels} twice")
        series.add((name, labels))
        fams[fam]["samples"][(name, labels)] = value
    for fam, d in fams.items():
        if d["type"] == "histogram":
            check_histogram(fam, d["samples"])
    return fams


def labels_of(labels):
    return dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))


def check_histogram(fam, samples):
    """Per label set: buckets ascending in le, counts never decrease, +Inf == _count."""
    groups = {}
    for (name, labels), v in samples.items():
        lab = labels_of(labels)
        le = lab.pop("le", None)
        key = tuple(sorted(lab.items()))
        g = groups.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            if le is None:
                e2e.fail(f"{fam}: bucket without le")
            g["buckets"].append((float(le), v))
        elif name == fam + "_sum":
            g["sum"] = v
        elif name == fam + "_count":
            g["count"] = v
    for key, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != float("inf") or g["count"] is None or g["sum"] is None:
            e2e.fail(f"{fam}{dict(key)}: needs buckets ending in +Inf, _sum and _count")
        if [x for x, _ in b] != sorted(x for x, _ in b) or len({x for x, _ in b}) != len(b):
            e2e.fail(f"{fam}{dict(key)}: le values not strictly ascending")
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            e2e.fail(f"{fam}{dict(key)}: bucket counts decrease: {b}")
        if b[-1][1] != g["count"]:
            e2e.fail(f"{fam}{dict(key)}: +Inf bucket {b[-1][1]} != _count {g['count']}")


def scrape(d):
    addr = d.wait_log(r"event=metrics_listening addr=(\S+)", 10).group(1)
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        ctype = resp.headers.get("Content-Type", "")
        text = resp.read().decode()
    if not ctype.startswith("text/plain; version=0.0.4"):
        e2e.fail(f"Content-Type {ctype!r}")
    return parse(text)


def value(fams, name, **labels):
    """The sample name{labels} (labels exactly), or None."""
    for fam in fams.values():
        for (n, lab), v in fam["samples"].items():
            if n == name and labels_of(lab) == {k: str(x) for k, x in labels.items()}:
                return v
    return None


def series(fams, name):
    """{labels dict as a sorted tuple: value} of every sample called name."""
    return {tuple(sorted(labels_of(lab).items())): v
            for fam in fams.values() for (n, lab), v in fam["samples"].items() if n == name}


def lags(fams):
    return {dict(k)["partition"]: v for k, v in series(fams, "interestd_consumer_lag").items()}


# ---- the events ----------------------------------------------------------------------
csv_path = os.path.join(tmp, "events.csv")
rows = e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=53)
want = {}
for row in rows:
    want[row["user_id"]] = want.get(row["user_id"], 0) + 1
T0 = rows[-1]["ts"]
bad = [(f"bad-{i}".encode(), b"\xc3\x01" + bytes(8) + b"\x02\x04xx") for i in range(N_UNKNOWN_FP)]
bad += [(f"bad-item-{i}".encode(), e2e.single_object(f"bad-item-{i}", f"no-such-item-{i}", T0, f"bi{i}"))
        for i in range(N_UNKNOWN_ITEM)]
N_SENT = N_EVENTS + len(bad)

# metrics.online on: the README table check below sees its families too.
conf = e2e.write_config(env, model, "d1", redis__timeout_ms=500, metrics__listen="127.0.0.1:0",
                        metrics__online="true")
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
e2e.replay_to_kafka(env, csv_path)
e2e.produce_raw(env, bad)
done, _, short = e2e.wait_applied(r, prefix, want, 90)
if not done:
    d.dump()
    e2e.fail(f"events_applied short for {len(short)} users")


def counted(fams):
    return (value(fams, "interestd_events_consumed_total"),
            value(fams, "interestd_dead_letters_total", reason="unknown_fingerprint"),
            value(fams, "interestd_dead_letters_total", reason="unknown_item"))


if harness.wait_for(lambda: counted(scrape(d)) == (N_SENT, N_UNKNOWN_FP, N_UNKNOWN_ITEM), 30) is None:
    d.dump()
    e2e.fail(f"consumed / dead letters: {counted(scrape(d))}, want "
             f"{(N_SENT, N_UNKNOWN_FP, N_UNKNOWN_ITEM)}")
m = scrape(d)
got = {"applied": value(m, "interestd_events_applied_total"),
       "duplicates": value(m, "interestd_events_duplicate_total", reason="marker"),
       "duplicates_event_id": value(m, "interestd_events_duplicate_total", reason="event_id"),
       "dlq_other": sum(v for k, v in series(m, "interestd_dead_letters_total").items()
                        if dict(k)["reason"] not in ("unknown_fingerprint", "unknown_item"))}
if got != {"applied": N_EVENTS, "duplicates": 0, "duplicates_event_id": 0, "dlq_other": 0}:
    e2e.fail(f"after {N_EVENTS} good + {len(bad)} bad events: {got}")
e2e.ok(f"consumed {N_SENT}, applied {N_EVENTS}, duplicates 0, dead letters "
       f"unknown_fingerprint {N_UNKNOWN_FP} + unknown_item {N_UNKNOWN_ITEM}, no other reason; "
       f"{len(m)} families, all with HELP/TYPE")


def committed_sum(fams):
    return sum(series(fams, "interestd_consumer_committed_offset").values())


# Periodic commits are asynchronous: the last one's result reaches the gauge a loop
# turn after the flush.
if harness.wait_for(lambda: committed_sum(scrape(d)) == N_SENT, 30) is None:
    e2e.fail(f"committed offsets never added up to the {N_SENT} messages: "
             f"{committed_sum(scrape(d))}")
m = scrape(d)
for name, labels in (("interestd_batch_seconds_count", {}),
                     ("interestd_redis_pipeline_seconds_count", {"op": "flush"}),
                     ("interestd_redis_pipeline_seconds_count", {"op": "mark_flushed"}),
                     ("interestd_commit_seconds_count", {})):
    if not (value(m, name, **labels) or 0) > 0:
        e2e.fail(f"{name}{labels} is {value(m, name, **labels)}, want > 0")
if value(m, "interestd_redis_pipeline_seconds_count", op="erase") != 0:
    e2e.fail("erase pipelines counted without an erasure")
if set(lags(m)) != {str(p) for p in range(PARTITIONS)} or any(lags(m).values()):
    e2e.fail(f"lag after everything was applied: {lags(m)}, want 0 on partitions 0..3")
committed = {dict(k)["partition"]: v
             for k, v in series(m, "interestd_consumer_committed_offset").items()}
if sum(committed.values()) != N_SENT:
    e2e.fail(f"committed offsets {committed} do not add up to the {N_SENT} messages")
e2e.ok(f"histograms counted: batch {value(m, 'interestd_batch_seconds_count'):.0f}, "
       f"redis flush {value(m, 'interestd_redis_pipeline_seconds_count', op='flush'):.0f}, "
       f"commit {value(m, 'interestd_commit_seconds_count'):.0f}; lag 0 on every partition, "
       f"committed offsets sum to {N_SENT}")
start_load_s = value(m, "interestd_model_load_seconds")
if start_load_s is None or not 0 < start_load_s < 60:
    e2e.fail(f"at start-up: interestd_model_load_seconds {start_load_s}")
e2e.ok(f"start-up model load timed: {start_load_s * 1000:.1f} ms")
loaded0 = value(m, "interestd_model_loaded_timestamp_seconds")
if not loaded0 or abs(loaded0 - time.time()) > 600:
    e2e.fail(f"interestd_model_loaded_timestamp_seconds {loaded0}")

# ---- SIGHUP: the load is timed -------------------------------------------------------
mark = d.mark()
d.send(signal.SIGHUP)
d.wait_log(r"event=model_reloaded", 60, since=mark)
m = scrape(d)
load_s = value(m, "interestd_model_load_seconds")
if load_s is None or not 0 < load_s < 60:
    e2e.fail(f"after SIGHUP: interestd_model_load_seconds {load_s}")
if not value(m, "interestd_model_loaded_timestamp_seconds") > loaded0:
    e2e.fail("after SIGHUP: interestd_model_loaded_timestamp_seconds did not move")
e2e.ok(f"SIGHUP: model load took {load_s * 1000:.2f} ms, loaded timestamp moved on")

# The README's metrics table names exactly the families served (live items only with
# topic.items).
with open(os.path.join(harness.ROOT, "README.md")) as f:
    readme = f.read()
section = readme.split("\n### Metrics\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
documented = {"interestd_" + n for row in section.splitlines() if row.startswith("| `")
              for n in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])}
served = set(m)
if served - documented or {x for x in documented - served if "live_items" not in x}:
    e2e.fail(f"README metrics table vs /metrics: not documented {sorted(served - documented)}, "
             f"documented but not served {sorted(documented - served)}")
e2e.ok(f"the README's metrics table names all {len(served)} families served")
rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"d1: SIGTERM: exit {rc}")
d.assert_clean()

# ---- a fresh group re-reads the same offsets: all duplicates -------------------------
conf2 = e2e.write_config(env, model, "d2", group=env["HARNESS_PREFIX"] + "g2",
                         redis__timeout_ms=500, metrics__listen="127.0.0.1:0")
d2 = e2e.Daemon(env, conf2, "d2").start()
d2.wait_log(r"event=assigned .*owned=4", 60)


def dup_counts():
    x = scrape(d2)
    return (value(x, "interestd_events_consumed_total"),
            value(x, "interestd_events_duplicate_total", reason="marker"),
            value(x, "interestd_events_applied_total"))


if harness.wait_for(lambda: dup_counts() == (N_SENT, N_EVENTS, 0), 60) is None:
    d2.dump()
    e2e.fail(f"fresh group over the same offsets: consumed/duplicates/applied {dup_counts()}, "
             f"want {(N_SENT, N_EVENTS, 0)}")
e2e.ok(f"a second instance re-reading the offsets: {N_EVENTS} duplicates, 0 applied")

# ---- Redis frozen: partitions paused, lag > 0; back: lag 0 ----------------------------
out_csv = os.path.join(tmp, "outage.csv")
out_rows = e2e.make_events(out_csv, items, N_OUTAGE_USERS, N_OUTAGE_EVENTS, seed=530,
                           t0_ms=T0 + 1000, user_prefix="new")
out_want = {}
for row in out_rows:
    out_want[row["user_id"]] = out_want.get(row["user_id"], 0) + 1
half = N_OUTAGE_EVENTS // 2
mark = d2.mark()
freeze()
e2e.replay_to_kafka(env, out_csv, limit=half)
d2.wait_log(r"event=redis_unavailable .*action=pause", 30, since=mark)
e2e.replay_to_kafka(env, out_csv, skip=half)  # more keep arriving while paused
time.sleep(1)
m = scrape(d2)
paused_lag = lags(m)
if value(m, "interestd_redis_up") != 0:
    e2e.fail("redis_up is not 0 while Redis is frozen")
if set(paused_lag) != {str(p) for p in range(PARTITIONS)} or not all(paused_lag.values()):
    d2.dump()
    e2e.fail(f"lag while Redis is frozen and partitions are paused: {paused_lag}, "
             "want > 0 on every partition")
e2e.ok(f"Redis frozen, partitions paused: lag {paused_lag}")
thaw()
done, _, short = e2e.wait_applied(r, prefix, out_want, 90)
if not done:
    d2.dump()
    e2e.fail(f"after Redis came back: events_applied short for {len(short)} users")


def all_zero():
    x = lags(scrape(d2))
    return len(x) == PARTITIONS and not any(x.values())


if harness.wait_for(all_zero, 30) is None:
    e2e.fail(f"lag after recovery: {lags(scrape(d2))}, want 0 everywhere")
m = scrape(d2)
if value(m, "interestd_events_applied_total") != N_OUTAGE_EVENTS:
    e2e.fail(f"d2 applied {value(m, 'interestd_events_applied_total')}, want {N_OUTAGE_EVENTS}")
e2e.ok(f"Redis back: {N_OUTAGE_EVENTS} events applied, lag 0 on every partition, "
       f"{value(m, 'interestd_batches_rewound_total'):.0f} batches rewound during the outage")
# ---- a second instance joins: partitions given up leave d2's lag and offsets -----------
mark = d2.mark()
conf3 = e2e.write_config(env, model, "d3", group=env["HARNESS_PREFIX"] + "g2",
                         redis__timeout_ms=500)
d3 = e2e.Daemon(env, conf3, "d3").start()
d2.wait_log(r"event=revoked .*owned=2", 60, since=mark)
d3.wait_log(r"event=assigned .*owned=2", 60)
owned = set(re.search(r"event=assigned topic=\S+ partitions=(\S+) ", d3.current_log())
            .group(1).split(","))
kept = {str(p) for p in range(PARTITIONS)} - owned


def d2_series():
    x = scrape(d2)
    return (set(lags(x)),
            {dict(k)["partition"] for k in series(x, "interestd_consumer_committed_offset")})


if harness.wait_for(lambda: d2_series() == (kept, kept), 30) is None:
    e2e.fail(f"after giving up {sorted(owned)}: d2 still shows lag / committed offsets for "
             f"{d2_series()} (keeps {sorted(kept)})")
e2e.ok(f"d3 joined: d2 gave up partitions {sorted(owned)}; its lag and committed offsets "
       f"name only {sorted(d2_series()[0] | d2_series()[1])}")
for dd in (d3, d2):
    rc = dd.stop()
    if rc != 0:
        dd.dump()
        e2e.fail(f"{dd.name}: SIGTERM: exit {rc}")
    dd.assert_clean()
e2e.ok("all instances: SIGTERM exit 0, no sanitizer report")
