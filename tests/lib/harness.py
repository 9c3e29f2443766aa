"""Integration-test harness for Python tests; the twin of tests/lib/harness.sh.

    import harness
    env = harness.start()          # or: with harness.Harness() as env:
    env["KAFKA_BOOTSTRAP"], env["EVENTS_TOPIC"], int(env["REDIS_PORT"]) ...

Under tests/run-integration the run's one shared stack is reused (HARNESS_SHARED=1
and its addresses in the environment); run alone, a private stack is started on
free loopback ports in a temporary directory and removed at exit (atexit and
SIGTERM/SIGINT). Harness(private=True) always starts its own stack: use it for a
test that stops a server (redis_stop/redis_start). start() sets and returns the same variables as harness.sh:
KAFKA_BOOTSTRAP, REDIS_HOST, REDIS_PORT, REDIS_URL, HARNESS_PREFIX, EVENTS_TOPIC
(4 partitions), SNAPSHOTS_TOPIC, DLQ_TOPIC, REDIS_KEY_PREFIX, HARNESS_TMP, PY,
ROOT, BUILD_DIR.
"""

import atexit
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
STACK = os.path.join(ROOT, "scripts", "stack")
SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|"
                          r"SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer")


def _log(msg):
    print(f"[harness] {msg}", file=sys.stderr, flush=True)


def _parse_exports(text):
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


class Harness:
    """One test's view of a stack: shared if the runner provides one, else private."""

    def __init__(self, private=False):
        self.private = private
        self.own_dir = None
        self.tmp = None
        self.env = {}
        self._cleanups = []
        self._stopped = False

    def start(self):
        """Starts or joins the stack, creates prefixed topics; returns the env dict."""
        e = os.environ
        atexit.register(self.stop)
        if not self.private and e.get("HARNESS_SHARED") == "1" and e.get("KAFKA_BOOTSTRAP") and e.get("REDIS_PORT"):
            env = {k: e[k] for k in ("KAFKA_BOOTSTRAP", "REDIS_HOST", "REDIS_PORT", "REDIS_URL")
                   if k in e}
            env.setdefault("REDIS_HOST", "127.0.0.1")
            _log(f"using shared stack: kafka {env['KAFKA_BOOTSTRAP']}, "
                 f"redis {env['REDIS_HOST']}:{env['REDIS_PORT']}")
        else:
            self.own_dir = tempfile.mkdtemp(prefix="interestd-stack.", dir="/tmp")
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
            r = subprocess.run([STACK, "up", "--dir", self.own_dir, "--kafka-port", "0",
                                "--controller-port", "0", "--redis-port", "0", "--no-topics",
                                "--print-env"], stdout=subprocess.PIPE, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"could not start the stack (logs in {self.own_dir})")
            env = _parse_exports(r.stdout)
            env["STACK_DIR"] = self.own_dir
            _log(f"private stack in {self.own_dir}: kafka {env['KAFKA_BOOTSTRAP']}, "
                 f"redis {env['REDIS_HOST']}:{env['REDIS_PORT']}")
        prefix = f"t{int(time.time() * 1000)}-{os.getpid()}-"
        self.tmp = tempfile.mkdtemp(prefix="interestd-test.", dir="/tmp")
        env.update({
            "HARNESS_PREFIX": prefix,
            "EVENTS_TOPIC": prefix + "behaviour-events",
            "SNAPSHOTS_TOPIC": prefix + "interest-snapshots",
            "DLQ_TOPIC": prefix + "interest-dlq",
            "REDIS_KEY_PREFIX": prefix + "ui:",
            "HARNESS_TMP": self.tmp,
            "PY": os.path.join(ROOT, ".cache", "venv", "bin", "python"),
            "ROOT": ROOT,
            "BUILD_DIR": e.get("BUILD_DIR", os.path.join(ROOT, "build")),
        })
        os.environ.update(env)
        self.env = env
        self.topics([(env["EVENTS_TOPIC"], 4), (env["SNAPSHOTS_TOPIC"], 1),
                     (env["DLQ_TOPIC"], 1)])
        return env

    def topics(self, specs):
        """Creates [(name, partitions)] on the stack and waits for their leaders."""
        subprocess.run([STACK, "topics", "--bootstrap", self.env["KAFKA_BOOTSTRAP"]] +
                       [f"{n}:{p}" for n, p in specs], check=True)

    def redis_stop(self):
        """Kills redis-server (like a crash); private stacks only."""
        self._own_only("redis_stop")
        subprocess.run([STACK, "down", "--dir", self.own_dir, "--only", "redis", "--fast"],
                       check=True)

    def redis_start(self):
        """Starts redis-server again on the same port; private stacks only."""
        self._own_only("redis_start")
        subprocess.run([STACK, "up", "--dir", self.own_dir, "--only", "redis",
                        "--redis-port", self.env["REDIS_PORT"]], check=True)

    def _own_only(self, what):
        if not self.own_dir:
            raise RuntimeError(f"{what} needs a private stack: Harness(private=True)")

    def on_exit(self, fn):
        """Registers fn() to run at stop, before the stack goes (last first)."""
        self._cleanups.append(fn)

    def stop(self):
        """Runs cleanups, stops and removes a private stack; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception as ex:  # noqa: BLE001 - cleanup must go on
                _log(f"cleanup failed: {ex}")
        if self.own_dir:
            subprocess.run([STACK, "down", "--dir", self.own_dir, "--fast"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.own_dir, ignore_errors=True)
        if self.tmp and not os.environ.get("KEEP_TEST_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _on_signal(self, signum, _frame):
        self.stop()
        sys.exit(128 + signum)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


_default = Harness()


def start():
    """Module-level harness: starts or joins the stack; see Harness.start()."""
    return _default.start()


def stop():
    _default.stop()


def topics(specs):
    _default.topics(specs)


def on_exit(fn):
    _default.on_exit(fn)


def wait_for(pred, timeout_s, interval_s=0.2):
    """Polls pred() until truthy; returns its value, or None after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(interval_s)


def check_sanitizer(*paths):
    """Returns the sanitizer report lines found in the files (empty list: clean)."""
    hits = []
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                hits += [f"{p}: {line.rstrip()}" for line in f if SANITIZER_RE.search(line)]
        except FileNotFoundError:
            pass
    return hits
