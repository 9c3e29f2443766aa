#!/usr/bin/env python3
"""interestd under a (simulated) service manager: with NOTIFY_SOCKET and WATCHDOG_USEC
set it sends STATUS= while waiting, READY=1 once its first assignment is served,
WATCHDOG=1 keep-alives at least every half interval from the main loop, RELOADING=1 with
MONOTONIC_USEC then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM (exit 0)."""
import os
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
got = []


def drain(until=None, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            continue
        got.append((time.monotonic(), msg))
        if until and until(msg):
            return msg
    return None


conf = e2e.write_config(env, model, "d1")
d = e2e.Daemon(env, conf, "d1", extra_env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}).start()
if drain(lambda m: "READY=1" in m, 60) is None:
    d.dump()
    e2e.fail(f"no READY=1; got {[m for _, m in got]}")
if not any("STATUS=" in m for _, m in got):
    e2e.fail("no STATUS= before READY=1")
if "event=assigned" not in d.current_log():
    e2e.fail("READY=1 before the first assignment")
e2e.ok("STATUS= while starting, READY=1 after the first assignment")
t0 = time.monotonic()
drain(timeout_s=2.5)
pings = [t for t, m in got if "WATCHDOG=1" in m and t >= t0]
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
