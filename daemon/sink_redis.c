/*
 * Redis sink: connection and AUTH, the per-user write script (marker check,
 * owner-epoch fence and every key of the user in one atomic step), pipelined
 * flushes, state loads, partition epochs and tier names. Key layout and the
 * script's contract: schemas/redis.md.
 */
#include "clock.h"
#include "json.h"
#include "sink_redis.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config.h"
#include "metrics.h"
#include "modelfile.h"
#include "redis_cluster.h"
#include "state.h"

#define SINK_ERR_MAX        256
#define SINK_SHA_LEN        40
#define SINK_NUM_MAX        32 /* a formatted integer or float */
#define SINK_TIER_VALUE_MAX 48
#define SINK_TAG_MAX        12 /* a hash tag of a slot: a decimal integer */
#define SINK_PREPARE_CHUNK  64 /* users computed per step while Redis runs the previous ones */

/*
 * The write script (schemas/redis.md "Write script"). Returns 0 written,
 * 1 refused (stored marker of the same partition at/after ours), 2 refused
 * (partition epoch in Redis newer than ours, or the user last written by a
 * newer owner of the same partition), 3 refused (the user was erased by a
 * tombstone of the same partition at/after ours).
 * KEYS: vec top tiers meta state [epoch] erased: the partition's epoch key
 * only on a single node (in a cluster it lives in another slot).
 * ARGV: 1 partition, 2 offset, 3 epoch, 4 ttl_s, 5 vec, 6 state, 7 updated_at,
 *       8 model_version, 9 events_applied, 10 weights_at, 11 "json"|"zset",
 *       12 top JSON, 13 n_tiers, then n_tiers (node, "short long") pairs, then
 *       for zset (score, item id) pairs.
 */
static const char sink_script[] =
    "local part, off, ep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "if ep > 0 and #KEYS == 7 then\n"
    "  local cur = tonumber(redis.call('GET', KEYS[6]) or '0')\n"
    "  if cur > ep then return 2 end\n"
    "end\n"
    "local m = redis.call('HMGET', KEYS[4], 'partition', 'offset', 'epoch')\n"
    "if m[1] and tonumber(m[1]) == part then\n"
    "  if ep > 0 and m[3] and tonumber(m[3]) > ep then return 2 end\n"
    "  if m[2] and tonumber(m[2]) >= off then return 1 end\n"
    "end\n"
    "local er = redis.call('HMGET', KEYS[#KEYS], 'partition', 'offset')\n"
    "if er[1] and er[2] and tonumber(er[1]) == part and tonumber(er[2]) >= off then return 3 end\n"
    "local ttl = tonumber(ARGV[4])\n"
    "redis.call('SET', KEYS[1], ARGV[5])\n"
    "redis.call('SET', KEYS[5], ARGV[6])\n"
    "redis.call('DEL', KEYS[2], KEYS[3])\n"
    "local nt = tonumber(ARGV[13])\n"
    "if nt > 0 then redis.call('HSET', KEYS[3], unpack(ARGV, 14, 13 + 2 * nt)) end\n"
    "if ARGV[11] == 'zset' then\n"
    "  if #ARGV > 13 + 2 * nt then redis.call('ZADD', KEYS[2], unpack(ARGV, 14 + 2 * nt, #ARGV)) "
    "end\n"
    "else\n"
    "  redis.call('SET', KEYS[2], ARGV[12])\n"
    "end\n"
    "redis.call('HSET', KEYS[4], 'updated_at', ARGV[7], 'model_version', ARGV[8],\n"
    "  'events_applied', ARGV[9], 'weights_at', ARGV[10], 'partition', ARGV[1],\n"
    "  'offset', ARGV[2], 'epoch', ARGV[3])\n"
    "for k = 1, 5 do\n"
    "  if ttl > 0 then redis.call('EXPIRE', KEYS[k], ttl) else redis.call('PERSIST', KEYS[k]) end\n"
    "end\n"
    "return 0\n";

#define SINK_SCRIPT_KEYS       7 /* 6 in a cluster: no epoch key */
#define SINK_SCRIPT_FIXED_ARGS 13

/*
 * The erase script (schemas/redis.md "Erasure"). Returns 0 erased, 1 kept
 * (the stored marker of the same partition is past the tombstone: the
 * state holds only events after it; the erasure marker is still recorded),
 * 2 fenced (as the write script).
 * KEYS: vec top tiers meta state [epoch] erased (as the write script)
 * ARGV: 1 partition, 2 offset, 3 epoch, 4 erased_ts_ms, 5 requested_at_ms
 */
static const char sink_erase_script[] =
    "local part, off, ep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local erk = KEYS[#KEYS]\n"
    "if ep > 0 and #KEYS == 7 then\n"
    "  local cur = tonumber(redis.call('GET', KEYS[6]) or '0')\n"
    "  if cur > ep then return 2 end\n"
    "end\n"
    "local m = redis.call('HMGET', KEYS[4], 'partition', 'offset', 'epoch')\n"
    "local same = m[1] and tonumber(m[1]) == part\n"
    "if same and ep > 0 and m[3] and tonumber(m[3]) > ep then return 2 end\n"
    "local er = redis.call('HMGET', erk, 'partition', 'offset')\n"
    "if not (er[1] and er[2] and tonumber(er[1]) == part and tonumber(er[2]) >= off) then\n"
    "  redis.call('HSET', erk, 'partition', ARGV[1], 'offset', ARGV[2], 'ts', ARGV[4],\n"
    "    'erased_at', ARGV[5])\n"
    "  redis.call('PERSIST', erk)\n"
    "end\n"
    "if same and m[2] and tonumber(m[2]) > off then return 1 end\n"
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])\n"
    "return 0\n";

/*
 * The flushed-through marker: raised, never lowered (a lagging instance
 * must not move it back), and fenced like a write: 2 when the partition's
 * epoch in Redis is newer than the caller's, nothing raised.
 * KEYS: marker, epoch (not in a cluster: another slot); ARGV: 1 next
 * offset, 2 epoch (0: no fencing).
 */
static const char sink_flushed_script[] =
    "local ep = tonumber(ARGV[2])\n"
    "if ep > 0 and #KEYS == 2 and tonumber(redis.call('GET', KEYS[2]) or '0') > ep then return 2 "
    "end\n"
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')\n"
    "if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end\n"
    "return 0\n";

/*
 * The partition claim (schemas/redis.md "Partition ownership"). The lease
 * key holds "<epoch> <owner>" and expires after the lease (Redis's clock);
 * the epoch key only grows. Returns {epoch, stored epoch} when the caller
 * owns the partition now, {-1, stored} while another owner's lease is live
 * (busy), {-2, stored} when a re-claim finds a newer epoch (fenced).
 * fresh = 1 (Kafka has just assigned the partition): a new epoch above
 * every earlier one. fresh = 0 (a renewal or a re-claim after a
 * reconnect): the caller's own epoch is kept, never raised, so an owner
 * that Kafka has replaced cannot come back above its successor.
 * KEYS: epoch, lease; ARGV: 1 owner id, 2 lease ms, 3 caller's epoch, 4 fresh.
 */
static const char sink_claim_script[] =
    "local mine, fresh = tonumber(ARGV[3]), ARGV[4] == '1'\n"
    "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "local lease = redis.call('GET', KEYS[2])\n"
    "if lease then\n"
    "  local sp = string.find(lease, ' ', 1, true) or 0\n"
    "  if string.sub(lease, sp + 1) ~= ARGV[1] then return {-1, cur} end\n"
    "end\n"
    "local e = mine\n"
    "if fresh then\n"
    "  e = math.max(cur, mine) + 1\n"
    "elseif mine <= 0 or cur > mine then\n"
    "  return {-2, cur}\n"
    "end\n"
    "local es = string.format('%d', e)\n"
    "if e ~= cur then redis.call('SET', KEYS[1], es) end\n"
    "redis.call('SET', KEYS[2], es .. ' ' .. ARGV[1], 'PX', ARGV[2])\n"
    "return {e, cur}\n";

/*
 * The in-flight range of a partition (schemas/redis.md "Poison messages"):
 * recorded before a batch is applied (done = 0), marked done when the next
 * batch starts. KEYS: inflight; ARGV: 1 "r" (record) or "d" (done), 2 first
 * offset, 3 last.
 */
static const char sink_inflight_script[] =
    "if ARGV[1] == 'd' then redis.call('HSET', KEYS[1], 'done', 1) return 0 end\n"
    "redis.call('HSET', KEYS[1], 'from', ARGV[2], 'to', ARGV[3], 'done', 0)\n"
    "return 0\n";

/*
 * At a claim: a recorded range not done and not covered by the committed
 * offset was in flight when its owner died. A single offset becomes (or
 * stays) the suspect, its death count raised. Returns {from, to, deaths of a
 * single offset}, or {-1, -1, 0} when nothing was left in flight.
 * KEYS: inflight; ARGV: 1 committed offset (-1 none).
 */
static const char sink_inflight_check_script[] =
    "local f = redis.call('HMGET', KEYS[1], 'from', 'to', 'done', 'suspect')\n"
    "if not f[1] or not f[2] or f[3] == '1' then return {-1, -1, 0} end\n"
    "local from, to = tonumber(f[1]), tonumber(f[2])\n"
    "if to < tonumber(ARGV[1]) then return {-1, -1, 0} end\n"
    "if from ~= to then return {from, to, 0} end\n"
    "if f[4] == f[1] then return {from, to, redis.call('HINCRBY', KEYS[1], 'crashes', 1)} end\n"
    "redis.call('HSET', KEYS[1], 'suspect', f[1], 'crashes', 1)\n"
    "return {from, to, 1}\n";

/* Lets go of a lease the caller holds. KEYS: lease; ARGV: 1 owner id. */
static const char sink_release_script[] =
    "local lease = redis.call('GET', KEYS[1])\n"
    "if lease then\n"
    "  local sp = string.find(lease, ' ', 1, true) or 0\n"
    "  if string.sub(lease, sp + 1) == ARGV[1] then redis.call('DEL', KEYS[1]) end\n"
    "end\n"
    "return 0\n";

/*
 * Largest ui:{u}:state read back (schemas/redis.md): a state of the largest
 * model the format allows (hidden 1024, 1024 tiers, ring 64) is ~22 KiB. Of
 * a longer value only this many bytes + 1 are fetched (GETRANGE bounds the
 * reply); the user then starts fresh, counted.
 */
#define SINK_STATE_MAX_BYTES (256 * 1024)

/* Where and how to connect: borrowed strings (from a config or the sink's copies). */
struct sink_endpoint {
	const char *host;
	int port;
	const char *unix_socket;
	const char *user;
	const char *password;
	int timeout_ms;
};

/* A growing byte buffer, reused across users and flushes. */
struct sink_buf {
	char *p;
	size_t len, cap;
};

/*
 * Cluster mode: the commands of one pipeline, formatted, each with the slot
 * of its keys, queued until the first reply is asked for; then rcluster_run
 * sends them to their masters at once and the replies are handed out in the
 * order the commands were queued, as one connection's pipeline would.
 */
struct sink_queue {
	struct rcluster_cmd *cmds;
	char **formatted; /* cmds[i].formatted, owned */
	redisReply **replies;
	size_t n, cap, next;
	int ran;
	int wait;               /* WAIT redis.wait_replicas on each master after its commands */
	char err[SINK_ERR_MAX]; /* why a command has no reply (its master lost) */
};

/* Cluster mode: a partition a flush writes, our epoch of it, and whether Redis holds a newer one. */
struct sink_fence {
	int32_t partition;
	uint64_t epoch;
	int fenced;
	int unknown; /* its epoch key's master is lost */
};

/* A hash tag of a slot (rcluster_slot_tag). */
struct sink_tag {
	uint16_t slot;
	char tag[SINK_TAG_MAX];
};

struct sink_redis {
	redisContext *ctx;   /* single node */
	struct rcluster *rc; /* cluster mode (redis.cluster): one connection per master */
	struct sink_queue q;
	uint16_t *masters;     /* cluster mode: each master's lowest slot (flushed markers) */
	struct sink_tag *tags; /* and that slot's hash tag */
	size_t masters_cap;
	int cluster;
	char sha[SINK_SHA_LEN + 1]; /* write script */
	char sha_erase[SINK_SHA_LEN + 1];
	char sha_flushed[SINK_SHA_LEN + 1];
	char sha_claim[SINK_SHA_LEN + 1];
	char sha_release[SINK_SHA_LEN + 1];
	char sha_inflight[SINK_SHA_LEN + 1];
	char sha_inflight_check[SINK_SHA_LEN + 1];
	char owner[128]; /* this instance's lease owner id: host:pid:random */
	int lease_ms;

	/* Copies of the config this sink needs (the config may be swapped). */
	char *host, *unix_socket, *user, *password, *prefix, *topic, *group;
	int port, timeout_ms, wait_replicas, wait_timeout_ms;
	enum config_top_format top_format;
	int64_t ttl_s;

	/* Per-flush scratch, grown on demand and reused. */
	struct sink_buf buf;
	const char **argv;
	size_t *argvlen;
	size_t *argoff; /* argument offsets into buf, before pointers are fixed */
	size_t argcap;
	size_t *retry; /* item indices to re-send after NOSCRIPT; cluster flush: [n..2n) users */
	struct sink_fence *fence; /* cluster flush: the partitions it writes */
	size_t retry_cap, n_unfenced;

	int denied;      /* the last failed call met a NOPERM reply (ACL) */
	int unavailable; /* cluster: read_reply's NULL was one command whose master is lost */
	char unavailable_err[SINK_ERR_MAX];          /* the last such command's reason */
	struct metrics_histogram lat[SINK_OP_COUNT]; /* successful script pipelines, seconds */
};

const char *
sink_result_name(enum sink_result r)
{
	switch (r) {
	case SINK_WRITTEN:
		return "written";
	case SINK_REFUSED_STALE:
		return "stale";
	case SINK_REFUSED_FENCED:
		return "fenced";
	case SINK_REFUSED_ERASED:
		return "erased";
	case SINK_UNAVAILABLE:
		return "unavailable";
	}
	return "unknown";
}

size_t
sink_redis_tier_value(float w_short, float w_long, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%.6g %.6g", (double)w_short, (double)w_long);

	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

/* --- connection ------------------------------------------------------ */

static struct timeval
ms_to_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/* "127.0.0.1:6379" or the socket path, for messages. */
static void
endpoint_name(const struct sink_endpoint *ep, char *buf, size_t size)
{
	if (ep->unix_socket != NULL)
		snprintf(buf, size, "%s", ep->unix_socket);
	else
		snprintf(buf, size, "%s:%d", ep->host, ep->port);
}

static redisContext *
endpoint_connect(const struct sink_endpoint *ep, char *errstr, size_t errstr_size)
{
	struct timeval tv = ms_to_tv(ep->timeout_ms);
	char name[300];
	redisContext *c;
	redisReply *r = NULL;

	endpoint_name(ep, name, sizeof(name));
	if (ep->unix_socket != NULL)
		c = redisConnectUnixWithTimeout(ep->unix_socket, tv);
	else
		c = redisConnectWithTimeout(ep->host, ep->port, tv);
	if (c == NULL) {
		snprintf(errstr, errstr_size, "redis %s: out of memory", name);
		return NULL;
	}
	if (c->err) {
		snprintf(errstr, errstr_size, "redis %s: %s", name, c->errstr);
		goto fail;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(errstr, errstr_size, "redis %s: cannot set timeout: %s", name, c->errstr);
		goto fail;
	}
	if (ep->unix_socket == NULL)
		(void)redisEnableKeepAlive(c);
	if (ep->password != NULL) {
		const char *argv[3] = { "AUTH", ep->user, ep->password };
		size_t argvlen[3] = { 4, ep->user ? strlen(ep->user) : 0, strlen(ep->password) };

		if (ep->user != NULL)
			r = redisCommandArgv(c, 3, argv, argvlen);
		else {
			argv[1] = ep->password;
			argvlen[1] = argvlen[2];
			r = redisCommandArgv(c, 2, argv, argvlen);
		}
		if (r == NULL) {
			snprintf(errstr, errstr_size, "redis %s: AUTH: %s", name, c->errstr);
			goto fail;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			snprintf(errstr, errstr_size, "redis %s: AUTH%s%s refused: %s", name,
			    ep->user ? " as user " : "", ep->user ? ep->user : "", r->str);
			goto fail;
		}
		freeReplyObject(r);
		r = NULL;
	}
	return c;
fail:
	freeReplyObject(r);
	redisFree(c);
	return NULL;
}

/* A cluster node's connection (rcluster_connect_fn): opaque is the endpoint to copy AUTH and timeouts from. */
static redisContext *
endpoint_at(void *opaque, const char *host, int port, char *errstr, size_t errstr_size)
{
	struct sink_endpoint ep = *(const struct sink_endpoint *)opaque;

	ep.host = host;
	ep.port = port;
	ep.unix_socket = NULL;
	return endpoint_connect(&ep, errstr, errstr_size);
}

struct redisContext *
sink_redis_connect(const struct config *cfg, const char *key, char *errstr, size_t errstr_size)
{
	struct sink_endpoint ep = {
		.host = cfg->redis_host,
		.port = cfg->redis_port,
		.unix_socket = cfg->redis_unix_socket,
		.user = cfg->redis_user,
		.password = cfg->redis_password,
		.timeout_ms = cfg->redis_timeout_ms,
	};
	struct rcluster *rc;
	redisContext *c;

	if (!cfg->redis_cluster || key == NULL)
		return endpoint_connect(&ep, errstr, errstr_size);
	if ((rc = rcluster_new(ep.host, ep.port, endpoint_at, &ep, errstr, errstr_size)) == NULL)
		return NULL;
	c = rcluster_take(rc, rcluster_keyslot(key, strlen(key)), errstr, errstr_size);
	rcluster_free(rc);
	return c;
}

static void
queue_clear(struct sink_queue *q)
{
	for (size_t i = 0; i < q->n; i++) {
		redisFreeCommand(q->formatted[i]);
		if (q->ran)
			freeReplyObject(q->replies[i]); /* NULL once handed out */
	}
	q->n = q->next = 0;
	q->ran = q->wait = 0;
}

/*
 * Drops the connection (cluster mode: every master's, and what was queued;
 * the map is kept to find the cluster again); the next operation reconnects.
 */
static void
sink_disconnect(struct sink_redis *sink)
{
	if (sink->ctx != NULL)
		redisFree(sink->ctx);
	sink->ctx = NULL;
	queue_clear(&sink->q);
	if (sink->rc != NULL)
		rcluster_reset(sink->rc);
}

/*
 * The text of a failed reply for errstr: an error reply's own text, else
 * unexpected. A NOPERM error (Redis refused a command or key to our ACL
 * user) is noted for sink_redis_permission_denied.
 */
static const char *
reply_error(struct sink_redis *sink, const redisReply *r, const char *unexpected)
{
	if (r->type != REDIS_REPLY_ERROR)
		return unexpected;
	if (strncmp(r->str, "NOPERM", 6) == 0)
		sink->denied = 1;
	return r->str;
}

/* SCRIPT LOAD of one script on c into sha (SINK_SHA_LEN + 1 bytes). */
static int
sink_load_one(struct sink_redis *sink, redisContext *c, const char *script, char *sha, char *errstr,
    size_t errstr_size)
{
	redisReply *r = redisCommand(c, "SCRIPT LOAD %s", script);
	int ret = -1;

	if (r == NULL) {
		snprintf(errstr, errstr_size, "redis SCRIPT LOAD: %s", c->errstr);
		return -1;
	}
	if (r->type != REDIS_REPLY_STRING || r->len != SINK_SHA_LEN) {
		snprintf(errstr, errstr_size, "redis SCRIPT LOAD: unexpected reply: %s",
		    reply_error(sink, r, "not a SHA1"));
		goto done;
	}
	memcpy(sha, r->str, SINK_SHA_LEN);
	sha[SINK_SHA_LEN] = '\0';
	ret = 0;
done:
	freeReplyObject(r);
	return ret;
}

/*
 * Loads every script on c (a script's SHA1 is its name on every node, so
 * in a cluster each new connection loads them and the names stay the same).
 */
static int
sink_load_script(struct sink_redis *sink, redisContext *c, char *errstr, size_t errstr_size)
{
	const struct {
		const char *script;
		char *sha;
	} all[] = {
		{ sink_script, sink->sha },
		{ sink_erase_script, sink->sha_erase },
		{ sink_flushed_script, sink->sha_flushed },
		{ sink_claim_script, sink->sha_claim },
		{ sink_release_script, sink->sha_release },
		{ sink_inflight_script, sink->sha_inflight },
		{ sink_inflight_check_script, sink->sha_inflight_check },
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (sink_load_one(sink, c, all[i].script, all[i].sha, errstr, errstr_size) < 0)
			return -1;
	return 0;
}

/* Cluster mode: one master's connection, with AUTH and the scripts loaded. */
static redisContext *
cluster_connect(void *opaque, const char *host, int port, char *errstr, size_t errstr_size)
{
	struct sink_redis *sink = opaque;
	struct sink_endpoint ep = {
		.user = sink->user,
		.password = sink->password,
		.timeout_ms = sink->timeout_ms,
	};
	redisContext *c = endpoint_at(&ep, host, port, errstr, errstr_size);

	if (c != NULL && sink_load_script(sink, c, errstr, errstr_size) < 0) {
		redisFree(c);
		return NULL;
	}
	return c;
}

int
sink_redis_reconnect(struct sink_redis *sink, char *errstr, size_t errstr_size)
{
	struct sink_endpoint ep = {
		.host = sink->host,
		.port = sink->port,
		.unix_socket = sink->unix_socket,
		.user = sink->user,
		.password = sink->password,
		.timeout_ms = sink->timeout_ms,
	};

	sink->denied = 0;
	sink_disconnect(sink);
	if (sink->cluster) {
		if (sink->unix_socket != NULL) {
			snprintf(errstr, errstr_size,
			    "redis.cluster: a cluster is reached over TCP (redis.host, "
			    "redis.port); "
			    "unset redis.unix_socket");
			return -1;
		}
		if (sink->rc != NULL)
			return rcluster_connect_all(sink->rc, errstr, errstr_size);
		sink->rc = rcluster_new(
		    sink->host, sink->port, cluster_connect, sink, errstr, errstr_size);
		return sink->rc != NULL ? 0 : -1;
	}
	sink->ctx = endpoint_connect(&ep, errstr, errstr_size);
	if (sink->ctx == NULL)
		return -1;
	if (sink_load_script(sink, sink->ctx, errstr, errstr_size) < 0) {
		sink_disconnect(sink);
		return -1;
	}
	return 0;
}

/* Connects when the last operation dropped the connection. */
static int
sink_ensure(struct sink_redis *sink, char *errstr, size_t errstr_size)
{
	sink->denied = 0;
	if (sink->ctx != NULL || sink->rc != NULL)
		return 0;
	return sink_redis_reconnect(sink, errstr, errstr_size);
}

static int
queue_grow(struct sink_queue *q)
{
	size_t ncap = q->cap ? 2 * q->cap : 256;
	struct rcluster_cmd *nc = realloc(q->cmds, ncap * sizeof(*nc));
	char **nf;
	redisReply **nr;

	if (nc == NULL)
		return -1;
	q->cmds = nc;
	if ((nf = realloc(q->formatted, ncap * sizeof(*nf))) == NULL)
		return -1;
	q->formatted = nf;
	if ((nr = realloc(q->replies, ncap * sizeof(*nr))) == NULL)
		return -1;
	q->replies = nr;
	q->cap = ncap;
	return 0;
}

/*
 * Appends argv[0..argc) to the pipeline: on a single node to the
 * connection, in a cluster to the queue with slot, the slot of its keys.
 * On failure the connection is dropped (it holds a partial batch).
 */
static int
sink_append(struct sink_redis *sink, int argc, const char **argv, const size_t *argvlen,
    uint16_t slot, char *errstr, size_t errstr_size)
{
	struct sink_queue *q = &sink->q;
	char *cmd = NULL;
	int len;

	if (!sink->cluster) {
		if (redisAppendCommandArgv(sink->ctx, argc, argv, argvlen) == REDIS_OK)
			return 0;
		snprintf(errstr, errstr_size, "redis: %s", sink->ctx->errstr);
		sink_disconnect(sink);
		return -1;
	}
	if (q->ran)
		queue_clear(q); /* replies of an earlier batch nobody read */
	if ((q->n == q->cap && queue_grow(q) < 0) ||
	    (len = redisFormatCommandArgv(&cmd, argc, argv, argvlen)) < 0) {
		snprintf(errstr, errstr_size, "redis sink: out of memory");
		sink_disconnect(sink);
		return -1;
	}
	q->formatted[q->n] = cmd;
	q->cmds[q->n++] =
	    (struct rcluster_cmd){ .formatted = cmd, .formatted_len = (size_t)len, .slot = slot };
	return 0;
}

/* strdup of an optional string; returns 0, or -1 on ENOMEM. */
static int
dup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (src == NULL)
		return 0;
	*dst = strdup(src);
	return *dst == NULL ? -1 : 0;
}

/*
 * host:pid:64 random bits: unique per process, so a restarted instance on
 * the same host (same pid reused) is still another owner.
 */
static void
sink_owner_id(char *buf, size_t size)
{
	char host[64] = "host";
	uint64_t rnd = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, &rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd))
		rnd = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (fd >= 0)
		close(fd);
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	for (char *p = host; *p; p++)
		if (*p == ' ')
			*p = '_';
	snprintf(buf, size, "%s:%ld:%016" PRIx64, host, (long)getpid(), rnd);
}

struct sink_redis *
sink_redis_new(const struct config *cfg, char *errstr, size_t errstr_size)
{
	struct sink_redis *sink = sink_redis_new_unconnected(cfg, errstr, errstr_size);

	if (sink != NULL && sink_redis_reconnect(sink, errstr, errstr_size) < 0) {
		sink_redis_free(sink);
		return NULL;
	}
	return sink;
}

struct sink_redis *
sink_redis_new_unconnected(const struct config *cfg, char *errstr, size_t errstr_size)
{
	struct sink_redis *sink = calloc(1, sizeof(*sink));

	if (sink == NULL)
		goto nomem;
	if (dup_opt(&sink->host, cfg->redis_host) < 0 ||
	    dup_opt(&sink->unix_socket, cfg->redis_unix_socket) < 0 ||
	    dup_opt(&sink->user, cfg->redis_user) < 0 ||
	    dup_opt(&sink->password, cfg->redis_password) < 0 ||
	    dup_opt(&sink->prefix, cfg->redis_prefix) < 0 ||
	    dup_opt(&sink->topic, cfg->topic_events) < 0 ||
	    dup_opt(&sink->group, cfg->group_id) < 0)
		goto nomem;
	sink->port = cfg->redis_port;
	sink->timeout_ms = cfg->redis_timeout_ms;
	sink->wait_replicas = cfg->redis_wait_replicas;
	sink->wait_timeout_ms = cfg->redis_wait_timeout_ms;
	sink->top_format = cfg->redis_top_format;
	sink->ttl_s = cfg->redis_ttl_s;
	sink->lease_ms = cfg->redis_lease_ms;
	sink->cluster = cfg->redis_cluster;
	sink_owner_id(sink->owner, sizeof(sink->owner));
	for (int op = 0; op < SINK_OP_COUNT; op++)
		metrics_histogram_init_latency(&sink->lat[op]);
	/* Until a connection loads the scripts: a placeholder of the right length. */
	memset(sink->sha, '0', SINK_SHA_LEN);
	return sink;
nomem:
	snprintf(errstr, errstr_size, "redis sink: out of memory");
	sink_redis_free(sink);
	return NULL;
}

void
sink_redis_free(struct sink_redis *sink)
{
	if (sink == NULL)
		return;
	sink_disconnect(sink);
	rcluster_free(sink->rc);
	free(sink->q.cmds);
	free(sink->q.formatted);
	free(sink->q.replies);
	free(sink->masters);
	free(sink->tags);
	if (sink->password != NULL) {
		volatile char *p = sink->password;
		while (*p)
			*p++ = '\0';
	}
	free(sink->host);
	free(sink->unix_socket);
	free(sink->user);
	free(sink->password);
	free(sink->prefix);
	free(sink->topic);
	free(sink->group);
	free(sink->buf.p);
	free(sink->argv);
	free(sink->argvlen);
	free(sink->argoff);
	free(sink->retry);
	free(sink->fence);
	free(sink);
}

/* --- argument building ------------------------------------------------ */

static int
buf_reserve(struct sink_buf *b, size_t more)
{
	size_t ncap;
	char *np;

	if (b->len + more <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 4096;
	while (ncap < b->len + more)
		ncap *= 2;
	np = realloc(b->p, ncap);
	if (np == NULL)
		return -1;
	b->p = np;
	b->cap = ncap;
	return 0;
}

static int
buf_put(struct sink_buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int buf_printf(struct sink_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
buf_printf(struct sink_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= b->cap - b->len || b->p == NULL) {
		if (buf_reserve(b, (size_t)n + 1) < 0)
			return -1;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
	return 0;
}

/* JSON string body of s (quotes added by the caller). */
static int
buf_json_escape(struct sink_buf *b, const char *s, size_t len)
{
	/* at most 6 bytes per byte (\u00XX): one pass, no measuring pass first */
	if (buf_reserve(b, 6 * len + 1) < 0)
		return -1;
	b->len += json_escape(b->p + b->len, 6 * len + 1, s, len);
	return 0;
}

/* The top-N as JSON, [["id",score],...], scores "%.6g" (null if not finite). */
static int
buf_top_json(
    struct sink_buf *b, const struct model *m, const uint32_t *items, const float *scores, size_t n)
{
	int rc = buf_put(b, "[", 1);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		size_t idlen;
		const char *id = model_item_id(m, items[i], &idlen);
		double sc = (double)scores[i];

		rc = buf_put(b, i ? ",[\"" : "[\"", i ? 3 : 2);
		if (rc == 0)
			rc = buf_json_escape(b, id, idlen);
		if (rc == 0)
			rc = isfinite(sc) ? buf_printf(b, "\",%.6g]", sc)
					  : buf_printf(b, "\",null]");
	}
	if (rc == 0)
		rc = buf_put(b, "]", 1);
	return rc;
}

char *
sink_redis_top_json(
    const struct model *m, const uint32_t *items, const float *scores, size_t n, size_t *len)
{
	struct sink_buf b = { NULL, 0, 0 };

	if (buf_top_json(&b, m, items, scores, n) < 0 || buf_put(&b, "", 1) < 0) {
		free(b.p);
		return NULL;
	}
	*len = b.len - 1;
	return b.p;
}

int
sink_redis_top_parse(
    const char *text, size_t len, sink_redis_top_fn fn, void *arg, char *errstr, size_t errstr_size)
{
	json_error_t jerr;
	/* An id may hold any byte, NUL included (written as \u0000). */
	json_t *doc = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
	int rc = 0;

	if (doc == NULL) {
		snprintf(errstr, errstr_size, "top: JSON: %s (column %d)", jerr.text, jerr.column);
		return -1;
	}
	if (!json_is_array(doc)) {
		snprintf(errstr, errstr_size, "top: not a JSON array");
		json_decref(doc);
		return -1;
	}
	for (size_t i = 0; i < json_array_size(doc); i++) {
		const json_t *pair = json_array_get(doc, i);
		const json_t *id = json_array_get(pair, 0), *score = json_array_get(pair, 1);

		if (json_array_size(pair) != 2 || !json_is_string(id) ||
		    !(json_is_number(score) || json_is_null(score))) {
			snprintf(errstr, errstr_size, "top: element %zu is not [\"id\", score]", i);
			rc = -1;
			break;
		}
		fn(arg, json_string_value(id), json_string_length(id),
		    json_is_null(score) ? NAN : json_number_value(score));
	}
	json_decref(doc);
	return rc;
}

/* Arguments are recorded as offsets first (buf may move), pointers fixed at the end. */
struct argset {
	struct sink_redis *sink;
	size_t argc;
	int oom;
	int slot; /* cluster mode: the slot of the first key, -1 before it */
};

static void
arg_begin(struct argset *as)
{
	as->argc = 0;
	as->oom = 0;
	as->slot = -1;
	as->sink->buf.len = 0;
}

static int
arg_grow(struct sink_redis *sink, size_t need)
{
	size_t ncap;
	const char **nargv;
	size_t *nlen, *noff;

	if (need <= sink->argcap)
		return 0;
	ncap = sink->argcap ? sink->argcap : 64;
	while (ncap < need)
		ncap *= 2;
	nargv = realloc(sink->argv, ncap * sizeof(*nargv));
	if (nargv == NULL)
		return -1;
	sink->argv = nargv;
	nlen = realloc(sink->argvlen, ncap * sizeof(*nlen));
	if (nlen == NULL)
		return -1;
	sink->argvlen = nlen;
	noff = realloc(sink->argoff, ncap * sizeof(*noff));
	if (noff == NULL)
		return -1;
	sink->argoff = noff;
	sink->argcap = ncap;
	return 0;
}

/* Marks the start of a new argument at the buffer's end. */
static void
arg_start(struct argset *as)
{
	if (arg_grow(as->sink, as->argc + 1) < 0) {
		as->oom = 1;
		return;
	}
	as->sink->argoff[as->argc++] = as->sink->buf.len;
}

/* Closes the current argument: its length runs to the buffer's end. */
static void
arg_end(struct argset *as)
{
	size_t i = as->argc - 1;

	as->sink->argvlen[i] = as->sink->buf.len - as->sink->argoff[i];
}

static void
arg_bytes(struct argset *as, const void *p, size_t n)
{
	arg_start(as);
	if (as->oom)
		return;
	if (buf_put(&as->sink->buf, p, n) < 0)
		as->oom = 1;
	arg_end(as);
}

static void arg_printf(struct argset *as, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
arg_printf(struct argset *as, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		as->oom = 1;
		return;
	}
	arg_bytes(as, tmp, (size_t)n);
}

/* The argument just closed is a key: the command goes to its slot (the first key's). */
static void
arg_key(struct argset *as)
{
	struct sink_redis *sink = as->sink;
	size_t i = as->argc - 1;

	if (!as->oom && as->slot < 0 && sink->cluster)
		as->slot = rcluster_keyslot(sink->buf.p + sink->argoff[i], sink->argvlen[i]);
}

/*
 * A key of a partition of topic.events: <prefix><name>:<topic>:<p> on a
 * single node; in a cluster <prefix>{p:<topic>:<p>}:<name>, so that every
 * key of one partition shares a slot (schemas/redis.md "Redis Cluster").
 * group != NULL appends ":<group>" to the name.
 */
static int
partition_key(const struct sink_redis *sink, const char *name, const char *group, int32_t partition,
    char *buf, size_t size)
{
	if (sink->cluster)
		return snprintf(buf, size, "%s{p:%s:%" PRId32 "}:%s%s%s", sink->prefix, sink->topic,
		    partition, name, group ? ":" : "", group ? group : "");
	return snprintf(buf, size, "%s%s%s%s:%s:%" PRId32, sink->prefix, name, group ? ":" : "",
	    group ? group : "", sink->topic, partition);
}

static void
arg_partition_key(struct argset *as, const char *name, const char *group, int32_t partition)
{
	char key[SINK_ERR_MAX];
	int n = partition_key(as->sink, name, group, partition, key, sizeof(key));

	if (n < 0 || (size_t)n >= sizeof(key)) {
		as->oom = 1;
		return;
	}
	arg_bytes(as, key, (size_t)n);
	arg_key(as);
}

/* A user key: <prefix>{<user>}:<suffix>. */
static void
arg_user_key(struct argset *as, const char *user, size_t user_len, const char *suffix)
{
	struct sink_buf *b = &as->sink->buf;

	arg_start(as);
	if (as->oom)
		return;
	if (buf_put(b, as->sink->prefix, strlen(as->sink->prefix)) < 0 || buf_put(b, "{", 1) < 0 ||
	    buf_put(b, user, user_len) < 0 || buf_put(b, "}:", 2) < 0 ||
	    buf_put(b, suffix, strlen(suffix)) < 0)
		as->oom = 1;
	arg_end(as);
	arg_key(as);
}

/* Epoch key of a partition: <prefix>epoch:<topic>:<partition> (cluster: see arg_partition_key). */
static void
arg_epoch_key(struct argset *as, int32_t partition)
{
	arg_partition_key(as, "epoch", NULL, partition);
}

/*
 * EVALSHA, the script and the keys every per-user script takes, in the order
 * schemas/redis.md gives them: vec, top, tiers, meta, state, the partition's
 * epoch key (not in a cluster: another slot), erased.
 */
static void
arg_user_script(
    struct argset *as, const char *sha, const char *user, size_t user_len, int32_t partition)
{
	static const char *const before_epoch[] = { "vec", "top", "tiers", "meta", "state" };

	arg_begin(as);
	arg_printf(as, "EVALSHA");
	arg_printf(as, "%s", sha);
	arg_printf(as, "%d", SINK_SCRIPT_KEYS - (as->sink->cluster ? 1 : 0));
	for (size_t k = 0; k < sizeof(before_epoch) / sizeof(before_epoch[0]); k++)
		arg_user_key(as, user, user_len, before_epoch[k]);
	if (!as->sink->cluster)
		arg_epoch_key(as, partition);
	arg_user_key(as, user, user_len, "erased");
}

/* Turns offsets into pointers; returns 0 or -1 when something ran out of memory. */
static int
arg_finish(struct argset *as)
{
	struct sink_redis *sink = as->sink;

	if (as->oom)
		return -1;
	for (size_t i = 0; i < as->argc; i++)
		sink->argv[i] = sink->buf.p + sink->argoff[i];
	return 0;
}

/*
 * The write script's command for one user into sink->argv / argvlen (the one
 * place its arguments are built; the benchmark formats the same through
 * sink_redis_format_user). *slot (cluster mode; may be NULL) gets the slot of
 * the user's keys: of their hash tag as Redis reads it, which is the user id
 * only when the id has no braces. Returns argc, or -1 (errstr).
 */
static int
user_args(struct sink_redis *sink, const struct model *m, const struct sink_user *su,
    int64_t now_ms, int *slot, char *errstr, size_t errstr_size)
{
	struct argset as = { sink, 0, 0, -1 };
	const struct user_state *us = su->us;
	struct sink_buf *b = &sink->buf;
	uint32_t dim = model_dim(m);
	size_t state_len;
	char tv[SINK_TIER_VALUE_MAX], label[SINK_NUM_MAX];

	arg_user_script(&as, sink->sha, su->user_id, su->user_id_len, us->last_partition);
	arg_printf(&as, "%" PRId32, us->last_partition);
	arg_printf(&as, "%" PRId64, us->last_offset);
	arg_printf(&as, "%" PRIu64, su->epoch);
	arg_printf(&as, "%" PRId64, sink->ttl_s);

	/* vec: dim little-endian float32 */
	arg_start(&as);
	if (!as.oom && buf_reserve(b, (size_t)dim * 4) == 0) {
		for (uint32_t i = 0; i < dim; i++) {
			uint32_t bits;
			unsigned char le[4];
			memcpy(&bits, &su->vec[i], 4);
			le[0] = (unsigned char)bits;
			le[1] = (unsigned char)(bits >> 8);
			le[2] = (unsigned char)(bits >> 16);
			le[3] = (unsigned char)(bits >> 24);
			memcpy(b->p + b->len, le, 4);
			b->len += 4;
		}
		arg_end(&as);
	} else {
		as.oom = 1;
	}

	/* state blob */
	state_len = state_encoded_size(us);
	arg_start(&as);
	if (!as.oom && buf_reserve(b, state_len) == 0) {
		size_t w = state_encode(us, (uint8_t *)b->p + b->len, state_len);
		if (w == 0) {
			snprintf(errstr, errstr_size, "user %.*s: state_encode failed",
			    (int)su->user_id_len, su->user_id);
			return -1;
		}
		b->len += w;
		arg_end(&as);
	} else {
		as.oom = 1;
	}

	arg_printf(&as, "%" PRId64, now_ms);
	arg_printf(&as, "%" PRIu64, us->model_version);
	arg_printf(&as, "%" PRIu64, us->events_applied);
	arg_printf(&as, "%" PRId64, us->t_ref_ms == STATE_NO_TIME ? (int64_t)0 : us->t_ref_ms);
	arg_printf(&as, "%s", sink->top_format == CONFIG_TOP_ZSET ? "zset" : "json");

	/* top JSON: [["id",score],...] (empty for zset) */
	arg_start(&as);
	if (!as.oom && sink->top_format == CONFIG_TOP_JSON &&
	    buf_top_json(b, m, su->top_items, su->top_scores, su->n_top) < 0)
		as.oom = 1;
	if (!as.oom)
		arg_end(&as);

	arg_printf(&as, "%u", (unsigned)us->n_tiers);
	for (uint16_t i = 0; i < us->n_tiers && !as.oom; i++) {
		const struct tier_weight *tw = &us->tiers[i];
		size_t n = model_node_label(m, tw->node, label, sizeof(label));

		arg_bytes(&as, label, n);
		n = sink_redis_tier_value(tw->w_short, tw->w_long, tv, sizeof(tv));
		arg_bytes(&as, tv, n);
	}
	if (sink->top_format == CONFIG_TOP_ZSET) {
		for (size_t i = 0; i < su->n_top && !as.oom; i++) {
			size_t idlen;
			const char *id = model_item_id(m, su->top_items[i], &idlen);
			double sc = (double)su->top_scores[i];

			arg_printf(&as, "%.9g", isfinite(sc) ? sc : 0.0);
			arg_bytes(&as, id, idlen);
		}
	}
	if (arg_finish(&as) < 0) {
		snprintf(errstr, errstr_size, "redis sink: out of memory");
		return -1;
	}
	if (slot != NULL)
		*slot = as.slot < 0 ? 0 : as.slot;
	return (int)as.argc;
}

/* Appends the EVALSHA of one user to the pipeline. */
static int
append_user(struct sink_redis *sink, const struct model *m, const struct sink_user *su,
    int64_t now_ms, char *errstr, size_t errstr_size)
{
	int slot, argc = user_args(sink, m, su, now_ms, &slot, errstr, errstr_size);

	if (argc < 0)
		return -1;
	return sink_append(
	    sink, argc, sink->argv, sink->argvlen, (uint16_t)slot, errstr, errstr_size);
}

long long
sink_redis_format_user(struct sink_redis *sink, const struct model *m, const struct sink_user *su,
    int64_t now_ms, char **cmd, char *errstr, size_t errstr_size)
{
	int argc = user_args(sink, m, su, now_ms, NULL, errstr, errstr_size);
	long long len;

	if (argc < 0)
		return -1;
	len = redisFormatCommandArgv(cmd, argc, sink->argv, sink->argvlen);
	if (len < 0)
		snprintf(errstr, errstr_size, "redis sink: out of memory");
	return len;
}

/*
 * Reads the next reply of the pipeline (cluster mode: the first call sends
 * the queued commands to their masters); on a connection error the
 * connection is dropped.
 */
static redisReply *
read_reply(struct sink_redis *sink, const char *what, char *errstr, size_t errstr_size)
{
	struct sink_queue *q = &sink->q;
	void *r = NULL;

	sink->unavailable = 0;
	if (sink->cluster) {
		if (!q->ran) {
			struct rcluster_wait w = { sink->wait_replicas, sink->wait_timeout_ms };

			q->err[0] = '\0';
			if (rcluster_run(sink->rc, q->cmds, q->n, q->wait ? &w : NULL, q->replies,
				q->err, sizeof(q->err)) < 0) {
				snprintf(errstr, errstr_size, "redis %s: %s", what, q->err);
				q->ran = 1; /* the replies read before the failure are freed */
				sink_disconnect(sink);
				return NULL;
			}
		}
		q->ran = 1;
		if (q->next >= q->n) {
			snprintf(errstr, errstr_size, "redis %s: no reply", what);
			return NULL;
		}
		r = q->replies[q->next];
		q->replies[q->next++] = NULL;
		if (r == NULL) {
			/* Its master could not be reached: the others' replies stay valid. */
			snprintf(errstr, errstr_size, "redis %s: %s", what, q->err);
			snprintf(
			    sink->unavailable_err, sizeof(sink->unavailable_err), "%s", errstr);
			sink->unavailable = 1;
		}
		if (q->next == q->n)
			queue_clear(q);
		return r;
	}
	if (redisGetReply(sink->ctx, &r) != REDIS_OK || r == NULL) {
		snprintf(errstr, errstr_size, "redis %s: %s", what,
		    sink->ctx->errstr[0] ? sink->ctx->errstr : "no reply");
		sink_disconnect(sink);
		return NULL;
	}
	return r;
}

/* Sends WAIT and checks enough replicas acknowledged. */
static int
sink_wait(struct sink_redis *sink, char *errstr, size_t errstr_size)
{
	redisReply *r;
	int ret = -1;

	if (sink->cluster)
		return 0; /* rcluster_run sent it in each master's pipeline (read_reply) */
	r = redisCommand(sink->ctx, "WAIT %d %d", sink->wait_replicas, sink->wait_timeout_ms);
	if (r == NULL) {
		snprintf(errstr, errstr_size, "redis WAIT: %s", sink->ctx->errstr);
		sink_disconnect(sink);
		return -1;
	}
	if (r->type != REDIS_REPLY_INTEGER)
		snprintf(errstr, errstr_size, "redis WAIT: %s",
		    reply_error(sink, r, "unexpected reply"));
	else if (r->integer < sink->wait_replicas)
		snprintf(errstr, errstr_size,
		    "redis WAIT: %lld of %d replicas acknowledged within %d ms", r->integer,
		    sink->wait_replicas, sink->wait_timeout_ms);
	else
		ret = 0;
	freeReplyObject(r);
	return ret;
}

/*
 * Writes the whole pipeline buffer to the socket without reading replies
 * (Redis queues them for us meanwhile). Returns 0, or -1 with the
 * connection dropped.
 */
static int
sink_send(struct sink_redis *sink, const char *what, char *errstr, size_t errstr_size)
{
	int done = sink->cluster; /* cluster mode: rcluster_run writes every master's at once */

	while (!done) {
		if (redisBufferWrite(sink->ctx, &done) != REDIS_OK) {
			snprintf(errstr, errstr_size, "redis %s: %s", what,
			    sink->ctx->errstr[0] ? sink->ctx->errstr : "write failed");
			sink_disconnect(sink);
			return -1;
		}
	}
	return 0;
}

/* Grows sink->retry and sink->fence to n entries each. */
static int
grow_scratch(struct sink_redis *sink, size_t n, char *errstr, size_t errstr_size)
{
	size_t *nr;
	struct sink_fence *nf;

	if (sink->retry_cap >= n)
		return 0;
	nr = realloc(sink->retry, n * sizeof(*nr));
	if (nr != NULL)
		sink->retry = nr;
	nf = realloc(sink->fence, n * sizeof(*nf));
	if (nf != NULL)
		sink->fence = nf;
	if (nr == NULL || nf == NULL) {
		snprintf(errstr, errstr_size, "redis sink: out of memory");
		return -1;
	}
	sink->retry_cap = n;
	return 0;
}

/* After NOSCRIPT (SCRIPT FLUSH, a failover): the scripts again, on every connection. */
static int
sink_reload_scripts(struct sink_redis *sink, char *errstr, size_t errstr_size)
{
	if (sink->cluster) {
		rcluster_reset(sink->rc); /* each new connection loads them */
		return 0;
	}
	if (sink_load_script(sink, sink->ctx, errstr, errstr_size) < 0) {
		sink_disconnect(sink);
		return -1;
	}
	return 0;
}

/*
 * One batch of script calls (user writes, erasures, flushed-through
 * markers): append(ctx, i) appends the EVALSHA of item i to the pipeline,
 * take(ctx, i, r) accepts its reply (0) or not (-1, an error reply or an
 * unexpected type), subject(ctx, i) names the item and its keys for errstr.
 * prepare (may be NULL) is called once for every SINK_PREPARE_CHUNK items
 * before they are first appended, and what is appended before it is sent
 * to the socket first: Redis runs those scripts while prepare computes.
 */
struct sink_eval {
	enum sink_op op;
	const char *what; /* "flush", "erase", "flushed marker" */
	void (*prepare)(void *ctx, size_t first, size_t n);
	int (*append)(struct sink_redis *sink, void *ctx, size_t i, int64_t now_ms, char *errstr,
	    size_t errstr_size);
	int (*take)(void *ctx, size_t i, const redisReply *r);
	void (*subject)(struct sink_redis *sink, void *ctx, size_t i, char *buf, size_t size);
	void *ctx;
	/*
	 * Cluster mode: item i got no reply, its master lost (it may or may not
	 * have run). NULL: that fails the batch.
	 */
	void (*unavailable)(void *ctx, size_t i);
};

/*
 * Runs ev over items 0..n: every call pipelined, then every reply read;
 * items whose script was missing (NOSCRIPT: SCRIPT FLUSH, a failover) are
 * sent once more after the scripts are loaded again; then WAIT when
 * redis.wait_replicas > 0. The scripts are idempotent, so the caller may
 * repeat the whole batch after a failure. Times the successful ones into
 * sink->lat[ev->op]. Returns 0, or -1 (errstr names the first item that
 * failed and its keys).
 */
static int
sink_eval_run(
    struct sink_redis *sink, const struct sink_eval *ev, size_t n, char *errstr, size_t errstr_size)
{
	int64_t now_ms = clock_wall_ms();
	double t0 = clock_mono_s();
	size_t n_retry;

	if (n == 0)
		return 0;
	if (sink_ensure(sink, errstr, errstr_size) < 0 ||
	    grow_scratch(sink, n, errstr, errstr_size) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		sink->retry[i] = i;
	n_retry = n;
	for (int attempt = 0; attempt < 2 && n_retry > 0; attempt++) {
		size_t n_todo = n_retry;
		int failed = 0;

		if (attempt > 0 && sink_reload_scripts(sink, errstr, errstr_size) < 0)
			return -1;
		for (size_t j = 0; j < n_todo; j++) {
			if (attempt == 0 && ev->prepare != NULL && j % SINK_PREPARE_CHUNK == 0) {
				/* retry[] is the identity in the first attempt: j is the item. */
				if (j > 0 && sink_send(sink, ev->what, errstr, errstr_size) < 0)
					return -1;
				ev->prepare(ev->ctx, j,
				    n_todo - j < SINK_PREPARE_CHUNK ? n_todo - j
								    : SINK_PREPARE_CHUNK);
			}
			if (ev->append(sink, ev->ctx, sink->retry[j], now_ms, errstr, errstr_size) <
			    0) {
				sink_disconnect(sink); /* the pipeline holds a partial batch */
				return -1;
			}
		}
		n_retry = 0;
		sink->q.wait =
		    sink->wait_replicas > 0; /* cluster mode: WAIT in each master's pipeline */
		for (size_t j = 0; j < n_todo; j++) {
			size_t i = sink->retry[j];
			char e[SINK_ERR_MAX]; /* not over an earlier item's error */
			redisReply *r = read_reply(sink, ev->what, e, sizeof(e));

			if (r == NULL && sink->unavailable && ev->unavailable != NULL) {
				ev->unavailable(ev->ctx, i);
				continue;
			}
			if (r == NULL) {
				snprintf(errstr, errstr_size, "%s", e);
				return -1;
			}
			if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
				sink->retry[n_retry++] = i;
			} else if (ev->take(ev->ctx, i, r) != 0 && !failed) {
				char subject[SINK_ERR_MAX];

				failed = 1;
				ev->subject(sink, ev->ctx, i, subject, sizeof(subject));
				snprintf(errstr, errstr_size, "redis %s: %s: %s", ev->what, subject,
				    reply_error(sink, r, "unexpected reply type"));
			}
			freeReplyObject(r); /* keep reading: the pipeline must be drained */
		}
		if (failed)
			return -1;
	}
	if (n_retry > 0) {
		snprintf(
		    errstr, errstr_size, "redis %s: NOSCRIPT after reloading the script", ev->what);
		return -1;
	}
	if (sink->wait_replicas > 0 && sink_wait(sink, errstr, errstr_size) < 0)
		return -1;
	metrics_histogram_observe(&sink->lat[ev->op], clock_mono_s() - t0);
	return 0;
}

/* Appends one command of as to the pipeline; drops the connection on failure. */
static int
append_args(struct sink_redis *sink, struct argset *as, char *errstr, size_t errstr_size)
{
	if (arg_finish(as) < 0) {
		snprintf(errstr, errstr_size, "redis sink: out of memory");
		sink_disconnect(sink);
		return -1;
	}
	return sink_append(sink, (int)as->argc, sink->argv, sink->argvlen,
	    as->slot < 0 ? 0 : (uint16_t)as->slot, errstr, errstr_size);
}

/* A decimal integer reply field (bulk string) into *v; -1 when absent or not a number. */
static int
reply_int64(const redisReply *r, int64_t *v)
{
	char tmp[SINK_NUM_MAX], *end;
	long long x;

	if (r == NULL || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= sizeof(tmp))
		return -1;
	memcpy(tmp, r->str, r->len);
	tmp[r->len] = '\0';
	errno = 0;
	x = strtoll(tmp, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*v = (int64_t)x;
	return 0;
}

/* "partition P (key K)" or "partition P (keys K1, K2)" for errstr. */
static void
partition_subject(const struct sink_redis *sink, int32_t partition, const char *name,
    const char *group, const char *name2, char *buf, size_t size)
{
	char k1[SINK_ERR_MAX], k2[SINK_ERR_MAX] = "";

	partition_key(sink, name, group, partition, k1, sizeof(k1));
	if (name2 != NULL)
		partition_key(sink, name2, NULL, partition, k2, sizeof(k2));
	snprintf(buf, size, "partition %" PRId32 " (key%s %.100s%s%.100s)", partition,
	    name2 ? "s" : "", k1, name2 ? ", " : "", k2);
}

/* "user U (keys P{U}:*)" */
static void
user_subject(struct sink_redis *sink, const char *user, size_t user_len, char *buf, size_t size)
{
	snprintf(buf, size, "user %.*s (keys %s{%.*s}:*)", (int)user_len, user, sink->prefix,
	    (int)user_len, user);
}

/* Item j is users[idx[j]] (cluster mode: the users not fenced), or users[j] (idx NULL). */
struct flush_ctx {
	const struct model *m;
	struct sink_user *users;
	sink_prepare_fn *prepare;
	void *opaque;
	const size_t *idx;
};

#define FLUSH_USER(fc, j) (&(fc)->users[(fc)->idx != NULL ? (fc)->idx[j] : (j)])

static void
flush_prepare(void *ctx, size_t first, size_t n)
{
	struct flush_ctx *fc = ctx;

	fc->prepare(fc->opaque, fc->users, first, n);
}

static int
flush_append(
    struct sink_redis *sink, void *ctx, size_t i, int64_t now_ms, char *errstr, size_t errstr_size)
{
	struct flush_ctx *fc = ctx;

	return append_user(sink, fc->m, FLUSH_USER(fc, i), now_ms, errstr, errstr_size);
}

static int
flush_take(void *ctx, size_t i, const redisReply *r)
{
	struct flush_ctx *fc = ctx;

	if (r->type != REDIS_REPLY_INTEGER || r->integer < SINK_WRITTEN ||
	    r->integer > SINK_REFUSED_ERASED)
		return -1;
	FLUSH_USER(fc, i)->result = (enum sink_result)r->integer;
	return 0;
}

static void
flush_unavailable(void *ctx, size_t i)
{
	FLUSH_USER((struct flush_ctx *)ctx, i)->result = SINK_UNAVAILABLE;
}

static void
flush_subject(struct sink_redis *sink, void *ctx, size_t i, char *buf, size_t size)
{
	struct flush_ctx *fc = ctx;

	user_subject(sink, FLUSH_USER(fc, i)->user_id, FLUSH_USER(fc, i)->user_id_len, buf, size);
}

/*
 * Cluster mode (schemas/redis.md "Redis Cluster"): the write script cannot
 * read a partition's epoch key (another slot), so the epoch of every
 * partition this flush writes is read first, one GET each, and the users
 * of a partition whose stored epoch is newer than ours are refused here
 * (fenced) without a write; the script refuses a user last written by a
 * newer owner. The indices of the users to write go to sink->retry[n..],
 * their count to sink->n_unfenced (retry[0..n) is sink_eval_run's).
 */
static int
flush_fence(
    struct sink_redis *sink, struct sink_user *users, size_t n, char *errstr, size_t errstr_size)
{
	struct argset as = { sink, 0, 0, -1 };
	size_t n_parts = 0, *idx;
	int ret = 0;

	if (sink_ensure(sink, errstr, errstr_size) < 0 ||
	    grow_scratch(sink, 2 * n, errstr, errstr_size) < 0)
		return -1;
	idx = sink->retry + n;
	/* The distinct partitions, each with our epoch of it (one per partition). */
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		while (k < n_parts && sink->fence[k].partition != users[i].us->last_partition)
			k++;
		if (k == n_parts)
			sink->fence[n_parts++] = (struct sink_fence){ users[i].us->last_partition,
				users[i].epoch, 0, 0 };
	}
	for (size_t k = 0; k < n_parts; k++) {
		if (sink->fence[k].epoch == 0)
			continue; /* no fencing asked */
		arg_begin(&as);
		arg_printf(&as, "GET");
		arg_epoch_key(&as, sink->fence[k].partition);
		if (append_args(sink, &as, errstr, errstr_size) < 0)
			return -1;
	}
	for (size_t k = 0; k < n_parts; k++) {
		redisReply *r;
		int64_t stored = 0;

		if (sink->fence[k].epoch == 0)
			continue;
		sink->fence[k].unknown = 0;
		if ((r = read_reply(sink, "GET epoch", errstr, errstr_size)) == NULL) {
			if (!sink->unavailable)
				return -1;
			sink->fence[k].unknown = 1; /* its users are not written now */
			continue;
		}
		if (ret == 0 && r->type != REDIS_REPLY_NIL &&
		    (reply_int64(r, &stored) < 0 || stored < 0)) {
			char subject[SINK_ERR_MAX];

			partition_subject(sink, sink->fence[k].partition, "epoch", NULL, NULL,
			    subject, sizeof(subject));
			snprintf(errstr, errstr_size, "redis GET epoch: %s: %s", subject,
			    reply_error(sink, r, "not a non-negative integer"));
			ret = -1;
		}
		sink->fence[k].fenced = (uint64_t)stored > sink->fence[k].epoch;
		freeReplyObject(r);
	}
	if (ret < 0)
		return -1;
	sink->n_unfenced = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		while (sink->fence[k].partition != users[i].us->last_partition)
			k++;
		if (sink->fence[k].fenced)
			users[i].result = SINK_REFUSED_FENCED;
		else if (sink->fence[k].unknown)
			users[i].result = SINK_UNAVAILABLE;
		else
			idx[sink->n_unfenced++] = i;
	}
	return 0;
}

int
sink_redis_flush(struct sink_redis *sink, const struct model *m, struct sink_user *users, size_t n,
    sink_prepare_fn *prepare, void *opaque, char *errstr, size_t errstr_size)
{
	struct flush_ctx fc = { m, users, prepare, opaque, NULL };
	struct sink_eval ev = { SINK_OP_FLUSH, "flush", prepare != NULL ? flush_prepare : NULL,
		flush_append, flush_take, flush_subject, &fc, flush_unavailable };

	if (!sink->cluster || n == 0)
		return sink_eval_run(sink, &ev, n, errstr, errstr_size);
	if (flush_fence(sink, users, n, errstr, errstr_size) < 0)
		return -1;
	if (prepare != NULL)
		prepare(opaque, users, 0, n);
	ev.prepare = NULL;
	fc.idx = sink->retry + n; /* flush_fence left the users to write there */
	return sink_eval_run(sink, &ev, sink->n_unfenced, errstr, errstr_size);
}

/* The erasure marker of an HMGET partition offset ts reply; 0 when present and valid. */
static int
reply_erased(const redisReply *r, struct sink_erased *er)
{
	int64_t p, o, ts;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    reply_int64(r->element[0], &p) < 0 || reply_int64(r->element[1], &o) < 0 ||
	    reply_int64(r->element[2], &ts) < 0 || p < 0 || p > INT32_MAX)
		return -1;
	er->partition = (int32_t)p;
	er->offset = o;
	er->ts_ms = ts;
	return 0;
}

int
sink_redis_load_users(struct sink_redis *sink, const char *const *ids, const size_t *id_lens,
    size_t n, sink_user_cb *cb, void *opaque, char *errstr, size_t errstr_size)
{
	struct argset as = { sink, 0, 0, -1 };
	int ret = 0;

	if (sink_ensure(sink, errstr, errstr_size) < 0)
		return -1;
	/*
	 * Per user: GETRANGE of the state's first SINK_STATE_MAX_BYTES + 1 bytes
	 * (a longer reply means a state too large to read: the reply stays
	 * bounded) and HMGET of the erasure marker.
	 */
	for (size_t i = 0; i < n; i++) {
		arg_begin(&as);
		arg_printf(&as, "GETRANGE");
		arg_user_key(&as, ids[i], id_lens[i], "state");
		arg_printf(&as, "0");
		arg_printf(&as, "%d", SINK_STATE_MAX_BYTES);
		if (append_args(sink, &as, errstr, errstr_size) < 0)
			return -1;
		arg_begin(&as);
		arg_printf(&as, "HMGET");
		arg_user_key(&as, ids[i], id_lens[i], "erased");
		arg_printf(&as, "partition");
		arg_printf(&as, "offset");
		arg_printf(&as, "ts");
		if (append_args(sink, &as, errstr, errstr_size) < 0)
			return -1;
	}
	for (size_t i = 0; i < n; i++) {
		redisReply *rg = read_reply(sink, "GETRANGE state", errstr, errstr_size);
		int lost = rg == NULL && sink->unavailable;
		redisReply *re = rg != NULL || lost
		    ? read_reply(sink, "HMGET erased", errstr, errstr_size)
		    : NULL;
		struct sink_erased er;
		const struct sink_erased *erp = NULL;

		lost |= re == NULL && sink->unavailable;
		if (lost) {
			/* Cluster: its master lost; no callback, the caller sees it unread. */
			freeReplyObject(rg);
			freeReplyObject(re);
			continue;
		}
		if (re == NULL || rg == NULL) {
			freeReplyObject(rg);
			freeReplyObject(re);
			return -1;
		}
		if (ret == 0 && (rg->type != REDIS_REPLY_STRING || re->type != REDIS_REPLY_ARRAY)) {
			const redisReply *bad = rg->type == REDIS_REPLY_ERROR ? rg : re;

			snprintf(errstr, errstr_size, "redis load of %.*s: %s", (int)id_lens[i],
			    ids[i], reply_error(sink, bad, "unexpected reply type"));
			ret = -1; /* keep reading: the pipeline must be drained */
		}
		if (ret == 0) {
			if (reply_erased(re, &er) == 0)
				erp = &er;
			if (rg->len == 0) /* GETRANGE of a missing key is "" */
				cb(opaque, i, NULL, 0, erp);
			else if (rg->len > SINK_STATE_MAX_BYTES)
				cb(opaque, i, NULL, rg->len, erp);
			else
				cb(opaque, i, (const uint8_t *)rg->str, rg->len, erp);
		}
		freeReplyObject(rg);
		freeReplyObject(re);
	}
	return ret;
}

/* Adapts sink_redis_load_states' callback to sink_redis_load_users'. */
struct load_adapter {
	sink_state_cb *cb;
	void *opaque;
};

static void
load_adapter_cb(
    void *opaque, size_t i, const uint8_t *blob, size_t len, const struct sink_erased *erased)
{
	struct load_adapter *la = opaque;

	(void)erased;
	la->cb(la->opaque, i, blob, blob != NULL ? len : 0);
}

int
sink_redis_load_states(struct sink_redis *sink, const char *const *ids, const size_t *id_lens,
    size_t n, sink_state_cb *cb, void *opaque, char *errstr, size_t errstr_size)
{
	struct load_adapter la = { cb, opaque };

	return sink_redis_load_users(
	    sink, ids, id_lens, n, load_adapter_cb, &la, errstr, errstr_size);
}

static int
erase_append(
    struct sink_redis *sink, void *ctx, size_t i, int64_t now_ms, char *errstr, size_t errstr_size)
{
	const struct sink_erase *e = &((struct sink_erase *)ctx)[i];
	struct argset as = { sink, 0, 0, -1 };

	arg_user_script(&as, sink->sha_erase, e->user_id, e->user_id_len, e->partition);
	arg_printf(&as, "%" PRId32, e->partition);
	arg_printf(&as, "%" PRId64, e->offset);
	arg_printf(&as, "%" PRIu64, e->epoch);
	arg_printf(&as, "%" PRId64, e->ts_ms);
	arg_printf(&as, "%" PRId64, now_ms);
	return append_args(sink, &as, errstr, errstr_size);
}

static int
erase_take(void *ctx, size_t i, const redisReply *r)
{
	struct sink_erase *e = &((struct sink_erase *)ctx)[i];

	if (r->type != REDIS_REPLY_INTEGER || r->integer < 0 || r->integer > 2)
		return -1;
	e->result = (int)r->integer;
	return 0;
}

static void
erase_subject(struct sink_redis *sink, void *ctx, size_t i, char *buf, size_t size)
{
	const struct sink_erase *e = &((struct sink_erase *)ctx)[i];

	user_subject(sink, e->user_id, e->user_id_len, buf, size);
}

int
sink_redis_erase(
    struct sink_redis *sink, struct sink_erase *er, size_t n, char *errstr, size_t errstr_size)
{
	struct sink_eval ev = { SINK_OP_ERASE, "erase", NULL, erase_append, erase_take,
		erase_subject, er, NULL };

	return sink_eval_run(sink, &ev, n, errstr, errstr_size);
}

/*
 * Cluster mode: the masters of the current map, each by its lowest slot and
 * that slot's hash tag (computed again only for a master whose lowest slot
 * changed). Single node: one "master". Returns how many, or 0 when out of memory.
 */
static size_t
sink_masters(struct sink_redis *sink)
{
	size_t n;

	if (!sink->cluster)
		return 1;
	n = rcluster_master_slots(sink->rc, NULL, 0);
	if (n > sink->masters_cap) {
		uint16_t *m = realloc(sink->masters, n * sizeof(*m));
		struct sink_tag *t = realloc(sink->tags, n * sizeof(*t));

		if (m != NULL)
			sink->masters = m;
		if (t != NULL)
			sink->tags = t;
		if (m == NULL || t == NULL)
			return 0;
		for (size_t k = sink->masters_cap; k < n; k++)
			sink->tags[k].tag[0] = '\0';
		sink->masters_cap = n;
	}
	(void)rcluster_master_slots(sink->rc, sink->masters, n);
	for (size_t k = 0; k < n; k++) {
		struct sink_tag *t = &sink->tags[k];

		if (t->tag[0] == '\0' || t->slot != sink->masters[k]) {
			t->slot = sink->masters[k];
			rcluster_slot_tag(t->slot, t->tag, sizeof(t->tag));
		}
	}
	return n;
}

/*
 * The flushed-through marker of a partition as one argument: on a single
 * node <prefix>flushed:<group>:<topic>:<p>; in a cluster one per master,
 * <prefix>{<tag>}:flushed:<group>:<topic>:<p>, the tag of master's lowest
 * slot (schemas/redis.md "Redis Cluster").
 */
static void
arg_flushed_key(struct argset *as, int32_t partition, size_t master)
{
	struct sink_redis *sink = as->sink;

	arg_start(as);
	if (!as->oom &&
	    buf_printf(&sink->buf, "%s%s%s%sflushed:%s:%s:%" PRId32, sink->prefix,
		sink->cluster ? "{" : "", sink->cluster ? sink->tags[master].tag : "",
		sink->cluster ? "}:" : "", sink->group, sink->topic, partition) < 0)
		as->oom = 1;
	if (!as->oom) {
		arg_end(as);
		arg_key(as);
	}
}

/* Item i is the marker of partition i / n_masters on master i % n_masters. */
struct mark_ctx {
	const int32_t *partitions;
	const int64_t *next_offsets;
	const uint64_t *epochs;
	int *fenced;
	size_t n_masters;
};

static int
mark_append(
    struct sink_redis *sink, void *ctx, size_t i, int64_t now_ms, char *errstr, size_t errstr_size)
{
	const struct mark_ctx *mc = ctx;
	struct argset as = { sink, 0, 0, -1 };
	size_t p = i / mc->n_masters;

	(void)now_ms;
	arg_begin(&as);
	arg_printf(&as, "EVALSHA");
	arg_printf(&as, "%s", sink->sha_flushed);
	arg_printf(&as, "%d", sink->cluster ? 1 : 2);
	arg_flushed_key(&as, mc->partitions[p], i % mc->n_masters);
	if (!sink->cluster)
		arg_epoch_key(&as, mc->partitions[p]);
	arg_printf(&as, "%" PRId64, mc->next_offsets[p]);
	arg_printf(&as, "%" PRIu64, mc->epochs[p]);
	return append_args(sink, &as, errstr, errstr_size);
}

static int
mark_take(void *ctx, size_t i, const redisReply *r)
{
	struct mark_ctx *mc = ctx;

	if (r->type != REDIS_REPLY_INTEGER || (r->integer != 0 && r->integer != 2))
		return -1;
	if (r->integer == 2)
		mc->fenced[i / mc->n_masters] = 1;
	return 0;
}

/* A master lost: that partition's markers are not all raised, it is not committed now. */
static void
mark_unavailable(void *ctx, size_t i)
{
	struct mark_ctx *mc = ctx;

	if (mc->fenced[i / mc->n_masters] == 0)
		mc->fenced[i / mc->n_masters] = -1;
}

static void
mark_subject(struct sink_redis *sink, void *ctx, size_t i, char *buf, size_t size)
{
	const struct mark_ctx *mc = ctx;
	int32_t p = mc->partitions[i / mc->n_masters];

	snprintf(buf, size, "partition %" PRId32 " (key %s%s%s%sflushed:%s:%s:%" PRId32 ")", p,
	    sink->prefix, sink->cluster ? "{" : "",
	    sink->cluster ? sink->tags[i % mc->n_masters].tag : "", sink->cluster ? "}:" : "",
	    sink->group, sink->topic, p);
}

int
sink_redis_mark_flushed(struct sink_redis *sink, const int32_t *partitions,
    const int64_t *next_offsets, const uint64_t *epochs, int *fenced, size_t n, char *errstr,
    size_t errstr_size)
{
	struct mark_ctx mc = { partitions, next_offsets, epochs, fenced, 1 };
	struct sink_eval ev = { SINK_OP_MARK_FLUSHED, "flushed marker", NULL, mark_append,
		mark_take, mark_subject, &mc, mark_unavailable };

	if (n == 0)
		return 0;
	if (sink_ensure(sink, errstr, errstr_size) < 0)
		return -1;
	if ((mc.n_masters = sink_masters(sink)) == 0) {
		snprintf(errstr, errstr_size, "redis sink: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		fenced[i] = 0;
	return sink_eval_run(sink, &ev, n * mc.n_masters, errstr, errstr_size);
}

int
sink_redis_get_flushed(struct sink_redis *sink, int32_t partition, int64_t *next_offset,
    char *errstr, size_t errstr_size)
{
	struct argset as = { sink, 0, 0, -1 };
	size_t n;
	int ret = 0;

	if (sink_ensure(sink, errstr, errstr_size) < 0)
		return -1;
	if ((n = sink_masters(sink)) == 0) {
		snprintf(errstr, errstr_size, "redis sink: out of memory");
		return -1;
	}
	for (size_t k = 0; k < n; k++) {
		arg_begin(&as);
		arg_printf(&as, "GET");
		arg_flushed_key(&as, partition, k);
		if (append_args(sink, &as, errstr, errstr_size) < 0)
			return -1;
	}
	/* The lowest marker of any master: a master that lost writes lost its marker's raise too. */
	*next_offset = -1;
	for (size_t k = 0; k < n; k++) {
		redisReply *r = read_reply(sink, "GET flushed marker", errstr, errstr_size);
		int64_t v;

		if (r == NULL && sink->unavailable)
			continue; /* its master lost: read again at the claim after it is back */
		if (r == NULL)
			return -1;
		if (ret < 0 || r->type == REDIS_REPLY_NIL) {
			/* none yet on this master (cluster: it gained its lowest slot lately) */
		} else if (reply_int64(r, &v) == 0 && v >= 0) {
			if (*next_offset < 0 || v < *next_offset)
				*next_offset = v;
		} else {
			snprintf(errstr, errstr_size,
			    "redis GET flushed marker of partition %" PRId32 ": %s", partition,
			    reply_error(sink, r, "not a non-negative integer"));
			ret = -1;
		}
		freeReplyObject(r);
	}
	return ret;
}

/* <prefix>lease:<topic>:<partition> as one argument (cluster: see arg_partition_key). */
static void
arg_lease_key(struct argset *as, int32_t partition)
{
	arg_partition_key(as, "lease", NULL, partition);
}

static int
claim_append(
    struct sink_redis *sink, void *ctx, size_t i, int64_t now_ms, char *errstr, size_t errstr_size)
{
	const struct sink_claim *cl = (const struct sink_claim *)ctx + i;
	struct argset as = { sink, 0, 0, -1 };

	(void)now_ms;
	arg_begin(&as);
	arg_printf(&as, "EVALSHA");
	arg_printf(&as, "%s", sink->sha_claim);
	arg_printf(&as, "2");
	arg_epoch_key(&as, cl->partition);
	arg_lease_key(&as, cl->partition);
	arg_printf(&as, "%s", sink->owner);
	arg_printf(&as, "%d", sink->lease_ms);
	arg_printf(&as, "%" PRIu64, cl->epoch);
	arg_printf(&as, "%d", cl->fresh ? 1 : 0);
	return append_args(sink, &as, errstr, errstr_size);
}

static int
claim_take(void *ctx, size_t i, const redisReply *r)
{
	struct sink_claim *cl = (struct sink_claim *)ctx + i;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER ||
	    r->element[1]->type != REDIS_REPLY_INTEGER || r->element[1]->integer < 0)
		return -1;
	cl->stored = (uint64_t)r->element[1]->integer;
	if (r->element[0]->integer > 0) {
		cl->epoch = (uint64_t)r->element[0]->integer;
		cl->result = SINK_CLAIM_OWNED;
	} else if (r->element[0]->integer == -1) {
		cl->result = SINK_CLAIM_BUSY;
	} else if (r->element[0]->integer == -2) {
		cl->result = SINK_CLAIM_FENCED;
	} else {
		return -1;
	}
	return 0;
}

static void
claim_unavailable(void *ctx, size_t i)
{
	((struct sink_claim *)ctx + i)->result = SINK_CLAIM_UNAVAILABLE;
}

static void
claim_subject(struct sink_redis *sink, void *ctx, size_t i, char *buf, size_t size)
{
	const struct sink_claim *cl = (const struct sink_claim *)ctx + i;

	partition_subject(sink, cl->partition, "epoch", NULL, "lease", buf, size);
}

int
sink_redis_claim(
    struct sink_redis *sink, struct sink_claim *cl, size_t n, char *errstr, size_t errstr_size)
{
	struct sink_eval ev = { SINK_OP_CLAIM, "claim", NULL, claim_append, claim_take,
		claim_subject, cl, claim_unavailable };

	return sink_eval_run(sink, &ev, n, errstr, errstr_size);
}

static int
release_append(
    struct sink_redis *sink, void *ctx, size_t i, int64_t now_ms, char *errstr, size_t errstr_size)
{
	const int32_t *partitions = ctx;
	struct argset as = { sink, 0, 0, -1 };

	(void)now_ms;
	arg_begin(&as);
	arg_printf(&as, "EVALSHA");
	arg_printf(&as, "%s", sink->sha_release);
	arg_printf(&as, "1");
	arg_lease_key(&as, partitions[i]);
	arg_printf(&as, "%s", sink->owner);
	return append_args(sink, &as, errstr, errstr_size);
}

static int
release_take(void *ctx, size_t i, const redisReply *r)
{
	(void)ctx;
	(void)i;
	return r->type == REDIS_REPLY_INTEGER ? 0 : -1;
}

/* The lease runs out by itself. */
static void
release_unavailable(void *ctx, size_t i)
{
	(void)ctx;
	(void)i;
}

static void
release_subject(struct sink_redis *sink, void *ctx, size_t i, char *buf, size_t size)
{
	const int32_t *partitions = ctx;

	partition_subject(sink, partitions[i], "lease", NULL, NULL, buf, size);
}

int
sink_redis_release(
    struct sink_redis *sink, const int32_t *partitions, size_t n, char *errstr, size_t errstr_size)
{
	struct sink_eval ev = { SINK_OP_CLAIM, "release", NULL, release_append, release_take,
		release_subject, (void *)(uintptr_t)partitions, release_unavailable };

	return sink_eval_run(sink, &ev, n, errstr, errstr_size);
}

/* <prefix>inflight:<group>:<topic>:<partition> as one argument (cluster: see arg_partition_key). */
static void
arg_inflight_key(struct argset *as, int32_t partition)
{
	arg_partition_key(as, "inflight", as->sink->group, partition);
}

static int
inflight_append(
    struct sink_redis *sink, void *ctx, size_t i, int64_t now_ms, char *errstr, size_t errstr_size)
{
	const struct sink_inflight *in = (const struct sink_inflight *)ctx + i;
	struct argset as = { sink, 0, 0, -1 };

	(void)now_ms;
	arg_begin(&as);
	arg_printf(&as, "EVALSHA");
	arg_printf(&as, "%s", in->check ? sink->sha_inflight_check : sink->sha_inflight);
	arg_printf(&as, "1");
	arg_inflight_key(&as, in->partition);
	if (in->check) {
		arg_printf(&as, "%" PRId64, in->committed);
	} else {
		arg_printf(&as, "%s", in->done ? "d" : "r");
		arg_printf(&as, "%" PRId64, in->from);
		arg_printf(&as, "%" PRId64, in->to);
	}
	return append_args(sink, &as, errstr, errstr_size);
}

static int
inflight_take(void *ctx, size_t i, const redisReply *r)
{
	struct sink_inflight *in = (struct sink_inflight *)ctx + i;

	if (!in->check)
		return r->type == REDIS_REPLY_INTEGER ? 0 : -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		return -1;
	for (size_t k = 0; k < 3; k++)
		if (r->element[k]->type != REDIS_REPLY_INTEGER)
			return -1;
	in->from = r->element[0]->integer;
	in->to = r->element[1]->integer;
	in->crashes = r->element[2]->integer;
	return 0;
}

/*
 * A record not written: the batch goes on (a death in it is not seen while
 * the partition's keys are unreachable). A check not answered: nothing known
 * in flight.
 */
static void
inflight_unavailable(void *ctx, size_t i)
{
	struct sink_inflight *in = (struct sink_inflight *)ctx + i;

	if (in->check) {
		in->from = in->to = -1;
		in->crashes = 0;
	}
}

static void
inflight_subject(struct sink_redis *sink, void *ctx, size_t i, char *buf, size_t size)
{
	const struct sink_inflight *in = (const struct sink_inflight *)ctx + i;

	partition_subject(sink, in->partition, "inflight", sink->group, NULL, buf, size);
}

int
sink_redis_inflight(
    struct sink_redis *sink, struct sink_inflight *in, size_t n, char *errstr, size_t errstr_size)
{
	struct sink_eval ev = { SINK_OP_CLAIM, "in-flight record", NULL, inflight_append,
		inflight_take, inflight_subject, in, inflight_unavailable };

	return sink_eval_run(sink, &ev, n, errstr, errstr_size);
}

const char *
sink_redis_owner(const struct sink_redis *sink)
{
	return sink->owner;
}

/* Reads the replies of a MULTI ... EXEC of n_cmds queued commands. */
static int
read_exec(
    struct sink_redis *sink, size_t n_cmds, const char *what, char *errstr, size_t errstr_size)
{
	int ret = 0;

	for (size_t i = 0; i < n_cmds + 2; i++) {
		redisReply *r = read_reply(sink, what, errstr, errstr_size);

		if (r == NULL)
			return -1;
		if (ret == 0 &&
		    (r->type == REDIS_REPLY_ERROR ||
			(i == n_cmds + 1 && r->type != REDIS_REPLY_ARRAY))) {
			snprintf(errstr, errstr_size, "redis %s: %s", what,
			    reply_error(sink, r, "transaction aborted"));
			ret = -1;
		}
		freeReplyObject(r);
	}
	return ret;
}

int
sink_redis_write_tier_names(
    struct sink_redis *sink, const struct model *m, char *errstr, size_t errstr_size)
{
	const char *multi[] = { "MULTI" }, *exec[] = { "EXEC" };
	const size_t multi_len[] = { 5 }, exec_len[] = { 4 };
	struct argset as = { sink, 0, 0, -1 };
	uint32_t n_nodes = model_n_nodes(m);
	char label[SINK_NUM_MAX], key[SINK_ERR_MAX];
	int key_len = snprintf(key, sizeof(key), "%stiers", sink->prefix);
	/* MULTI and EXEC have no key: they go where the key goes. */
	uint16_t slot = rcluster_keyslot(key, (size_t)key_len);

	if (sink_ensure(sink, errstr, errstr_size) < 0)
		return -1;
	if (sink_append(sink, 1, multi, multi_len, slot, errstr, errstr_size) < 0)
		return -1;
	arg_begin(&as);
	arg_printf(&as, "DEL");
	arg_bytes(&as, key, (size_t)key_len);
	arg_key(&as);
	if (append_args(sink, &as, errstr, errstr_size) < 0)
		return -1;
	arg_begin(&as);
	arg_printf(&as, "HSET");
	arg_bytes(&as, key, (size_t)key_len);
	arg_key(&as);
	for (uint32_t node = 0; node < n_nodes && !as.oom; node++) {
		size_t len;
		const char *name = model_node_name(m, node, &len);

		arg_bytes(&as, label, model_node_label(m, node, label, sizeof(label)));
		arg_bytes(&as, name, len);
	}
	if (append_args(sink, &as, errstr, errstr_size) < 0)
		return -1;
	if (sink_append(sink, 1, exec, exec_len, slot, errstr, errstr_size) < 0)
		return -1;
	return read_exec(sink, 2, "write tier names", errstr, errstr_size);
}

uint64_t
sink_redis_masters_lost(const struct sink_redis *sink)
{
	return sink->rc != NULL ? rcluster_failures(sink->rc) : 0;
}

int
sink_redis_cluster_whole(struct sink_redis *sink)
{
	char err[SINK_ERR_MAX];

	if (!sink->cluster)
		return 1;
	if (sink->rc == NULL || rcluster_check_all(sink->rc, err, sizeof(err)) < 0) {
		snprintf(sink->unavailable_err, sizeof(sink->unavailable_err), "%s", err);
		return 0;
	}
	return 1;
}

const char *
sink_redis_unavailable_error(const struct sink_redis *sink)
{
	return sink->unavailable_err;
}

void
sink_redis_redirects(const struct sink_redis *sink, uint64_t *moved, uint64_t *ask)
{
	*moved = *ask = 0;
	if (sink->rc != NULL)
		rcluster_redirects(sink->rc, moved, ask);
}

int
sink_redis_permission_denied(const struct sink_redis *sink)
{
	return sink->denied;
}

const char *
sink_op_name(enum sink_op op)
{
	static const char *const names[] = { "flush", "erase", "mark_flushed", "claim" };

	return (unsigned)op < SINK_OP_COUNT ? names[op] : "unknown";
}

const struct metrics_histogram *
sink_redis_latency(const struct sink_redis *sink, enum sink_op op)
{
	return &sink->lat[(unsigned)op < SINK_OP_COUNT ? op : SINK_OP_FLUSH];
}
