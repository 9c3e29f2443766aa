#!/usr/bin/env python3
"""interestd end to end: two instances in one consumer group split the 4 partitions
(2 each) and both apply events; SIGTERM to one mid-stream hands its partitions to the
other after flushing and committing (exit 0, 'revoked ... flushed=1'); the survivor
claims them (owner epochs go up) and the final Redis state equals the offline replay
of all events, each applied exactly once."""
import os
import re
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

N_USERS, N_EVENTS = 150, 4000

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
csv_path = os.path.join(env["HARNESS_TMP"], "events.csv")
e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=34)
expected = e2e.offline_replay(model, csv_path, os.path.join(env["HARNESS_TMP"], "replay.jsonl"))
want = {u: v["events_applied"] for u, v in expected.items()}
r = e2e.redis_client(env)

def scenario(strategy, topic, prefix, group):
    """The whole scenario with one assignment strategy on its own topic and keys."""
    tag = strategy.split("-")[0]
    cfg = dict(kafka__consumer__partition__assignment__strategy=strategy,
               topic__events=topic, redis__prefix=prefix, group=group)
    d1 = e2e.Daemon(env, e2e.write_config(env, model, f"d1-{tag}", **cfg), f"d1-{tag}").start()
    d1.wait_log(r"event=assigned .*owned=4", 60)
    at = d1.mark()
    d2 = e2e.Daemon(env, e2e.write_config(env, model, f"d2-{tag}", **cfg), f"d2-{tag}").start()
    d2.wait_log(r"event=assigned .*owned=2", 60)
    d1.wait_log(r"event=(revoked|assigned) .*owned=2", 60, since=at)
    e2e.ok(f"{strategy}: two instances, 2 partitions each")
    m = re.search(r"event=assigned topic=\S+ partitions=([\d,]+)", d2.current_log())
    d2_parts = [int(p) for p in m.group(1).split(",")]

    producer = threading.Thread(target=e2e.replay_to_kafka, args=(env, csv_path), kwargs={"rate": 800, "topic": topic})
    producer.start()
    if harness.wait_for(lambda: sum(e2e.events_applied(r, prefix, list(want)).values()) >= N_EVENTS // 3,
                        60, 0.1) is None:
        e2e.fail("a third of the events not applied within 60 s")
    at = d1.mark()
    rc = d2.stop()
    if rc != 0:
        d2.dump()
        e2e.fail(f"d2: exit {rc} after SIGTERM")
    if not re.search(r"event=revoked .*flushed=1", d2.current_log()):
        d2.dump()
        e2e.fail("d2 did not flush before giving its partitions up")
    e2e.ok(f"d2 stopped mid-stream (SIGTERM, exit 0) after flushing; it owned {d2_parts}")
    d1.wait_log(r"event=assigned .*owned=4", 60, since=at)
    e2e.ok(f"{strategy}: d1 took over all 4 partitions")
    producer.join()

    done, got, short = e2e.wait_applied(r, prefix, want, 120)
    if not done:
        d1.dump()
        e2e.fail(f"{len(short)} users incomplete, e.g. {list(short.items())[:5]}")
    diffs = e2e.compare(r, prefix, expected)
    if diffs:
        e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
    e2e.ok("final Redis state equals the offline replay; events_applied exact")

    applied = {}
    for d in (d1, d2):
        s = re.findall(r"event=stats consumed=\d+ applied=(\d+)", d.log_text())
        applied[d.name[:2]] = int(s[-1]) if s else 0
    if d1.stop() != 0:
        e2e.fail("d1: exit status after SIGTERM")
    s = re.findall(r"event=stats consumed=\d+ applied=(\d+)", d1.log_text())
    applied["d1"] = int(s[-1])
    if applied["d2"] <= 0 or applied["d1"] <= 0 or applied["d1"] + applied["d2"] < N_EVENTS:
        e2e.fail(f"applied per instance {applied}: both must work, together at least {N_EVENTS}")
    e2e.ok(f"both instances applied events: {applied}")

    for p in range(4):
        v = r.get(f"{prefix}epoch:{topic}:{p}")
        if v is None:
            e2e.fail(f"no owner epoch for partition {p}")
        if p in d2_parts and int(v) < 3:
            e2e.fail(f"partition {p} changed owner twice but its epoch is {int(v)}")
    e2e.ok("owner epochs claimed on every assignment")
    d1.assert_clean()
    d2.assert_clean()


# Cooperative (the default) and eager (range) rebalancing, each on its own topic and keys.
scenario("cooperative-sticky", env["EVENTS_TOPIC"], env["REDIS_KEY_PREFIX"], env["HARNESS_PREFIX"] + "g")
eager_topic = env["HARNESS_PREFIX"] + "events-eager"
harness.topics([(eager_topic, 4)])
scenario("range", eager_topic, env["HARNESS_PREFIX"] + "eager:", env["HARNESS_PREFIX"] + "g-eager")
harness.stop()
print("PASS")
