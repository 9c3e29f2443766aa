"""Fault-injection scenarios for interestd (docs/RELIABILITY.md).

Each scenario sends a seeded stream of events for many users (a few bad messages
mixed in), injects one kind of fault mid-stream into real processes (interestd,
redis-server, the Kafka broker), lets the stream finish and checks that the final
Redis state equals the offline libinterest replay (`interestctl replay`) of exactly
the good events: vectors within 1e-5, same top-N ids, same tier weights, equal
events_applied per user; every bad message dead-lettered.

    import faultlib as fl
    suite = fl.Suite(env, model, sample, seed=1)       # env from harness.start()
    suite.run("kill9", kills=20)
    suite.report("build/faults.json")

Used by tests/faults/run (`make faults`, full size, private stack) and by
tests/integration/40-faults-short.py (a few scenarios, small streams).

How kill -9 moments are targeted: the phases "poll-flush", "mid-pipeline" and
"ack-commit" attach gdb to the daemon with a breakpoint (gdb Python API) and send
SIGKILL from inside the breakpoint, so the daemon dies at exactly that point:
  poll-flush    entry of sink_redis_flush: events polled and applied in memory,
                nothing of this flush written to Redis;
  mid-pipeline  the 2nd..4th redisGetReply inside sink_redis_flush: the pipeline
                of per-user scripts has been written to Redis, only some replies
                read (the rest may or may not have run in Redis);
  ack-commit    entry of rd_kafka_commit_queue (the flush's asynchronous commit)
                or rd_kafka_commit (rebalance, reload, shutdown): every write
                acknowledged by Redis, offsets not yet committed to Kafka.
Which flush (how many to let pass first) is seeded. "random" kills after a seeded
delay. Without gdb every moment falls back to "random" (said in the notes).
"""

import importlib.machinery
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.realpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

TYPES = ["VIEW", "CLICK", "LIKE", "PURCHASE", "IMPRESSION"]
BAD_KINDS = ["bad_magic", "truncated", "bad_timestamp", "missing_user"]
PHASES = ["poll-flush", "mid-pipeline", "ack-commit", "random"]


class ScenarioError(Exception):
    """A check of a scenario failed; the message says which and by how much."""


_T0 = time.monotonic()


def log(msg):
    print(f"[faults {time.monotonic() - _T0:6.1f}] {msg}", file=sys.stderr, flush=True)


def _encoder():
    """The BehaviourEvent encoder of scripts/replay (single-object framing)."""
    os.environ["REPLAY_NO_VENV"] = "1"
    path = os.path.join(ROOT, "scripts", "replay")
    loader = importlib.machinery.SourceFileLoader("interestd_replay", path)
    spec = importlib.util.spec_from_loader("interestd_replay", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod.Encoder(os.path.join(ROOT, "schemas", "behaviour_event.avsc"), "single-object")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- the event stream ---------------------------------------------------------

class Stream:
    """A seeded stream: n_events good events for n_users users in time order, and
    about one bad message in bad_every (bad magic, truncated Avro, a 1970 timestamp,
    an empty user id), keyed by a user of the stream so they share its partitions.
    msgs: [(key, value)] in send order; good_csv: the good events for the replay."""

    def __init__(self, items, n_users, n_events, seed, path, bad_every=60, tag="u",
                 kinds=None, dup_every=0, replay_last=0):
        rng = random.Random(seed)
        enc = _encoder()
        self.msgs = []
        self.good = 0
        self.bad = 0
        self.bad_kinds = {}
        self.want = {}
        self.dups = 0           # copies of good events sent again at new offsets
        self.replay_at = None   # index in msgs where the replay of the last events starts
        self.good_values = {}   # value of a good message -> its index in rows
        kinds = kinds or BAD_KINDS
        rows = []
        self.good_before = []  # good events among msgs[:i], for i = 0..len(msgs)
        pending = []           # (due index in msgs, key, value): copies still to send

        def send_due():
            for item in sorted(x for x in pending if x[0] <= len(self.msgs)):
                pending.remove(item)
                self.good_before.append(len(rows))
                self.msgs.append(item[1:])
                self.dups += 1

        t = 1_700_000_000_000
        for i in range(n_events):
            if replay_last and i == n_events // 2:
                # A producer replaying its last lines: the last replay_last good
                # messages sent again, in order.
                self.replay_at = len(self.msgs)
                last = [m for m in self.msgs if m[1] in self.good_values][-replay_last:]
                for k, v in last:
                    pending.append((len(self.msgs), k, v))
                    send_due()
            t += rng.randrange(1, 90_000)
            user = f"{tag}{rng.randrange(n_users)}"
            ev = {"event_id": f"s{seed}-{i}", "user_id": user, "item_id": rng.choice(items),
                  "type": rng.choice(TYPES), "ts": t}
            rows.append(ev)
            self.good_before.append(len(rows) - 1)
            value = enc.encode(ev)
            self.good_values[value] = len(rows) - 1
            self.msgs.append((user.encode(), value))
            self.want[user] = self.want.get(user, 0) + 1
            self.good += 1
            if dup_every and rng.randrange(dup_every) == 0:
                # A producer retry without idempotence: the same message again, right
                # after it or up to 40 messages later (well inside the user's last 16).
                pending.append((len(self.msgs) + rng.randrange(0, 40), user.encode(), value))
            if bad_every and rng.randrange(bad_every) == 0:
                kind = rng.choice(kinds)
                key = user.encode()
                if kind == "bad_magic":
                    v = b"\x07" + rng.randbytes(20)
                elif kind == "truncated":
                    v = enc.encode(ev)[:13]
                elif kind == "bad_timestamp":
                    v = enc.encode(dict(ev, event_id=f"s{seed}-{i}-bad", ts=5))
                elif kind == "key_mismatch":
                    # a good event keyed by another user: it lands on a partition
                    # that may not own its user
                    v = enc.encode(dict(ev, event_id=f"s{seed}-{i}-bad"))
                    key = f"{tag}{(int(user[len(tag):]) + 1 + rng.randrange(n_users - 1)) % n_users}" \
                        .encode() if n_users > 1 else b"other"
                else:
                    v = enc.encode(dict(ev, event_id=f"s{seed}-{i}-bad", user_id=""))
                self.good_before.append(len(rows))
                self.msgs.append((key, v))
                self.bad += 1
                self.bad_kinds[kind] = self.bad_kinds.get(kind, 0) + 1
            send_due()
        for item in sorted(pending):
            self.good_before.append(len(rows))
            self.msgs.append(item[1:])
            self.dups += 1
        self.good_before.append(len(rows))
        self.rows = rows
        self.csv = path
        e2e.write_events(path, rows)

    @property
    def sent(self):
        return len(self.msgs)


class Producer(threading.Thread):
    """Produces a Stream at `rate` messages/s (idempotent, acks=all, retried for up
    to 5 minutes, so a broker restart delays messages but loses or reorders none)."""

    def __init__(self, env, topic, stream, rate):
        super().__init__(daemon=True)
        self.env, self.topic, self.stream, self.rate = env, topic, stream, rate
        self.produced = 0
        self.errors = []
        self.undelivered = None
        self.stopping = False
        self.allowed = stream.sent  # a scenario may hold the stream back (gate)

    def run(self):
        from confluent_kafka import Producer as KProducer
        p = KProducer({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP"], "acks": "all",
                       "enable.idempotence": True, "linger.ms": 5,
                       "message.timeout.ms": 300000, "logger": _quiet()})
        t0 = time.monotonic()
        for k, v in self.stream.msgs:
            while self.produced >= self.allowed and not self.stopping:
                p.poll(0.05)
                t0 = time.monotonic() - self.produced / self.rate if self.rate else t0
            if self.stopping:
                break
            while True:
                try:
                    p.produce(self.topic, key=k, value=v,
                              on_delivery=lambda err, _m: self.errors.append(err) if err else None)
                    break
                except BufferError:
                    p.poll(0.1)
            self.produced += 1
            p.poll(0)
            if self.rate:
                ahead = self.produced / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        self.undelivered = p.flush(300)

    def fraction(self):
        return self.produced / max(1, self.stream.sent)


def _quiet():
    import logging
    lg = logging.getLogger("faults.rdkafka")
    lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg


# ---- the daemon with its metrics ------------------------------------------------

class Daemon(e2e.Daemon):
    """interestd whose /metrics are scraped every 0.3 s while it runs: after a kill -9
    the last scrape of that run stands for its counters."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.scrapes = []  # one dict per run: the last /metrics seen

    def start(self):
        super().start()
        self.scrapes.append({})
        t = threading.Thread(target=self._scrape_loop, args=(self.proc, len(self.scrapes) - 1),
                             daemon=True)
        t.start()
        return self

    def _scrape_loop(self, proc, run):
        addr = None
        rx = re.compile(r"event=metrics_listening addr=(\S+)")
        while proc.poll() is None:
            if addr is None:
                m = rx.search(self.current_log()) if run == len(self.scrapes) - 1 else None
                addr = m.group(1) if m else None
            else:
                got = scrape(addr)
                if got:
                    self.scrapes[run] = got
            time.sleep(0.3)

    def counter(self, name):
        """Sum over runs of the counter (all its label sets): the final stats line of a
        run that stopped cleanly, else its last scrape."""
        stats_keys = {"interestd_events_duplicate_total": ("duplicates", "duplicates_event_id"),
                      'interestd_events_duplicate_total{reason="event_id"}':
                          ("duplicates_event_id",),
                      "interestd_events_applied_total": ("applied",),
                      "interestd_events_consumed_total": ("consumed",),
                      "interestd_snapshots_total": ("snapshots",)}.get(name, ())
        total = 0
        for i, path in enumerate(self.logs):
            got = self.scrapes[i] if i < len(self.scrapes) else {}
            v = sum(x for k, x in got.items() if k == name or k.startswith(name + "{"))
            if stats_keys:
                with open(path, errors="replace") as f:
                    text = f.read()
                if "event=stopped" in text:
                    lines = re.findall(r"event=stats .*", text)
                    if lines:
                        v = max(v, sum(int(m.group(1)) for key in stats_keys
                                       for m in [re.search(rf"\b{key}=(\d+)", lines[-1])] if m))
            total += int(v)
        return total

    def wait_assigned(self, owned=4, timeout_s=60, since=0):
        self.wait_log(rf"event=assigned .*owned={owned}\b", timeout_s, since=since)


def scrape(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except Exception:  # noqa: BLE001 - not up yet, stopped, or killed
        return None
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def exit_desc(rc):
    if rc is None:
        return "running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def wait_line(d, pattern, timeout_s=30, since=0):
    """Like Daemon.wait_log, but a daemon that died raises ScenarioError naming how."""
    rx = re.compile(pattern)
    m = harness.wait_for(lambda: rx.search(d.current_log()[since:]) or not d.alive(),
                         timeout_s, 0.1)
    if m is True or not d.alive():
        m2 = rx.search(d.current_log()[since:])
        if not d.alive():
            d.dump(15)
            raise ScenarioError(f"{d.name} died ({exit_desc(d.proc.returncode)})"
                                + (f" after logging '{m2.group(0)[:100]}'" if m2 else "")
                                + f" while waiting for /{pattern}/")
    if not m:
        raise ScenarioError(f"{d.name}: no log line /{pattern}/ within {timeout_s} s")
    return m


# ---- kill -9 at a chosen moment ----------------------------------------------------

GDB_SCRIPT = r'''
import os, signal, sys
import gdb
PID = int(os.environ["FAULT_PID"])
PHASE = os.environ["FAULT_PHASE"]
SKIP = int(os.environ["FAULT_SKIP"])
NTH = int(os.environ["FAULT_NTH"])
GO = os.environ.get("FAULT_GO")   # hold: stay stopped until this file exists, then detach
st = {"flushes": 0, "commits": 0, "replies": 0, "armed": False, "done": False}

def hit(what):
    st["done"] = True
    print("FAULT-HIT " + what, flush=True)
    if not GO:
        os.kill(PID, signal.SIGKILL)
    return True

def in_flush():
    # sink_redis_flush ends in a tail call to sink_eval_run, so at -O2 its frame is
    # gone by the time replies are read: sink_eval_run called by consumer_flush is it.
    f = gdb.newest_frame()
    while f is not None:
        if f.name() == "sink_redis_flush":
            return True
        if f.name() == "sink_eval_run":
            o = f.older()
            return o is not None and o.name() in ("sink_redis_flush", "consumer_flush")
        f = f.older()
    return False

def on_flush():
    st["flushes"] += 1
    if st["done"] or st["flushes"] <= SKIP:
        return False
    if PHASE == "poll-flush":
        return hit("sink_redis_flush entry, flush #%d" % st["flushes"])
    st["armed"], st["replies"] = True, 0
    return False

def on_reply():
    if st["done"] or not st["armed"]:
        return False
    if not in_flush():
        st["armed"] = False   # that flush had fewer replies: wait for the next one
        return False
    st["replies"] += 1
    if st["replies"] >= NTH:
        return hit("redisGetReply #%d inside sink_redis_flush #%d" % (st["replies"], st["flushes"]))
    return False

def on_commit():
    # rd_kafka_commit may resolve to two locations (PLT and library): count frames
    # whose caller is the daemon, i.e. one per call.
    st["commits"] += 1
    if st["done"] or st["commits"] <= SKIP:
        return False
    return hit("commit entry (rd_kafka_commit or _queue), commit #%d" % st["commits"])

class BP(gdb.Breakpoint):
    def __init__(self, spec, fn):
        super().__init__(spec)
        self.fn = fn
    def stop(self):
        return self.fn()

if PHASE in ("poll-flush", "mid-pipeline"):
    BP("sink_redis_flush", on_flush)
if PHASE == "mid-pipeline":
    BP("redisGetReply", on_reply)
if PHASE == "ack-commit":
    BP("rd_kafka_commit", on_commit)
    BP("rd_kafka_commit_queue", on_commit)
print("FAULT-ARMED " + PHASE, flush=True)
try:
    gdb.execute("continue")
    if GO and st["done"]:
        import time
        t_end = time.monotonic() + 300
        while not os.path.exists(GO) and time.monotonic() < t_end:
            time.sleep(0.05)
        gdb.execute("delete")
        gdb.execute("detach")
        print("FAULT-DETACHED", flush=True)
except gdb.error as e:
    print("FAULT-GDB-ERROR %s" % e, flush=True)
'''


def have_gdb():
    return shutil.which("gdb") is not None and os.environ.get("FAULTS_NO_GDB") != "1"


def kill_at(daemon, phase, rng, tmpdir, timeout_s=20):
    """Kills daemon with SIGKILL at phase; returns a note saying where it died."""
    pid = daemon.proc.pid
    if phase == "random" or not have_gdb():
        delay = rng.uniform(0.1, 1.5)
        time.sleep(delay)
        daemon.kill9()
        return f"random +{delay:.2f}s" if phase == "random" else f"random +{delay:.2f}s (no gdb)"
    script = os.path.join(tmpdir, "fault-gdb.py")
    with open(script, "w") as f:
        f.write(GDB_SCRIPT)
    skip = rng.randrange(0, 6)
    nth = rng.randrange(2, 5)
    envg = dict(os.environ, FAULT_PID=str(pid), FAULT_PHASE=phase, FAULT_SKIP=str(skip),
                FAULT_NTH=str(nth))
    g = subprocess.Popen(["gdb", "-nx", "-q", "--batch", "-iex", "set debuginfod enabled off",
                          "-iex", "set pagination off", "-iex", "set confirm off",
                          "-p", str(pid), "-x", script],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=envg)
    try:
        out, _ = g.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        daemon.proc.kill()
        out, _ = g.communicate(timeout=30)
        out += "\nFAULT-TIMEOUT"
    if daemon.proc.poll() is None:
        daemon.proc.kill()
    daemon.proc.wait()
    daemon.fp.close()
    m = re.search(r"FAULT-HIT (.*)", out)
    if m:
        return f"{phase}: {m.group(1)}"
    if "FAULT-ARMED" not in out:
        # gdb could not attach (no ptrace permission, ...): the daemon was killed at
        # once, a kill at an arbitrary moment; say so rather than fail the scenario.
        why = out.strip().splitlines()[-1][:120] if out.strip() else "no output"
        log(f"gdb could not attach: {out[-600:]}")
        return f"{phase}: gdb unavailable ({why}), killed at once"
    log(f"gdb did not reach {phase}: {out[-800:]}")
    return f"{phase}: NOT REACHED (killed after {timeout_s} s)"


class Hold:
    """The daemon stopped by gdb at a phase (every thread, as SIGSTOP would, but at an
    exact point of its work) until release(): see hold_at."""

    def __init__(self, gdb_proc, go, lines):
        self.gdb, self.go, self.lines = gdb_proc, go, lines
        self.what = ""

    def release(self, timeout_s=30):
        with open(self.go, "w"):
            pass
        try:
            self.gdb.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.gdb.kill()
            raise ScenarioError(f"gdb did not detach within {timeout_s} s: {self.lines[-5:]}")
        if not any("FAULT-DETACHED" in x for x in self.lines):
            raise ScenarioError(f"gdb did not detach cleanly: {self.lines[-5:]}")


def hold_at(daemon, phase, skip, tmpdir, timeout_s=30, armed=None):
    """Stops daemon with gdb at phase ("poll-flush": entry of sink_redis_flush;
    "ack-commit": entry of the offset commit, every write acknowledged) after skipping
    `skip` such moments, and returns a Hold once it is there; None without gdb or if
    the phase was not reached within timeout_s (the daemon is then left running).
    armed(), if given, is called once the breakpoints are set (e.g. to let the events
    flow that will bring the daemon there)."""
    if not have_gdb():
        return None
    script = os.path.join(tmpdir, "fault-gdb.py")
    with open(script, "w") as f:
        f.write(GDB_SCRIPT)
    go = os.path.join(tmpdir, f"fault-go.{daemon.proc.pid}.{time.monotonic_ns()}")
    envg = dict(os.environ, FAULT_PID=str(daemon.proc.pid), FAULT_PHASE=phase,
                FAULT_SKIP=str(skip), FAULT_NTH="1", FAULT_GO=go)
    g = subprocess.Popen(["gdb", "-nx", "-q", "--batch", "-iex", "set debuginfod enabled off",
                          "-iex", "set pagination off", "-iex", "set confirm off",
                          "-p", str(daemon.proc.pid), "-x", script],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=envg)
    lines = []

    def read():
        for line in g.stdout:
            lines.append(line)
    threading.Thread(target=read, daemon=True).start()
    h = Hold(g, go, lines)
    state = {"armed": armed is None}

    def there():
        if not state["armed"] and any(x.startswith("FAULT-ARMED") for x in lines):
            state["armed"] = True
            armed()
        return (any(x.startswith("FAULT-HIT") for x in lines) or g.poll() is not None
                or not daemon.alive())
    got = harness.wait_for(there, timeout_s, 0.05)
    if not state["armed"]:
        armed()
    hit = [x for x in lines if x.startswith("FAULT-HIT")]
    if hit:
        h.what = hit[0][len("FAULT-HIT "):].strip()
        return h
    # not reached (or gdb could not attach): let the daemon go on
    with open(go, "w"):
        pass
    if g.poll() is None:
        g.send_signal(signal.SIGINT)
        try:
            g.wait(15)
        except subprocess.TimeoutExpired:
            g.kill()
            g.wait()
    log(f"gdb hold at {phase} not reached ({'timeout' if got is None else 'gdb ended'}): "
        f"{''.join(lines[-5:])[-400:]}")
    return None


# ---- a private redis-server with an append-only file ---------------------------------

class AofRedis:
    """redis-server with appendonly yes, appendfsync always in its own directory: its
    data survives kill -9 (every acknowledged write is on disk). persist=False: no
    persistence at all, a restart comes back empty."""

    def __init__(self, tmpdir, persist=True, extra=()):
        self.persist = persist
        self.extra = list(extra)
        self.dir = tempfile.mkdtemp(prefix="aof-redis.", dir=tmpdir)
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--save", "", "--appendonly", "yes" if self.persist else "no",
             "--appendfsync", "always",
             "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")]
            + self.extra,
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        if harness.wait_for(self._ping, 20, 0.05) is None:
            raise ScenarioError(f"AOF redis-server did not start on {self.port}")
        return self

    def _ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """A TCP forwarder on 127.0.0.1 standing for the address a Redis failover moves (a
    virtual IP, a DNS name, a Sentinel-aware proxy): connections go to port `target`;
    switch(port) cuts every open connection and sends new ones to the other server."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def switch(self, target):
        self.target = target
        with self.lock:
            conns, self.conns = self.conns, []
        for x in conns:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def close(self):
        self.closed = True
        self.sock.close()
        self.switch(self.target)


# ---- reading topics ------------------------------------------------------------------

def topic_messages(env, topic, partitions=1, timeout_s=30):
    """Every message of topic (all partitions) up to the current end."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": "faults-reader",
                  "enable.auto.commit": False, "logger": _quiet()})
    out = []
    try:
        ends = {}
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if hi > lo:
                ends[p] = hi
        if not ends:
            return out
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        pos = {p: -1 for p in ends}
        deadline = time.monotonic() + timeout_s
        while any(pos[p] < ends[p] - 1 for p in ends) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append(m)
            pos[m.partition()] = m.offset()
    finally:
        c.close()
    return out


def topic_exists(env, topic):
    md = e2e_admin(env).list_topics(timeout=10)
    t = md.topics.get(topic)
    return t is not None and t.error is None


def e2e_admin(env):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "logger": _quiet()})


def dead_letters(env, topic):
    """(distinct source offsets, total messages) in the dead-letter topic."""
    seen = set()
    msgs = topic_messages(env, topic)
    for m in msgs:
        h = dict(m.headers() or [])
        seen.add((h.get("interestd.partition"), h.get("interestd.offset")))
    return len(seen), len(msgs)


# ---- the suite -------------------------------------------------------------------------

class Run:
    """One scenario's topics, keys, stream, daemons and measurements."""

    def __init__(self, suite, name, n_users, n_events, rate, seed, partitions=4, **stream_kw):
        self.suite, self.name = suite, name
        env = suite.env
        base = f"{env['HARNESS_PREFIX']}{name}"
        self.topic = base + "-events"
        self.snap_topic = base + "-snapshots"
        self.dlq_topic = base + "-dlq"
        self.group = base + "-g"
        self.prefix = base + ":"
        self.rate = rate
        self.redis_port = env["REDIS_PORT"]
        self.daemons = []
        self.notes = []
        self.producer = None
        self.after = None       # a scenario's own check, run once the daemons stopped
        self.checks = []        # failures of the scenario's own checks
        self.cleanups = []
        self.t0 = time.monotonic()
        suite.current = self
        suite.h_topics([(self.topic, partitions), (self.snap_topic, 1), (self.dlq_topic, 1)])
        self.stream = Stream(suite.items, n_users, n_events, seed,
                             os.path.join(env["HARNESS_TMP"], f"{name}.csv"), **stream_kw)
        self.expected = e2e.offline_replay(suite.model, self.stream.csv,
                                           os.path.join(env["HARNESS_TMP"], f"{name}.jsonl"))

    def config(self, cname, model=None, **keys):
        kw = dict(topic__events=self.topic, topic__snapshots=self.snap_topic,
                  topic__dlq=self.dlq_topic, redis__prefix=self.prefix,
                  redis__port=self.redis_port, metrics__listen="127.0.0.1:0")
        kw.update(keys)
        return e2e.write_config(self.suite.env, model or self.suite.model, cname,
                                group=self.group, **kw)

    def daemon(self, dname, conf, **kw):
        d = Daemon(self.suite.env, conf, f"{self.name}-{dname}", **kw)
        self.daemons.append(d)
        return d

    def produce(self):
        self.producer = Producer(self.suite.env, self.topic, self.stream, self.rate)
        self.producer.start()
        return self.producer

    def redis(self):
        return e2e.redis_client(dict(self.suite.env, REDIS_PORT=str(self.redis_port)))

    def applied_total(self):
        return sum(e2e.events_applied(self.redis(), self.prefix, list(self.stream.want)).values())

    def wait_sent(self, fraction, timeout_s=120):
        if harness.wait_for(lambda: self.producer.fraction() >= fraction, timeout_s, 0.05) is None:
            raise ScenarioError(f"producer did not reach {fraction:.0%} in {timeout_s} s")

    def wait_applied(self, n, timeout_s=60):
        if harness.wait_for(lambda: self.applied_total() >= n, timeout_s, 0.1) is None:
            raise ScenarioError(f"fewer than {n} events applied within {timeout_s} s "
                                f"({self.applied_total()})")

    def finish(self, timeout_s=180):
        """Waits for the producer and for Redis to reach the expected counts (or the
        timeout), stops the daemons (SIGTERM) and measures. Returns the result dict."""
        failures = []
        if self.producer is not None:
            self.producer.join(timeout_s)
            if self.producer.is_alive() or self.producer.undelivered or self.producer.errors:
                failures.append(f"producer: undelivered {self.producer.undelivered}, "
                                f"errors {self.producer.errors[:3]}")
        r = self.redis()
        self.settle(r, timeout_s)
        for d in self.daemons:
            if d.alive():
                rc = d.stop(timeout_s=60)
                if rc != 0:
                    failures.append(f"{d.name}: exit {rc} after SIGTERM")
        if self.after is not None:
            self.after()
        got = e2e.events_applied(r, self.prefix, list(self.stream.want))
        lost = sum(max(0, n - got.get(u, 0)) for u, n in self.stream.want.items())
        twice = sum(max(0, got.get(u, 0) - n) for u, n in self.stream.want.items())
        diffs = e2e.compare(r, self.prefix, self.expected)
        if lost:
            failures.append(f"{lost} good events not applied")
        if twice:
            failures.append(f"{twice} events applied more than once")
        if diffs:
            failures.append(f"{len(diffs)} differences from the offline replay, e.g. "
                            + "; ".join(x[:100] for x in diffs[:3]))
        dl, dl_msgs = dead_letters(self.suite.env, self.dlq_topic)
        if dl != self.stream.bad:
            failures.append(f"dead-lettered {dl} distinct messages, {self.stream.bad} bad sent")
        if dl_msgs != dl:
            self.notes.append(f"{dl_msgs - dl} dead letters written twice (their offsets "
                              "re-read after a crash or a lost partition)")
        hits = []
        for d in self.daemons:
            hits += harness.check_sanitizer(*d.logs)
        if hits:
            failures.append("sanitizer: " + hits[0])
        dups = sum(d.counter("interestd_events_duplicate_total") for d in self.daemons)
        return {"sent": self.stream.sent, "good": self.stream.good, "bad": self.stream.bad,
                "applied": sum(got.values()), "dead_lettered": dl, "duplicates": dups,
                "lost": lost, "applied_twice": twice, "replay_diffs": len(diffs),
                "failures": failures}

    def settle(self, r, timeout_s, idle_s=15):
        """Waits until every user's events_applied is as expected, or nothing moved
        for idle_s (a scenario that lost events: no use waiting the whole timeout)."""
        deadline = time.monotonic() + timeout_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            got = e2e.events_applied(r, self.prefix, list(self.stream.want))
            if all(got.get(u) == n for u, n in self.stream.want.items()):
                return True
            if got != last:
                last, since = got, time.monotonic()
            elif time.monotonic() - since > idle_s:
                log(f"{self.name}: no progress for {idle_s} s, measuring")
                return False
            time.sleep(0.5)
        return False

    def cleanup(self):
        if self.producer is not None:
            self.producer.stopping = True
        for d in self.daemons:
            d._cleanup()
        for fn in self.cleanups:
            fn()
        # Keep the daemon logs for a post-mortem: BUILD/faults-logs/<scenario>/.
        keep = os.path.join(e2e.build_dir(), "faults-logs", self.name)
        shutil.rmtree(keep, ignore_errors=True)
        os.makedirs(keep, exist_ok=True)
        for d in self.daemons:
            for path in d.logs:
                if os.path.exists(path):
                    shutil.copy(path, keep)


class Suite:
    """Runs scenarios on one stack; collects one result row per scenario."""

    def __init__(self, env, h, model, sample, seed=1, scale=1.0):
        self.env, self.h, self.model, self.sample = env, h, model, sample
        self.items = e2e.catalog_item_ids(sample)
        self.seed = seed
        self.scale = scale
        self.results = []

    def h_topics(self, specs):
        subprocess.run([harness.STACK, "topics", "--bootstrap", self.env["KAFKA_BOOTSTRAP"]] +
                       [f"{n}:{p}" for n, p in specs], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def n(self, x):
        return max(50, int(x * self.scale))

    def run(self, name, **params):
        fn = SCENARIOS[name]
        seed = self.seed * 1000 + len(self.results) + 1
        t0 = time.monotonic()
        log(f"--- {name} (seed {seed}) ---")
        run = self.current = None
        try:
            try:
                run = fn(self, name, seed, **params)
            finally:
                run = self.current
            res = run.finish()
        except (ScenarioError, SystemExit, Exception) as ex:  # noqa: BLE001 - reported
            msg = str(ex) if not isinstance(ex, SystemExit) else "a check exited (see log above)"
            log(f"{name}: {type(ex).__name__}: {msg}")
            st = getattr(run, "stream", None)
            res = {"sent": st.sent if st else 0, "good": st.good if st else 0,
                   "bad": st.bad if st else 0, "applied": None,
                   "dead_lettered": None, "duplicates": None, "lost": None,
                   "failures": [f"{type(ex).__name__}: {msg}"]}
            if st is not None:
                try:
                    res["applied"] = run.applied_total()
                    res["lost"] = max(0, st.good - res["applied"])
                except Exception:  # noqa: BLE001
                    pass
        finally:
            if run is not None:
                run.cleanup()
        res["failures"] = res["failures"] + (run.checks if run else [])
        row = {"name": name, **{k: res.get(k) for k in ("sent", "applied", "dead_lettered",
                                                        "duplicates", "lost")},
               "pass": not res["failures"], "good": res.get("good"), "bad": res.get("bad"),
               "applied_twice": res.get("applied_twice"), "seed": seed,
               "seconds": round(time.monotonic() - t0, 1),
               "notes": run.notes if run else [], "failures": res["failures"]}
        self.results.append(row)
        log(f"{name}: {'PASS' if row['pass'] else 'FAIL'} in {row['seconds']} s "
            f"{'; '.join(row['failures'])}")
        return row

    def table(self):
        cols = ["scenario", "sent", "applied", "dead-lettered", "duplicates", "lost", "result", "s"]
        rows = [[r["name"], r["sent"], r["applied"], r["dead_lettered"], r["duplicates"],
                 r["lost"], "pass" if r["pass"] else "FAIL", r["seconds"]] for r in self.results]
        rows = [["-" if v is None else str(v) for v in row] for row in rows]
        w = [max(len(c), *(len(row[i]) for row in rows)) if rows else len(c)
             for i, c in enumerate(cols)]
        out = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cols))]
        for row in rows:
            out.append("  ".join(v.ljust(w[i]) if i == 0 else v.rjust(w[i])
                                 for i, v in enumerate(row)))
        for r in self.results:
            for n in r["notes"]:
                out.append(f"  {r['name']}: {n}")
            for f in r["failures"]:
                out.append(f"  {r['name']}: FAILED: {f}")
        return "\n".join(out)

    def report(self, json_path=None):
        text = self.table()
        print(text, flush=True)
        if json_path:
            os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
            with open(json_path + ".tmp", "w") as f:
                json.dump({"seed": self.seed, "scale": self.scale, "scenarios": self.results},
                          f, indent=1)
                f.write("\n")
            os.replace(json_path + ".tmp", json_path)
        return all(r["pass"] for r in self.results)


# ---- scenarios --------------------------------------------------------------------------
# Each returns its Run after the fault (the stream may still be flowing); Suite.run
# then calls run.finish() for the common checks. run.checks collects failures of the
# scenario's own checks (a fault that did not happen as intended).

def _check(run, cond, msg):
    if not cond:
        run.checks.append(msg)
        log(f"{run.name}: check failed: {msg}")


def sc_kill9(suite, name, seed, kills=20, users=150, chunk=None, rate=150):
    """kill -9 at `kills` seeded moments, cycling through the phases; restart each time.
    The stream is released in chunks of `chunk` events, one per kill, after the
    restarted daemon owns its partitions: every kill lands while events flow."""
    chunk = chunk or suite.n(450)
    run = Run(suite, name, users, chunk * (kills + 1), rate, seed)
    rng = random.Random(seed)
    phases = [PHASES[i % len(PHASES)] for i in range(kills)]
    rng.shuffle(phases)
    if not have_gdb():
        phases = ["random"] * kills
    # Flushes on the interval only: at 150 events/s a flush after every drained poll
    # would hold one or two users, and "mid-pipeline" needs 2-4 replies in one flush.
    d = run.daemon("d", run.config(name, flush__when_caught_up="false"))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    landed = {p: 0 for p in PHASES}
    for i, phase in enumerate(phases):
        if not d.alive():
            d.dump()
            raise ScenarioError(f"daemon exited by itself before kill {i + 1}")
        run.producer.allowed = chunk * (i + 1)
        if phase != "random":
            run.wait_sent(chunk * i / run.stream.sent + 0.2 * chunk / run.stream.sent)
        note = kill_at(d, phase, rng, suite.env["HARNESS_TMP"])
        ok_hit = "NOT REACHED" not in note
        if ok_hit:
            landed[phase] += 1
        log(f"{name}: kill {i + 1}/{kills} at {note} (sent {run.producer.produced}, "
            f"applied {run.applied_total()})")
        _check(run, ok_hit, f"kill {i + 1}: {note}")
        d.start()
        d.wait_assigned(4, 60)
    run.producer.allowed = run.stream.sent
    total = {p: phases.count(p) for p in PHASES}
    run.notes.append("kills landed per phase: " + ", ".join(
        f"{p} {landed[p]}/{total[p]}" for p in PHASES if total[p]) +
        ("" if have_gdb() else " (no gdb: all at random delays)"))
    return run


def sc_redis_restart(suite, name, seed, users=150, events=None, rate=500, down_s=2.0,
                     persist=True):
    """redis-server killed -9 mid-stream and restarted: from its append-only file
    (appendfsync always), or with persist=False empty (every key lost, as after a
    failover to a replica that had nothing): the daemon must then find its
    flushed-through markers gone and re-apply the partitions from Kafka."""
    events = events or suite.n(4000)
    run = Run(suite, name, users, events, rate, seed)
    srv = AofRedis(suite.env["HARNESS_TMP"], persist=persist)
    run.cleanups.append(srv.stop)
    srv.start()
    run.redis_port = str(srv.port)
    d = run.daemon("d", run.config(name, redis__timeout_ms=500))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    run.wait_applied(events // 3)
    at = run.applied_total()
    srv.kill9()
    log(f"{name}: redis-server killed -9 ({at} events applied)")
    time.sleep(down_s)
    if not persist:
        # Without its cache the daemon cannot paper over the loss by rewriting the
        # users it holds in memory: kill it too, start it after Redis is back.
        d.kill9()
    srv.start()
    if not persist:
        d.start()
    log(f"{name}: redis-server restarted " + ("from its AOF" if persist else
                                                 f"EMPTY ({run.applied_total()} applied)"))
    if persist:
        d.wait_log(r"event=redis_recovered", 60, current=False)
    else:
        d.wait_assigned(4, 60)
    _check(run, "event=redis_unavailable" in d.log_text(), "no event=redis_unavailable logged")
    if persist:
        run.notes.append(f"Redis down {down_s:.0f} s after {at} applied; AOF restored it")
    else:
        rb = d.log_text().count("event=redis_rollback_detected")
        run.notes.append(f"Redis down {down_s:.0f} s after {at} applied, came back empty, "
                         f"daemon killed -9 meanwhile (cache lost); "
                         f"redis_rollback_detected logged {rb}x")
    return run


def sc_redis_restart_empty(suite, name, seed, **kw):
    return sc_redis_restart(suite, name, seed, persist=False, **kw)


def sc_redis_pause(suite, name, seed, users=150, events=None, rate=500, pause_ms=4000):
    """CLIENT PAUSE ALL for longer than the flush interval (and the Redis timeout)."""
    events = events or suite.n(4000)
    run = Run(suite, name, users, events, rate, seed)
    d = run.daemon("d", run.config(name, redis__timeout_ms=1000, flush__interval_ms=100))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    run.wait_applied(events // 4)
    r = run.redis()
    r.execute_command("CLIENT", "PAUSE", str(pause_ms // 4), "ALL")
    time.sleep(pause_ms / 4000 + 0.5)
    at = run.applied_total()
    r.execute_command("CLIENT", "PAUSE", str(pause_ms), "ALL")
    log(f"{name}: CLIENT PAUSE {pause_ms // 4} ms then {pause_ms} ms ALL (flush interval 100 ms)")
    time.sleep(pause_ms / 1000 + 0.5)
    _check(run, d.alive(), "daemon exited during the pause")
    d.wait_log(r"event=redis_recovered", 60, current=False)
    run.notes.append(f"pauses of {pause_ms // 4} and {pause_ms} ms; redis_unavailable logged "
                     f"{d.log_text().count('event=redis_unavailable')}x; "
                     f"{at} applied before the long pause")
    return run


def sc_kafka_restart(suite, name, seed, users=150, events=None, rate=400, down_s=3.0):
    """The Kafka broker killed -9 mid-stream and restarted on the same data dir."""
    env = suite.env
    if not env.get("STACK_DIR") or not suite.h.own_dir:
        raise ScenarioError("kafka-restart needs a private stack")
    events = events or suite.n(6000)
    run = Run(suite, name, users, events, rate, seed)
    d = run.daemon("d", run.config(name))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    run.wait_applied(events // 4)
    with open(os.path.join(env["STACK_DIR"], "kafka.pid")) as f:
        kpid = int(f.read().split()[0])
    os.kill(kpid, signal.SIGKILL)
    t0 = time.monotonic()
    log(f"{name}: Kafka broker pid {kpid} killed -9 at {run.producer.fraction():.0%} sent")
    time.sleep(down_s)
    r = subprocess.run([harness.STACK, "up", "--dir", env["STACK_DIR"], "--only", "kafka",
                        "--kafka-port", env["KAFKA_PORT"], "--controller-port",
                        env["KAFKA_CONTROLLER_PORT"], "--no-topics"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise ScenarioError(f"Kafka did not restart: {r.stdout[-500:]}")
    log(f"{name}: Kafka back after {time.monotonic() - t0:.1f} s")
    run.notes.append(f"broker down {time.monotonic() - t0:.0f} s (kill -9, restart on same data)")
    _check(run, d.alive(), "daemon exited while the broker was down")
    return run


def sc_rebalance(suite, name, seed, users=150, events=None, rate=400):
    """A second instance joins mid-stream; later the first leaves (SIGTERM)."""
    events = events or suite.n(5000)
    run = Run(suite, name, users, events, rate, seed)
    d1 = run.daemon("d1", run.config(name + "-1"))
    d1.start()
    d1.wait_assigned(4, 60)
    run.produce()
    run.wait_sent(0.25)
    d2 = run.daemon("d2", run.config(name + "-2"))
    d2.start()
    d2.wait_log(r"event=assigned .*owned=2\b", 60)
    joined = run.producer.fraction()
    log(f"{name}: d2 joined at {joined:.0%} sent: 2 partitions each")
    run.wait_sent(0.6)
    at = d2.mark()
    rc = d1.stop(timeout_s=60)
    _check(run, rc == 0, f"d1 exit {rc} after SIGTERM")
    d2.wait_assigned(4, 60, since=at)
    left = run.producer.fraction()
    log(f"{name}: d1 left at {left:.0%} sent; d2 owns all 4")
    lost = sum(d.log_text().count("event=partitions_lost") for d in (d1, d2))
    run.notes.append(f"d2 started at 25% sent, owned 2 partitions at {joined:.0%}; d1 left "
                     f"(SIGTERM) at {left:.0%}" +
                     (f"; partitions_lost logged {lost}x" if lost else ""))
    run.after = lambda: _check(
        run, d1.counter("interestd_events_applied_total") > 0 and
        d2.counter("interestd_events_applied_total") > 0, "both instances must apply events")
    return run


def sc_zombie(suite, name, seed, freezes=20, users=120, chunk=None, rate=300):
    """Two instances, 2 partitions each. `freezes` times: d1 is frozen (SIGSTOP) longer
    than session.timeout.ms (6 s), every Redis client connection is cut (CLIENT KILL
    TYPE normal) at a seeded moment of the freeze, d2 takes d1's partitions and writes,
    and d1 is thawed (SIGCONT) while d2 is writing: d1 wakes believing it owns its
    partitions, with a Redis connection to re-make. A chunk of the stream flows during
    each freeze; after each, once the chunk is sent, the group's lag must return to 0
    and Redis must equal the offline replay of everything sent so far."""
    chunk = chunk or suite.n(300)
    run = Run(suite, name, users, chunk * (freezes + 1), rate, seed)
    rng = random.Random(seed)
    # A lease shorter than the freeze: d1's lease has lapsed and d2 holds a newer epoch
    # by the time d1 wakes, so whatever d1 then writes must be refused.
    d1 = run.daemon("d1", run.config(name + "-1", redis__lease_ms=4000))
    d2 = run.daemon("d2", run.config(name + "-2", redis__lease_ms=4000))
    d1.start()
    d1.wait_assigned(4, 60)
    d2.start()
    d2.wait_log(r"event=assigned .*owned=2\b", 60)
    run.produce()
    r = run.redis()
    tmp = suite.env["HARNESS_TMP"]
    fenced = 0
    held = held_fenced = 0
    for i in range(freezes):
        for d in (d1, d2):
            if not d.alive():
                d.dump()
                raise ScenarioError(f"{d.name} exited by itself before freeze {i + 1}")
        # d1 serves partitions again (the cooperative rebalance after its last freeze)
        if harness.wait_for(lambda: int((re.findall(r"event=assigned .*owned=(\d+)",
                                                    d1.current_log()) or ["0"])[-1]) > 0,
                            60, 0.2) is None:
            raise ScenarioError(f"freeze {i + 1}: d1 was given no partition back in 60 s")

        def release_chunk():
            run.producer.allowed = chunk * (i + 1)
        freeze_s = rng.uniform(7.0, 11.0)
        cut_s = rng.uniform(0.3, freeze_s - 0.3)
        at1, at2 = d1.mark(), d2.mark()
        # Every other freeze stops d1 at the entry of a flush (gdb) and leaves its Redis
        # connection whole, so on waking its first act is to write, with its old epoch,
        # users it applied before the freeze (a cut connection would fail that write
        # first, and the 100 ms before the reconnect let Kafka's revocation arrive).
        # The others freeze it wherever SIGSTOP finds it (mostly waiting in poll) and
        # cut every Redis connection at a seeded moment of the freeze.
        hold = hold_at(d1, "poll-flush", 0, tmp, armed=release_chunk) if i % 2 == 1 else None
        if i % 2 == 0:
            release_chunk()
        if hold is None:
            d1.send(signal.SIGSTOP)
            time.sleep(cut_s)
            r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            time.sleep(freeze_s - cut_s)
        else:
            time.sleep(freeze_s)
        if hold is not None:
            hold.release()
        else:
            d1.send(signal.SIGCONT)
        took = bool(re.search(r"event=assigned .*owned=4\b", d2.current_log()[at2:]))
        sent = chunk * (i + 1)
        if harness.wait_for(lambda: run.producer.produced >= sent, 120, 0.1) is None:
            raise ScenarioError(f"freeze {i + 1}: the chunk was not sent")
        ends = None

        def caught_up():
            nonlocal ends
            ends = sum(v for v in e2e.committed_offsets(suite.env, run.group, run.topic).values()
                       if v > 0)
            return ends >= sent
        if harness.wait_for(caught_up, 90, 0.5) is None:
            for d in (d1, d2):
                d.dump(40)
            raise ScenarioError(f"freeze {i + 1}: lag did not return to 0 "
                                f"(committed {ends} of {sent} offsets)")
        k = run.stream.good_before[sent]
        part = os.path.join(tmp, f"{name}-{i}.csv")
        e2e.write_events(part, run.stream.rows[:k])
        want = e2e.offline_replay(suite.model, part, part + ".jsonl")
        ok = harness.wait_for(lambda: not e2e.compare(r, run.prefix, want), 30, 0.5)
        if ok is None:
            diffs = e2e.compare(r, run.prefix, want)
            raise ScenarioError(f"freeze {i + 1}: Redis differs from the replay of the "
                                f"{k} good events sent: {diffs[:3]}")
        n_fenced = d1.current_log()[at1:].count("event=partition_fenced")
        fenced += n_fenced
        if hold is not None:
            held += 1
            held_fenced += n_fenced > 0
        log(f"{name}: freeze {i + 1}/{freezes}: {freeze_s:.1f} s "
            f"({'in a flush, Redis connection kept: ' + hold.what if hold else f'SIGSTOP, Redis cut at {cut_s:.1f} s'}); "
            f"d2 took all 4: {took}; d1 fenced {n_fenced}; lag 0 and "
            f"Redis = replay of {k} events")
    run.producer.allowed = run.stream.sent
    run.notes.append(f"{freezes} freezes of 7-11 s: {freezes - held} SIGSTOP with the Redis "
                     f"connections cut, {held} stopped at a flush's entry (gdb) with the "
                     f"connection kept; d1 logged {fenced} partitions "
                     f"fenced on waking, in {held_fenced} of the {held} stopped in a flush")
    if held:
        _check(run, held_fenced > 0, f"none of the {held} freezes in a flush fenced d1: "
                                     "the thawed instance never met a newer owner")
    return run


def _model_kept(run, version):
    """A check for run.after: every user's model_version is still `version`."""
    def check():
        r = run.redis()
        vs = {r.hget(f"{run.prefix}{{{u}}}:meta", "model_version") for u in run.stream.want}
        _check(run, vs == {str(version).encode()}, f"model_version after refused reloads: {vs}")
    return check


def sc_sighup_bad_model(suite, name, seed, users=150, events=None, rate=500):
    """SIGHUP to a truncated, then to a corrupt model file, each installed by rename
    (the serving file's inode untouched): both refused, the old model keeps serving."""
    events = events or suite.n(4000)
    run = Run(suite, name, users, events, rate, seed)
    tmp = suite.env["HARNESS_TMP"]
    live = os.path.join(tmp, f"{name}-live.imdl")
    e2e.install(suite.model, live)
    d = run.daemon("d", run.config(name, model=live))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    run.wait_sent(0.3)
    with open(suite.model, "rb") as f:
        data = f.read()
    with open(live + ".bad", "wb") as f:
        f.write(data[:len(data) // 2])
    os.rename(live + ".bad", live)
    at = d.mark()
    d.send(signal.SIGHUP)
    m1 = wait_line(d, r"model reload FAILED: .*", 30, since=at)
    log(f"{name}: truncated file refused: {m1.group(0)[:120]}")
    run.wait_sent(0.6)
    e2e.corrupt_copy(suite.model, live + ".bad", b"WGHT")
    os.rename(live + ".bad", live)
    at = d.mark()
    d.send(signal.SIGHUP)
    m2 = wait_line(d, r"model reload FAILED: .*", 30, since=at)
    log(f"{name}: corrupt file refused: {m2.group(0)[:120]}")
    _check(run, "WGHT" in m2.group(0), f"reload failure does not name WGHT: {m2.group(0)}")
    va = e2e.model_version(suite.model)
    run.after = _model_kept(run, va)
    run.notes.append(f"truncated (by rename) at 30% sent, corrupt WGHT at 60%: both refused, "
                     f"model {va} kept")
    return run


def sc_model_truncated_in_place(suite, name, seed, users=150, events=None, rate=500):
    """The serving model file truncated in place (what `cp new live` or an interrupted
    copy does to it), then SIGHUP: the reload must be refused and the old model keep
    serving."""
    events = events or suite.n(4000)
    run = Run(suite, name, users, events, rate, seed)
    live = os.path.join(suite.env["HARNESS_TMP"], f"{name}-live.imdl")
    e2e.install(suite.model, live)
    d = run.daemon("d", run.config(name, model=live))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    run.wait_sent(0.3)
    size = os.path.getsize(live)
    with open(live, "r+b") as f:
        f.truncate(size // 2)
    at = d.mark()
    d.send(signal.SIGHUP)
    try:
        m = wait_line(d, r"model reload FAILED: .*", 30, since=at)
        log(f"{name}: refused: {m.group(0)[:120]}")
        run.wait_sent(0.6)
        if not d.alive():
            raise ScenarioError(f"{d.name} died ({exit_desc(d.proc.returncode)}) after the "
                                "refused reload")
    except ScenarioError as ex:
        # A finding: record it, then measure what the crash cost. The daemon is
        # restarted on the good file, as systemd's Restart= would.
        _check(run, False, str(ex))
        d.fp.close()
        e2e.install(suite.model, live)
        run.notes.append("daemon crashed; restarted on the good model file to measure loss")
        d.start()
        d.wait_assigned(4, 60)
    va = e2e.model_version(suite.model)
    run.after = _model_kept(run, va)
    run.notes.append(f"serving file truncated in place to {size // 2} of {size} bytes at 30% "
                     "sent, then SIGHUP")
    return run


def sc_snapshot_topic_missing(suite, name, seed, users=150, events=None, rate=500,
                              missing_s=6.0):
    """The snapshot topic does not exist (producer auto-create off) for a while mid-run:
    events must still be applied; snapshots are delivered once the topic exists."""
    events = events or suite.n(4000)
    run = Run(suite, name, users, events, rate, seed)
    run.snap_topic = run.snap_topic + "-late"
    d = run.daemon("d", run.config(name, snapshot__every_events=5,
                                   kafka__producer__allow__auto__create__topics="false"))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    t0 = time.monotonic()
    run.wait_applied(events // 4)
    time.sleep(max(0.0, missing_s - (time.monotonic() - t0)))
    before = run.applied_total()
    exists = topic_exists(suite.env, run.snap_topic)
    _check(run, not exists, f"snapshot topic {run.snap_topic} exists before we created it")
    _check(run, before > 0, "no event applied while the snapshot topic was missing")
    suite.h_topics([(run.snap_topic, 1)])
    log(f"{name}: snapshot topic created after {time.monotonic() - t0:.1f} s; "
        f"{before} events applied meanwhile")

    def snapshots():
        # Every snapshot the daemon produced is in the topic (none failed).
        produced = d.counter("interestd_snapshots_total")
        failed = "event=snapshot_delivery_failed" in d.log_text()
        n = len(topic_messages(suite.env, run.snap_topic))
        run.notes.append(f"topic missing for {missing_s:.0f} s, {before} events applied meanwhile; "
                         f"snapshots produced {produced}, in topic {n}"
                         + (", delivery failures logged" if failed else ""))
        _check(run, n > 0, "no snapshot delivered after the topic appeared")
        _check(run, not failed and n >= produced,
               f"snapshots lost: produced {produced}, in topic {n}, failure logged {failed}")
    run.after = snapshots
    return run


def sc_dlq_down(suite, name, seed, users=100, events=None, rate=300, missing_s=12.0):
    """The dead-letter topic is unavailable (it does not exist, producer auto-create off,
    message.timeout.ms 3 s) while bad messages arrive: each failed dead letter must pause
    the partitions and read them again, never exit or commit past the letter; once the
    topic exists every bad message is dead-lettered and every good event applied."""
    events = events or suite.n(2000)
    run = Run(suite, name, users, events, rate, seed)
    run.dlq_topic = run.dlq_topic + "-late"
    d = run.daemon("d", run.config(name, kafka__producer__allow__auto__create__topics="false",
                                   kafka__producer__message__timeout__ms="3000"))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    t0 = time.monotonic()
    d.wait_log(r"event=dead_letters_undeliverable .*action=pause_and_retry", 60)
    time.sleep(max(0.0, missing_s - (time.monotonic() - t0)))
    _check(run, d.alive(), "the daemon exited while the dead-letter topic was missing")
    _check(run, not topic_exists(suite.env, run.dlq_topic),
           f"dead-letter topic {run.dlq_topic} exists before we created it")
    failures = d.counter("interestd_dead_letter_failures_total")
    suite.h_topics([(run.dlq_topic, 1)])
    log(f"{name}: dead-letter topic created after {time.monotonic() - t0:.1f} s; "
        f"{failures} dead-letter failures counted meanwhile")
    run.notes.append(f"dead-letter topic missing for {missing_s:.0f} s: "
                     f"{failures} failed letters counted, partitions paused and re-read")
    _check(run, failures > 0, "no dead-letter failure counted while the topic was missing")
    return run


def sc_freeze_stall(suite, name, seed, rounds=7, users=40, rate=200, freeze_s=20.0,
                    after_s=10.0):
    """The recipe of a silent stall once seen in 1 run of 7: two instances, 2
    partitions, redis-server closing idle connections after 3 s (`timeout 3`), 200
    events/s for 40 users; `rounds` times instance a is frozen (SIGSTOP) for 20 s, past
    session.timeout.ms, and thawed, 10 s apart. Every event must be applied (a stalled
    partition leaves its events out of Redis, which the common checks catch); a stall
    the watchdog had to break (`partition_stalled`) is a failure too: the pause state
    must never need it."""
    events = int(rate * (rounds * (freeze_s + after_s) + 10))
    run = Run(suite, name, users, events, rate, seed, partitions=2)
    r = run.redis()
    old = r.config_get("timeout").get("timeout", "0")
    r.config_set("timeout", 3)
    run.cleanups.append(lambda: run.redis().config_set("timeout", old))
    a = run.daemon("a", run.config(name + "-a"))
    b = run.daemon("b", run.config(name + "-b"))
    a.start()
    a.wait_assigned(2, 60)
    b.start()
    b.wait_log(r"event=assigned .*owned=1\b", 60)
    run.produce()
    for i in range(rounds):
        time.sleep(after_s)
        for d in (a, b):
            if not d.alive():
                d.dump(20)
                raise ScenarioError(f"{d.name} exited by itself before freeze {i + 1}")
        a.send(signal.SIGSTOP)
        time.sleep(freeze_s)
        a.send(signal.SIGCONT)
        log(f"{name}: freeze {i + 1}/{rounds} of {freeze_s:.0f} s done "
            f"({run.producer.produced} sent, {run.applied_total()} applied)")

    def after():
        stalls = sum(d.current_log().count("event=partition_stalled") for d in (a, b))
        _check(run, stalls == 0, f"{stalls} partitions found stalled by the watchdog")
        run.notes.append(f"{rounds} freezes of {freeze_s:.0f} s with Redis closing idle "
                         f"connections after 3 s: {stalls} stalls")
    run.after = after
    return run


def _letters(env, topic):
    """Every dead letter as (reason, partition, offset, value)."""
    out = []
    for m in topic_messages(env, topic):
        h = {k: (v or b"").decode() for k, v in (m.headers() or [])}
        out.append((h.get("interestd.reason"), h.get("interestd.partition"),
                     h.get("interestd.offset"), m.value()))
    return out


def sc_poison(suite, name, seed, users=120, events=None, rate=400, max_crashes=2):
    """A message that kills the daemon whenever it reads it (the test-only build
    tools/interestd-crashhook aborts at INTERESTD_TEST_CRASH_AT, a seeded partition and
    offset), restarted after each death as systemd would: the in-flight range is narrowed
    to that message, which is dead-lettered as `crashed` after poll.max_crashes deaths
    alone in flight; every other event is applied once and Redis equals the replay
    without it."""
    events = events or suite.n(3000)
    run = Run(suite, name, users, events, rate, seed)
    rng = random.Random(seed)
    hook = os.path.join(e2e.build_dir(), "tools", "interestd-crashhook")
    if not os.access(hook, os.X_OK):
        raise ScenarioError(f"{hook} not built (make all)")
    at_p, at_o = rng.randrange(4), rng.randrange(40, max(41, events // 12))
    d = run.daemon("d", run.config(name, poll__max_crashes=max_crashes), binary=hook,
                   extra_env={"INTERESTD_TEST_CRASH_AT": f"{at_p}:{at_o}"})
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    deaths = 0
    deadline = time.monotonic() + 300
    while "event=poison_message" not in d.current_log():
        if time.monotonic() > deadline:
            raise ScenarioError(f"no poison_message line within 300 s ({deaths} deaths)")
        rc = d.proc.poll()
        if rc is not None:
            if "event=test_crash" not in d.current_log():
                d.dump(20)
                raise ScenarioError(f"{d.name} {exit_desc(rc)} without the test crash")
            deaths += 1
            if deaths > max_crashes + 1:
                raise ScenarioError(f"{deaths} deaths: the poison was not named after "
                                    f"{max_crashes} alone in flight")
            d.start()
        time.sleep(0.1)
    m = wait_line(d, rf"event=poison_message topic=\S+ partition={at_p} offset={at_o} "
                     rf"crashes={max_crashes} action=dead_letter_as_crashed", 10)
    _check(run, deaths in (max_crashes, max_crashes + 1),
           f"{deaths} deaths; want {max_crashes} alone in flight (+1 with a wider range)")
    # The poison is whatever landed there: a good event leaves the expected state.
    msgs = [x for x in topic_messages(suite.env, run.topic, partitions=4)
            if x.partition() == at_p and x.offset() == at_o]
    if not msgs:
        raise ScenarioError(f"no message at partition {at_p} offset {at_o}")
    value = msgs[0].value()
    st = run.stream
    idx = st.good_values.get(value)
    if idx is not None:
        row = st.rows.pop(idx)
        st.want[row["user_id"]] -= 1
        st.good -= 1
        st.bad += 1
        e2e.write_events(st.csv, st.rows)
        run.expected = e2e.offline_replay(suite.model, st.csv, st.csv + ".jsonl")

    def after():
        crashed = [x for x in _letters(suite.env, run.dlq_topic) if x[0] == "crashed"]
        _check(run, len(crashed) == 1 and crashed[0][1:] == (str(at_p), str(at_o), value),
               f"dead letters with reason crashed: {[x[:3] for x in crashed]}; want one "
               f"from {at_p}/{at_o} with the original value")
    run.after = after
    run.notes.append(f"poison at {at_p}/{at_o} ({'a good event' if idx is not None else 'a bad message'}"
                     f"): {deaths} deaths, then dead-lettered as crashed "
                     f"({m.group(0)[:60]}...)")
    return run


def sc_duplicate_events(suite, name, seed, users=120, events=None, rate=400):
    """The same events produced twice at new offsets, as a producer that retries
    without idempotence or replays its file does: about one good event in 8 sent again
    0-40 messages later, and at the middle the last 60 events sent again in order, just
    after the daemon was restarted (its users' recent event ids read back from Redis).
    Every copy must be skipped by its event id and counted."""
    events = events or suite.n(3000)
    run = Run(suite, name, users, events, rate, seed, dup_every=8, replay_last=60)
    d = run.daemon("d", run.config(name))
    d.start()
    d.wait_assigned(4, 60)
    st = run.stream
    p = run.produce()
    p.allowed = st.replay_at
    run.wait_sent(st.replay_at / st.sent)
    run.wait_applied(st.good_before[st.replay_at], 90)
    rc = d.stop(timeout_s=60)
    _check(run, rc == 0, f"{d.name}: exit {rc} after SIGTERM")
    d.start()
    d.wait_assigned(4, 60)
    p.allowed = st.sent

    def after():
        n = d.counter('interestd_events_duplicate_total{reason="event_id"}')
        _check(run, n == st.dups, f"{n} duplicates counted by event id; {st.dups} copies sent")
        run.notes.append(f"{st.dups} copies of good events sent (60 of them replayed right "
                         f"after a restart): {n} skipped by event id")
    run.after = after
    return run


def sc_key_mismatch(suite, name, seed, users=120, events=None, rate=400):
    """Messages whose Kafka key is not their user_id (a producer keying by something
    else): each lands on the partition of the key, not of its user, and must be
    dead-lettered as key_mismatch (the default), never applied to its user."""
    events = events or suite.n(3000)
    run = Run(suite, name, users, events, rate, seed, bad_every=30,
              kinds=BAD_KINDS + ["key_mismatch"] * 4)
    d = run.daemon("d", run.config(name))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    want = run.stream.bad_kinds.get("key_mismatch", 0)

    def after():
        got = sum(1 for x in _letters(suite.env, run.dlq_topic) if x[0] == "key_mismatch")
        _check(run, want > 0 and got == want,
               f"{got} dead letters with reason key_mismatch; {want} sent")
        run.notes.append(f"{want} messages keyed by another user: {got} dead-lettered as "
                         "key_mismatch")
    run.after = after
    return run


def sc_failover_lost_ack(suite, name, seed, users=150, events=None, rate=400):
    """Redis with a replica behind one address (a proxy port that a failover points
    at the replica), redis.wait_replicas = 0. Mid-stream the replica stops receiving
    (REPLICAOF NO ONE: it is promoted with what it had); the daemon goes on writing to
    the primary, which acknowledges; gdb stops the daemon at an offset commit (every
    write of that flush acknowledged, the offsets not yet committed), the primary is
    killed -9 and the address moved to the replica, and the daemon goes on: it commits
    offsets past writes the new primary never had. It must notice at its reconnect and
    apply those events again from Kafka: nothing lost, Redis equal to the replay."""
    events = events or suite.n(4000)
    run = Run(suite, name, users, events, rate, seed)
    rng = random.Random(seed)
    tmp = suite.env["HARNESS_TMP"]
    primary = AofRedis(tmp, persist=False).start()
    run.cleanups.append(primary.stop)
    replica = AofRedis(tmp, persist=False,
                       extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    run.cleanups.append(replica.stop)
    rep = e2e.redis_client(dict(suite.env, REDIS_PORT=str(replica.port)))
    pri = e2e.redis_client(dict(suite.env, REDIS_PORT=str(primary.port)))
    if harness.wait_for(lambda: rep.info("replication").get("master_link_status") == "up",
                        30, 0.1) is None:
        raise ScenarioError("the replica did not connect to the primary")
    proxy = Proxy(primary.port)
    run.cleanups.append(proxy.close)
    run.redis_port = proxy.port
    d = run.daemon("d", run.config(name, redis__wait_replicas=0))
    d.start()
    d.wait_assigned(4, 60)
    run.produce()
    run.wait_sent(rng.uniform(0.3, 0.5))

    def applied(c):
        return sum(e2e.events_applied(c, run.prefix, list(run.stream.want)).values())
    rep.execute_command("REPLICAOF", "NO", "ONE")
    on_replica = applied(rep)
    mark = d.mark()
    hold = hold_at(d, "ack-commit", rng.randrange(1, 4), tmp)
    if hold is None:
        time.sleep(rng.uniform(0.5, 1.5))  # no gdb: the kill lands at some moment
    on_primary = applied(pri)
    primary.kill9()
    proxy.switch(replica.port)
    if hold is not None:
        hold.release()
    lost = on_primary - on_replica
    log(f"{name}: primary killed at {hold.what if hold else 'a random moment'}; "
        f"{on_primary} events applied there, {on_replica} on the promoted replica")
    _check(run, lost > 0, f"the primary acknowledged nothing the replica lacks "
                          f"({on_primary} vs {on_replica}): the failover lost nothing to find")
    wait_line(d, r"event=redis_rollback_detected", 60, since=mark)
    run.notes.append(f"failover at {hold.what if hold else 'a random moment (no gdb)'}: "
                     f"{lost} acknowledged events missing on the promoted replica; "
                     f"redis_rollback_detected logged, re-applied from Kafka")
    return run


SCENARIOS = {
    "kill9": sc_kill9,
    "redis-restart": sc_redis_restart,
    "redis-restart-empty": sc_redis_restart_empty,
    "redis-pause": sc_redis_pause,
    "kafka-restart": sc_kafka_restart,
    "rebalance": sc_rebalance,
    "zombie": sc_zombie,
    "dlq-down": sc_dlq_down,
    "failover-lost-ack": sc_failover_lost_ack,
    "poison": sc_poison,
    "duplicate-events": sc_duplicate_events,
    "key-mismatch": sc_key_mismatch,
    "freeze-stall": sc_freeze_stall,
    "sighup-bad-model": sc_sighup_bad_model,
    "model-truncated-in-place": sc_model_truncated_in_place,
    "snapshot-topic-missing": sc_snapshot_topic_missing,
}
