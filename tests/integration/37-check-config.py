#!/usr/bin/env python3
"""interestd -n / --check-config / --dump-config: a valid config and model print
"configuration OK" and exit 0 without opening a socket (a listener standing in for
Kafka and Redis sees no connection); a bad key, a corrupt model (the message names the
section), a catalog in place of a model and a bad schema path each exit 78 naming the
problem; --dump-config prints a config that -n accepts again. An OPENBLAS_CORETYPE
naming a core this CPU lacks the instructions for (by /proc/cpuinfo), or no core at
all, exits 78 naming the variable instead of dying with SIGILL later; one it can
run passes."""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

env = harness.start()
model, sample = e2e.test_model()
tmp = env["HARNESS_TMP"]
interestd = e2e.tool("interestd")
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(8)
lst.settimeout(1.0)
port = lst.getsockname()[1]
conf = e2e.write_config(env, model, "check", redis__port=port,
                        kafka__bootstrap__servers=f"127.0.0.1:{port}")


def run(*args, env=None):
    r = subprocess.run([interestd] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60, env=env)
    if harness.SANITIZER_RE.search(r.stderr):
        e2e.fail(f"sanitizer report from interestd {' '.join(args)}:\n{r.stderr}")
    return r


r = run("-n", "-c", conf)
if r.returncode != 0 or r.stdout.strip() != "configuration OK":
    e2e.fail(f"-n on a good config: exit {r.returncode}, out {r.stdout!r}, err {r.stderr!r}")
try:
    conn, _ = lst.accept()
    e2e.fail("interestd -n connected to the Kafka/Redis address")
except socket.timeout:
    pass
e2e.ok("-n: 'configuration OK', exit 0, no connection made")
r = run("--check-config", "-c", conf)
if r.returncode != 0:
    e2e.fail("--check-config on a good config failed")

bad = os.path.join(tmp, "bad.conf")
with open(conf) as f, open(bad, "w") as g:
    g.write(f.read() + "no.such.key = 1\nflush.interval_ms = -5\n")
r = run("-n", "-c", bad)
if r.returncode != 78 or "no.such.key" not in r.stderr or "flush.interval_ms" not in r.stderr:
    e2e.fail(f"bad keys: exit {r.returncode}, err {r.stderr!r}")
e2e.ok(f"bad keys: exit 78, every error named: {r.stderr.strip().splitlines()}")

corrupt = os.path.join(tmp, "corrupt.imdl")
e2e.corrupt_copy(model, corrupt, b"HPAR")
r = run("-n", "-c", conf, "-o", f"model.path={corrupt}")
if r.returncode != 78 or "HPAR" not in r.stderr:
    e2e.fail(f"corrupt model: exit {r.returncode}, err {r.stderr!r}")
e2e.ok(f"corrupt model: exit 78, '{r.stderr.strip()}'")

cat = os.path.join(sample, "catalog.icat")
if os.path.exists(cat):
    r = run("-n", "-c", conf, "-o", f"model.path={cat}")
    if r.returncode != 78 or "catalog" not in r.stderr:
        e2e.fail(f"catalog as model: exit {r.returncode}, err {r.stderr!r}")
    e2e.ok("a catalog in place of a model: exit 78")

r = run("-n", "-c", conf, "-o", "schema.writers=7:/nonexistent.avsc")
if r.returncode != 78 or "nonexistent" not in r.stderr:
    e2e.fail(f"missing writer schema: exit {r.returncode}, err {r.stderr!r}")
e2e.ok("a missing writer schema: exit 78")

r = run("--dump-config", "-c", conf, "-o", "redis.top_n=7")
dumped = os.path.join(tmp, "dumped.conf")
with open(dumped, "w") as f:
    f.write(r.stdout)
if r.returncode != 0 or "redis.top_n = 7" not in r.stdout:
    e2e.fail(f"--dump-config: exit {r.returncode}, out {r.stdout[:300]!r}")
r = run("-n", "-c", dumped)
if r.returncode != 0:
    e2e.fail(f"-n rejects the dumped config: {r.stderr}")
e2e.ok("--dump-config output (with the -o override) passes -n again")


def with_coretype(core):
    return dict(os.environ, OPENBLAS_CORETYPE=core)


with open("/proc/cpuinfo") as f:
    flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
r = run("-n", "-c", conf, env=with_coretype("Prescott"))
if r.returncode != 0:
    e2e.fail(f"OPENBLAS_CORETYPE=Prescott (SSE3, every x86-64 CPU here): exit {r.returncode}, "
             f"err {r.stderr!r}")
lacking = next((core for core, flag in (("SkylakeX", "avx512f"), ("Bulldozer", "fma4"))
                if flag not in flags), None)
if lacking is None:
    print("SKIP (case): this CPU has avx512f and fma4, no OpenBLAS core here it cannot run")
else:
    r = run("-n", "-c", conf, env=with_coretype(lacking))
    line = r.stderr.strip()
    if r.returncode != 78 or f"OPENBLAS_CORETYPE={lacking}" not in line or "lacks" not in line \
            or len(line.splitlines()) != 1:
        e2e.fail(f"OPENBLAS_CORETYPE={lacking} on a CPU without it: exit {r.returncode}, "
                 f"err {r.stderr!r}")
    e2e.ok(f"OPENBLAS_CORETYPE={lacking} refused, exit 78: '{line}'")
r = run("-n", "-c", conf, env=with_coretype("Pentium9"))
if r.returncode != 78 or "OPENBLAS_CORETYPE=Pentium9 is not an OpenBLAS" not in r.stderr:
    e2e.fail(f"an unknown OPENBLAS_CORETYPE: exit {r.returncode}, err {r.stderr!r}")
e2e.ok("an unknown OPENBLAS_CORETYPE refused, exit 78; Prescott accepted")
lst.close()
harness.stop()
print("PASS")
