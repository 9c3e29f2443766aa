#!/usr/bin/env python3
"""/metrics never blocks the consumer loop. A slow scraper holds 40 connections to the
metrics port, each with half a request written ("GET /metr"), and opens a new one as
soon as the daemon closes one. Meanwhile single events of new users are produced one at
a time (for at least 8 s): the time from produce to the user's state in Redis stays within 1 s of the same
round trip measured before the scraper started (the old responder, which read each
request with a blocking 200 ms recv for up to 16 connections a turn, added > 3 s a
turn). Every held connection is closed by the daemon at its deadline (2 s after accept;
16 are served at once, the rest wait in the backlog), a real scrape made during the flood is answered, every
event is applied exactly once, and the daemon exits 0 on SIGTERM."""
import os
import socket
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

HELD = 40            # connections the slow scraper keeps open
ROUNDS = 12          # single-event round trips per phase
DEADLINE_S = 2.0     # METRICS_CONN_MS in daemon/metrics.c
SLOTS = 16           # METRICS_CONN_MAX: connections beyond it wait in the listen backlog
# From connect to close: waiting for a slot (whole generations of SLOTS), the deadline,
# and a loop turn or two.
LIFE_MAX_S = DEADLINE_S * -(-HELD // SLOTS) + 3

h = harness.Harness(private=True)
env = h.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]

conf = e2e.write_config(env, model, "d1", metrics__listen="127.0.0.1:0")
d = e2e.Daemon(env, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 60)
host, port = d.wait_log(r"event=metrics_listening addr=(\S+):(\d+)", 10).groups()
port = int(port)
seq = 0


def round_trip(tag):
    """Produces one event of a new user; seconds until Redis shows it applied."""
    global seq
    seq += 1
    user = f"{tag}-{seq}"
    t0 = time.monotonic()
    e2e.produce_raw(env, [(user.encode(), e2e.single_object(user, items[seq % len(items)],
                                                            1_700_000_000_000 + seq, f"e{seq}"))])
    got = harness.wait_for(lambda: e2e.events_applied(r, prefix, [user]).get(user) == 1 or None,
                           30, 0.02)
    if got is None or not d.alive():
        d.dump()
        e2e.fail(f"event of {user} not applied within 30 s (daemon alive: {d.alive()})")
    return time.monotonic() - t0, user


def phase(tag, min_s=0.0):
    """ROUNDS round trips, and more until min_s has passed; their median and users."""
    times, users, t0 = [], [], time.monotonic()
    while len(times) < ROUNDS or time.monotonic() - t0 < min_s:
        t, u = round_trip(tag)
        times.append(t)
        users.append(u)
    return statistics.median(times), users


base_s, users = phase("calm")
e2e.ok(f"without a slow scraper: produce-to-Redis median {base_s * 1000:.0f} ms")


class SlowScraper(threading.Thread):
    """Keeps HELD half-written requests open; records how long the daemon kept each."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.held = []      # [(socket, opened at)]
        self.lifetimes = []  # seconds from connect to the daemon closing it
        self.errors = []

    def open_one(self):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"GET /metr")
        s.setblocking(False)
        self.held.append((s, time.monotonic()))

    def run(self):
        try:
            while not self.stop.is_set():
                while len(self.held) < HELD:
                    self.open_one()
                still = []
                for s, t in self.held:
                    try:
                        closed = s.recv(4096) == b""
                    except BlockingIOError:
                        closed = False
                    except ConnectionResetError:
                        closed = True
                    if closed:
                        self.lifetimes.append(time.monotonic() - t)
                        s.close()
                    else:
                        still.append((s, t))
                self.held = still
                time.sleep(0.02)
        except OSError as e:
            self.errors.append(repr(e))
        for s, _ in self.held:
            s.close()


scraper = SlowScraper()
scraper.start()
time.sleep(1)
t0 = time.monotonic()
with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
    text = resp.read().decode()
scrape_s = time.monotonic() - t0
if "interestd_events_applied_total" not in text:
    e2e.fail("a scrape during the flood did not return the counters")
slow_s, more = phase("flood", 4 * DEADLINE_S)  # a few generations of held connections
users += more
scraper.stop.set()
scraper.join(30)
if scraper.is_alive() or scraper.errors:
    e2e.fail(f"slow scraper: alive {scraper.is_alive()}, errors {scraper.errors}")
if slow_s > base_s + 1.0:
    d.dump()
    e2e.fail(f"with {HELD} half-written scrapes held open, produce-to-Redis median "
             f"{slow_s * 1000:.0f} ms vs {base_s * 1000:.0f} ms without: the loop is blocked")
e2e.ok(f"with {HELD} half-written scrapes held open: median {slow_s * 1000:.0f} ms "
       f"(vs {base_s * 1000:.0f} ms); a real scrape answered in {scrape_s:.2f} s")

life = scraper.lifetimes
if len(life) < HELD or min(life) < DEADLINE_S - 0.5 or max(life) > LIFE_MAX_S:
    e2e.fail(f"held connections closed after {min(life, default=0):.2f}-"
             f"{max(life, default=0):.2f} s ({len(life)} closed): want {DEADLINE_S - 0.5}-"
             f"{LIFE_MAX_S} s")
e2e.ok(f"{len(life)} held connections closed by the daemon after "
       f"{min(life):.2f}-{max(life):.2f} s (median {statistics.median(life):.2f} s)")

counts = e2e.events_applied(r, prefix, users)
if counts != {u: 1 for u in users}:
    e2e.fail(f"events_applied: {counts}")
rc = d.stop()
d.assert_clean()
if rc != 0:
    e2e.fail(f"interestd exited {rc} on SIGTERM")
e2e.ok(f"all {len(users)} events applied once; clean exit")
h.stop()
print("PASS")
