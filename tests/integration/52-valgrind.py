#!/usr/bin/env python3
"""interestd under valgrind memcheck for a small stream: started with
--leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99, it applies
every event (events_applied exact per user), writes snapshots, dead-letters undecodable
messages, reloads its model on SIGHUP, stops on SIGTERM with
exit 0 (99 would be a memcheck error or a definite leak), and the memcheck log reports
0 errors and 0 bytes definitely lost. tests/valgrind.supp suppresses only frames inside
third-party libraries (each entry says why). Always runs the plain build (BUILD_DIR,
or build/ when BUILD_DIR is a sanitizer build: ASan and valgrind do not mix).
Optional: skipped (exit 77, counted as skipped) without valgrind or, under a
sanitizer build, without a plain build/ beside it."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 30, 300
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60

if subprocess.run(["sh", "-c", "command -v valgrind"], stdout=subprocess.DEVNULL).returncode:
    print("SKIP: valgrind not installed (apt-get install valgrind)", flush=True)
    sys.exit(77)

env = harness.start()
interestd = e2e.tool("interestd")
if "asan" in os.path.basename(os.path.dirname(interestd)) or \
        b"__asan_init" in open(interestd, "rb").read():
    interestd = os.path.join(harness.ROOT, "build", "interestd")
    if not os.access(interestd, os.X_OK) or b"__asan_init" in open(interestd, "rb").read():
        print("SKIP: no build without sanitizers for valgrind (make all)", flush=True)
        sys.exit(77)
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
supp = os.path.join(harness.ROOT, "tests", "valgrind.supp")
csv_path = os.path.join(tmp, "events.csv")
rows = e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=52)
want = {}
for row in rows:
    want[row["user_id"]] = want.get(row["user_id"], 0) + 1

conf = e2e.write_config(env, model, "vg", snapshot__every_events=5)
vg_log = os.path.join(tmp, "memcheck.log")
out_path = os.path.join(tmp, "vg.out")
cmd = ["valgrind", "--tool=memcheck", "--leak-check=full", "--errors-for-leak-kinds=definite",
       "--show-leak-kinds=definite", "--error-exitcode=99", "--num-callers=30",
       f"--suppressions={supp}", "--gen-suppressions=all", f"--log-file={vg_log}",
       interestd, "-c", conf]
t0 = time.monotonic()
with open(out_path, "w") as out:
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


def kill():
    if proc.poll() is None:
        proc.kill()
        proc.wait()


harness.on_exit(kill)


def daemon_log():
    with open(out_path, errors="replace") as f:
        return f.read()


def memcheck_log():
    try:
        with open(vg_log, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def dump_and_fail(msg):
    print("--- interestd output (last 40 lines) ---", file=sys.stderr)
    for line in daemon_log().splitlines()[-40:]:
        print(f"    {line[:300]}", file=sys.stderr)
    print("--- memcheck log (last 120 lines) ---", file=sys.stderr)
    for line in memcheck_log().splitlines()[-120:]:
        print(f"    {line[:300]}", file=sys.stderr)
    e2e.fail(msg)


if harness.wait_for(lambda: proc.poll() is not None or
                    re.search(r"event=assigned .*owned=4", daemon_log()), START_TIMEOUT_S) is None \
        or proc.poll() is not None:
    dump_and_fail(f"under valgrind: no full assignment within {START_TIMEOUT_S} s "
                  f"(exit {proc.poll()})")
t_ready = time.monotonic() - t0
e2e.replay_to_kafka(env, csv_path)
r = e2e.redis_client(env)
done, last, short = e2e.wait_applied(r, env["REDIS_KEY_PREFIX"], want, 120)
if not done:
    dump_and_fail(f"under valgrind: events_applied short for {len(short)} users")
e2e.ok(f"under valgrind: assigned after {t_ready:.1f} s, {N_EVENTS} events applied to "
       f"{len(want)} users, each count exact")

# The dead-letter path and a model reload (SIGHUP) under memcheck as well.
e2e.produce_raw(env, [(b"u1", b"\x00\x00\x00\x00\x63garbage"), (b"u2", b"\xc3\x01" + b"\x01" * 8),
                      (b"u3", b"\x02")])
if len(e2e.consume_all(env, env["DLQ_TOPIC"], 3, 60)) != 3:
    dump_and_fail("under valgrind: 3 undecodable messages did not all reach the DLQ")
mark = len(daemon_log())
proc.send_signal(signal.SIGHUP)
if harness.wait_for(lambda: "event=model_reloaded" in daemon_log()[mark:], 60) is None:
    dump_and_fail("under valgrind: no event=model_reloaded after SIGHUP")
e2e.ok("under valgrind: 3 undecodable messages dead-lettered, SIGHUP reloaded the model")

proc.send_signal(signal.SIGTERM)
try:
    rc = proc.wait(STOP_TIMEOUT_S)
except subprocess.TimeoutExpired:
    kill()
    dump_and_fail(f"under valgrind: not stopped {STOP_TIMEOUT_S} s after SIGTERM")
text = memcheck_log()
if "Memcheck, a memory error detector" not in text or "LEAK SUMMARY" not in text and \
        "All heap blocks were freed" not in text:
    dump_and_fail("the memcheck log has no Memcheck header or leak summary")
summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
definite = re.search(r"definitely lost: ([\d,]+) bytes", text)
lost = int(definite.group(1).replace(",", "")) if definite else 0
if rc != 0 or summary is None or int(summary.group(1)) != 0 or lost != 0:
    dump_and_fail(f"under valgrind: exit {rc} (99: memcheck errors), "
                  f"{summary.group(0) if summary else 'no ERROR SUMMARY'}, "
                  f"definitely lost {lost} bytes")
suppressed = re.search(r"ERROR SUMMARY: .*suppressed: ([\d,]+) from (\d+)", text)
reach = re.search(r"still reachable: ([\d,]+) bytes in ([\d,]+) blocks", text)
e2e.ok(f"SIGTERM: exit 0 after {time.monotonic() - t0:.1f} s in all; memcheck: "
       f"{summary.group(0)}, definitely lost {lost} bytes"
       + (f", {suppressed.group(1)} suppressed errors" if suppressed else "")
       + (f", still reachable {reach.group(1)} bytes (not errors)" if reach else ""))
