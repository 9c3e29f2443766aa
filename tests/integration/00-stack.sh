#!/usr/bin/env bash
# The test stack itself works: a message goes through Kafka and comes back,
# Redis stores and returns a value, and the harness's topics exist with the
# partition counts the daemon's tests rely on (events 4, snapshots 1, dlq 1).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_start

# Kafka: produce one keyed message to partition 2 and consume it back.
"$PY" - <<'EOF'
import os, sys, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

bootstrap = os.environ["KAFKA_BOOTSTRAP"]
want = {os.environ["EVENTS_TOPIC"]: 4, os.environ["SNAPSHOTS_TOPIC"]: 1,
        os.environ["DLQ_TOPIC"]: 1}
md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
for name, parts in want.items():
    t = md.topics.get(name)
    if t is None or t.error is not None:
        sys.exit(f"FAIL: topic {name} missing ({t.error if t else 'absent'})")
    if len(t.partitions) != parts:
        sys.exit(f"FAIL: topic {name} has {len(t.partitions)} partitions, want {parts}")
    print(f"ok: topic {name} has {parts} partition(s)")

topic = os.environ["EVENTS_TOPIC"]
payload = uuid.uuid4().bytes
p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
errors = []
p.produce(topic, value=payload, key=b"user-1", partition=2,
          on_delivery=lambda err, msg: errors.append(err) if err else None)
if p.flush(15) != 0 or errors:
    sys.exit(f"FAIL: produce: {errors or 'not delivered in 15 s'}")
print("ok: produced to partition 2")

c = Consumer({"bootstrap.servers": bootstrap, "group.id": os.environ["HARNESS_PREFIX"] + "g",
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 2, 0)])
msg = None
for _ in range(30):
    msg = c.poll(1.0)
    if msg is not None and not msg.error():
        break
c.close()
if msg is None or msg.error():
    sys.exit(f"FAIL: consume: {msg.error() if msg else 'nothing in 30 s'}")
if msg.value() != payload or msg.key() != b"user-1" or msg.partition() != 2:
    sys.exit(f"FAIL: consumed {msg.key()!r}/{msg.value()!r} at partition {msg.partition()}")
print("ok: consumed the same message back")
EOF

# Redis: SET/GET through redis-cli and through the Python client.
key="${REDIS_KEY_PREFIX}{u1}:probe"
[[ $(harness_redis SET "$key" hello) == OK ]] || harness_fail "redis SET"
[[ $(harness_redis GET "$key") == hello ]] || harness_fail "redis GET returned something else"
"$PY" -c '
import os, redis, sys
r = redis.Redis(host=os.environ["REDIS_HOST"], port=int(os.environ["REDIS_PORT"]))
k = sys.argv[1]
if r.get(k) != b"hello":
    sys.exit("FAIL: python redis GET")
r.delete(k)
' "$key"
[[ $(harness_redis EXISTS "$key") == 0 ]] || harness_fail "redis key not deleted"
echo "ok: redis SET/GET/DEL"

# The helpers themselves: the sanitizer check must flag a report and pass a clean log.
printf 'all good\n' >"$HARNESS_TMP/clean.log"
printf '==1==ERROR: AddressSanitizer: heap-use-after-free\n' >"$HARNESS_TMP/bad.log"
harness_check_sanitizer "$HARNESS_TMP/clean.log" || harness_fail "clean log flagged"
if harness_check_sanitizer "$HARNESS_TMP/bad.log" 2>/dev/null; then
	harness_fail "sanitizer report not flagged"
fi
echo "ok: sanitizer check"
