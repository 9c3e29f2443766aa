#!/usr/bin/env python3
"""The benchmark's Python peer (make bench, docs/BENCH.md): interestd's job
written the way a strong Python engineer would write it, with what the
daemon has. confluent-kafka consume(500) and fastavro schemaless_reader;
every user's state in arrays indexed by a slot; a batch's events applied in
waves as model/updater.c does (wave k = the k-th event of each user in the
batch, in batch order), one LSTM matrix product per wave and the tier
weights of the wave in a few vectorised steps; then the batch's users scored
in chunks of CHUNK rows: one matrix product against every item (exact
search), tier terms and the consumed filter written into that chunk only,
and top-N by a bound from group maxima, sorted as the daemon sorts (higher
score, then lower item index). A writer thread formats each chunk and writes
it with one script call through redis-py (hiredis packs and parses) while the
next chunk is computed, and commits a batch's offsets once its writes are
acknowledged.

    bench_peer.py --bootstrap H:P --topic T --group G --model M.imdl
                  --redis-port N --prefix p: --events 100000
Prints one JSON line: events, seconds, eps, users, cpu_s (the process's CPU
time, model loading included), hiredis, and profile:
seconds per phase. Main thread: poll (waiting in consume), decode, lstm,
tiers (tier weights, consumed set, markers), scoring, redis_wait (blocked
on the writer); these add up to about the run's seconds. Writer thread,
overlapping them: redis (formatting, the script call and its reply), commit.
"""

import io
import json
import os
import queue
import sys
import threading
import time
from array import array
from itertools import chain

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interestd_py.venv import ensure_venv  # noqa: E402

ensure_venv(__file__)
# One BLAS thread: the writer thread has the other core (the bench machine has
# two); OpenBLAS threads that share a core with it only spin and wait.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import fastavro  # noqa: E402
import numpy as np  # noqa: E402
import redis  # noqa: E402
import redis.utils  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from interestd_py import cli, container  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TTL_S = 2592000
TOP_N = 50
M64 = (1 << 64) - 1
NO_TIME = np.iinfo(np.int64).min  # t_ref before the first event (model/state.h)
CHUNK = 128       # users scored together: one [CHUNK][items] score matrix
GROUP = 16        # items per group whose maximum bounds the top-N threshold
QUEUE_CHUNKS = 4  # scored chunks waiting for the writer at most
IDLE_TIMEOUT_S = 60   # no message for this long ends the run (short of --events: exit 1)
REDIS_TIMEOUT_S = 60  # a Redis reply slower than this is an error, not a hang
F32 = np.float32


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


def sigmoid(z):
    return F32(1.0) / (F32(1.0) + np.exp(-z))


class Model:
    """The model file's weights, and the catalog ordered for scoring: items
    sorted by (tier-1 node, tier-2 node, index), so each node's items are one
    slice of a score row, then padded to GROUP * n_groups items that score -inf."""

    def __init__(self, path):
        cat = container.load(path)
        hp, w = cat.hpar, cat.weights
        self.hp = hp
        self.H = hp["hidden"]
        self.max_tiers = hp["max_tiers"]
        self.Wt = np.ascontiguousarray(w["W"].T, F32)
        self.b = w["b"].astype(F32)
        self.Pt = np.ascontiguousarray(w["P"].T, F32)
        self.pb = w["pb"].astype(F32)
        self.T = w["T"].astype(F32)
        self.alpha = w["alpha"].astype(np.float64)
        self.E = (cat.emb + w["R"]).astype(F32)
        self.din = self.E.shape[1] + self.T.shape[1] + 1
        self.type_weight = np.array(hp["type_weight"], F32).astype(np.float64)
        self.hl_short = float(F32(hp["half_life_short_s"]))
        self.hl_long = float(F32(hp["half_life_long_s"]))
        self.index = {s: i for i, s in enumerate(cat.item_ids)}
        self.t1 = cat.itir[:, 0].astype(np.int64)
        self.t2 = cat.itir[:, 1].astype(np.int64)
        self.level = cat.tnod[:, 1].astype(np.int64)
        self.labels = [cat.node_label(n) for n in range(cat.n_nodes)]
        self.json_ids = [json.dumps(s) for s in cat.item_ids]
        n = len(cat.item_ids)
        # Scoring order: a node's items are contiguous (tier-2 nodes nest in tier-1 ones).
        self.perm = np.lexsort((np.arange(n), self.t2, self.t1))
        self.pos = np.empty(n, np.int64)
        self.pos[self.perm] = np.arange(n)
        self.node_start = np.zeros(cat.n_nodes, np.int64)
        self.node_end = np.zeros(cat.n_nodes, np.int64)
        for t in (self.t1, self.t2):
            st = t[self.perm]
            nodes, first = np.unique(st, return_index=True)
            if np.count_nonzero(np.diff(st)) + 1 != len(nodes):
                raise SystemExit("bench_peer: tier-2 nodes do not nest in tier-1 nodes")
            self.node_start[nodes] = first
            self.node_end[nodes] = first + np.bincount(st)[nodes]
        self.n_items = n
        self.n_groups = -(-n // GROUP)
        self.width = self.n_groups * GROUP
        # [E; ib]^T in scoring order: [u, 1] times it is every item's u.e + ib.
        d = self.E.shape[1]
        self.EbT = np.zeros((d + 1, self.width), F32)
        self.EbT[:d, :n] = self.E[self.perm].T
        self.EbT[d, :n] = w["ib"][self.perm]
        self.scores = np.empty((CHUNK, self.width), F32)
        fp = [seen_fingerprint(fnv1a(s.encode())) for s in cat.item_ids]
        self.fp = fp
        self.fp_pos = {}  # fingerprint -> scoring positions of the items that have it
        for i, f in enumerate(fp):
            self.fp_pos.setdefault(f, []).append(int(self.pos[i]))

    def views(self, st, sl):
        """Interest vectors [n][dim] of the users in slots sl (n <= CHUNK) and
        their top-N: (items, scores, ends), row r's in [ends[r-1], ends[r])."""
        n, d = len(sl), self.E.shape[1]
        Ub = np.ones((n, d + 1), F32)
        U = Ub[:, :d]
        np.matmul(st.h[sl], self.Pt, out=U)
        U += self.pb
        S = self.scores[:n]
        np.matmul(Ub, self.EbT, out=S)
        S[:, self.n_items:] = -np.inf  # padding
        self.tier_terms(st, sl, S)
        lens = [len(st.seen_pos[s]) for s in sl.tolist()]
        cols = np.fromiter(chain.from_iterable(st.seen_pos[s] for s in sl.tolist()), np.int64,
                           sum(lens))
        S[np.repeat(np.arange(n), lens), cols] = -np.inf
        # Group g holds positions g, g + n_groups, ...: its maximum is an
        # elementwise max of GROUP contiguous runs. At least k items score the
        # k-th largest group maximum or more, so a row's top-N are among the
        # items of the groups that reach it, ties included.
        k = min(TOP_N, self.n_groups)
        gmax = S.reshape(n, GROUP, self.n_groups).max(axis=1)
        thr = np.partition(gmax, self.n_groups - k, axis=1)[:, self.n_groups - k]
        if k < TOP_N:
            thr[:] = -np.inf
        rows, groups = np.nonzero(gmax >= thr[:, None])
        flat = ((rows * self.width + groups)[:, None] + self.n_groups * np.arange(GROUP)).ravel()
        sc = S.ravel()[flat]
        keep = np.flatnonzero((sc >= np.repeat(thr[rows], GROUP)) & (sc > -np.inf))
        flat, sc = flat[keep], sc[keep]
        rows, items = flat // self.width, self.perm[flat % self.width]
        order = np.lexsort((items, -sc, rows))
        rows, items, sc = rows[order], items[order], sc[order]
        first = np.searchsorted(rows, np.arange(n))
        rank = np.arange(rows.size) - first[rows]
        top = rank < TOP_N
        ends = np.cumsum(np.bincount(rows[top], minlength=n))
        return U, items[top], sc[top], ends

    def tier_terms(self, st, sl, S):
        """Adds each user's tier term of a node to that node's items in S
        (model/scorer.c scorer_node_terms: a level's weights over its sum)."""
        nt = st.n_tiers[sl]
        node = st.node[sl]
        valid = np.arange(self.max_tiers) < nt[:, None]
        lv = np.where(valid, self.level[np.maximum(node, 0)] - 1, -1)
        ws = st.ws[sl].astype(np.float64)
        wl = st.wl[sl].astype(np.float64)
        term = np.zeros(ws.shape)
        for v in (0, 1):
            on = lv == v
            sum_s = np.where(on, ws, 0.0).sum(axis=1, keepdims=True)
            sum_l = np.where(on, wl, 0.0).sum(axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                term += np.where(on & (sum_s > 0), self.alpha[2 * v] * ws / sum_s, 0.0)
                term += np.where(on & (sum_l > 0), self.alpha[2 * v + 1] * wl / sum_l, 0.0)
        rows = np.nonzero(valid)[0].tolist()
        x = node[valid]
        for r, lo, hi, t in zip(rows, self.node_start[x].tolist(), self.node_end[x].tolist(),
                                term[valid].astype(F32).tolist()):
            seg = S[r, lo:hi]
            seg += F32(t)


class States:
    """Every user's state, by slot: h, c, tier weights [max_tiers] in the
    daemon's order, t_ref, events applied, marker; the consumed set as
    fingerprints and as the scoring positions of their items."""

    FILL = {"h": 0, "c": 0, "node": -1, "ws": 0, "wl": 0, "n_tiers": 0, "t_ref": NO_TIME,
            "applied": 0, "part": -1, "off": -1}  # the arrays, with their initial values

    def __init__(self, model, cap=4096):
        self.m = model
        self.slot = {}      # user id -> slot
        self.ids = []
        self.seen = []      # per slot: set of fingerprints
        self.seen_pos = []  # per slot: scoring positions of the consumed items
        H, mt = model.H, model.max_tiers
        self.h = np.zeros((cap, H), F32)
        self.c = np.zeros((cap, H), F32)
        self.node = np.full((cap, mt), -1, np.int64)
        self.ws = np.zeros((cap, mt), F32)
        self.wl = np.zeros((cap, mt), F32)
        self.n_tiers = np.zeros(cap, np.int64)
        self.t_ref = np.full(cap, NO_TIME, np.int64)
        self.applied = np.zeros(cap, np.int64)
        self.part = np.full(cap, -1, np.int64)
        self.off = np.full(cap, -1, np.int64)

    def get(self, uid):
        s = self.slot.get(uid)
        if s is not None:
            return s
        s = self.slot[uid] = len(self.ids)
        self.ids.append(uid)
        self.seen.append(set())
        self.seen_pos.append([])
        if s == len(self.h):
            for name, fill in self.FILL.items():
                a = getattr(self, name)
                b = np.full((2 * len(a),) + a.shape[1:], fill, a.dtype)
                b[:len(a)] = a
                setattr(self, name, b)
        return s

    def lstm(self, s, items, types, ts):
        """One LSTM step of users s (distinct) as in model/updater.c updater_row."""
        m, H = self.m, self.m.H
        tref = self.t_ref[s]
        after = (tref != NO_TIME) & (ts > tref)
        dt = np.where(after, ts - np.where(after, tref, 0), 0) / 1000.0
        with np.errstate(divide="ignore"):
            gap = np.where(dt > 0, np.log1p(dt / 60.0) / 8.0, 0.0)
        d, td = m.E.shape[1], m.T.shape[1]
        xh = np.empty((len(s), m.din + H), F32)
        xh[:, :d] = m.E[items]
        xh[:, d:d + td] = m.T[types]
        xh[:, d + td] = gap
        xh[:, m.din:] = self.h[s]
        z = xh @ m.Wt
        z += m.b
        i, f = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H])
        g, o = np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
        c = f * self.c[s] + i * g
        self.c[s] = c
        self.h[s] = o * np.tanh(c)

    def tiers(self, s, items, types, ts):
        """state_tiers_apply of users s (distinct), one event each."""
        m = self.m
        tref = self.t_ref[s]
        known = tref != NO_TIME
        fwd = known & (ts >= tref)
        back = known & (ts < tref)
        dt = np.where(fwd, ts - np.where(known, tref, 0), 0).astype(np.float64)
        dec = np.flatnonzero(dt > 0)
        if dec.size:
            r = s[dec]
            x = dt[dec, None] / 1000.0
            self.ws[r] = self.ws[r] * np.exp2(-x / m.hl_short)
            self.wl[r] = self.wl[r] * np.exp2(-x / m.hl_long)
        now = ~back
        self.t_ref[s[now]] = ts[now]
        fs = np.ones(len(s))
        fl = np.ones(len(s))
        if back.any():
            age = (tref[back] - ts[back]).astype(np.float64) / 1000.0
            fs[back] = np.exp2(-age / m.hl_short)
            fl[back] = np.exp2(-age / m.hl_long)
        a = m.type_weight[types]
        live = np.flatnonzero(a != 0.0)
        ds, dl = (a * fs)[live].astype(F32), (a * fl)[live].astype(F32)
        for t in (m.t1, m.t2):
            self.tier_add(s[live], t[items[live]], ds, dl)

    def tier_add(self, r, node, ds, dl):
        """model/state.c tier_add for users r (distinct), one node each."""
        match = self.node[r] == node[:, None]
        has = match.any(axis=1)
        j = match.argmax(axis=1)
        f = np.flatnonzero(has)
        if f.size:
            rf, jf = r[f], j[f]
            ws = np.maximum(self.ws[rf, jf] + ds[f], F32(0))
            wl = np.maximum(self.wl[rf, jf] + dl[f], F32(0))
            self.ws[rf, jf] = ws
            self.wl[rf, jf] = wl
            for k in np.flatnonzero((ws == 0) & (wl == 0)).tolist():
                self.tier_drop(rf[k], jf[k])
        new = np.flatnonzero(~has & ((ds > 0) | (dl > 0)))
        if new.size == 0:
            return
        rn, nn = r[new], node[new]
        dsn, dln = np.maximum(ds[new], F32(0)), np.maximum(dl[new], F32(0))
        cnt = self.n_tiers[rn]
        room = cnt < self.m.max_tiers
        ra, ja = rn[room], cnt[room]
        self.node[ra, ja] = nn[room]
        self.ws[ra, ja] = dsn[room]
        self.wl[ra, ja] = dln[room]
        self.n_tiers[ra] += 1
        for k in np.flatnonzero(~room).tolist():
            u = rn[k]
            jw = int(np.argmin(self.wl[u]))  # the first of the weakest long-term weights
            if dln[k] > self.wl[u, jw]:
                self.node[u, jw], self.ws[u, jw], self.wl[u, jw] = nn[k], dsn[k], dln[k]

    def tier_drop(self, u, j):
        last = self.n_tiers[u] - 1
        self.node[u, j], self.ws[u, j], self.wl[u, j] = (
            self.node[u, last], self.ws[u, last], self.wl[u, last])
        self.node[u, last], self.ws[u, last], self.wl[u, last] = -1, 0, 0
        self.n_tiers[u] = last

    def finish(self, s, items, parts, offs):
        """Consumed set, events applied and marker of users s (distinct)."""
        self.applied[s] += 1
        self.part[s] = parts
        self.off[s] = offs
        fp, fp_pos = self.m.fp, self.m.fp_pos
        for u, i in zip(s.tolist(), items.tolist()):
            f = fp[i]
            seen = self.seen[u]
            if f not in seen:
                seen.add(f)
                self.seen_pos[u].extend(fp_pos[f])

    def apply(self, ev, prof):
        """Applies a batch's events (columns slot, item, type, ts, partition,
        offset, rank among the user's events in the batch) wave by wave."""
        slot, item, typ, ts, part, off, rank = ev
        order = np.argsort(rank, kind="stable")
        ends = np.cumsum(np.bincount(rank))
        for k, end in enumerate(ends.tolist()):
            w = order[ends[k - 1] if k else 0:end]
            s, i, t, x = slot[w], item[w], typ[w], ts[w]
            t0 = time.perf_counter()
            self.lstm(s, i, t, x)
            t1 = time.perf_counter()
            self.tiers(s, i, t, x)
            self.finish(s, i, part[w], off[w])
            t2 = time.perf_counter()
            prof["lstm"] += t1 - t0
            prof["tiers"] += t2 - t1


# One chunk's writes, atomic as a MULTI/EXEC would be. KEYS: vec, top, tiers,
# meta, state of each user; ARGV: ttl, updated_at, model_version, then per
# user vec, top, state, events_applied, weights_at, partition, offset, the
# number of tiers and their label/weights pairs.
WRITE_LUA = """
local ttl, now, ver, a = ARGV[1], ARGV[2], ARGV[3], 4
for k = 1, #KEYS, 5 do
  redis.call('SET', KEYS[k], ARGV[a], 'EX', ttl)
  redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'EX', ttl)
  redis.call('SET', KEYS[k + 4], ARGV[a + 2], 'EX', ttl)
  redis.call('HSET', KEYS[k + 3], 'updated_at', now, 'model_version', ver, 'events_applied',
             ARGV[a + 3], 'weights_at', ARGV[a + 4], 'partition', ARGV[a + 5], 'offset', ARGV[a + 6])
  redis.call('EXPIRE', KEYS[k + 3], ttl)
  redis.call('DEL', KEYS[k + 2])
  local nt = tonumber(ARGV[a + 7])
  if nt > 0 then
    redis.call('HSET', KEYS[k + 2], unpack(ARGV, a + 8, a + 7 + 2 * nt))
    redis.call('EXPIRE', KEYS[k + 2], ttl)
  end
  a = a + 8 + 2 * nt
end
return (#KEYS) / 5
"""


class Writer(threading.Thread):
    """Writes scored chunks in order, one script call each (hiredis packs
    and parses), and commits a batch's offsets after its chunks; the main
    thread hands jobs over a bounded queue."""

    def __init__(self, r, cons, topic, model, prefix, prof):
        super().__init__(daemon=True)
        self.cons, self.topic, self.m, self.pfx = cons, topic, model, prefix
        self.script = r.register_script(WRITE_LUA)
        self.prof = prof
        self.q = queue.Queue(QUEUE_CHUNKS)
        self.error = None
        self.fmt = {}
        self.version = model.hp["model_version"]

    def run(self):
        try:
            while True:
                job = self.q.get()
                if job is None:
                    return
                t0 = time.perf_counter()
                if job[0] == "chunk":
                    self.write(*job[1:])
                    self.prof["redis"] += time.perf_counter() - t0
                else:
                    self.cons.commit(offsets=[TopicPartition(self.topic, p, o)
                                              for p, o in job[1].items()], asynchronous=False)
                    self.prof["commit"] += time.perf_counter() - t0
        except Exception as e:  # handed to the main thread, which stops
            self.error = e
            while self.q.get() is not None:
                pass

    def top_json(self, items, scores, ends):
        """The chunk's top-N lists as JSON, formatted in one operation (a
        JSON string never holds a raw newline)."""
        fmt = self.fmt
        counts = np.diff(ends, prepend=0).tolist()
        for k in counts:
            if k not in fmt:
                fmt[k] = "[" + ",".join(["[%s,%.6g]"] * k) + "]"
        ids = self.m.json_ids
        text = "\n".join([fmt[k] for k in counts]) % tuple(
            chain.from_iterable(zip([ids[i] for i in items.tolist()], scores.tolist())))
        return text.split("\n")

    def write(self, uids, U, items, scores, ends, meta, tiers, hc, seen):
        labels = self.m.labels
        tops = self.top_json(items, scores, ends)
        node, ws, wl, nt = (x.tolist() for x in tiers)
        vecs = U.astype("<f4")
        keys = []
        args = [TTL_S, int(time.time() * 1000), self.version]
        for r, (uid, (applied, t_ref, part, off)) in enumerate(zip(uids, meta.tolist())):
            k = self.pfx + "{" + uid + "}:"
            keys += (k + "vec", k + "top", k + "tiers", k + "meta", k + "state")
            args += (vecs[r].tobytes(), tops[r], hc[r].tobytes() + array("I", seen[r]).tobytes(),
                     applied, 0 if t_ref == NO_TIME else t_ref, part, off, nt[r])
            for j in range(nt[r]):
                args += (labels[node[r][j]], "%.6g %.6g" % (ws[r][j], wl[r][j]))
        self.script(keys=keys, args=args)


def main():
    ap = cli.ArgumentParser(prog="bench_peer.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--prefix", default="ui:")
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--schema", default=os.path.join(ROOT, "schemas", "behaviour_event.avsc"))
    a = ap.parse_args()

    if not redis.utils.HIREDIS_AVAILABLE:
        print("bench_peer: hiredis not installed: redis-py packs and parses in Python",
              file=sys.stderr)
    model = Model(a.model)
    st = States(model)
    raw = fastavro.schema.load_schema(a.schema)
    for f in raw["fields"]:  # ts as the plain long it is on the wire, not a datetime
        if isinstance(f["type"], dict):
            f["type"].pop("logicalType", None)
    schema = fastavro.parse_schema(raw)
    types = schema["fields"][3]["type"]["symbols"]
    type_index = {s: i for i, s in enumerate(types)}
    r = redis.Redis(host="127.0.0.1", port=a.redis_port, socket_timeout=REDIS_TIMEOUT_S)
    cons = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.subscribe([a.topic])
    prof = dict.fromkeys(("poll", "decode", "lstm", "tiers", "scoring", "redis_wait",
                          "redis", "commit"), 0.0)
    wr = Writer(r, cons, a.topic, model, a.prefix, prof)
    wr.start()
    done = 0
    t0 = None
    idle = time.monotonic()
    reader, index, get = fastavro.schemaless_reader, model.index, st.get
    while done < a.events and time.monotonic() - idle < IDLE_TIMEOUT_S and wr.error is None:
        tp = time.perf_counter()
        msgs = cons.consume(500, timeout=1.0)
        td = time.perf_counter()
        prof["poll"] += td - tp
        if not msgs:
            continue
        idle = time.monotonic()
        if t0 is None:
            t0 = time.monotonic()
        cols = [], [], [], [], [], [], []
        slot_c, item_c, type_c, ts_c, part_c, off_c, rank_c = cols
        count = {}
        offsets = {}
        for m in msgs:
            if m.error() is not None or done >= a.events:
                continue
            ev = reader(io.BytesIO(m.value()), schema)
            item = index.get(ev["item_id"])
            if item is None or not ev["user_id"]:
                continue
            s = get(ev["user_id"])
            k = count.get(s, 0)
            count[s] = k + 1
            slot_c.append(s)
            item_c.append(item)
            type_c.append(type_index.get(ev["type"], 1))
            ts_c.append(ev["ts"])
            part_c.append(m.partition())
            off_c.append(m.offset())
            rank_c.append(k)
            offsets[m.partition()] = m.offset() + 1
            done += 1
        prof["decode"] += time.perf_counter() - td
        if count:
            st.apply([np.array(x, np.int64) for x in cols], prof)
            dirty = np.fromiter(count, np.int64, len(count))
            for lo in range(0, len(dirty), CHUNK):
                tc = time.perf_counter()
                sl = dirty[lo:lo + CHUNK]
                U, items, scores, ends = model.views(st, sl)
                job = ("chunk", [st.ids[s] for s in sl.tolist()], U, items, scores, ends,
                       np.stack((st.applied[sl], st.t_ref[sl], st.part[sl], st.off[sl]), 1),
                       (st.node[sl], st.ws[sl], st.wl[sl], st.n_tiers[sl]),
                       np.concatenate((st.h[sl], st.c[sl]), 1),
                       [sorted(st.seen[s]) for s in sl.tolist()])
                tw = time.perf_counter()
                wr.q.put(job)
                prof["scoring"] += tw - tc
                prof["redis_wait"] += time.perf_counter() - tw
        if offsets:
            tw = time.perf_counter()
            wr.q.put(("commit", offsets))
            prof["redis_wait"] += time.perf_counter() - tw
    tw = time.perf_counter()
    wr.q.put(None)
    wr.join()
    prof["redis_wait"] += time.perf_counter() - tw
    secs = time.monotonic() - t0 if t0 is not None else 0.0
    cons.close()
    if wr.error is not None:
        print(f"bench_peer: writer: {wr.error}", file=sys.stderr)
        return 1
    cpu = os.times()
    print(json.dumps({"events": done, "seconds": round(secs, 3),
                      "eps": round(done / secs, 1) if secs > 0 else 0.0, "users": len(st.ids),
                      "cpu_s": round(cpu.user + cpu.system, 3),
                      "hiredis": redis.utils.HIREDIS_AVAILABLE,
                      "profile": {k: round(v, 3) for k, v in prof.items()}}))
    if done < a.events:
        print(f"bench_peer: {done} of {a.events} events, then none for {IDLE_TIMEOUT_S} s",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
