#!/usr/bin/env python3
"""The fault suite's short version (the full one is `make faults`, tests/faults/run):
small seeded streams on the shared stack, each with one fault mid-stream, and the
final Redis state compared with the offline replay of the good events (vectors within
1e-5, same top-N, same tier weights, events_applied equal), bad messages all
dead-lettered:
 - kill -9 of the daemon at three moments: between poll and flush, mid-pipeline,
   between the Redis acknowledgement and the offset commit (gdb breakpoints);
 - redis-server (its own, append-only file) killed -9 and restarted;
 - CLIENT PAUSE ALL longer than the flush interval and the Redis timeout;
 - an instance frozen past the session timeout, its partitions taken over, then thawed
   while the new owner writes: once by SIGSTOP with the Redis connections cut, once
   stopped (gdb) at a flush's entry so its first act on waking is a write with its old
   epoch, which must be fenced;
 - the dead-letter topic missing while bad messages arrive (pause, re-read, no exit);
 - a failover to a replica that missed acknowledged writes, past which offsets were
   committed (re-applied from Kafka);
 - a message that kills the daemon whenever read (dead-lettered as crashed);
 - events produced twice at new offsets (skipped by event id, across a restart);
 - messages keyed by another user (dead-lettered as key_mismatch);
 - SIGHUP to a truncated and then a corrupt model file (old model kept).
Prints the table; writes BUILD_DIR/faults-short.json."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults"))
import faultlib as fl  # noqa: E402

env = fl.harness.start()
model, sample = fl.e2e.test_model()
suite = fl.Suite(env, fl.harness._default, model, sample, seed=int(os.environ.get("FAULTS_SEED", "1")))
suite.run("kill9", kills=3, chunk=250, rate=150, users=80)
suite.run("redis-restart", users=80, events=1500, rate=500, down_s=1.0)
suite.run("redis-pause", users=80, events=1600, rate=400, pause_ms=2500)
suite.run("zombie", freezes=2, users=60, chunk=200)
suite.run("dlq-down", users=60, events=800, rate=300, missing_s=8.0)
suite.run("failover-lost-ack", users=80, events=1600, rate=400)
suite.run("poison", users=60, events=1000, rate=400)
suite.run("duplicate-events", users=60, events=1000, rate=400)
suite.run("key-mismatch", users=60, events=800, rate=400)
suite.run("sighup-bad-model", users=80, events=1200, rate=400)
suite.run("model-truncated-in-place", users=80, events=1200, rate=400)
ok = suite.report(os.path.join(fl.e2e.build_dir(), "faults-short.json"))
fl.harness.stop()
if not ok:
    fl.e2e.fail("a fault scenario failed (table above)")
print("PASS")
