"""Local Kafka (KRaft, single node, combined broker+controller) and redis-server.

Owns the processes, ports, data and logs of one stack under one directory.
Run through scripts/stack (which picks the venv and the Kafka jars); the test
harness (tests/lib/) drives it the same way. Everything listens on 127.0.0.1.
"""

import argparse
import base64
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from interestd_py import cli  # noqa: E402

HOST = "127.0.0.1"
KAFKA_START_TIMEOUT_S = 120
REDIS_START_TIMEOUT_S = 20
KAFKA_STOP_TIMEOUT_S = 30
REDIS_STOP_TIMEOUT_S = 10
PORT_RETRIES = 3
DEFAULT_HEAP_OPTS = "-Xms64m -Xmx512m"
DEFAULT_JVM_OPTS = ("-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k "
                    "-XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true")

LOG4J2_PROPERTIES = """\
# Written by scripts/stack: broker log to kafka/logs/server.log, warnings to stdout.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
appender.out.filter.threshold.type = ThresholdFilter
appender.out.filter.threshold.level = warn
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


class StackError(Exception):
    """A stack operation failed; the message says which service and why."""


def log(msg):
    print(f"stack: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- ports, pids

def free_ports(count):
    """Returns count distinct loopback ports that were free a moment ago."""
    socks, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def port_open(port, timeout_s=0.5):
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def owned_pid(pidfile, workdir):
    """Returns the pid in pidfile if that process runs with cwd workdir.

    The cwd check keeps us from signalling an unrelated process that reused
    the pid of a server that died.
    """
    pid = read_pid(pidfile)
    if pid is None:
        return None
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    if state == "Z":
        return None
    if os.path.realpath(cwd) != os.path.realpath(workdir):
        return None
    return pid


def stop_pid(name, pid, timeout_s, fast):
    """Stops pid: SIGTERM and a wait (SIGKILL after timeout_s), or SIGKILL if fast."""
    try:
        os.kill(pid, signal.SIGKILL if fast else signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return
        try:  # Reap it if it is our child (same invocation started it).
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.1)
    log(f"{name}: pid {pid} still running after {timeout_s} s, killing")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------- state

class Stack:
    """Paths and settings of one stack directory."""

    def __init__(self, args):
        self.dir = os.path.realpath(args.dir)
        self.kafka_dir = os.path.join(self.dir, "kafka")
        self.redis_dir = os.path.join(self.dir, "redis")
        self.state_path = os.path.join(self.dir, "stack.json")
        self.kafka_pidfile = os.path.join(self.dir, "kafka.pid")
        self.redis_pidfile = os.path.join(self.dir, "redis.pid")
        self.kafka_libs = args.kafka_libs
        self.args = args
        self.state = self.load()

    def load(self):
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def save(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.state_path)

    def topics(self):
        a = self.args
        p = a.topic_prefix
        return [(p + a.events_topic, a.events_partitions),
                (p + a.snapshots_topic, 1),
                (p + a.dlq_topic, 1)]

    def env(self):
        """Shell exports describing this stack, for eval by tests and scripts."""
        s = self.state
        kv = {"STACK_DIR": self.dir}
        if "kafka_port" in s:
            kv["KAFKA_BOOTSTRAP"] = f"{HOST}:{s['kafka_port']}"
            kv["KAFKA_PORT"] = str(s["kafka_port"])
            kv["KAFKA_CONTROLLER_PORT"] = str(s["controller_port"])
        if "redis_port" in s:
            kv["REDIS_HOST"] = HOST
            kv["REDIS_PORT"] = str(s["redis_port"])
            kv["REDIS_URL"] = f"redis://{HOST}:{s['redis_port']}/0"
        if "topics" in s:
            names = [t[0] for t in s["topics"]]
            kv["EVENTS_TOPIC"], kv["SNAPSHOTS_TOPIC"], kv["DLQ_TOPIC"] = names
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in kv.items())


# ---------------------------------------------------------------------- kafka

def kafka_properties(st, kport, cport):
    data = os.path.join(st.kafka_dir, "data")
    return f"""\
# Written by scripts/stack: single-node KRaft, broker and controller in one process.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{cport}
listeners=PLAINTEXT://{HOST}:{kport},CONTROLLER://{HOST}:{cport}
advertised.listeners=PLAINTEXT://{HOST}:{kport}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
log.retention.hours=24
"""


def java_cmd(st, main, *args):
    heap = os.environ.get("KAFKA_HEAP_OPTS", DEFAULT_HEAP_OPTS)
    jvm = os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS", DEFAULT_JVM_OPTS)
    logs = os.path.join(st.kafka_dir, "logs")
    return (["java"] + shlex.split(heap) + shlex.split(jvm) +
            [f"-Dlog4j2.configurationFile={os.path.join(st.kafka_dir, 'log4j2.properties')}",
             f"-Dkafka.logs.dir={logs}",
             "-cp", os.path.join(st.kafka_libs, "*"), main] + list(args))


def kafka_cluster_id():
    """A random Kafka Uuid in its base64url form, as `kafka-storage random-uuid` prints.
    Like Kafka's Uuid.randomUuid, never one starting with "-": `format -t -xyz...` takes
    it for an option and fails (one start in 64 failed so before)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def kafka_start(st, kport, cport):
    if not os.path.isfile(os.path.join(st.kafka_libs, f"kafka_2.13-{st.args.kafka_version}.jar")):
        raise StackError(f"kafka: no jars in {st.kafka_libs}: run scripts/bootstrap (make deps)")
    for sub in ("data", "logs"):
        os.makedirs(os.path.join(st.kafka_dir, sub), exist_ok=True)
    props = os.path.join(st.kafka_dir, "server.properties")
    with open(props, "w") as f:
        f.write(kafka_properties(st, kport, cport))
    with open(os.path.join(st.kafka_dir, "log4j2.properties"), "w") as f:
        f.write(LOG4J2_PROPERTIES)
    out_path = os.path.join(st.dir, "kafka.out")
    if not os.path.exists(os.path.join(st.kafka_dir, "data", "meta.properties")):
        cid = st.state.get("cluster_id") or kafka_cluster_id()
        with open(out_path, "ab") as out:
            r = subprocess.run(java_cmd(st, "kafka.tools.StorageTool", "format",
                                        "--ignore-formatted", "-t", cid, "-c", props),
                               cwd=st.kafka_dir, stdout=out, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            with open(out_path, errors="replace") as f:
                tail = f.read()[-600:].strip()
            raise StackError(f"kafka: storage format failed (exit {r.returncode}), see "
                             f"{out_path}; it said: {tail}")
        st.state["cluster_id"] = cid
    out = open(out_path, "ab")
    proc = subprocess.Popen(java_cmd(st, "kafka.Kafka", props), cwd=st.kafka_dir,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True)
    out.close()
    with open(st.kafka_pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    return proc


def quiet_logger():
    lg = logging.getLogger("stack.rdkafka")
    lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg


def admin_client(bootstrap):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000,
                        "logger": quiet_logger()})


def kafka_wait_ready(st, proc, kport, timeout_s):
    """Waits until the broker answers a metadata request; False if it died."""
    deadline = time.monotonic() + timeout_s
    bootstrap = f"{HOST}:{kport}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if port_open(kport):
            try:
                md = admin_client(bootstrap).list_topics(timeout=2)
                if md.brokers:
                    return True
            except Exception:  # noqa: BLE001 - not ready yet, retried until deadline
                pass
        time.sleep(0.2)
    raise StackError(f"kafka: no metadata from {bootstrap} after {timeout_s} s, "
                     f"see {st.dir}/kafka.out and {st.kafka_dir}/logs/server.log")


def create_topics(bootstrap, topics, timeout_s=60):
    """Creates [(name, partitions)] (existing ones are kept) and waits for leaders."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic
    admin = admin_client(bootstrap)
    futs = admin.create_topics([NewTopic(n, num_partitions=p, replication_factor=1)
                                for n, p in topics], operation_timeout=30)
    for name, fut in futs.items():
        try:
            fut.result()
        except Exception as e:  # noqa: BLE001
            err = e.args[0] if e.args else None
            if not (hasattr(err, "code") and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise StackError(f"kafka: create topic {name}: {e}") from e
    deadline = time.monotonic() + timeout_s
    while True:
        md = admin.list_topics(timeout=5)
        ready = True
        for name, parts in topics:
            t = md.topics.get(name)
            if t is None or t.error is not None or \
                    any(p.leader < 0 for p in t.partitions.values()):
                ready = False
            elif len(t.partitions) != parts:
                raise StackError(f"kafka: topic {name} exists with {len(t.partitions)} "
                                 f"partitions, want {parts}: delete it or use another name")
        if ready:
            return
        if time.monotonic() > deadline:
            raise StackError(f"kafka: topics {[n for n, _ in topics]} have no leaders "
                             f"after {timeout_s} s")
        time.sleep(0.2)


# ---------------------------------------------------------------------- redis

def redis_ping(port):
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_start(st, port):
    os.makedirs(st.redis_dir, exist_ok=True)
    out = open(os.path.join(st.dir, "redis.out"), "ab")
    proc = subprocess.Popen(
        ["redis-server", "--bind", HOST, "--port", str(port), "--dir", st.redis_dir,
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
         "--logfile", os.path.join(st.dir, "redis.log"), "--databases", "16"],
        cwd=st.redis_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True)
    out.close()
    with open(st.redis_pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    return proc


def redis_wait_ready(st, proc, port, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if redis_ping(port):
            return True
        time.sleep(0.05)
    raise StackError(f"redis: no PONG on {HOST}:{port} after {timeout_s} s, see {st.dir}/redis.log")


# ------------------------------------------------------------------- commands

def pick_port(requested, saved, fallback):
    """Port for a service: the flag, else the last one used in this dir, else fallback."""
    if requested is not None:
        return requested
    return saved if saved else fallback


def bring_up(st, name, start, wait, ports, timeout_s):
    """Starts a service, retrying on fresh ports when auto-chosen ones got taken."""
    auto = any(p == 0 for p in ports)
    for attempt in range(PORT_RETRIES if auto else 1):
        chosen = list(ports)
        fresh = iter(free_ports(len(ports)))
        chosen = [next(fresh) if p == 0 else p for p in chosen]
        for p in chosen:
            if port_open(p):
                if auto and attempt + 1 < PORT_RETRIES:
                    break
                raise StackError(f"{name}: port {HOST}:{p} is already in use")
        else:
            proc = start(st, *chosen)
            if wait(st, proc, chosen[0], timeout_s):
                return chosen
            log(f"{name}: exited with {proc.returncode} during startup")
            if not auto:
                break
    raise StackError(f"{name}: failed to start, see {st.dir}/{name}.out and {st.dir}/{name}.log")


def cmd_up(st):
    a = st.args
    os.makedirs(st.dir, exist_ok=True)
    s = st.state
    services = ["kafka", "redis"] if a.only is None else [a.only]
    t0 = time.monotonic()
    started = []
    try:
        if "redis" in services:
            if owned_pid(st.redis_pidfile, st.redis_dir) and redis_ping(s.get("redis_port", 0)):
                log(f"redis: already up on {HOST}:{s['redis_port']}")
            else:
                (port,) = bring_up(st, "redis", redis_start, redis_wait_ready,
                                   [pick_port(a.redis_port, s.get("redis_port"), 6379)],
                                   REDIS_START_TIMEOUT_S)
                s["redis_port"] = port
                started.append("redis")
                st.save()
                log(f"redis: up on {HOST}:{port}")
        if "kafka" in services:
            if owned_pid(st.kafka_pidfile, st.kafka_dir) and port_open(s.get("kafka_port", 0)):
                log(f"kafka: already up on {HOST}:{s['kafka_port']}")
            else:
                kport, cport = bring_up(
                    st, "kafka", kafka_start, kafka_wait_ready,
                    [pick_port(a.kafka_port, s.get("kafka_port"), 9092),
                     pick_port(a.controller_port, s.get("controller_port"), 9093)],
                    KAFKA_START_TIMEOUT_S)
                s["kafka_port"], s["controller_port"] = kport, cport
                started.append("kafka")
                st.save()
                log(f"kafka: up on {HOST}:{kport} (controller {cport}) "
                    f"after {time.monotonic() - t0:.1f} s")
            if not a.no_topics:
                topics = st.topics()
                create_topics(f"{HOST}:{s['kafka_port']}", topics)
                s["topics"] = topics
                st.save()
                log("topics: " + ", ".join(f"{n} ({p})" for n, p in topics))
    except BaseException:
        # Leave nothing half-started behind.
        for name in started:
            cmd_down_one(st, name, fast=True)
        raise
    if a.print_env:
        sys.stdout.write(st.env())
    return 0


def cmd_down_one(st, name, fast):
    pidfile = st.kafka_pidfile if name == "kafka" else st.redis_pidfile
    workdir = st.kafka_dir if name == "kafka" else st.redis_dir
    pid = owned_pid(pidfile, workdir)
    if pid is None:
        log(f"{name}: not running")
    else:
        t0 = time.monotonic()
        stop_pid(name, pid, KAFKA_STOP_TIMEOUT_S if name == "kafka" else REDIS_STOP_TIMEOUT_S,
                 fast)
        log(f"{name}: stopped pid {pid} in {time.monotonic() - t0:.1f} s")
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass


def cmd_down(st):
    if not os.path.isdir(st.dir):
        log(f"no stack in {st.dir}")
        return 0
    for name in (["redis", "kafka"] if st.args.only is None else [st.args.only]):
        cmd_down_one(st, name, st.args.fast)
    return 0


def cmd_status(st):
    s = st.state
    up = 0
    kpid = owned_pid(st.kafka_pidfile, st.kafka_dir)
    if kpid and port_open(s.get("kafka_port", 0)):
        topics = ""
        try:
            md = admin_client(f"{HOST}:{s['kafka_port']}").list_topics(timeout=5)
            names = sorted(n for n in md.topics if not n.startswith("__"))
            topics = "; topics: " + ", ".join(
                f"{n} ({len(md.topics[n].partitions)})" for n in names)
        except Exception as e:  # noqa: BLE001
            topics = f"; metadata failed: {e}"
        print(f"kafka: up, pid {kpid}, {HOST}:{s['kafka_port']} "
              f"(controller {s['controller_port']}){topics}")
        up += 1
    else:
        print("kafka: down" + (f" (pid {kpid} not answering)" if kpid else ""))
    rpid = owned_pid(st.redis_pidfile, st.redis_dir)
    if rpid and redis_ping(s.get("redis_port", 0)):
        print(f"redis: up, pid {rpid}, {HOST}:{s['redis_port']}")
        up += 1
    else:
        print("redis: down" + (f" (pid {rpid} not answering)" if rpid else ""))
    if st.args.print_env and up == 2:
        sys.stdout.write(st.env())
    return 0 if up == 2 else 3


def cmd_topics(args):
    """Creates topics NAME:PARTITIONS on --bootstrap."""
    topics = []
    for spec in args.specs:
        name, _, parts = spec.partition(":")
        topics.append((name, int(parts or "1")))
    create_topics(args.bootstrap, topics)
    return 0


def port_arg(v):
    p = int(v)
    if not 0 <= p <= 65535:
        raise argparse.ArgumentTypeError(f"port {v} out of range (0 = pick a free one)")
    return p


def parse_args(argv):
    env = os.environ.get
    ap = cli.ArgumentParser(prog="scripts/stack", description=(
        "Local Kafka (KRaft) + redis-server on 127.0.0.1. Port 0 picks a free port."))
    ap.add_argument("command", choices=["up", "down", "status", "topics"])
    ap.add_argument("specs", nargs="*", help="topics: NAME:PARTITIONS ...")
    ap.add_argument("--dir", default=env("STACK_DIR", os.path.join(env("INTERESTD_ROOT", "."),
                                                                   ".cache", "stack")))
    ap.add_argument("--kafka-port", type=port_arg)
    ap.add_argument("--controller-port", type=port_arg)
    ap.add_argument("--redis-port", type=port_arg)
    ap.add_argument("--only", choices=["kafka", "redis"], help="up/down one service only")
    ap.add_argument("--fast", action="store_true", help="down: SIGKILL, no clean shutdown")
    ap.add_argument("--no-topics", action="store_true", help="up: create no topics")
    ap.add_argument("--print-env", action="store_true",
                    help="up/status: print shell exports (KAFKA_BOOTSTRAP, REDIS_PORT, ...)")
    ap.add_argument("--topic-prefix", default=env("INTERESTD_TOPIC_PREFIX", ""))
    ap.add_argument("--events-topic", default=env("INTERESTD_EVENTS_TOPIC", "behaviour-events"))
    ap.add_argument("--events-partitions", type=int,
                    default=int(env("INTERESTD_EVENTS_PARTITIONS", "4")))
    ap.add_argument("--snapshots-topic",
                    default=env("INTERESTD_SNAPSHOTS_TOPIC", "interest-snapshots"))
    ap.add_argument("--dlq-topic", default=env("INTERESTD_DLQ_TOPIC", "interest-dlq"))
    ap.add_argument("--bootstrap", help="topics: broker address (default: this stack's)")
    ap.add_argument("--kafka-libs", default=env("INTERESTD_KAFKA_LIBS"))
    ap.add_argument("--kafka-version", default=env("INTERESTD_KAFKA_VERSION"))
    return ap.parse_intermixed_args(argv)


def main(argv):
    args = parse_args(argv)
    try:
        if args.command == "topics":
            if args.bootstrap is None:
                st = Stack(args)
                if "kafka_port" not in st.state:
                    raise StackError(f"topics: no stack in {st.dir} and no --bootstrap")
                args.bootstrap = f"{HOST}:{st.state['kafka_port']}"
            return cmd_topics(args)
        st = Stack(args)
        return {"up": cmd_up, "down": cmd_down, "status": cmd_status}[args.command](st)
    except StackError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
