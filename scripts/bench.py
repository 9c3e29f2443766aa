#!/usr/bin/env python3
"""interestd's benchmark driver (`make bench`, method in docs/BENCH.md).

Starts a private Kafka + Redis stack (scripts/stack, free loopback ports, in a
temporary directory removed at exit), builds a bench model (d, H, I items:
make-sample items -> scripts/catalog build -> interest-train --epochs 1,
cached under BUILD/bench), produces the events with the C load generator,
then per repetition: the ceiling (plain librdkafka batch consumer), interestd
flat out (OpenBLAS's own core choice, and OPENBLAS_CORETYPE set to the first
candidate core `interestd -n` accepts on this CPU), the in-process compute
floor, the Python peer and interestd on the peer's topic (same events: Redis
values compared), and the latency run at half of interestd's flat-out rate.
Medians of the repetitions go to BUILD/bench.json and are printed as a table.

Every wait has a deadline and watches the processes it depends on (the
daemon or tool it waits for, Kafka and Redis): one that dies ends the run
with its exit status or signal and the tail of its log, exit status 1.
Sizes: short by default (a few minutes), BENCH_FULL=1 (or --full) for the
long run; flags or BENCH_* variables override either.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))

import numpy as np  # noqa: E402
import redis  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from interestd_py import cli  # noqa: E402
from stack import owned_pid  # noqa: E402  (scripts/lib/stack.py)

PARTITIONS = 4
PROBE_EVERY = 100     # at most one probe user in this many (latency run)
PROBE_SAMPLES = 2000  # probe events aimed at in a latency run
CORE_ENV = "OPENBLAS_CORETYPE"
CORE_CANDIDATES = "SkylakeX,Haswell"  # tried in order; the first interestd accepts runs
TIERED_CONF = "topn.search = tiered\n"  # the default topn.probe_items
ONLINE_ON_CONF = "metrics.online = true\n"  # the online metrics on: what they cost
EX_CONFIG = 78        # interestd: bad configuration, e.g. a core type this CPU lacks

# Sizes (docs/BENCH.md "Sizes"): the short default and BENCH_FULL=1.
SIZES = {
    "default": {"users": 100000, "items": 20000, "events": 60000, "hidden": 64, "dim": 64,
                "reps": 3, "peer_events": 20000, "lat_seconds": 6},
    "full": {"users": 100000, "items": 20000, "events": 2000000, "hidden": 64, "dim": 64,
             "reps": 3, "peer_events": 100000, "lat_seconds": 20},
}

# Deadlines. A process we wait for is watched all along (its death ends the
# wait at once); these bound a live process that stops making progress.
STACK_TIMEOUT_S = 180       # scripts/stack up (Kafka's own start limit is 120 s)
TOPIC_TIMEOUT_S = 90        # scripts/stack topics
MODEL_STEP_TIMEOUT_S = 900  # make-sample, catalog build, interest-train (1M items: ~200 s)
TOOL_TIMEOUT_S = 120        # bench-kernel, bench-ceiling, interestd -n: fixed work
READY_TIMEOUT_S = 60        # exec to READY=1, and READY to event=assigned
STALL_TIMEOUT_S = 60        # committed offsets that do not advance for this long
STOP_TIMEOUT_S = 60         # SIGTERM to exit, then SIGKILL
MIN_EPS = 500               # events/s below which a run over a topic counts as stuck
LOG_TAIL_LINES = 15
READER_JOIN_S = 2           # a dead daemon's last log lines: read until its pipe ends


class BenchError(Exception):
    """A failed step; the message says what and why, and ends the run."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def exit_text(returncode):
    """A process's end as Popen.returncode gives it: "signal SIGILL (4)" or "status 78"."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name} ({-returncode})"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


def file_tail(path, lines=LOG_TAIL_LINES):
    """The last lines of a text file, "" if it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def tail_block(tail, name):
    """tail (lines of a log) indented under a heading naming it, for an error message."""
    if not tail.strip():
        return ""
    return f"\n  last lines of {name}:\n" + "".join(
        f"    {line}\n" for line in tail.rstrip("\n").split("\n")).rstrip("\n")


def run_deadline(events):
    """Seconds a run over events events may take: at MIN_EPS, plus start-up."""
    return READY_TIMEOUT_S + events / MIN_EPS


def wait_for(what, check, timeout_s, watch=(), every_s=0.05):
    """Calls check() until it returns something other than None and returns that.
    Before each call every process in watch is asked dead() (None while it runs,
    else (how it ended, the tail of its log)): a dead one, or timeout_s passing,
    raises BenchError naming what was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        for w in watch:
            why = w.dead()
            if why is not None:
                raise BenchError(f"{why[0]} while waiting for {what}{why[1]}")
        v = check()
        if v is not None:
            return v
        if time.monotonic() > deadline:
            raise BenchError(f"no {what} within {timeout_s:.0f} s")
        time.sleep(every_s)


class Child:
    """A tool run to its end: stdout and stderr into files of the work directory."""

    def __init__(self, cmd, name, work, env=None):
        self.name = name
        self.out = tempfile.TemporaryFile("w+", dir=work)
        fd, self.err_path = tempfile.mkstemp(prefix=f"{os.path.basename(cmd[0])}-",
                                             suffix=".err", dir=work)
        with os.fdopen(fd, "w") as err:
            self.p = subprocess.Popen(cmd, stdout=self.out, stderr=err, env=env, cwd=ROOT)
        self.rusage = None

    def reaped(self):
        """The rusage once the process has ended (reaped here), else None."""
        pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = ru
        return ru

    def kill(self):
        if self.p.returncode is None:
            self.p.kill()
            self.p.wait()

    def stdout(self):
        self.out.seek(0)
        return self.out.read()

    def failure(self):
        return (f"{self.name} exited with {exit_text(self.p.returncode)}"
                + tail_block(file_tail(self.err_path), "its stderr"))


class StackWatch:
    """Kafka and Redis of the bench's stack: gone is an error for every wait."""

    def __init__(self, stack_dir):
        self.dir = stack_dir
        self.pids = {name: owned_pid(os.path.join(stack_dir, f"{name}.pid"),
                                     os.path.join(stack_dir, name)) for name in ("kafka", "redis")}

    def dead(self):
        for name, pid in self.pids.items():
            if pid is None or owned_pid(os.path.join(self.dir, f"{name}.pid"),
                                        os.path.join(self.dir, name)) != pid:
                return (f"{name} of the bench's stack (pid {pid}) is gone",
                        tail_block(file_tail(os.path.join(self.dir, f"{name}.out")),
                                   f"{name}.out"))
        return None


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = os.path.realpath(os.path.join(ROOT, a.build))
        self.cache = os.path.join(self.build, "bench")  # bench models, kept between runs
        os.makedirs(self.cache, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="interestd-bench-")
        self.stack_dir = os.path.join(self.work, "stack")
        self.children = []
        self.daemons = []
        self.watch = []  # the stack, once it is up
        self.run_id = str(int(time.time()))

    # ---- processes ---------------------------------------------------------
    def tool(self, name):
        return os.path.join(self.build, "tools", name)

    def run(self, cmd, name, timeout_s, env=None, watch=(), ok=(0,)):
        """Runs cmd to its end within timeout_s, watching the stack and watch (a daemon
        that runs meanwhile); returns the Child (stdout, rusage). An exit status not
        in ok, the death of a watched process or the deadline raises BenchError."""
        c = Child(cmd, name, self.work, env)
        self.children.append(c)
        try:
            wait_for(f"{name} to finish", c.reaped, timeout_s, list(watch) + self.watch)
        finally:
            c.kill()
        if c.p.returncode not in ok:
            raise BenchError(c.failure())
        return c

    def run_json(self, cmd, name, timeout_s, env=None, watch=()):
        """Runs a tool that prints one JSON line; returns it parsed."""
        out = self.run(cmd, name, timeout_s, env, watch).stdout().strip().splitlines()
        if not out:
            raise BenchError(f"{name} printed nothing")
        return json.loads(out[-1])

    def cleanup(self):
        for c in self.children:
            c.kill()
        for d in self.daemons:
            d.kill()
        if os.path.isdir(self.stack_dir):
            try:
                subprocess.run([os.path.join(ROOT, "scripts", "stack"), "down", "--dir",
                                self.stack_dir, "--fast"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log(f"scripts/stack down did not finish in {STOP_TIMEOUT_S} s")
        if self.a.keep:
            log(f"work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---- data and stack ----------------------------------------------------
    def model(self, items=None):
        """The bench model of items (default --items) items, built once and cached with
        the wall time and peak RSS of each step in catalog-times-i<I>.json beside it."""
        a = self.a
        items = items or a.items
        d = os.path.join(self.cache, f"model-i{items}-h{a.hidden}-d{a.dim}")
        path = os.path.join(d, "model.imdl")
        if os.path.exists(path):
            return path
        os.makedirs(d, exist_ok=True)
        log(f"bench model: {items} items, d={a.dim}, H={a.hidden} (make-sample, catalog, "
            "interest-train --epochs 1)")
        sh = os.path.join(ROOT, "scripts")
        times = {}
        tmp = path + ".tmp"  # renamed when complete: a killed build is not a cached model
        for step, cmd in (
                ("make_sample", [os.path.join(sh, "make-sample"), "--out", d, "--users", "2000",
                                 "--items", str(items), "--events", "40000", "--seed", "11"]),
                ("catalog", [os.path.join(sh, "catalog"), "build", "--items",
                             os.path.join(d, "items.csv"), "--out",
                             os.path.join(d, "catalog.icat"), "--dim", str(a.dim), "--seed",
                             "11"]),
                ("train", [os.path.join(self.build, "interest-train"), "--catalog",
                           os.path.join(d, "catalog.icat"), "--interactions",
                           os.path.join(d, "interactions.csv"), "--out", tmp, "--seed", "11",
                           "--epochs", "1", "--hidden", str(a.hidden), "--threads", "1"])):
            t0 = time.monotonic()
            c = self.run(cmd, f"bench model: {step}", MODEL_STEP_TIMEOUT_S)
            times[f"{step}_s"] = round(time.monotonic() - t0, 2)
            times[f"{step}_maxrss_kb"] = c.rusage.ru_maxrss
        os.replace(tmp, path)
        with open(os.path.join(self.cache, f"catalog-times-i{items}.json"), "w") as f:
            json.dump(times, f, indent=1)
        return path

    def model_times(self, items):
        """The build record of the cached model of items items, or {}."""
        try:
            with open(os.path.join(self.cache, f"catalog-times-i{items}.json")) as f:
                return json.load(f)
        except OSError:
            return {}

    def inproc(self, topic, events, model_path, name, core=None, conf=""):
        """bench-inproc (the compute floor) over topic: OPENBLAS_CORETYPE=core or
        OpenBLAS's own choice, conf's `key = value` lines over the defaults."""
        sets = [x for line in conf.splitlines() if line.strip() for x in ("--set", line)]
        return self.run_json([self.tool("bench-inproc"), "--brokers", self.bootstrap,
                              "--topic", topic, "--events", str(events), "--model", model_path,
                              "--reps", "1", "--group", f"bench-{self.run_id}-{name}"] + sets,
                             f"bench-inproc ({core or 'default core'})", run_deadline(events),
                             env=core_env(core))

    def kernel(self, model_path, users=2048, probes="1024,4096,16384"):
        """bench-kernel: CPU, multiply-add peak, every kernel, tiered speed and recall."""
        k = self.run_json([self.tool("bench-kernel"), "--model", model_path, "--users",
                           str(users), "--reps", "5", "--probe-items", probes], "bench-kernel",
                          TOOL_TIMEOUT_S)
        for name, v in k["kernels"].items():
            if "skipped" in v:
                log(f"  kernel {name}: skipped ({v['skipped']})")
            else:
                log(f"  kernel {name}: {v['madd_per_s'] / 1e9:.1f} G multiply-adds/s, "
                    f"{100 * v['share_of_peak']:.0f}% of the peak; top-N "
                    f"{v['topn_users_per_s']:.0f} users/s")
        for t in k["tiered"]:
            log(f"  tiered probe_items {t['probe_items']}: {t['speedup_vs_exact']:.2f}x exact, "
                f"recall@{k['top_n']} mean {t['recall_mean']:.4f} p5 {t['recall_p5']:.4f}")
        return k

    def stack_up(self):
        c = self.run([os.path.join(ROOT, "scripts", "stack"), "up", "--dir", self.stack_dir,
                      "--kafka-port", "0", "--controller-port", "0", "--redis-port", "0",
                      "--no-topics", "--print-env"], "scripts/stack up", STACK_TIMEOUT_S)
        env = dict(re.findall(r"^export (\w+)=(\S*)$", c.stdout(), re.M))
        self.bootstrap = env["KAFKA_BOOTSTRAP"]
        self.redis_port = int(env["REDIS_PORT"])
        self.r = redis.Redis(host="127.0.0.1", port=self.redis_port,
                             socket_timeout=STALL_TIMEOUT_S)
        self.watch = [StackWatch(self.stack_dir)]
        why = self.watch[0].dead()
        if why is not None:
            raise BenchError(f"{why[0]} right after scripts/stack up{why[1]}")
        log(f"stack: kafka {self.bootstrap}, redis {self.redis_port} (in {self.stack_dir})")

    def topic(self, name):
        t = f"bench-{self.run_id}-{name}"
        self.run([os.path.join(ROOT, "scripts", "stack"), "topics", "--bootstrap",
                  self.bootstrap, f"{t}:{PARTITIONS}"], f"scripts/stack topics {t}",
                 TOPIC_TIMEOUT_S)
        return t

    def produce(self, topic, events, rate=0, seconds=0, seed=1, probe_log=None,
                probe_every=PROBE_EVERY, watch=()):
        cmd = [self.tool("bench-gen"), "--brokers", self.bootstrap, "--topic", topic,
               "--model", self.model_path, "--users", str(self.a.users), "--events",
               str(events), "--seed", str(seed)]
        timeout_s = run_deadline(events)
        if rate:
            cmd += ["--rate", str(rate), "--seconds", str(seconds)]
            timeout_s = READY_TIMEOUT_S + seconds
        if probe_log:
            cmd += ["--probe-every", str(probe_every), "--probe-log", probe_log]
        return self.run_json(cmd, "bench-gen", timeout_s, watch=watch)

    def topic_bytes(self, topic):
        """Bytes of topic's log segments on the broker's disk (every partition)."""
        data = os.path.join(self.stack_dir, "kafka", "data")
        return sum(os.path.getsize(os.path.join(data, d, f)) for d in os.listdir(data)
                   if d.startswith(topic + "-") for f in os.listdir(os.path.join(data, d))
                   if f.endswith(".log"))

    def end_offsets(self, topic):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-probe"})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(PARTITIONS)}
        finally:
            c.close()

    # ---- interestd ---------------------------------------------------------
    def daemon_conf(self, name, topic, group, prefix="ui:", extra=""):
        path = os.path.join(self.work, f"{name}.conf")
        self.metrics_port = free_port()
        with open(path, "w") as f:
            f.write(f"""# written by scripts/bench
kafka.bootstrap.servers = {self.bootstrap}
group.id = {group}
topic.events = {topic}
topic.snapshots = bench-{self.run_id}-snapshots
topic.dlq = bench-{self.run_id}-dlq
schema.reader = {ROOT}/schemas/behaviour_event.avsc
model.path = {self.model_path}
redis.host = 127.0.0.1
redis.port = {self.redis_port}
redis.prefix = {prefix}
metrics.listen = 127.0.0.1:{self.metrics_port}
{extra}""")
        return path

    def check_core(self, conf, core):
        """`interestd -n` on conf with OPENBLAS_CORETYPE=core (None: unset): None if it
        accepts the configuration, its message if it refuses the core (exit 78)."""
        c = self.run([os.path.join(self.build, "interestd"), "-n", "-c", conf],
                     f"interestd -n ({CORE_ENV}={core or 'unset'})", TOOL_TIMEOUT_S,
                     core_env(core), ok=(0, EX_CONFIG) if core else (0,))
        if c.p.returncode == 0:
            return None
        return file_tail(c.err_path, 1).strip() or f"{c.name} exited {EX_CONFIG}"

    def pick_core(self):
        """The first of the candidate OPENBLAS_CORETYPE values interestd accepts on
        this CPU (None if it refuses them all) and {core: interestd's message} for
        each one refused before it."""
        conf = self.daemon_conf("check", "bench-check", "bench-check")
        self.check_core(conf, None)  # the bench's own configuration must pass as is
        refused = {}
        for core in [x for x in self.a.openblas_core.split(",") if x]:
            why = self.check_core(conf, core)
            if why is None:
                log(f"{CORE_ENV}={core} runs beside the default (interestd -n accepts it)")
                return core, refused
            refused[core] = why
            log(f"{CORE_ENV}={core} skipped: interestd refuses it on this CPU: {why}")
        log(f"{CORE_ENV} runs skipped: " + (f"interestd refuses every candidate core "
                                            f"({self.a.openblas_core})" if refused else
                                            "no candidate core (--openblas-core \"\")"))
        return None, refused

    @contextlib.contextmanager
    def daemon(self, conf, name, core=None):
        """interestd on conf, with a NOTIFY_SOCKET, for the with block; stopped at
        its end, killed if the block fails. A daemon found dead at the end (a crash
        after the last effect the block waited for) is an error."""
        d = self.daemon_start(conf, name, core)
        try:
            yield d
        except BaseException:  # no orderly stop: a hung daemon would hold the exit
            d.kill()
            d.sock.close()
            raise
        why = self.daemon_stop(d)
        if why is not None:
            raise BenchError(f"{why[0]} before it was stopped{why[1]}")

    def daemon_start(self, conf, name, core=None):
        """Starts interestd with a NOTIFY_SOCKET (and OPENBLAS_CORETYPE=core if given);
        returns its Daemon."""
        sock_path = os.path.join(self.work, f"notify-{name}.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        env = core_env(core, NOTIFY_SOCKET=sock_path)
        logf = os.path.join(self.work, f"{name}.log")
        t_exec = time.monotonic()
        p = subprocess.Popen([os.path.join(self.build, "interestd"), "-c", conf],
                             stderr=subprocess.PIPE, env=env, text=True)
        d = Daemon(p, sock, t_exec, logf, name, self.watch)
        self.daemons.append(d)
        return d

    def daemon_stop(self, d):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Returns d.dead() as it was
        before: None if it was still running."""
        why = d.dead()
        if d.p.poll() is None:
            d.p.send_signal(signal.SIGTERM)
            try:
                d.p.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log(f"interestd {d.name}: still running {STOP_TIMEOUT_S} s after SIGTERM, "
                    "killing it")
                d.kill()
        d.sock.close()
        return why

    def wait_committed(self, group, topic, ends, events, proc):
        """Polls the group's committed offsets until they reach ends; returns the time.
        proc (a Daemon or Child) commits them: its death ends the wait with an error,
        as do STALL_TIMEOUT_S without progress and the run's deadline."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        tps = [TopicPartition(topic, p) for p in ends]
        last = [-1, time.monotonic()]  # offsets committed so far, when they last grew

        def reached():
            got = c.committed(tps, timeout=10)
            t = time.monotonic()
            done = sum(max(tp.offset, 0) for tp in got)
            if done > last[0]:
                last[:] = [done, t]
            elif t - last[1] > STALL_TIMEOUT_S:
                raise BenchError(f"group {group}: committed offsets stuck at {done} of "
                                 f"{sum(ends.values())} for {STALL_TIMEOUT_S} s, the "
                                 "process committing them still running")
            return t if all(tp.offset >= ends[tp.partition] for tp in got) else None

        try:
            return wait_for(f"group {group}'s committed offsets on {topic}", reached,
                            run_deadline(events), [proc] + self.watch)
        finally:
            c.close()

    def flat_out(self, topic, ends, events, name, core=None, extra=""):
        """interestd flat out over the whole topic: eps, ready_s, rss_ready, bytes_per_user,
        and the units docs/SCALING.md scales by: the daemon's CPU per event, Redis memory
        per user and Redis time per user write (its write script's usec_per_call)."""
        self.r.flushall()
        self.r.config_resetstat()
        redis_mem0 = self.r.info("memory")["used_memory"]
        group = f"bench-{self.run_id}-{name}"
        conf = self.daemon_conf(name, topic, group, extra=extra)
        with self.daemon(conf, name, core) as d:
            ready = d.wait_ready(READY_TIMEOUT_S)
            rss0 = d.rss()
            t0 = d.wait_line("event=assigned", READY_TIMEOUT_S)
            cpu0 = d.cpu_s()
            t1 = self.wait_committed(group, topic, ends, events, d)
            cpu1 = d.cpu_s()
            m = metrics(self.metrics_port)
            rss1 = d.rss()
            users = m.get("interestd_users_cached", 0)
        evalsha = self.r.info("commandstats").get("cmdstat_evalsha", {})
        redis_mem1 = self.r.info("memory")["used_memory"]
        res = {"eps": events / (t1 - t0), "ready_s": ready, "rss_ready": rss0, "users": users,
               "bytes_per_user": (rss1 - rss0) / users if users else None,
               "applied": m.get("interestd_events_applied_total"),
               "cpu_us_per_event": 1e6 * (cpu1 - cpu0) / events,
               "redis_bytes_per_user": (redis_mem1 - redis_mem0) / users if users else None,
               "redis_us_per_write": evalsha.get("usec_per_call"),
               "redis_writes_per_event": evalsha.get("calls", 0) / events}
        log(f"  interestd {name}: {res['eps']:.0f} ev/s, READY {ready:.2f} s, "
            f"{res['bytes_per_user']:.0f} B/user ({users:.0f} users)")
        return res

    # ---- latency -------------------------------------------------------------
    def latency(self, rep, rate):
        topic = self.topic(f"lat{rep}")
        self.r.flushall()
        self.r.config_set("notify-keyspace-events", "Kh")
        group = f"bench-{self.run_id}-lat{rep}"
        conf = self.daemon_conf(f"lat{rep}", topic, group)
        probe_log = os.path.join(self.work, f"probe-{rep}.txt")
        lst = Listener(self.redis_port, "ui:")
        with self.daemon(conf, f"lat{rep}") as d:
            d.wait_ready(READY_TIMEOUT_S)
            d.wait_line("event=assigned", READY_TIMEOUT_S)
            lst.start()
            time.sleep(0.3)
            # about PROBE_SAMPLES probe events, at most one user in PROBE_EVERY
            every = max(1, min(PROBE_EVERY, int(rate * self.a.lat_seconds / PROBE_SAMPLES)))
            g = self.produce(topic, 10 ** 9, rate=rate, seconds=self.a.lat_seconds,
                             seed=100 + rep, probe_log=probe_log, probe_every=every,
                             watch=[d])
            ends = self.end_offsets(topic)
            self.wait_committed(group, topic, ends, sum(ends.values()), d)
            time.sleep(0.3)
            lst.stop()
        self.r.config_set("notify-keyspace-events", "")
        # ack times per probe user: (events_applied, wall ms) in arrival order
        acks = {}
        for uid, applied, t_ms in lst.acks:
            acks.setdefault(uid, []).append((applied, t_ms))
        lat, missing = [], 0
        with open(probe_log) as f:
            for line in f:
                uid, seq, ts = line.split()
                seq, ts = int(seq), int(ts)
                t = next((t for n, t in acks.get(uid, ()) if n >= seq), None)
                if t is None:
                    missing += 1
                else:
                    lat.append(t - ts)
        if not lat:
            raise BenchError("latency: no probe event was acknowledged")
        lat = np.array(lat)
        res = {"rate": g["eps"], "p50_ms": float(np.percentile(lat, 50)),
               "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
               "samples": int(lat.size), "missing": missing}
        log(f"  latency at {g['eps']:.0f} ev/s: p50 {res['p50_ms']:.1f} ms, p99 "
            f"{res['p99_ms']:.1f} ms, max {res['max_ms']:.1f} ms ({lat.size} probe events, "
            f"{missing} unmatched)")
        return res

    # ---- peer ------------------------------------------------------------------
    def peer(self, rep, topic, ends, events):
        """interestd and the Python peer on the same topic; compares their Redis values."""
        self.r.flushall()
        group = f"bench-{self.run_id}-peerd{rep}"
        conf = self.daemon_conf(f"peerd{rep}", topic, group, prefix="d:")
        with self.daemon(conf, f"peerd{rep}") as d:
            d.wait_ready(READY_TIMEOUT_S)
            t0 = d.wait_line("event=assigned", READY_TIMEOUT_S)
            t1 = self.wait_committed(group, topic, ends, events, d)
        d_eps = events / (t1 - t0)
        py = self.run_json([sys.executable, os.path.join(ROOT, "scripts", "bench_peer.py"),
                            "--bootstrap", self.bootstrap, "--topic", topic, "--group",
                            f"bench-{self.run_id}-peer{rep}", "--model", self.model_path,
                            "--redis-port", str(self.redis_port), "--prefix", "p:",
                            "--events", str(events)], "bench_peer.py", run_deadline(events))
        diffs, n = compare(self.r, "d:", "p:")
        log(f"  peer: {py['eps']:.0f} ev/s, interestd on the same events {d_eps:.0f} ev/s; "
            f"{n} users compared, {len(diffs)} differ")
        for x in diffs[:5]:
            log(f"    {x}")
        prof = py.get("profile", {})  # seconds per phase (bench_peer.py's docstring)
        log("  peer profile: " + ", ".join(f"{k} {v:.2f} s" for k, v in prof.items()))
        return {"peer_eps": py["eps"], "interestd_eps": d_eps, "users_compared": n,
                "users_differing": len(diffs), "profile": prof}

    # ---- the run -----------------------------------------------------------------
    def bench(self):
        a = self.a
        t_start = time.monotonic()
        self.model_path = self.model()
        log("top-N kernels and tiered search (bench-kernel)")
        kern = self.kernel(self.model_path)
        self.stack_up()
        core, refused = self.pick_core()
        main = self.topic("events")
        g = self.produce(main, a.events, seed=1)
        log(f"generator: {a.events} events for {a.users} users in {g['seconds']:.1f} s "
            f"({g['eps']:.0f} ev/s)")
        ends = self.end_offsets(main)
        peer_topic = self.topic("peer")
        self.produce(peer_topic, a.peer_events, seed=2)
        peer_ends = self.end_offsets(peer_topic)
        reps = []
        for rep in range(a.reps):
            log(f"repetition {rep + 1}/{a.reps}")
            x = {}
            c = self.run_json([self.tool("bench-ceiling"), "--brokers", self.bootstrap,
                               "--topic", main, "--events", str(a.events), "--group",
                               f"bench-{self.run_id}-ceil{rep}"], "bench-ceiling",
                              run_deadline(a.events))
            x["ceiling_eps"] = c["eps"]
            log(f"  ceiling: {c['eps']:.0f} ev/s")
            base = self.flat_out(main, ends, a.events, f"flat{rep}")
            on = self.flat_out(main, ends, a.events, f"flatonline{rep}", extra=ONLINE_ON_CONF)
            x["interestd_online_on_eps"] = on["eps"]
            x["cpu_us_per_event_online_on"] = on["cpu_us_per_event"]
            x["bytes_per_user_online_on"] = on["bytes_per_user"]
            x["ratio_online_eps"] = on["eps"] / base["eps"]
            x["ratio_online_cpu"] = on["cpu_us_per_event"] / base["cpu_us_per_event"]
            x["interestd_core_eps"] = None  # the keys stay when the core run is skipped
            if core:
                fast = self.flat_out(main, ends, a.events, f"flatcore{rep}", core=core)
                x["interestd_core_eps"] = fast["eps"]
            tier = self.flat_out(main, ends, a.events, f"flattier{rep}", extra=TIERED_CONF)
            x["interestd_tiered_eps"] = tier["eps"]
            x["interestd_eps"] = base["eps"]
            x["ready_s"] = base["ready_s"]
            x["bytes_per_user"] = base["bytes_per_user"]
            for k in ("cpu_us_per_event", "redis_bytes_per_user", "redis_us_per_write",
                      "redis_writes_per_event"):
                x[k] = base[k]
            x["kafka_bytes_per_event"] = self.topic_bytes(main) / a.events
            x["inproc_core_eps"] = x["ratio_inproc_core"] = None
            for name, c in [("inproc_eps", None)] + ([("inproc_core_eps", core)] if core
                                                     else []):
                ip = self.inproc(main, a.events, self.model_path, f"{name}{rep}", core=c)
                x[name] = ip["eps"]
                x["heap_bytes_per_user"] = ip["heap_bytes_per_user"]
                log(f"  compute floor ({c or 'default core'}): {ip['eps']:.0f} ev/s")
            x["ratio_inproc"] = x["interestd_eps"] / x["inproc_eps"]
            if core:
                x["ratio_inproc_core"] = x["interestd_core_eps"] / x["inproc_core_eps"]
            pr = self.peer(rep, peer_topic, peer_ends, a.peer_events)
            x["peer_eps"] = pr["peer_eps"]
            x["interestd_peer_topic_eps"] = pr["interestd_eps"]
            x["ratio_peer"] = pr["interestd_eps"] / pr["peer_eps"]
            x["peer_users_compared"] = pr["users_compared"]
            x["peer_users_differing"] = pr["users_differing"]
            x.update((f"peer_s_{k}", v) for k, v in pr["profile"].items())
            lat = self.latency(rep, x["interestd_eps"] / 2)
            x.update({k: lat[k] for k in ("p50_ms", "p99_ms", "max_ms")})
            x["latency_rate_eps"] = lat["rate"]
            x["latency_samples"] = lat["samples"]
            reps.append(x)
        out = {k: median(r[k] for r in reps) for k in reps[0]}
        out["config"] = {"U": a.users, "I": a.items, "events": a.events, "H": a.hidden,
                         "d": a.dim, "reps": a.reps, "peer_events": a.peer_events,
                         "latency_seconds": a.lat_seconds, "partitions": PARTITIONS,
                         "probe_samples_target": PROBE_SAMPLES, "sizes": a.sizes}
        out["runs"] = reps
        out["kernel"] = kern
        out["cpu"] = cpu_of(kern)
        out["openblas_core"] = core
        out["openblas_core_skipped"] = refused
        return self.write("bench.json", out, t_start, table)

    def write(self, name, out, t_start, print_table):
        """out (with its elapsed time) into BUILD/name, then its table."""
        out["elapsed_s"] = round(time.monotonic() - t_start, 1)
        path = os.path.join(self.build, name)
        with open(path, "w") as f:
            json.dump(out, f, indent=2)
        print_table(out)
        log(f"wrote {path} ({out['elapsed_s']:.0f} s)")
        return out

    # ---- catalog-size sweep (make bench-catalog) ------------------------------------
    def catalog_sweep(self):
        """Per catalog size: the model's build record, bench-kernel (cost of one user,
        exact and tiered, recall), the compute floor and interestd flat out with both
        searches, READY time and RSS at READY. Writes BUILD/bench-catalog.json."""
        a = self.a
        t_start = time.monotonic()
        sizes = [int(x) for x in a.catalog_items.split(",")]
        paths = {i: self.model(i) for i in sizes}
        self.stack_up()
        out = {"config": {"sizes": sizes, "U": a.users, "events": a.catalog_events, "H": a.hidden,
                          "d": a.dim, "partitions": PARTITIONS, "tiered": TIERED_CONF.strip()},
               "sizes": {}}
        for i in sizes:
            log(f"catalog of {i} items")
            self.model_path = paths[i]
            x = {"build": self.model_times(i), "model_file_bytes": os.path.getsize(paths[i])}
            x["kernel"] = self.kernel(paths[i], users=1024, probes="4096")
            topic = self.topic(f"cat{i}")
            self.produce(topic, a.catalog_events, seed=3)
            ends = self.end_offsets(topic)
            for search, extra in (("exact", ""), ("tiered", TIERED_CONF)):
                ip = self.inproc(topic, a.catalog_events, paths[i], f"ip{search}{i}",
                                 conf=extra)
                fo = self.flat_out(topic, ends, a.catalog_events, f"cat{search}{i}", extra=extra)
                x[search] = {"inproc_eps": ip["eps"], "interestd_eps": fo["eps"],
                             "ready_s": fo["ready_s"], "rss_ready_bytes": fo["rss_ready"]}
                log(f"  {search}: floor {ip['eps']:.0f} ev/s, interestd {fo['eps']:.0f} ev/s, "
                    f"READY {fo['ready_s']:.2f} s, RSS at READY {fo['rss_ready'] / 2**20:.0f} MiB")
            out["sizes"][str(i)] = x
        out["cpu"] = cpu_of(x["kernel"])
        base = out["sizes"][str(sizes[0])]["exact"]["interestd_eps"]
        for i in sizes:
            x = out["sizes"][str(i)]
            x["tiered_vs_exact_smallest"] = x["tiered"]["interestd_eps"] / base
            x["exact_vs_exact_smallest"] = x["exact"]["interestd_eps"] / base
        return self.write("bench-catalog.json", out, t_start, catalog_table)


class Daemon:
    """A running interestd: stderr copied to a file and watched for lines; watch
    holds the processes it needs (the stack), checked by every wait on it."""

    def __init__(self, p, sock, t_exec, logf, name, watch):
        self.p, self.sock, self.t_exec, self.name = p, sock, t_exec, name
        self.logf_path = logf
        self.watch = [self] + list(watch)
        self.lines = []
        self.lock = threading.Lock()
        self.logf = open(logf, "w")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stderr:
            t = time.monotonic()
            self.logf.write(line)
            with self.lock:
                self.lines.append((t, line))
        self.logf.close()

    def dead(self):
        """None while it runs, else how it ended and the last lines it logged."""
        if self.p.poll() is None:
            return None
        self.reader.join(READER_JOIN_S)  # its last lines, up to the pipe's end
        with self.lock:
            tail = "".join(line for _, line in self.lines[-LOG_TAIL_LINES:])
        return (f"interestd ({self.name}) exited with {exit_text(self.p.returncode)}",
                tail_block(tail, "its log"))

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def wait_line(self, pattern, timeout_s):
        """The time interestd logged a line holding pattern."""
        def seen():
            with self.lock:
                return next((t for t, line in self.lines if pattern in line), None)
        return wait_for(f"interestd ({self.name}) to log '{pattern}'", seen, timeout_s,
                        self.watch)

    def wait_ready(self, timeout_s):
        """Seconds from exec to READY=1 on the notify socket."""
        self.sock.settimeout(0.2)

        def ready():
            try:
                msg = self.sock.recv(4096)
            except socket.timeout:
                return None
            return time.monotonic() - self.t_exec if b"READY=1" in msg.split(b"\n") else None
        return wait_for(f"interestd ({self.name}) to send READY=1", ready, timeout_s,
                        self.watch, every_s=0)

    def cpu_s(self):
        """User + system CPU seconds the daemon has used."""
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


class Listener:
    """Keyspace notifications of the probe users' meta hash; each one answered
    with HGET events_applied at once: (user, events_applied, wall ms)."""

    def __init__(self, port, prefix):
        self.r = redis.Redis(host="127.0.0.1", port=port)
        self.q = redis.Redis(host="127.0.0.1", port=port, socket_timeout=STALL_TIMEOUT_S)
        self.pat = f"__keyspace@0__:{prefix}{{q*}}:meta"
        self.cut = len("__keyspace@0__:") + len(prefix) + 1
        self.acks = []
        self.stopping = False

    def start(self):
        self.ps = self.r.pubsub()
        self.ps.psubscribe(self.pat)
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        while not self.stopping:
            m = self.ps.get_message(timeout=0.2)
            if m is None or m["type"] != "pmessage":
                continue
            t_ms = time.time() * 1000.0
            key = m["channel"].decode()
            uid = key[self.cut:key.index("}", self.cut)]
            n = self.q.hget(key[len("__keyspace@0__:"):], "events_applied")
            if n is not None:
                self.acks.append((uid, int(n), t_ms))

    def stop(self):
        self.stopping = True
        if hasattr(self, "th"):
            self.th.join(5)
            self.ps.close()


def core_env(core, **extra):
    """The environment for a child: ours with extra, OPENBLAS_CORETYPE=core if given."""
    env = dict(os.environ, **extra)
    if core:
        env[CORE_ENV] = core
    return env


def cpu_of(kern):
    """The CPU's record in a bench-kernel result: model, vector extensions, kernel."""
    return {k: kern[k] for k in ("cpu", "avx2", "fma", "avx512f", "default_kernel")}


def median(values):
    """The median, None if any value is None (a run that was skipped)."""
    values = list(values)
    return None if any(v is None for v in values) else statistics.median(values)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(port):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            k, v = line.split()
            out[k] = float(v)
    return out


USER_KEYS = ("meta", "vec", "tiers", "top")  # the values compare() reads per user
COMPARE_BATCH = 500                           # users read per pipelined round trip


def compare(r, pa, pb):
    """Differences between the keys of every user under prefix pa and pb."""
    uids = []
    for key in r.scan_iter(match=pa + "{*}:meta", count=1000):
        key = key.decode()
        uids.append(key[len(pa) + 1:key.rindex("}")])
    diffs = []
    for lo in range(0, len(uids), COMPARE_BATCH):
        batch = uids[lo:lo + COMPARE_BATCH]
        pipe = r.pipeline(transaction=False)
        for uid in batch:
            for p in (pa, pb):
                k = f"{p}{{{uid}}}:"
                pipe.hgetall(k + "meta").get(k + "vec").hgetall(k + "tiers").get(k + "top")
        got = pipe.execute()
        n = len(USER_KEYS)
        for i, uid in enumerate(batch):
            why = user_diff(got[2 * n * i:2 * n * i + n], got[2 * n * i + n:2 * n * (i + 1)])
            if why is not None:
                diffs.append(f"{uid}: {why}")
    return diffs, len(uids)


def user_diff(a, b):
    """How one user's (meta, vec, tiers, top) values a and b differ, None if alike."""
    (ma, va, ta, sa), (mb, vb, tb, sb) = a, b
    if ma.get(b"events_applied") != mb.get(b"events_applied"):
        return f"events_applied {ma.get(b'events_applied')} vs {mb.get(b'events_applied')}"
    va, vb = np.frombuffer(va or b"", "<f4"), np.frombuffer(vb or b"", "<f4")
    if va.shape != vb.shape or not np.allclose(va, vb, rtol=1e-4, atol=1e-5):
        return f"vec differs (max {np.abs(va - vb).max() if va.shape == vb.shape else 'shape'})"
    if set(ta) != set(tb) or any(
            not np.allclose([float(x) for x in ta[k].split()],
                            [float(x) for x in tb[k].split()], rtol=1e-4, atol=1e-6)
            for k in ta):
        return "tiers differ"
    sa, sb = json.loads(sa or "[]"), json.loads(sb or "[]")
    if len(sa) != len(sb):
        return f"top-N length {len(sa)} vs {len(sb)}"
    for (ia, xa), (ib, xb) in zip(sa, sb):
        if abs(xa - xb) > 1e-4 * max(1.0, abs(xa)):
            return f"top-N score {ia} {xa} vs {ib} {xb}"
        if ia != ib:  # allowed only for scores tied within rounding
            ya = dict((i, s) for i, s in sb).get(ia)
            if ya is None or abs(ya - xa) > 1e-4 * max(1.0, abs(xa)):
                return f"top-N item {ia} vs {ib}"
    return None


def table(out):
    rows = [
        ("interestd flat out (default OpenBLAS core)", "interestd_eps", "ev/s"),
        ("interestd flat out (OPENBLAS_CORETYPE, see openblas_core)", "interestd_core_eps",
         "ev/s"),
        ("ceiling: librdkafka batch consumer", "ceiling_eps", "ev/s"),
        ("compute floor in-process (default core)", "inproc_eps", "ev/s"),
        ("compute floor in-process (OPENBLAS_CORETYPE)", "inproc_core_eps", "ev/s"),
        ("ratio interestd / compute floor", "ratio_inproc", "x"),
        ("ratio interestd / floor (OPENBLAS_CORETYPE both)", "ratio_inproc_core", "x"),
        ("Python peer (bounded topic)", "peer_eps", "ev/s"),
        ("interestd on the peer's topic", "interestd_peer_topic_eps", "ev/s"),
        ("ratio interestd / Python peer", "ratio_peer", "x"),
        ("interestd flat out, topn.search = tiered", "interestd_tiered_eps", "ev/s"),
        ("interestd flat out, metrics.online = true", "interestd_online_on_eps", "ev/s"),
        ("ratio flat out online metrics on / off", "ratio_online_eps", "x"),
        ("ratio CPU per event online metrics on / off", "ratio_online_cpu", "x"),
        ("daemon CPU per event, metrics.online = true", "cpu_us_per_event_online_on", "us"),
        ("memory per cached user, metrics.online = true", "bytes_per_user_online_on", "B"),
        ("latency p50 at half load", "p50_ms", "ms"),
        ("latency p99 at half load", "p99_ms", "ms"),
        ("latency max at half load (probe users)", "max_ms", "ms"),
        ("memory per cached user (RSS delta)", "bytes_per_user", "B"),
        ("heap per cached user (in-process)", "heap_bytes_per_user", "B"),
        ("start to READY", "ready_s", "s"),
        ("daemon CPU per event (flat out)", "cpu_us_per_event", "us"),
        ("Redis memory per user (used_memory delta)", "redis_bytes_per_user", "B"),
        ("Redis time per user write (evalsha usec_per_call)", "redis_us_per_write", "us"),
        ("user writes per event (flat out)", "redis_writes_per_event", ""),
        ("Kafka log bytes per event", "kafka_bytes_per_event", "B"),
    ]
    c = out["config"]
    print(f"\ninterestd benchmark: U={c['U']} I={c['I']} events={c['events']} H={c['H']} "
          f"d={c['d']}, median of {c['reps']} runs ({c['sizes']} sizes)")
    if out["openblas_core"] is None:
        print(f"  {CORE_ENV} runs skipped: "
              + ("; ".join(f"{k}: {v}" for k, v in out["openblas_core_skipped"].items())
                 or "no candidate core given"))
    for label, k, unit in rows:
        v = out.get(k)
        s = "-" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}")
        print(f"  {label:<50} {s:>12} {unit}")
    prof = [(k[len("peer_s_"):], v) for k, v in out.items() if k.startswith("peer_s_")]
    if prof:
        print("  Python peer, seconds per phase: " + ", ".join(f"{k} {v:.2f}" for k, v in prof))


def catalog_table(out):
    c = out["config"]
    print(f"\ninterestd catalog-size sweep: U={c['U']} events={c['events']} H={c['H']} "
          f"d={c['d']}; {out['cpu']['cpu']}, kernel {out['cpu']['default_kernel']} "
          f"(avx2 {out['cpu']['avx2']}, avx512f {out['cpu']['avx512f']})")
    print(f"  {'items':>9} {'search':>7} {'floor ev/s':>11} {'ev/s':>8} {'vs exact@' + str(c['sizes'][0]):>14}"
          f" {'us/user':>8} {'scored':>8} {'recall@50':>10} {'READY s':>8} {'RSS MiB':>8}"
          f" {'catalog s':>10} {'train s':>8}")
    for i in c["sizes"]:
        x = out["sizes"][str(i)]
        k = x["kernel"]
        best = k["kernels"].get(k["default_kernel"], {})
        t = k["tiered"][0]
        for search in ("exact", "tiered"):
            us = (1e6 / best["topn_users_per_s"] if search == "exact" and best
                  else 1e6 / t["topn_users_per_s"])
            scored = i if search == "exact" else t["items_scored_per_user"]
            rec = "1" if search == "exact" else f"{t['recall_mean']:.4f}"
            print(f"  {i:>9} {search:>7} {x[search]['inproc_eps']:>11,.0f} "
                  f"{x[search]['interestd_eps']:>8,.0f} "
                  f"{x[search]['interestd_eps'] / out['sizes'][str(c['sizes'][0])]['exact']['interestd_eps']:>13.2f}x"
                  f" {us:>8.1f} {scored:>8,.0f} {rec:>10} {x[search]['ready_s']:>8.2f} "
                  f"{x[search]['rss_ready_bytes'] / 2**20:>8.0f} "
                  f"{x['build'].get('catalog_s', float('nan')):>10.0f} "
                  f"{x['build'].get('train_s', float('nan')):>8.0f}")


def parse_args(argv):
    ap = cli.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0],
                epilog="Sizes: a flag, else its BENCH_* variable, else the default "
                "(BENCH_FULL=1 or --full: the long run's). The method: docs/BENCH.md.")
    ap.add_argument("build", nargs="?", default="build",
                    help="the build directory with interestd and the bench tools (build)")
    ap.add_argument("--full", action="store_true", default=os.environ.get("BENCH_FULL", "0")
                    not in ("", "0"), help="the long run's sizes (BENCH_FULL=1)")
    for key, kind, meta, what in (
            ("users", int, "U", "users the generator draws from"),
            ("items", int, "I", "items of the bench model"),
            ("events", int, "N", "events on the main topic"),
            ("hidden", int, "H", "LSTM size"),
            ("dim", int, "D", "item-embedding size"),
            ("reps", int, "N", "repetitions (figures are medians)"),
            ("peer_events", int, "N", "events on the Python peer's topic"),
            ("lat_seconds", float, "S", "length of the fixed-rate latency run")):
        var = "BENCH_" + key.upper()
        ap.add_argument("--" + key.replace("_", "-"), type=kind, metavar=meta,
                        default=os.environ.get(var), help=f"{what} ({var}; default "
                        f"{SIZES['default'][key]}, full {SIZES['full'][key]})")
    ap.add_argument("--openblas-core", metavar="CORE,..",
                    default=os.environ.get("BENCH_OPENBLAS_CORE", CORE_CANDIDATES),
                    help="OPENBLAS_CORETYPE values to try for the second OpenBLAS setting, in "
                    "order; the first `interestd -n` accepts runs, \"\" runs none "
                    f"(BENCH_OPENBLAS_CORE; default {CORE_CANDIDATES})")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary work directory (logs, configs, the stack's data)")
    ap.add_argument("--catalog-sweep", action="store_true",
                    help="the catalog-size sweep (make bench-catalog) instead of the bench")
    ap.add_argument("--catalog-items", metavar="I,..",
                    default=os.environ.get("BENCH_CATALOG_ITEMS", "20000,200000,1000000"),
                    help="catalog sizes of the sweep (BENCH_CATALOG_ITEMS)")
    ap.add_argument("--catalog-events", type=int, metavar="N",
                    default=os.environ.get("BENCH_CATALOG_EVENTS", "100000"),
                    help="events per catalog size (BENCH_CATALOG_EVENTS)")
    a = ap.parse_args(argv)
    a.sizes = "full" if a.full else "default"
    for key, v in SIZES[a.sizes].items():  # argparse has converted a BENCH_* string
        if getattr(a, key) is None:
            setattr(a, key, v)
    return a


def main(argv):
    a = parse_args(argv)
    if CORE_ENV in os.environ:  # the bench sets it itself, for the runs that name a core
        log(f"{CORE_ENV}={os.environ.pop(CORE_ENV)} from the environment is not used: the "
            "bench runs OpenBLAS's own choice and the core --openblas-core picks")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))
    b = Bench(a)
    try:
        b.catalog_sweep() if a.catalog_sweep else b.bench()
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
