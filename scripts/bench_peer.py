#!/usr/bin/env python3
"""The benchmark's Python peer (make bench, docs/BENCH.md): interestd's job
written the way a competent Python user would write it. confluent-kafka
consume(500), fastavro schemaless_reader, a numpy LSTM step per event with
the model file's weights, tier weights decayed in event time, the consumed
items' fingerprints; per batch the interest vectors and top-N of the batch's
users in one matrix product, then one redis-py pipeline (MULTI/EXEC) writing
each user's vec, top, tiers, meta and state once, then the offsets committed.

    bench_peer.py --bootstrap H:P --topic T --group G --model M.imdl
                  --redis-port N --prefix p: --events 100000
Prints one JSON line: events, seconds, eps, users.
"""

import argparse
import io
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastavro  # noqa: E402
import numpy as np  # noqa: E402
import redis  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from interestd_py import container  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TTL_S = 2592000
TOP_N = 50
M64 = (1 << 64) - 1


def fnv1a(s):
    h = 14695981039346656037
    for b in s:
        h = ((h ^ b) * 1099511628211) & M64
    return h


def seen_fingerprint(h):
    """The 32-bit consumed-set fingerprint of an item hash (model/state.c)."""
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 33
    return h >> 32


def f32(x):
    return float(np.float32(x))


class User:
    __slots__ = ("h", "c", "tiers", "t_ref", "seen", "applied", "part", "off")

    def __init__(self, hidden):
        self.h = np.zeros(hidden, np.float32)
        self.c = np.zeros(hidden, np.float32)
        self.tiers = []          # [node, w_short, w_long], order as in the daemon
        self.t_ref = None
        self.seen = set()        # fingerprints of the consumed items
        self.applied = 0
        self.part = -1
        self.off = -1


class Model:
    def __init__(self, path):
        cat = container.load(path)
        hp, w = cat.hpar, cat.weights
        self.hp = hp
        self.H = hp["hidden"]
        self.W, self.b = w["W"], w["b"]
        self.P, self.pb, self.T = w["P"], w["pb"], w["T"]
        self.ib, self.alpha = w["ib"], w["alpha"]
        self.E = (cat.emb + w["R"]).astype(np.float32)
        self.ids = cat.item_ids
        self.index = {s: i for i, s in enumerate(cat.item_ids)}
        self.t1 = cat.itir[:, 0].astype(np.int64)
        self.t2 = cat.itir[:, 1].astype(np.int64)
        self.level = cat.tnod[:, 1].astype(np.int64)
        self.n_nodes = cat.n_nodes
        self.labels = [cat.node_label(n) for n in range(cat.n_nodes)]
        self.fp = [seen_fingerprint(fnv1a(s.encode())) for s in cat.item_ids]
        self.fp_items = {}       # fingerprint -> the items that have it (as the daemon sees them)
        for i, f in enumerate(self.fp):
            self.fp_items.setdefault(f, []).append(i)
        self.json_ids = [json.dumps(s) for s in cat.item_ids]

    def step(self, u, item, typ, ts):
        dt = (ts - u.t_ref) / 1000.0 if u.t_ref is not None and ts > u.t_ref else 0.0
        gap = np.float32(math.log1p(dt / 60.0) / 8.0) if dt > 0 else np.float32(0.0)
        xh = np.concatenate((self.E[item], self.T[typ], [gap], u.h)).astype(np.float32)
        z = self.W @ xh + self.b
        H = self.H
        i = 1.0 / (1.0 + np.exp(-z[:H]))
        f = 1.0 / (1.0 + np.exp(-z[H:2 * H]))
        g = np.tanh(z[2 * H:3 * H])
        o = 1.0 / (1.0 + np.exp(-z[3 * H:]))
        u.c = (f * u.c + i * g).astype(np.float32)
        u.h = (o * np.tanh(u.c)).astype(np.float32)
        self.tiers(u, item, typ, ts)
        u.seen.add(self.fp[item])
        u.applied += 1

    def tiers(self, u, item, typ, ts):
        hp = self.hp
        a = hp["type_weight"][typ]
        fs = fl = 1.0
        if u.t_ref is None:
            u.t_ref = ts
        elif ts >= u.t_ref:
            dt = ts - u.t_ref
            if dt > 0:
                ds = 2.0 ** (-(dt / 1000.0) / hp["half_life_short_s"])
                dl = 2.0 ** (-(dt / 1000.0) / hp["half_life_long_s"])
                for t in u.tiers:
                    t[1] = f32(t[1] * ds)
                    t[2] = f32(t[2] * dl)
            u.t_ref = ts
        else:
            age = u.t_ref - ts
            fs = 2.0 ** (-(age / 1000.0) / hp["half_life_short_s"])
            fl = 2.0 ** (-(age / 1000.0) / hp["half_life_long_s"])
        if a == 0.0:
            return
        for node in (int(self.t1[item]), int(self.t2[item])):
            self.tier_add(u, node, f32(a * fs), f32(a * fl))

    def tier_add(self, u, node, ds, dl):
        for k, t in enumerate(u.tiers):
            if t[0] == node:
                t[1] = max(f32(t[1] + ds), 0.0)
                t[2] = max(f32(t[2] + dl), 0.0)
                if t[1] == 0.0 and t[2] == 0.0:
                    u.tiers[k] = u.tiers[-1]
                    u.tiers.pop()
                return
        if ds <= 0.0 and dl <= 0.0:
            return
        if len(u.tiers) < self.hp["max_tiers"]:
            u.tiers.append([node, max(ds, 0.0), max(dl, 0.0)])
            return
        k = min(range(len(u.tiers)), key=lambda j: (u.tiers[j][2], j))
        if not max(dl, 0.0) > u.tiers[k][2]:
            return
        u.tiers[k] = [node, max(ds, 0.0), max(dl, 0.0)]

    def views(self, users):
        """Interest vectors [n][dim] and top-N lists of users, in one matrix product."""
        Hm = np.stack([u.h for u in users])
        U = (Hm @ self.P.T + self.pb).astype(np.float32)
        S = U @ self.E.T
        S += self.ib
        nt = np.zeros((len(users), self.n_nodes), np.float32)
        for r, u in enumerate(users):
            ss, sl = [0.0, 0.0], [0.0, 0.0]
            for node, ws, wl in u.tiers:
                lv = self.level[node] - 1
                ss[lv] += ws
                sl[lv] += wl
            for node, ws, wl in u.tiers:
                lv = self.level[node] - 1
                term = 0.0
                if ss[lv] > 0:
                    term += float(self.alpha[2 * lv]) * ws / ss[lv]
                if sl[lv] > 0:
                    term += float(self.alpha[2 * lv + 1]) * wl / sl[lv]
                nt[r, node] = term
        S += nt[:, self.t1] + nt[:, self.t2]
        for r, u in enumerate(users):
            for f in u.seen:
                S[r, self.fp_items[f]] = -np.inf
        k = min(TOP_N, S.shape[1])
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        tops = []
        for r in range(len(users)):
            cand = part[r]
            sc = S[r, cand]
            ok = np.isfinite(sc)
            cand, sc = cand[ok], sc[ok]
            order = np.lexsort((cand, -sc))
            tops.append((cand[order], sc[order]))
        return U, tops


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--prefix", default="ui:")
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--schema", default=os.path.join(ROOT, "schemas", "behaviour_event.avsc"))
    a = ap.parse_args()

    model = Model(a.model)
    raw = fastavro.schema.load_schema(a.schema)
    for f in raw["fields"]:  # ts as the plain long it is on the wire, not a datetime
        if isinstance(f["type"], dict):
            f["type"].pop("logicalType", None)
    schema = fastavro.parse_schema(raw)
    types = schema["fields"][3]["type"]["symbols"]
    type_index = {s: i for i, s in enumerate(types)}
    r = redis.Redis(host="127.0.0.1", port=a.redis_port)
    cons = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.subscribe([a.topic])
    users = {}
    done = 0
    t0 = None
    version = model.hp["model_version"]
    pfx = a.prefix
    idle = time.monotonic()
    while done < a.events and time.monotonic() - idle < 60:
        msgs = cons.consume(500, timeout=1.0)
        if not msgs:
            continue
        idle = time.monotonic()
        if t0 is None:
            t0 = time.monotonic()
        dirty = {}
        offsets = {}
        for m in msgs:
            if m.error() is not None or done >= a.events:
                continue
            ev = fastavro.schemaless_reader(io.BytesIO(m.value()), schema)
            item = model.index.get(ev["item_id"])
            if item is None or not ev["user_id"]:
                continue
            uid = ev["user_id"]
            u = users.get(uid)
            if u is None:
                u = users[uid] = User(model.H)
            model.step(u, item, type_index.get(ev["type"], 1), ev["ts"])
            u.part, u.off = m.partition(), m.offset()
            dirty[uid] = u
            offsets[m.partition()] = m.offset() + 1
            done += 1
        if dirty:
            ids = list(dirty)
            vecs, tops = model.views([dirty[i] for i in ids])
            now_ms = int(time.time() * 1000)
            p = r.pipeline(transaction=True)
            for uid, vec, (items, scores) in zip(ids, vecs, tops):
                u = dirty[uid]
                k = pfx + "{" + uid + "}:"
                top = "[" + ",".join("[%s,%.6g]" % (model.json_ids[i], s)
                                     for i, s in zip(items.tolist(), scores.tolist())) + "]"
                p.set(k + "vec", vec.astype("<f4").tobytes())
                p.set(k + "top", top)
                p.delete(k + "tiers")
                if u.tiers:
                    p.hset(k + "tiers", mapping={model.labels[n]: "%.6g %.6g" % (ws, wl)
                                                 for n, ws, wl in u.tiers})
                p.hset(k + "meta", mapping={"updated_at": now_ms, "model_version": version,
                                            "events_applied": u.applied,
                                            "weights_at": u.t_ref or 0,
                                            "partition": u.part, "offset": u.off})
                p.set(k + "state", u.h.tobytes() + u.c.tobytes() + np.array(sorted(u.seen), "<u4").tobytes())
                for suffix in ("vec", "top", "tiers", "meta", "state"):
                    p.expire(k + suffix, TTL_S)
            p.execute()
        if offsets:
            cons.commit(offsets=[TopicPartition(a.topic, pp, o) for pp, o in offsets.items()],
                        asynchronous=False)
    secs = time.monotonic() - t0 if t0 is not None else 0.0
    cons.close()
    print(json.dumps({"events": done, "seconds": round(secs, 3),
                      "eps": round(done / secs, 1) if secs > 0 else 0.0, "users": len(users)}))
    return 0 if done >= a.events else 1


if __name__ == "__main__":
    sys.exit(main())
