#!/usr/bin/env python3
"""interestd under a (simulated) service manager: with NOTIFY_SOCKET and WATCHDOG_USEC
set it sends STATUS= while waiting, READY=1 once its first assignment is served,
WATCHDOG=1 keep-alives at least every half interval from the main loop, RELOADING=1 with
MONOTONIC_USEC then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM (exit 0).
READY=1 after the assignment: the daemon's event=assigned line (its UTC millisecond
timestamp) is no later than READY=1's receive time, and is in the log when READY=1
arrives."""
import datetime
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

env = harness.start()
model, sample = e2e.test_model()
path = os.path.join(env["HARNESS_TMP"], "notify.sock")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
sock.settimeout(0.2)
got = []  # (monotonic time, wall-clock time, message) per datagram received
d = None


def drain(until=None, timeout_s=30):
    """Receives notifications until one satisfies until (returned) or timeout_s
    passes (None); fails at once if the daemon exits meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            if d is not None and not d.alive() and not any("STOPPING=1" in m for _, _, m in got):
                d.dump()
                e2e.fail(f"interestd exited ({d.proc.returncode}) while waiting for a notification")
            continue
        got.append((time.monotonic(), time.time(), msg))
        if until and until(msg):
            return msg
    return None


def log_time(line):
    """The wall-clock time (s) of a daemon log line: 2026-12-07T15:01:56.123Z level=..."""
    ts = datetime.datetime.strptime(line.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.replace(tzinfo=datetime.timezone.utc).timestamp()


conf = e2e.write_config(env, model, "d1")
d = e2e.Daemon(env, conf, "d1", extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}).start()
if drain(lambda m: "READY=1" in m, 60) is None:
    d.dump()
    e2e.fail(f"no READY=1; got {[m for _, _, m in got]}")
log_at_ready = d.current_log()  # at once: what the daemon had logged when READY=1 came
ready_wall = got[-1][1]
if not any("STATUS=" in m for _, _, m in got):
    e2e.fail("no STATUS= before READY=1")
assigned = re.search(r"^\S+ level=info event=assigned .*$", log_at_ready, re.M)
if assigned is None:
    d.dump()
    e2e.fail("READY=1 arrived before the daemon logged event=assigned")
# The log's millisecond timestamp is truncated, so it never runs ahead of the
# line's real time; the receive time comes after the send.
assigned_wall = log_time(assigned.group(0))
if assigned_wall > ready_wall:
    e2e.fail(f"READY=1 received {assigned_wall - ready_wall:.3f} s before event=assigned was logged")
e2e.ok(f"STATUS= while starting, READY=1 {(ready_wall - assigned_wall) * 1000:.0f} ms after "
       f"event=assigned")
t0 = time.monotonic()
drain(timeout_s=2.5)
pings = [t for t, _, m in got if "WATCHDOG=1" in m and t >= t0]
if len(pings) < 4:
    e2e.fail(f"{len(pings)} WATCHDOG=1 in 2.5 s with WatchdogSec=1s")
e2e.ok(f"{len(pings)} WATCHDOG=1 keep-alives in 2.5 s (interval 1 s)")
d.send(signal.SIGHUP)
m = drain(lambda m: "RELOADING=1" in m, 30)
if m is None or "MONOTONIC_USEC=" not in m:
    e2e.fail(f"SIGHUP: no RELOADING=1 with MONOTONIC_USEC ({m!r})")
if drain(lambda m: "READY=1" in m, 30) is None:
    e2e.fail("no READY=1 after the reload")
e2e.ok("SIGHUP: RELOADING=1 + MONOTONIC_USEC, then READY=1")
d.send(signal.SIGTERM)
if drain(lambda m: "STOPPING=1" in m, 30) is None:
    e2e.fail("no STOPPING=1 on SIGTERM")
rc = d.proc.wait(60)  # (a second SIGTERM would mean "exit 1 at once")
if rc != 0:
    e2e.fail(f"exit {rc}")
e2e.ok("SIGTERM: STOPPING=1, exit 0")
d.assert_clean()
sock.close()
harness.stop()
print("PASS")
