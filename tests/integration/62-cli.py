#!/usr/bin/env python3
"""The command-line conventions (README "Command lines") on every tool, found, not
listed: each executable file in scripts/, the user-run test runners and the four
binaries of BUILD_DIR. For each: --help and -h exit 0 with a usage line on stdout;
--version exits 0 printing "<tool> <VERSION>" (the file VERSION); an unknown option
exits 64 with a message on stderr (tried only after the first three held, so that a
tool which ignores options is never started for real). interestd and interestctl
exit 78 on a config file with a bad value, naming the key, and all four binaries on an
OPENBLAS_CORETYPE this CPU cannot run; every interestctl MODE
--help exits 0; an unknown mode exits 64. Then the README table's spellings: each
is accepted where the table says (an option taken reaches the tool's own work and
fails there, naming the file or address given; a usage error would be 64)."""
import concurrent.futures
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

EX_USAGE, EX_CONFIG = 64, 78
RUN_TIMEOUT_S = 60
USAGE_RE = re.compile(r"^usage:", re.IGNORECASE | re.MULTILINE)
# The test runners a user starts, beside scripts/.
RUNNERS = ["tests/run-unit", "tests/run-integration", "tests/faults/run"]
BINARIES = ["interestd", "interestctl", "interest-train", "interest-eval"]

env = harness.start()
root = harness.ROOT
tmp = env["HARNESS_TMP"]
with open(os.path.join(root, "VERSION"), encoding="utf-8") as f:
    version = f.read().strip()


def run(argv, env=None):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT_S, env=env)
    if harness.SANITIZER_RE.search(r.stderr):
        e2e.fail(f"sanitizer report from {' '.join(argv)}:\n{r.stderr}")
    return r


def tools():
    found = []
    sdir = os.path.join(root, "scripts")
    for name in sorted(os.listdir(sdir)):
        p = os.path.join(sdir, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            found.append(p)
    found += [os.path.join(root, r) for r in RUNNERS]
    found += [e2e.tool(b) for b in BINARIES]
    return found


def check(path):
    """The problems of one tool, [] when it keeps the conventions."""
    name = os.path.basename(path)
    bad = []
    for opt in ("--help", "-h"):
        r = run([path, opt])
        if r.returncode != 0 or not USAGE_RE.search(r.stdout):
            bad.append(f"{opt}: exit {r.returncode}, no 'usage:' line on stdout "
                       f"(out {r.stdout[:200]!r}, err {r.stderr[-300:]!r})")
    r = run([path, "--version"])
    if r.returncode != 0 or r.stdout.strip() != f"{name} {version}":
        bad.append(f"--version: exit {r.returncode}, out {r.stdout[:200]!r} "
                   f"(want '{name} {version}'), err {r.stderr[-300:]!r}")
    if bad:
        return bad
    r = run([path, "--no-such-option"])
    if r.returncode != EX_USAGE or not r.stderr.strip():
        bad.append(f"--no-such-option: exit {r.returncode} (want {EX_USAGE}), "
                   f"err {r.stderr[-300:]!r}")
    return bad


found = tools()
with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    results = list(pool.map(check, found))
failed = [(p, bad) for p, bad in zip(found, results) if bad]
for p, bad in failed:
    print(f"{os.path.relpath(p, root)}:\n  " + "\n  ".join(bad), file=sys.stderr)
if failed:
    e2e.fail(f"{len(failed)} of {len(found)} tools break the command-line conventions")
e2e.ok(f"{len(found)} tools: -h/--help exit 0 with usage, --version '<tool> {version}', "
       f"an unknown option exits 64 ({', '.join(os.path.basename(p) for p in found)})")

# A bad value in a config file: 78, naming the key; by -c and by --config.
interestd, ctl = e2e.tool("interestd"), e2e.tool("interestctl")
bad_conf = os.path.join(tmp, "cli-bad.conf")
with open(bad_conf, "w") as f:
    f.write("redis.port = not-a-port\n")
for argv in ([interestd, "-n", "-c", bad_conf], [interestd, "-n", "--config", bad_conf],
             [interestd, "-n", "-o", "redis.port=not-a-port"],
             [ctl, "-c", bad_conf, "model", "x.imdl"], [ctl, "--config", bad_conf, "model", "x.imdl"],
             [ctl, "--redis-port", "not-a-port", "model", "x.imdl"],
             [ctl, "-o", "redis.port=not-a-port", "model", "x.imdl"]):
    r = run(argv)
    if r.returncode != EX_CONFIG or "redis.port" not in r.stderr:
        e2e.fail(f"{' '.join(argv[1:])}: exit {r.returncode} (want 78 naming redis.port), "
                 f"err {r.stderr!r}")
e2e.ok("a bad redis.port (file by -c or --config, --redis-port, -o): exit 78 naming the key")

for mode in ("user", "erase", "model", "report", "replay"):
    r = run([ctl, mode, "--help"])
    if r.returncode != 0 or not USAGE_RE.search(r.stdout) or f"  {mode} " not in r.stdout:
        e2e.fail(f"interestctl {mode} --help: exit {r.returncode}, out {r.stdout[:200]!r}")
r = run([ctl, "no-such-mode"])
if r.returncode != EX_USAGE or "no-such-mode" not in r.stderr:
    e2e.fail(f"interestctl no-such-mode: exit {r.returncode}, err {r.stderr!r}")
r = run([ctl, "model"])
if r.returncode != EX_USAGE:
    e2e.fail(f"interestctl model without FILE: exit {r.returncode} (want 64)")
e2e.ok("interestctl MODE --help exits 0 for every mode; an unknown mode or a missing "
       "argument exits 64")

# The README table's spellings, each taken by the tool: the run gets past its
# command line and fails on the missing file or closed port it was given.
missing = os.path.join(tmp, "cli-missing")
redis_host, redis_port = env.get("REDIS_HOST", "127.0.0.1"), env["REDIS_PORT"]
prefix = env["REDIS_KEY_PREFIX"] + "cli:"
spelled = [
    ([ctl, "replay", "--model", missing + ".imdl", "--interactions", "x.csv", "--out", "o"],
     1, missing),
    ([ctl, "replay", "--model", missing + ".imdl", "--events", "x.csv", "--out", "o"],
     1, missing),
    ([ctl, "--redis-host", redis_host, "--redis-port", redis_port, "--redis-prefix", prefix,
      "user", "nobody"], 1, f"prefix '{prefix}'"),
    ([ctl, "-H", redis_host, "-p", redis_port, "-P", prefix, "user", "nobody"],
     1, f"prefix '{prefix}'"),
    ([ctl, "report", "u", "--out", "r.svg", "--model", missing + ".imdl"], 1, missing),
    ([ctl, "report", "u", "-o", "r.svg", "--model", missing + ".imdl"], 1, missing),
    ([os.path.join(root, "scripts", "catalog"), "follow", "--catalog", missing + ".icat",
      "--items", "x.csv", "--bootstrap", "127.0.0.1:1", "--once"], 1, missing),
    ([os.path.join(root, "scripts", "catalog"), "follow", "--catalog", missing + ".icat",
      "--items", "x.csv", "--bootstrap-servers", "127.0.0.1:1", "--once"], 1, missing),
]
for argv, want_rc, want_err in spelled:
    r = run(argv)
    if r.returncode != want_rc or want_err not in r.stderr:
        e2e.fail(f"{' '.join(argv)}: exit {r.returncode} (want {want_rc} naming {want_err!r}), "
                 f"err {r.stderr!r}")
e2e.ok("spellings taken: interestctl --redis-host/--redis-port/--redis-prefix (and -H/-p/-P), "
       "replay --interactions (and --events), report --out (and -o), catalog follow "
       "--bootstrap (and --bootstrap-servers)")

# The spellings every tool of a row of the table lists in its --help.
helps = {
    "--config": [[interestd], [ctl], ["scripts/retrain"]],
    "--redis-port": [[ctl], ["scripts/stack"]],
    "-o": [[interestd], [ctl]],
    "--bootstrap": [["scripts/replay"], ["scripts/retrain"], ["scripts/snapshots", "dump"],
                    ["scripts/stack"], ["scripts/catalog", "follow"]],
    "--interactions": [[e2e.tool("interest-train")], [e2e.tool("interest-eval")], [ctl]],
    "--topic": [["scripts/replay"], ["scripts/retrain"], ["scripts/snapshots", "dump"],
                ["scripts/catalog", "follow"]],
    "--out": [[e2e.tool("interest-train")], [ctl], [ctl, "report"], ["scripts/catalog", "build"],
              ["scripts/catalog", "map"], ["scripts/make-sample"], ["scripts/convert-movielens"],
              ["scripts/sample-users"], ["scripts/sasrec"], ["scripts/snapshots", "dump"],
              ["scripts/retrain"]],
    "--seed": [[e2e.tool("interest-train")], [e2e.tool("interest-eval")],
               ["scripts/catalog", "build"], ["scripts/make-sample"], ["scripts/sample-users"],
               ["scripts/sasrec"]],
    "--threads": [[e2e.tool("interest-train")], ["scripts/sasrec"]],
    "-X": [["scripts/replay"], ["scripts/retrain"], ["scripts/snapshots", "dump"]],
}
for opt, cmds in helps.items():
    for cmd in cmds:
        argv = [c if os.path.isabs(c) else os.path.join(root, c) for c in cmd[:1]] + cmd[1:]
        r = run(argv + ["--help"])
        if r.returncode != 0 or not re.search(rf"(^|[\s\[,|]){re.escape(opt)}\b", r.stdout):
            e2e.fail(f"{' '.join(cmd)} --help does not list {opt} (exit {r.returncode})")
e2e.ok("every spelling of the README table is listed by the --help of the tools it names")

# An OPENBLAS_CORETYPE this CPU cannot run: every binary refuses it, exit 78, before any
# kernel runs (it would die with SIGILL otherwise).
lacking = e2e.unrunnable_openblas_core()
if lacking is None:
    print("SKIP (case): this CPU has avx512f and fma4, no OpenBLAS core here it cannot run")
else:
    bad_env = dict(os.environ, OPENBLAS_CORETYPE=lacking)
    for argv in ([interestd, "-n", "-c", "/nonexistent.conf"], [ctl, "model", "/nonexistent"],
                 [e2e.tool("interest-train"), "--catalog", "/nonexistent"],
                 [e2e.tool("interest-eval"), "--catalog", "/nonexistent"]):
        r = run(argv, env=bad_env)
        if r.returncode != 78 or f"OPENBLAS_CORETYPE={lacking} names a core" not in r.stderr:
            e2e.fail(f"OPENBLAS_CORETYPE={lacking} {os.path.basename(argv[0])}: exit "
                     f"{r.returncode}, err {r.stderr!r}")
    e2e.ok(f"OPENBLAS_CORETYPE={lacking}: the four binaries refuse it, exit 78")
harness.stop()
print("PASS")
