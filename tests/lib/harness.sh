# Integration-test harness for bash tests: a real Kafka + redis-server on free
# loopback ports, a unique topic/key prefix per test, cleanup on any exit.
# Source it, then call harness_start; see tests/integration/00-stack.sh.
#
# Under tests/run-integration one stack serves the whole run (HARNESS_SHARED=1
# and its addresses come in the environment); a test run alone starts its own
# in a temporary directory and removes it on exit. A test that stops or breaks
# a server (harness_redis_stop ...) sets HARNESS_PRIVATE=1 before harness_start
# to get its own stack even under the runner. Either way harness_start exports:
#   KAFKA_BOOTSTRAP (127.0.0.1:port), REDIS_HOST, REDIS_PORT, REDIS_URL,
#   HARNESS_PREFIX (unique per test, e.g. t1732848000123-4242-),
#   EVENTS_TOPIC (4 partitions), SNAPSHOTS_TOPIC, DLQ_TOPIC (created, prefixed),
#   REDIS_KEY_PREFIX ("${HARNESS_PREFIX}ui:"), HARNESS_TMP (scratch dir, removed),
#   PY (the project venv's python), ROOT (the repository), BUILD_DIR (default build).
# shellcheck shell=bash

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export ROOT
# shellcheck source=../../scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
export PY="$VENV_PYTHON"
export BUILD_DIR=${BUILD_DIR:-$ROOT/build}
export PYTHONPATH="$ROOT/tests/lib${PYTHONPATH:+:$PYTHONPATH}"

HARNESS_OWN_DIR=
HARNESS_CLEANUP=()

harness_log() { printf '[harness] %s\n' "$*" >&2; }

# harness_fail MSG: prints MSG and exits 1 (the EXIT trap cleans up).
harness_fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

# harness_on_exit CMD...: runs CMD at exit, before the stack stops (last
# registered runs first). Use it for daemons the test starts, instead of a trap.
harness_on_exit() {
	HARNESS_CLEANUP+=("$*")
}

# Runs registered cleanups, then stops and removes a stack this test started.
harness_stop() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#HARNESS_CLEANUP[@]} - 1; i >= 0; i--)); do
		eval "${HARNESS_CLEANUP[i]}" || true
	done
	HARNESS_CLEANUP=()
	if [[ -n $HARNESS_OWN_DIR ]]; then
		"$ROOT/scripts/stack" down --dir "$HARNESS_OWN_DIR" --fast >/dev/null 2>&1 || true
		rm -rf "$HARNESS_OWN_DIR"
		HARNESS_OWN_DIR=
	fi
	[[ -n ${HARNESS_TMP:-} ]] && rm -rf "$HARNESS_TMP"
	return "$rc"
}

# harness_start: reuses the run's shared stack or starts a private one, then
# creates this test's prefixed topics. Exports the variables listed above.
harness_start() {
	[[ -x $PY ]] || harness_fail "no venv at $PY: run scripts/bootstrap (make deps)"
	trap harness_stop EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	if [[ ${HARNESS_PRIVATE:-0} != 1 && ${HARNESS_SHARED:-0} == 1 && -n ${KAFKA_BOOTSTRAP:-} && -n ${REDIS_PORT:-} ]]; then
		harness_log "using shared stack: kafka $KAFKA_BOOTSTRAP, redis $REDIS_HOST:$REDIS_PORT"
	else
		HARNESS_OWN_DIR=$(mktemp -d /tmp/interestd-stack.XXXXXX)
		local env
		env=$("$ROOT/scripts/stack" up --dir "$HARNESS_OWN_DIR" --kafka-port 0 \
			--controller-port 0 --redis-port 0 --no-topics --print-env) ||
			harness_fail "could not start the stack (logs in $HARNESS_OWN_DIR)"
		eval "$env"
		export STACK_DIR="$HARNESS_OWN_DIR"
		harness_log "private stack in $HARNESS_OWN_DIR: kafka $KAFKA_BOOTSTRAP, redis $REDIS_HOST:$REDIS_PORT"
	fi
	HARNESS_PREFIX="t$(date +%s%3N)-$$-"
	export HARNESS_PREFIX
	export EVENTS_TOPIC="${HARNESS_PREFIX}behaviour-events"
	export SNAPSHOTS_TOPIC="${HARNESS_PREFIX}interest-snapshots"
	export DLQ_TOPIC="${HARNESS_PREFIX}interest-dlq"
	export REDIS_KEY_PREFIX="${HARNESS_PREFIX}ui:"
	HARNESS_TMP=$(mktemp -d /tmp/interestd-test.XXXXXX)
	export HARNESS_TMP
	harness_topics "$EVENTS_TOPIC:4" "$SNAPSHOTS_TOPIC:1" "$DLQ_TOPIC:1"
}

# harness_topics NAME:PARTITIONS...: creates topics on the stack and waits for leaders.
harness_topics() {
	"$ROOT/scripts/stack" topics --bootstrap "$KAFKA_BOOTSTRAP" "$@" ||
		harness_fail "could not create topics $*"
}

# harness_redis ARGS...: redis-cli against the stack's redis-server.
harness_redis() {
	redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"
}

# harness_wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds;
# returns 1 on timeout.
harness_wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

# harness_check_sanitizer FILE...: fails (returns 1, printing the report) if a
# file holds an AddressSanitizer, LeakSanitizer or UBSan report.
harness_check_sanitizer() {
	local f bad=0
	for f in "$@"; do
		[[ -f $f ]] || continue
		if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer' "$f"; then
			printf 'sanitizer report in %s:\n' "$f" >&2
			grep -E -A20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" | head -60 >&2
			bad=1
		fi
	done
	return "$bad"
}

# harness_redis_stop / harness_redis_start: stop redis-server (SIGKILL, like a
# crash) and start it again on the same port. Private stacks only.
harness_redis_stop() {
	[[ -n $HARNESS_OWN_DIR ]] || harness_fail "harness_redis_stop needs HARNESS_PRIVATE=1"
	"$ROOT/scripts/stack" down --dir "$HARNESS_OWN_DIR" --only redis --fast
}
harness_redis_start() {
	[[ -n $HARNESS_OWN_DIR ]] || harness_fail "harness_redis_start needs HARNESS_PRIVATE=1"
	"$ROOT/scripts/stack" up --dir "$HARNESS_OWN_DIR" --only redis --redis-port "$REDIS_PORT"
}
