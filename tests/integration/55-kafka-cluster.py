#!/usr/bin/env python3
"""interestd on a replicated Kafka: a KRaft cluster of 3 brokers (each also a controller
voter; tests/lib/kafka_cluster.py), every topic with replication factor 3 and
min.insync.replicas = 2, the group offsets topic too. Half of the events are applied;
then the broker leading partition 0 of the events topic (and any other partitions it
leads, and maybe the group coordinator or the active controller) is killed -9 while
the daemon runs; the second half is produced (acks=all, idempotent) to the two
survivors. Nothing is lost and nothing applied twice: Redis equals the offline replay
of all events (events_applied exact), the group's committed offsets reach the end of
every partition on the surviving brokers, and SIGTERM exits 0."""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402
from kafka_cluster import KafkaCluster  # noqa: E402

N_USERS, N_EVENTS, PARTS = 150, 4000, 4

env = harness.start()
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
rows = e2e.make_events(os.path.join(tmp, "all.csv"), items, N_USERS, N_EVENTS, seed=55)
half = N_EVENTS // 2
e2e.write_events(os.path.join(tmp, "a.csv"), rows[:half])
e2e.write_events(os.path.join(tmp, "b.csv"), rows[half:])
expected = e2e.offline_replay(model, os.path.join(tmp, "all.csv"),
                              os.path.join(tmp, "replay.jsonl"))
want_a = {}
for row in rows[:half]:
    want_a[row["user_id"]] = want_a.get(row["user_id"], 0) + 1

kdir = tempfile.mkdtemp(prefix="interestd-kafka3.", dir=tmp)
k = KafkaCluster(kdir, n=3).start()
topic = env["EVENTS_TOPIC"]
k.create_topics([(topic, PARTS), (env["SNAPSHOTS_TOPIC"], 1), (env["DLQ_TOPIC"], 1)])
kenv = dict(env, KAFKA_BOOTSTRAP=k.bootstrap)
e2e.ok(f"3 brokers ({k.bootstrap}), topics with replication factor 3, min.insync.replicas 2")

conf = e2e.write_config(kenv, model, "d1")
d = e2e.Daemon(kenv, conf, "d1").start()
d.wait_log(r"event=assigned .*owned=4", 90)
e2e.replay_to_kafka(kenv, os.path.join(tmp, "a.csv"))
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
done, _, short = e2e.wait_applied(r, prefix, want_a, 120)
if not done:
    d.dump()
    e2e.fail(f"first half: {len(short)} users incomplete, e.g. {list(short.items())[:5]}")
e2e.ok(f"first half applied: {half} events")

victim = k.leader(topic, 0)
k.kill(victim)
k.wait_leaders_without(topic, PARTS, victim)
e2e.ok(f"broker {victim} (leader of partition 0) killed -9; leaders now "
       f"{[k.leader(topic, p) for p in range(PARTS)]}")

e2e.replay_to_kafka(kenv, os.path.join(tmp, "b.csv"))
done, _, short = e2e.wait_applied(r, prefix, {u: v["events_applied"] for u, v in expected.items()},
                                  180)
if not done:
    d.dump()
    e2e.fail(f"after the broker died: {len(short)} users incomplete, e.g. "
             f"{list(short.items())[:5]}")
diffs = e2e.compare(r, prefix, expected)
if diffs:
    e2e.fail(f"{len(diffs)} differences from the offline replay:\n  " + "\n  ".join(diffs[:20]))
e2e.ok(f"all {N_EVENTS} events applied once: Redis equals the offline replay "
       f"(events_applied exact)")

group = env["HARNESS_PREFIX"] + "g"
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
probe = Consumer({"bootstrap.servers": k.bootstrap, "group.id": group + "-probe"})
ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in range(PARTS)}
probe.close()


def committed_at_end():
    return e2e.committed_offsets(kenv, group, topic, PARTS) == ends


if harness.wait_for(committed_at_end, 60, 0.5) is None:
    d.dump()
    e2e.fail(f"committed offsets {e2e.committed_offsets(kenv, group, topic, PARTS)} != "
             f"end offsets {ends}")
e2e.ok(f"committed offsets at the end of every partition: {ends}")

rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"SIGTERM: exit status {rc}, want 0")
d.assert_clean()
e2e.ok("SIGTERM: exit 0, no sanitizer report")
k.stop()
