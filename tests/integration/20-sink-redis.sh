#!/usr/bin/env bash
# The Redis sink against a real redis-server (driver: tests/tools/sink_redis.c):
# a flush writes vec/top/tiers/meta/state with the encodings of schemas/redis.md
# and sets their TTL; a stale marker and a fenced epoch are refused and leave the
# keys unchanged; the script survives SCRIPT FLUSH; load_states round-trips;
# the zset top format, ttl 0, WAIT shortfall, a refused connection; AUTH as a
# Redis 6 ACL user works and a wrong password fails naming WRONGPASS.
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

log=$HARNESS_TMP/sink_redis.log
if ! "$tool" "$REDIS_HOST" "$REDIS_PORT" "$REDIS_KEY_PREFIX" "$acl_user" "$acl_pass" >"$log" 2>&1; then
	grep -v '^ok' "$log" >&2
	harness_fail "sink_redis checks failed"
fi
harness_check_sanitizer "$log" || harness_fail "sanitizer report"
grep -c '^ok' "$log" | sed 's/$/ checks passed/'
tail -1 "$log"

# Nothing outside the test's prefix was written.
n=$(harness_redis --scan --pattern "${REDIS_KEY_PREFIX}*" | wc -l)
((n > 0)) || harness_fail "no keys under $REDIS_KEY_PREFIX"
echo "ok: $n keys under the test prefix"
