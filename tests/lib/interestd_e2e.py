"""Helpers for the daemon's end-to-end tests (tests/integration/3x-*.py).

A test model built from the project's own sample and cached by its inputs,
interactions CSVs, a running interestd with its log, what it wrote to Redis,
the offline replay to compare with (`interestctl replay`), and the topics.

    import harness, interestd_e2e as e2e
    env = harness.start()
    model = e2e.test_model()
    conf = e2e.write_config(env, model, "main")
    d = e2e.Daemon(env, conf, "d1"); d.start(); ...; d.stop(); d.assert_clean()
"""

import atexit
import csv
import hashlib
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.request

import harness

ROOT = harness.ROOT
TYPES = ["IMPRESSION", "VIEW", "CLICK", "LIKE", "ADD_TO_CART", "PURCHASE", "SHARE", "DISLIKE"]


def log(msg):
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def ok(msg):
    print(f"ok: {msg}", flush=True)


def build_dir():
    return os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))


def tool(name):
    """A program of the build under test; a missing one fails the test (make all)."""
    p = os.path.join(build_dir(), name)
    if not os.access(p, os.X_OK):
        fail(f"{p} not built (make all)")
    return p


# ---- the test model -------------------------------------------------------

def _digest(paths, extra):
    h = hashlib.sha256(extra.encode())
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def _run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}")
    return r.stdout


def test_model(seed=1, epochs=2, hidden=32, model_version=None):
    """A model file built from the project's sample: scripts/make-sample, scripts/catalog
    build, interest-train with few epochs. Cached under BUILD/test-model/<key>/ keyed by
    the inputs (scripts, trainer binary, parameters). Returns (model_path, sample_dir)."""
    if os.environ.get("E2E_MODEL"):
        # Prebuilt models (E2E_MODEL; E2E_MODEL2 when a model_version is asked for)
        # and the directory of their items.csv (E2E_SAMPLE): for working on the tests.
        key = "E2E_MODEL2" if model_version is not None else "E2E_MODEL"
        return os.environ[key], os.environ["E2E_SAMPLE"]
    make_sample = os.path.join(ROOT, "scripts", "make-sample")
    catalog = os.path.join(ROOT, "scripts", "catalog")
    train = tool("interest-train")
    for p in (make_sample, catalog):
        if not os.path.exists(p):
            fail(f"{p} does not exist")
    params = f"seed={seed} epochs={epochs} hidden={hidden} version={model_version}"
    pylib = os.path.join(ROOT, "scripts", "interestd_py")
    libs = sorted(os.path.join(pylib, f) for f in os.listdir(pylib) if f.endswith(".py")) \
        if os.path.isdir(pylib) else []
    key = _digest([make_sample, catalog, train] + libs, params)
    out = os.path.join(build_dir(), "test-model", key)
    model = os.path.join(out, "model.imdl")
    if os.path.exists(model):
        return model, out
    tmp = out + f".tmp{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    _run([make_sample, "--out", tmp, "--users", "300", "--events", "20000", "--seed", "7"])
    items = os.path.join(tmp, "items.csv")
    inter = os.path.join(tmp, "interactions.csv")
    for p in (items, inter):
        if not os.path.exists(p):
            fail(f"scripts/make-sample did not write {p}")
    _run([catalog, "build", "--items", items, "--out", os.path.join(tmp, "catalog.icat"),
          "--seed", "7"])
    cmd = ["nice", train, "--catalog", os.path.join(tmp, "catalog.icat"), "--interactions", inter,
           "--out", os.path.join(tmp, "model.imdl"), "--seed", str(seed), "--epochs", str(epochs),
           "--hidden", str(hidden), "--threads", "1"]
    if model_version is not None:
        cmd += ["--model-version", str(model_version)]
    _run(cmd)
    try:
        os.rename(tmp, out)
    except OSError:
        pass  # another test built it meanwhile: use theirs
    return model, out


def two_test_models():
    """Two models of the same catalog with different model_version values, for a
    SIGHUP from one to the other: (model_a, model_b, version_a, version_b, sample_dir)."""
    model_a, sample = test_model()
    model_b, _ = test_model(seed=2, model_version=42)
    va, vb = model_version(model_a), model_version(model_b)
    if va == vb:
        fail(f"test models share model_version {va}")
    return model_a, model_b, va, vb, sample


def catalog_item_ids(sample_dir):
    """Item ids of the sample's items.csv (the first column)."""
    with open(os.path.join(sample_dir, "items.csv"), newline="") as f:
        r = csv.reader(f)
        header = next(r)
        col = header.index("item_id") if "item_id" in header else 0
        return [row[col] for row in r if row]


# ---- events ---------------------------------------------------------------

def make_events(path, item_ids, n_users, n_events, seed=7, t0_ms=1_700_000_000_000,
                user_prefix="u"):
    """Writes an interactions CSV sorted by time (so the offline replay's per-user time
    order equals the Kafka order). Returns the rows as dicts."""
    rng = random.Random(seed)
    rows = []
    t = t0_ms
    for _ in range(n_events):
        t += rng.randrange(1, 90_000)
        rows.append({"user_id": f"{user_prefix}{rng.randrange(n_users)}",
                     "item_id": rng.choice(item_ids),
                     "type": rng.choice(["VIEW", "CLICK", "LIKE", "PURCHASE", "IMPRESSION"]),
                     "ts": t})
    write_events(path, rows)
    return rows


_SO_SCHEMA = None  # (parsed reader schema, its single-object prefix), on first use


def single_object(user, item, ts, eid, type="CLICK"):
    """One BehaviourEvent in Avro single-object encoding (C3 01 + fingerprint)."""
    global _SO_SCHEMA
    import io

    import fastavro
    from fastavro.schema import fingerprint, to_parsing_canonical_form
    if _SO_SCHEMA is None:
        schema = fastavro.schema.load_schema(os.path.join(ROOT, "schemas",
                                                          "behaviour_event.avsc"))
        fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
        _SO_SCHEMA = (schema, b"\xc3\x01" + bytes.fromhex(fp))
    b = io.BytesIO()
    fastavro.schemaless_writer(b, _SO_SCHEMA[0], {"event_id": eid, "user_id": user,
                                                  "item_id": item, "type": type, "ts": ts,
                                                  "dwell_ms": None, "value": None,
                                                  "context": None})
    return _SO_SCHEMA[1] + b.getvalue()


def write_events(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "type", "ts"])
        for r in rows:
            w.writerow([r["user_id"], r["item_id"], r["type"], r["ts"]])


def replay_to_kafka(env, csv_path, framing="single-object", schema=None, schema_id=None,
                    rate=0, skip=0, limit=None, topic=None):
    cmd = [os.path.join(ROOT, "scripts", "replay"), "--bootstrap", env["KAFKA_BOOTSTRAP"],
           "--topic", topic or env["EVENTS_TOPIC"], "--framing", framing, csv_path]
    if schema:
        cmd += ["--schema", schema]
    if schema_id is not None:
        cmd += ["--schema-id", str(schema_id)]
    if rate:
        cmd += ["--rate", str(rate)]
    if skip:
        cmd += ["--skip", str(skip)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    _run(cmd)


def producer(env):
    from confluent_kafka import Producer
    return Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "acks": "all"})


def produce_raw(env, msgs, topic=None):
    """msgs: [(key bytes, value bytes)] produced in order to partitions by key."""
    p = producer(env)
    errs = []
    for k, v in msgs:
        p.produce(topic or env["EVENTS_TOPIC"], key=k, value=v,
                  on_delivery=lambda err, _m: errs.append(err) if err else None)
    if p.flush(30) != 0 or errs:
        fail(f"produce failed: {errs}")


def unrunnable_openblas_core():
    """An OpenBLAS core name whose instructions this CPU lacks (by /proc/cpuinfo), or None."""
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    return next((core for core, flag in (("SkylakeX", "avx512f"), ("Bulldozer", "fma4"))
                 if flag not in flags), None)


# ---- configuration and the daemon ------------------------------------------

def write_config(env, model_path, name, group=None, **keys):
    """A config for this test's topics and key prefix; keys override (dots as '__')."""
    conf = {
        "group.id": group or env["HARNESS_PREFIX"] + "g",
        "topic.events": env["EVENTS_TOPIC"],
        "topic.snapshots": env["SNAPSHOTS_TOPIC"],
        "topic.dlq": env["DLQ_TOPIC"],
        "kafka.bootstrap.servers": env["KAFKA_BOOTSTRAP"],
        "schema.reader": os.path.join(ROOT, "schemas", "behaviour_event.avsc"),
        "model.path": model_path,
        "redis.host": env.get("REDIS_HOST", "127.0.0.1"),
        "redis.port": env["REDIS_PORT"],
        "redis.prefix": env["REDIS_KEY_PREFIX"],
        "flush.interval_ms": "100",
        "kafka.consumer.session.timeout.ms": "6000",
        "redis.lease_ms": "3000",  # below the session timeout, as the config table asks
        "kafka.consumer.heartbeat.interval.ms": "500",
        "kafka.topic.metadata.refresh.interval.ms": "1000",
    }
    for k, v in keys.items():
        conf[k.replace("__", ".")] = str(v)
    path = os.path.join(env["HARNESS_TMP"], f"{name}.conf")
    with open(path, "w") as f:
        for k, v in conf.items():
            f.write(f"{k} = {v}\n")
    return path


class Daemon:
    """One interestd process with its stderr in HARNESS_TMP/<name>.log."""

    def __init__(self, env, conf, name, extra_args=(), extra_env=None, binary=None):
        self.env = env
        self.binary = binary or tool("interestd")
        self.extra_env = extra_env or {}
        self.conf = conf
        self.name = name
        self.args = list(extra_args)
        self.log_path = os.path.join(env["HARNESS_TMP"], f"{name}.log")
        self.logs = []
        self.proc = None
        self.runs = 0
        # atexit as well as the module harness: a test may use its own Harness object.
        harness.on_exit(self._cleanup)
        atexit.register(self._cleanup)

    def start(self):
        self.runs += 1
        path = f"{self.log_path}.{self.runs}"
        self.logs.append(path)
        self.fp = open(path, "w")
        self.proc = subprocess.Popen([self.binary, "-c", self.conf] + self.args,
                                     stdout=self.fp, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **self.extra_env))
        log(f"{self.name}: started pid {self.proc.pid}, log {path}")
        return self

    def log_text(self):
        out = ""
        for p in self.logs:
            with open(p, errors="replace") as f:
                out += f.read()
        return out

    def current_log(self):
        with open(self.logs[-1], errors="replace") as f:
            return f.read()

    def mark(self):
        """Position in the current log; pass as since= to wait for lines after it."""
        return len(self.current_log())

    def wait_log(self, pattern, timeout_s=60, current=True, since=0):
        """Waits for a line matching pattern in the current run's log (from since)."""
        rx = re.compile(pattern)

        def text():
            return self.current_log()[since:] if current else self.log_text()

        def found():
            if self.proc is not None and self.proc.poll() is not None:
                return rx.search(text()) or "exited"
            return rx.search(text())
        m = harness.wait_for(found, timeout_s, 0.2)
        if m is None or m == "exited":
            self.dump()
            fail(f"{self.name}: no log line matching /{pattern}/ within {timeout_s} s"
                 + (" (daemon exited)" if m == "exited" else ""))
        return m

    def start_serving(self, timeout_s=60):
        """Starts the daemon (its config with metrics.listen) and waits until it owns the
        4 partitions; returns the address its /metrics listens on."""
        self.start()
        self.wait_log(r"event=assigned .*owned=4", timeout_s)
        return self.wait_log(r"event=metrics_listening addr=(\S+)", 10).group(1)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout_s=60):
        """Sends sig and waits; returns the exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.dump()
            fail(f"{self.name}: did not stop within {timeout_s} s of {sig!r}")
        self.fp.close()
        log(f"{self.name}: exited {rc}")
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.fp.close()
        log(f"{self.name}: killed with SIGKILL")

    def dump(self, lines=60):
        text = self.log_text().splitlines()
        print(f"--- {self.name} log (last {lines} lines) ---", file=sys.stderr)
        for line in text[-lines:]:
            print(f"    {line[:400]}", file=sys.stderr)

    def assert_clean(self):
        hits = harness.check_sanitizer(*self.logs)
        if hits:
            self.dump(120)
            fail(f"{self.name}: sanitizer report:\n" + "\n".join(hits[:20]))

    def _cleanup(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


# ---- Redis ------------------------------------------------------------------

def redis_freezer(h, env):
    """(freeze, thaw) for the private stack's redis-server: SIGSTOP keeps its data and
    its sockets open while it answers nothing; SIGCONT resumes it. A stack left frozen
    is thawed when the harness exits."""
    with open(os.path.join(env["STACK_DIR"], "redis.pid")) as f:
        pid = int(f.read().split()[0])
    frozen = []

    def freeze():
        os.kill(pid, signal.SIGSTOP)
        frozen.append(1)

    def thaw():
        os.kill(pid, signal.SIGCONT)
        frozen.clear()

    h.on_exit(lambda: thaw() if frozen else None)
    return freeze, thaw


def redis_client(env):
    import redis
    return redis.Redis(host=env.get("REDIS_HOST", "127.0.0.1"), port=int(env["REDIS_PORT"]))


def read_user(r, prefix, user):
    """What the daemon published for user: dict(vec, top, tiers, meta) or None."""
    k = f"{prefix}{{{user}}}"
    p = r.pipeline(transaction=False)
    p.get(k + ":vec")
    p.get(k + ":top")
    p.hgetall(k + ":tiers")
    p.hgetall(k + ":meta")
    vec, top, tiers, meta = p.execute()
    if vec is None or not meta:
        return None
    return {
        "vec": list(struct.unpack(f"<{len(vec) // 4}f", vec)),
        "top": json.loads(top) if top else [],
        "tiers": {a.decode(): b.decode() for a, b in tiers.items()},
        "meta": {a.decode(): b.decode() for a, b in meta.items()},
    }


def events_applied(r, prefix, users):
    """{user: events_applied} for users present in Redis."""
    p = r.pipeline(transaction=False)
    for u in users:
        p.hget(f"{prefix}{{{u}}}:meta", "events_applied")
    return {u: int(v) for u, v in zip(users, p.execute()) if v is not None}


def wait_applied(r, prefix, want, timeout_s=120, daemon=None, interval_s=0.5):
    """Waits until every user's events_applied equals want[user]; returns the last counts.
    With daemon (a Daemon), fails as soon as it has exited."""
    last = {}

    def done():
        nonlocal last
        if daemon is not None and not daemon.alive():
            daemon.dump()
            fail(f"{daemon.name} exited while waiting for events_applied")
        last = events_applied(r, prefix, list(want))
        return all(last.get(u) == n for u, n in want.items())
    if harness.wait_for(done, timeout_s, interval_s) is None:
        short = {u: (last.get(u), n) for u, n in want.items() if last.get(u) != n}
        return False, last, short
    return True, last, {}


# ---- online metrics ---------------------------------------------------------

_ONLINE_FAMILIES = {"interestd_online_events_total": "events",
                    "interestd_online_repeats_total": "repeats",
                    "interestd_online_reciprocal_rank_sum": "reciprocal_rank_sum",
                    "interestd_online_ndcg10_sum": "ndcg10_sum"}


def metrics_text(addr):
    """The daemon's /metrics page at addr (host:port)."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as resp:
        return resp.read().decode()


def online_daemon(env, model_path, name="d1", **keys):
    """A Daemon (not started) with metrics.online = true and /metrics on 127.0.0.1, serving
    a copy of model_path at HARNESS_TMP/live.imdl, which a test may replace for a SIGHUP;
    keys as for write_config. Returns (daemon, live path, config path)."""
    live = os.path.join(env["HARNESS_TMP"], "live.imdl")
    install(model_path, live)
    conf = write_config(env, live, name, metrics__listen="127.0.0.1:0", metrics__online="true",
                        **keys)
    return Daemon(env, conf, name), live, conf


def online_counters(addr):
    """The online metrics (README "Online metrics") on http://addr/metrics:
    ({(model_version, type): {field: value}}, unmeasured), fields events, repeats,
    hits_10, hits_n, reciprocal_rank_sum and ndcg10_sum; unmeasured None when absent."""
    cells, unmeasured = {}, None
    for line in metrics_text(addr).splitlines():
        m = re.match(r'^(interestd_online_\w+)(?:\{([^}]*)\})? (\S+)$', line)
        if not m:
            continue
        name, labels, v = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")), \
            float(m.group(3))
        if name == "interestd_online_unmeasured_total":
            unmeasured = v
            continue
        field = _ONLINE_FAMILIES.get(name) or ("hits_10" if labels.get("k") == "10" else "hits_n")
        cells.setdefault((int(labels["model_version"]), labels["type"]), {})[field] = v
    return cells, unmeasured


# ---- offline replay and comparison -----------------------------------------

def offline_replay(model_path, csv_path, out_path, top_n=50, extra=()):
    _run([tool("interestctl"), "replay", "--model", model_path, "--events", csv_path,
          "--out", out_path, "--top-n", str(top_n)] + list(extra))
    with open(out_path) as f:
        return {d["user"]: d for d in map(json.loads, f)}


def _near_tie_swaps(got, want, tol=1e-4):
    """True when two top-N lists ([id, score] best first) differ only where the
    items' scores are equal to within tol: the interest vectors agree to 1e-5, not
    to the last bit (batched SGEMM against one user's path), so two items whose
    scores tie to that precision may come out in either order."""
    if len(got) != len(want):
        return False
    ws = {i: float(x) for i, x in want}
    gs = {i: float(x) for i, x in got}
    for (a, sa), (b, sb) in zip(got, want):
        if a == b:
            continue
        ref = ws.get(a, gs[a])
        if abs(ref - float(sb)) > tol * max(1.0, abs(float(sb))):
            return False
    return True


def compare(r, prefix, expected, vec_tol=1e-5, check_applied=True):
    """Compares Redis with the offline replay; returns a list of differences."""
    diffs = []
    for u, want in expected.items():
        got = read_user(r, prefix, u)
        if got is None:
            diffs.append(f"{u}: no keys in Redis")
            continue
        if len(got["vec"]) != len(want["vec"]):
            diffs.append(f"{u}: vec dim {len(got['vec'])} != {len(want['vec'])}")
        else:
            d = max(abs(a - b) for a, b in zip(got["vec"], want["vec"]))
            if d > vec_tol:
                diffs.append(f"{u}: vec differs by {d:.3g}")
        gi = [t[0] for t in got["top"]]
        wi = [t[0] for t in want["top"]]
        if gi != wi and not _near_tie_swaps(got["top"], want["top"]):
            diffs.append(f"{u}: top ids differ: {gi[:5]}... vs {wi[:5]}...")
        if set(got["tiers"]) != set(want["tiers"]):
            diffs.append(f"{u}: tier nodes differ: {sorted(got['tiers'])} vs {sorted(want['tiers'])}")
        else:
            for node, v in want["tiers"].items():
                a = [float(x) for x in got["tiers"][node].split()]
                b = [float(x) for x in v.split()]
                if any(abs(x - y) > 1e-5 * max(1.0, abs(y)) for x, y in zip(a, b)):
                    diffs.append(f"{u}: tier {node}: {got['tiers'][node]} vs {v}")
        if check_applied and int(got["meta"].get("events_applied", -1)) != want["events_applied"]:
            diffs.append(f"{u}: events_applied {got['meta'].get('events_applied')} != "
                         f"{want['events_applied']}")
    return diffs


# ---- topics -------------------------------------------------------------------

def consume_all(env, topic, want, timeout_s=60, group=None, settle_s=None):
    """Reads want messages (or what arrives within timeout_s) from the start of topic.
    With settle_s, stops settle_s after want - 1 messages arrived (to see whether one
    more than expected turns up without waiting the whole timeout)."""
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"],
                  "group.id": group or env["HARNESS_PREFIX"] + "reader-" + topic,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        if settle_s is not None and len(out) >= want - 1:
            deadline = min(deadline, time.monotonic() + settle_s)
            settle_s = None
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append(m)
    c.close()
    return out


def committed_offsets(env, group, topic, partitions=4):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": group,
                  "enable.auto.commit": False})
    res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in res}


def _hpar(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack_from("<I", data, 16)[0]
    for i in range(n):
        tag, _flags, off, _length = struct.unpack_from("<4sIQQ", data, 64 + 32 * i)
        if tag == b"HPAR":
            return data[off:off + 128]
    raise ValueError(f"{path}: no HPAR section")


def model_version(path):
    """HPAR.model_version of a model file (schemas/modelfile.md)."""
    return struct.unpack_from("<Q", _hpar(path), 16)[0]


def ring_len(path):
    """HPAR.ring_len (K, events kept per user) of a model file."""
    return struct.unpack_from("<I", _hpar(path), 12)[0]


def read_snapshots(env, n, timeout_s=60):
    """Up to n InterestSnapshot records of the snapshot topic, decoded (fastavro); ask
    for one more than expected: the read stops 2 s after n - 1 arrived."""
    import io
    import fastavro
    def plain(x):  # without logicalType: timestamps stay integer milliseconds
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items() if k != "logicalType"}
        return [plain(v) for v in x] if isinstance(x, list) else x
    with open(os.path.join(ROOT, "schemas", "interest_snapshot.avsc")) as f:
        schema = fastavro.parse_schema(plain(json.load(f)))
    out = []
    for m in consume_all(env, env["SNAPSHOTS_TOPIC"], n, timeout_s, settle_s=2):
        v = m.value()
        if v[:2] != b"\xc3\x01":
            fail("a snapshot is not in single-object encoding")
        rec = fastavro.schemaless_reader(io.BytesIO(v[10:]), schema)
        if rec["user_id"] != m.key().decode():
            fail(f"snapshot keyed {m.key()!r} holds user {rec['user_id']!r}")
        out.append(rec)
    return out


def corrupt_copy(src, dst, tag=b"WGHT"):
    """Copies a model file with one byte inside section tag flipped (its CRC then fails)."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    n = struct.unpack_from("<I", data, 16)[0]
    for i in range(n):
        t, _flags, off, length = struct.unpack_from("<4sIQQ", data, 64 + 32 * i)
        if t == tag:
            data[off + length // 2] ^= 0x5A
            break
    else:
        raise ValueError(f"{src}: no section {tag}")
    with open(dst, "wb") as f:
        f.write(data)


def model_items_swapped(src, dst, i=0, j=1):
    """Writes to dst a copy of model src whose item ids (and titles) at indices i and j
    trade places: the same weights over a catalog that no longer starts with src's items
    (README "Online metrics": a swap to it forgets the kept top-N lists)."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from interestd_py import container
    ct = container.read_container(src)
    cat = container.decode_catalog(ct)
    ids, titles = list(cat.item_ids), list(cat.titles)
    ids[i], ids[j] = ids[j], ids[i]
    titles[i], titles[j] = titles[j], titles[i]
    sections = dict(ct.sections, IIDS=container.encode_strings(ids),
                    ITTL=container.encode_strings(titles))
    container.write_container(dst, ct.kind, [(t, sections[t]) for t in ct.order])


def install(src, dst):
    """Replaces dst with a copy of src atomically (write aside, rename)."""
    tmp = dst + ".new"
    with open(src, "rb") as f, open(tmp, "wb") as g:
        g.write(f.read())
    os.rename(tmp, dst)
