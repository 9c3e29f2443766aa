"""scripts/make-sample: deterministic, well-formed, plausible behaviour."""

import csv
from collections import Counter, defaultdict

from helpers import run_script
from interestd_py.items import EVENT_TYPES, read_items
from interestd_py.sample import THEMES


def load(d):
    with open(d / "interactions.csv", newline="") as f:
        rows = list(csv.reader(f))
    return read_items(str(d / "items.csv")), rows


def test_deterministic_and_well_formed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    run_script("make-sample", "--out", a)
    run_script("make-sample", "--out", b)
    run_script("make-sample", "--out", c, "--seed", 8)
    for name in ("items.csv", "interactions.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()
    items, rows = load(a)
    assert len(items) == 300 and rows[0] == ["user_id", "item_id", "type", "ts", "value"]
    events = rows[1:]
    assert len(events) == 20000
    assert len({e[0] for e in events}) == 200
    ids = {it.item_id for it in items}
    assert all(e[1] in ids and e[2] in EVENT_TYPES for e in events)
    assert len({it.title for it in items}) == 300
    themes = Counter(it.categories[0] for it in items)
    assert len(themes) == len(THEMES) >= 8 and min(themes.values()) >= 300 // len(THEMES)
    assert all(len(it.categories) == 2 and it.text for it in items)

    # time order across users, strictly increasing per user, users interleaved
    ts = [int(e[3]) for e in events]
    assert ts == sorted(ts)
    per_user = defaultdict(list)
    for e in events:
        per_user[e[0]].append(int(e[3]))
    assert all(all(x < y for x, y in zip(t, t[1:])) for t in per_user.values())
    switches = sum(1 for x, y in zip(events, events[1:]) if x[0] != y[0])
    assert switches > 1000

    # mostly VIEW/CLICK, some funnel events, few DISLIKE/SHARE/IMPRESSION
    types = Counter(e[2] for e in events)
    assert set(types) == set(EVENT_TYPES)
    share = {t: types[t] / len(events) for t in EVENT_TYPES}
    assert share["VIEW"] + share["CLICK"] > 0.5
    assert all(0.02 < share[t] < 0.15 for t in ("LIKE", "ADD_TO_CART", "PURCHASE"))
    assert all(share[t] < 0.08 for t in ("DISLIKE", "SHARE", "IMPRESSION"))
    assert types["PURCHASE"] < types["ADD_TO_CART"]

    # Zipf-like popularity: the top 10% of items draw far more than 10% of events
    pop = sorted(Counter(e[1] for e in events).values(), reverse=True)
    assert sum(pop[:30]) > 0.25 * len(events)

    # users concentrate on few themes: each user's top theme is well above 1/8
    theme_of = {it.item_id: it.categories[0] for it in items}
    per = defaultdict(Counter)
    for e in events:
        per[e[0]][theme_of[e[1]]] += 1
    tops = [c.most_common(1)[0][1] / sum(c.values()) for c in per.values()
            if sum(c.values()) >= 30]
    assert sum(tops) / len(tops) > 0.35

    # ... and drift: a heavy user's first and second halves differ in theme mix
    # (total variation; sampling noise alone gives about 0.1 here)
    seqs = defaultdict(list)
    for e in events:
        seqs[e[0]].append(theme_of[e[1]])
    tv = []
    for s in seqs.values():
        if len(s) >= 150:
            h = len(s) // 2
            x, y = Counter(s[:h]), Counter(s[h:])
            tv.append(0.5 * sum(abs(x[k] / h - y[k] / (len(s) - h)) for k in set(x) | set(y)))
    assert len(tv) >= 20 and sum(tv) / len(tv) > 0.2


def test_small_sizes(tmp_path):
    run_script("make-sample", "--out", tmp_path, "--users", 3, "--items", 8, "--events", 10,
               "--seed", 1)
    items, rows = load(tmp_path)
    assert len(items) == 8 and len(rows) == 11
    r = run_script("make-sample", "--out", tmp_path, "--users", 10, "--events", 5, check=False)
    assert r.returncode == 1 and "events >= users" in r.stderr
