#!/usr/bin/env bash
# The Redis sink against a real redis-server (driver: tests/tools/sink_redis.c):
# a flush writes vec/top/tiers/meta/state with the encodings of schemas/redis.md
# and sets their TTL; a stale marker and a fenced epoch are refused and leave the
# keys unchanged; the script survives SCRIPT FLUSH; load_states round-trips;
# the zset top format, ttl 0, WAIT shortfall, a refused connection; AUTH as a
# Redis 6 ACL user works and a wrong password fails naming WRONGPASS. Every key
# the server saw written while the driver ran (keyspace notifications, every
# database) lies under the test's prefix.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_start

tool=$BUILD_DIR/tools/sink_redis
[[ -x $tool ]] || harness_fail "missing $tool: run make"

# An ACL user limited to this test's keys; removed with the keys at exit.
acl_user="${HARNESS_PREFIX}sink"
acl_pass=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
cleanup() {
	harness_redis ACL DELUSER "$acl_user" >/dev/null || true
	harness_redis --scan --pattern "${REDIS_KEY_PREFIX}*" | xargs -r -n 500 redis-cli \
		-h "$REDIS_HOST" -p "$REDIS_PORT" DEL >/dev/null || true
}
harness_on_exit cleanup
[[ $(harness_redis ACL SETUSER "$acl_user" on ">$acl_pass" "~${REDIS_KEY_PREFIX}*" '+@all') == OK ]] ||
	harness_fail "ACL SETUSER"

# Record every key written from here on: keyspace events of all write classes
# (not expired/evicted: those are the server's own, e.g. another test's TTLs).
nke_old=$(harness_redis CONFIG GET notify-keyspace-events | sed -n 2p)
harness_on_exit 'harness_redis CONFIG SET notify-keyspace-events "$nke_old" >/dev/null'
[[ $(harness_redis CONFIG SET notify-keyspace-events 'Eg$lshzt') == OK ]] ||
	harness_fail "CONFIG SET notify-keyspace-events"
events=$HARNESS_TMP/keyevents.csv
redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --csv PSUBSCRIBE '__keyevent@*__:*' >"$events" 2>&1 &
sub_pid=$!
harness_on_exit 'kill "$sub_pid" 2>/dev/null; wait "$sub_pid" 2>/dev/null'
# seen PATTERN: the subscriber printed a line matching PATTERN; fails the test
# at once if it died.
seen() {
	kill -0 "$sub_pid" 2>/dev/null || harness_fail "keyspace subscriber exited: $(cat "$events")"
	grep -qF -- "$1" "$events"
}
harness_wait_for 10 seen '"psubscribe"' || harness_fail "keyspace subscriber not subscribed in 10 s"

log=$HARNESS_TMP/sink_redis.log
if ! "$tool" "$REDIS_HOST" "$REDIS_PORT" "$REDIS_KEY_PREFIX" "$acl_user" "$acl_pass" >"$log" 2>&1; then
	grep -v '^ok' "$log" >&2
	harness_fail "sink_redis checks failed"
fi
harness_check_sanitizer "$log" || harness_fail "sanitizer report"
grep -c '^ok' "$log" | sed 's/$/ checks passed/'
tail -1 "$log"

# Nothing outside the test's prefix was written: a last key of our own marks
# the end of the driver's events; then every written key must carry the prefix.
end_key="${REDIS_KEY_PREFIX}end-of-events"
harness_redis SET "$end_key" 1 >/dev/null
harness_wait_for 10 seen "\"$end_key\"" || harness_fail "no keyspace event for $end_key in 10 s"
kill "$sub_pid"
wait "$sub_pid" 2>/dev/null || true
python3 - "$events" "$REDIS_KEY_PREFIX" "$end_key" <<'EOF' || harness_fail "keys written outside $REDIS_KEY_PREFIX"
import csv, sys
path, prefix, end_key = sys.argv[1:]
inside, outside = set(), []
with open(path, newline="") as f:
    for row in csv.reader(f):
        if len(row) != 4 or row[0] != "pmessage":
            continue
        event, key = row[2].split(":", 1)[1], row[3]
        if key.startswith(prefix):
            inside.add(key)
        else:
            outside.append(f"{event} {key}")
if outside:
    print(f"FAIL: {len(outside)} writes outside {prefix}: {outside[:20]}", file=sys.stderr)
    sys.exit(1)
inside.discard(end_key)
if not inside:
    print(f"FAIL: no write under {prefix} seen: the notifications missed the driver", file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(inside)} keys written, all under the test prefix (keyspace notifications)")
EOF
n=$(harness_redis --scan --pattern "${REDIS_KEY_PREFIX}*" | wc -l)
((n > 0)) || harness_fail "no keys under $REDIS_KEY_PREFIX"
echo "ok: $n keys under the test prefix"
