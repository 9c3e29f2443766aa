/*
 * Redis Cluster routing: key slots (CRC16 of the key or its hash tag), the
 * slot map from CLUSTER SLOTS, and MOVED / ASK redirections. The daemon
 * writes few keys per user and Debian has no cluster client for hiredis
 * (README "Dependencies"), so this is small and ours.
 */
#include "redis_cluster.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-CCITT, XMODEM variant: polynomial x^16 + x^12 + x^5 + 1, initial 0, no reflection. */
static uint16_t
rcluster_crc16(const char *p, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((uint16_t)(unsigned char)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc =
			    (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

uint16_t
rcluster_keyslot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;
		const char *close = memchr(open + 1, '}', rest);

		/* An empty tag ("{}") does not count: the whole key is hashed. */
		if (close != NULL && close > open + 1)
			return rcluster_crc16(open + 1, (size_t)(close - open - 1)) %
			    RCLUSTER_SLOTS;
	}
	return rcluster_crc16(key, len) % RCLUSTER_SLOTS;
}

void
rcluster_map_fini(struct rcluster_map *map)
{
	free(map->nodes);
	map->nodes = NULL;
	map->n_nodes = 0;
	for (size_t s = 0; s < RCLUSTER_SLOTS; s++)
		map->owner[s] = RCLUSTER_NO_NODE;
}

size_t
rcluster_map_unserved(const struct rcluster_map *map)
{
	size_t n = 0;

	for (size_t s = 0; s < RCLUSTER_SLOTS; s++)
		n += map->owner[s] == RCLUSTER_NO_NODE;
	return n;
}

/* The index of node (host, port) in map, added when new; -1 on ENOMEM. */
static long
rcluster_map_node(struct rcluster_map *map, const char *host, int port)
{
	struct rcluster_node *grown;

	for (size_t k = 0; k < map->n_nodes; k++)
		if (map->nodes[k].port == port && strcmp(map->nodes[k].host, host) == 0)
			return (long)k;
	grown = realloc(map->nodes, (map->n_nodes + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	map->nodes = grown;
	snprintf(map->nodes[map->n_nodes].host, RCLUSTER_MAX_HOST, "%s", host);
	map->nodes[map->n_nodes].port = port;
	return (long)map->n_nodes++;
}

/*
 * The master host:port of entry e (what: "CLUSTER SLOTS entry") into map:
 * its index, or -1 with errstr (unusable, or out of memory).
 */
static long
rcluster_map_master(struct rcluster_map *map, const char *what, size_t e, const redisReply *host,
    const redisReply *port, const char *seed_host, char *errstr, size_t errstr_size)
{
	long k;

	if (host->len >= RCLUSTER_MAX_HOST || strcmp(host->str, "?") == 0 || port->integer <= 0 ||
	    port->integer > 65535) {
		snprintf(errstr, errstr_size,
		    "%s %zu: master endpoint \"%.64s\" port %lld unusable", what, e, host->str,
		    port->integer);
		return -1;
	}
	k = rcluster_map_node(map, host->len > 0 ? host->str : seed_host, (int)port->integer);
	if (k < 0)
		snprintf(errstr, errstr_size, "%s %zu: out of memory", what, e);
	return k;
}

/* Slots first..last of entry e to master k; -1 with errstr when outside 0-16383. */
static int
rcluster_map_range(struct rcluster_map *map, const char *what, size_t e, long long first,
    long long last, long k, char *errstr, size_t errstr_size)
{
	if (first < 0 || last < first || last >= RCLUSTER_SLOTS) {
		snprintf(errstr, errstr_size, "%s %zu: slot range %lld-%lld out of 0-%d", what, e,
		    first, last, RCLUSTER_SLOTS - 1);
		return -1;
	}
	for (long long s = first; s <= last; s++)
		map->owner[s] = (uint16_t)k;
	return 0;
}

int
rcluster_map_parse(const struct redisReply *r, const char *seed_host, struct rcluster_map *map,
    char *errstr, size_t errstr_size)
{
	static const char what[] = "CLUSTER SLOTS entry";

	rcluster_map_fini(map);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(errstr, errstr_size, "CLUSTER SLOTS: %s",
		    r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
		return -1;
	}
	for (size_t e = 0; e < r->elements; e++) {
		const redisReply *ent = r->element[e], *master;
		long k;

		if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 3 ||
		    ent->element[0]->type != REDIS_REPLY_INTEGER ||
		    ent->element[1]->type != REDIS_REPLY_INTEGER ||
		    ent->element[2]->type != REDIS_REPLY_ARRAY) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SLOTS entry %zu: not [first slot, last slot, master, ...]", e);
			goto fail;
		}
		master = ent->element[2];
		if (master->elements < 2 || master->element[0]->type != REDIS_REPLY_STRING ||
		    master->element[1]->type != REDIS_REPLY_INTEGER) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SLOTS entry %zu: master is not [host, port, ...]", e);
			goto fail;
		}
		k = rcluster_map_master(map, what, e, master->element[0], master->element[1],
		    seed_host, errstr, errstr_size);
		if (k < 0 ||
		    rcluster_map_range(map, what, e, ent->element[0]->integer,
			ent->element[1]->integer, k, errstr, errstr_size) < 0)
			goto fail;
	}
	return 0;
fail:
	rcluster_map_fini(map);
	return -1;
}

/* The value of field name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *
rcluster_field(const redisReply *r, const char *name)
{
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
		if (r->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(r->element[i]->str, name) == 0)
			return r->element[i + 1];
	return NULL;
}

int
rcluster_map_parse_shards(const struct redisReply *r, const char *seed_host,
    struct rcluster_map *map, char *errstr, size_t errstr_size)
{
	static const char what[] = "CLUSTER SHARDS shard";

	rcluster_map_fini(map);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(errstr, errstr_size, "CLUSTER SHARDS: %s",
		    r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
		return -1;
	}
	for (size_t e = 0; e < r->elements; e++) {
		const redisReply *sh = r->element[e], *slots = rcluster_field(sh, "slots"),
				 *nodes = rcluster_field(sh, "nodes"), *master = NULL, *host, *port;
		long k;

		if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY ||
		    nodes->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SHARDS shard %zu: not [slots, [first, last, ...], nodes, "
			    "[...]]",
			    e);
			goto fail;
		}
		if (slots->elements == 0)
			continue; /* no slots: e.g. a failed master its replica replaced */
		for (size_t n = 0; master == NULL && n < nodes->elements; n++) {
			const redisReply *role = rcluster_field(nodes->element[n], "role");

			if (role != NULL && role->type == REDIS_REPLY_STRING &&
			    strcmp(role->str, "master") == 0)
				master = nodes->element[n];
		}
		host = master != NULL ? rcluster_field(master, "endpoint") : NULL;
		if (host == NULL && master != NULL)
			host = rcluster_field(master, "ip");
		port = master != NULL ? rcluster_field(master, "port") : NULL;
		if (port == NULL && master != NULL)
			port = rcluster_field(master, "tls-port");
		if (master == NULL || host == NULL || host->type != REDIS_REPLY_STRING ||
		    port == NULL || port->type != REDIS_REPLY_INTEGER) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SHARDS shard %zu: no master with an endpoint and a port", e);
			goto fail;
		}
		k = rcluster_map_master(map, what, e, host, port, seed_host, errstr, errstr_size);
		if (k < 0)
			goto fail;
		for (size_t i = 0; i < slots->elements; i += 2) {
			const redisReply *first = slots->element[i], *last = slots->element[i + 1];

			if (first->type != REDIS_REPLY_INTEGER ||
			    last->type != REDIS_REPLY_INTEGER) {
				snprintf(errstr, errstr_size, "%s %zu: a slot is not an integer",
				    what, e);
				goto fail;
			}
			if (rcluster_map_range(map, what, e, first->integer, last->integer, k,
				errstr, errstr_size) < 0)
				goto fail;
		}
	}
	return 0;
fail:
	rcluster_map_fini(map);
	return -1;
}

enum rcluster_redirect
rcluster_redirect_parse(
    const char *err, const char *cur_host, uint16_t *slot, struct rcluster_node *to)
{
	enum rcluster_redirect kind;
	const char *p, *colon;
	char *end;
	unsigned long s, port;

	if (strncmp(err, "MOVED ", 6) == 0) {
		kind = RCLUSTER_MOVED;
		p = err + 6;
	} else if (strncmp(err, "ASK ", 4) == 0) {
		kind = RCLUSTER_ASK;
		p = err + 4;
	} else {
		return RCLUSTER_NOT_REDIRECT;
	}
	s = strtoul(p, &end, 10);
	if (end == p || *end != ' ' || s >= RCLUSTER_SLOTS)
		return RCLUSTER_NOT_REDIRECT;
	p = end + 1;
	colon = strrchr(p, ':'); /* the last one: an IPv6 address has colons of its own */
	if (colon == NULL || (size_t)(colon - p) >= RCLUSTER_MAX_HOST)
		return RCLUSTER_NOT_REDIRECT;
	port = strtoul(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || port == 0 || port > 65535)
		return RCLUSTER_NOT_REDIRECT;
	if (colon == p)
		snprintf(to->host, sizeof(to->host), "%s", cur_host);
	else
		snprintf(to->host, sizeof(to->host), "%.*s", (int)(colon - p), p);
	to->port = (int)port;
	*slot = (uint16_t)s;
	return kind;
}

/* ---- the cluster pipeline ------------------------------------------------- */

#define RCLUSTER_ROUNDS 5 /* rounds of redirects before rcluster_run gives up */
/* A master in one round of rcluster_run (rc->bad): */
#define RCLUSTER_USED    1 /* commands appended */
#define RCLUSTER_BAD     2 /* its connection failed */
#define RCLUSTER_UNACKED 3 /* WAIT: too few replicas acknowledged */

/* A redirected command of one round. */
struct rcluster_redir {
	size_t item;
	uint16_t slot;
	enum rcluster_redirect kind;
	struct rcluster_node to;
};

struct rcluster {
	struct rcluster_map map;
	redisContext **ctx; /* [map.n_nodes] one per master, NULL until connected */
	char seed_host[RCLUSTER_MAX_HOST];
	int seed_port;
	rcluster_connect_fn *connect;
	void *opaque;
	int stale;      /* re-read the map before the next round */
	int slots_only; /* the server has no CLUSTER SHARDS (before 7.0): CLUSTER SLOTS */
	/* Scratch of rcluster_run, [cap] each. */
	size_t *pending, *next;
	struct rcluster_redir *redir;
	uint16_t *node_of;
	unsigned char *bad; /* [map.n_nodes] in this round: RCLUSTER_USED, _BAD, _UNACKED, or 0 */
	size_t cap;
	uint64_t moved, ask;
	uint64_t failures; /* masters lost or refusing (CLUSTERDOWN) since rcluster_new */
};

uint64_t
rcluster_failures(const struct rcluster *rc)
{
	return rc->failures;
}

void
rcluster_redirects(const struct rcluster *rc, uint64_t *moved, uint64_t *ask)
{
	*moved = rc->moved;
	*ask = rc->ask;
}

static void
rcluster_drop_all(struct rcluster *rc)
{
	for (size_t k = 0; rc->ctx != NULL && k < rc->map.n_nodes; k++) {
		if (rc->ctx[k] != NULL)
			redisFree(rc->ctx[k]);
		rc->ctx[k] = NULL;
	}
	rc->stale = 1;
}

/* The index of master (host, port) in the map, or -1. */
static long
rcluster_find(const struct rcluster *rc, const char *host, int port)
{
	for (size_t k = 0; k < rc->map.n_nodes; k++)
		if (rc->map.nodes[k].port == port && strcmp(rc->map.nodes[k].host, host) == 0)
			return (long)k;
	return -1;
}

/*
 * Reads CLUSTER SLOTS from a connected master, else from the seed, else
 * from the first master of the last map that answers, into a new map; connections to masters that stay are kept, the others closed.
 */
static int
rcluster_refresh(struct rcluster *rc, char *errstr, size_t errstr_size)
{
	struct rcluster_map *fresh;
	redisContext **ctx, *c = NULL, *own = NULL;
	const char *from = rc->seed_host;
	redisReply *r;
	int ret;

	for (size_t k = 0; c == NULL && rc->ctx != NULL && k < rc->map.n_nodes; k++)
		if (rc->ctx[k] != NULL) {
			c = rc->ctx[k];
			from = rc->map.nodes[k].host;
		}
	/* None connected: the seed, else each master of the last map (the seed may be down). */
	for (size_t k = 0; c == NULL && k <= rc->map.n_nodes; k++) {
		from = k == 0 ? rc->seed_host : rc->map.nodes[k - 1].host;
		own = c = rc->connect(rc->opaque, from,
		    k == 0 ? rc->seed_port : rc->map.nodes[k - 1].port, errstr, errstr_size);
	}
	if (c == NULL)
		return -1;
	r = redisCommand(c, rc->slots_only ? "CLUSTER SLOTS" : "CLUSTER SHARDS");
	if (r != NULL && r->type == REDIS_REPLY_ERROR && !rc->slots_only) {
		/* A server before 7.0 (or an ACL without it): CLUSTER SLOTS from now on. */
		freeReplyObject(r);
		rc->slots_only = 1;
		r = redisCommand(c, "CLUSTER SLOTS");
	}
	if (r == NULL) {
		snprintf(errstr, errstr_size, "redis cluster: reading the slot map: %s", c->errstr);
		if (own != NULL)
			redisFree(own);
		rcluster_drop_all(rc);
		return -1;
	}
	fresh = calloc(1, sizeof(*fresh)); /* 32 KiB of slots: not on the stack */
	ret = fresh == NULL  ? -1
	    : rc->slots_only ? rcluster_map_parse(r, from, fresh, errstr, errstr_size)
			     : rcluster_map_parse_shards(r, from, fresh, errstr, errstr_size);
	if (fresh == NULL)
		snprintf(errstr, errstr_size, "redis cluster: out of memory");
	freeReplyObject(r);
	if (own != NULL)
		redisFree(own);
	ctx = ret < 0 ? NULL : calloc(fresh->n_nodes ? fresh->n_nodes : 1, sizeof(*ctx));
	if (ret == 0 && ctx == NULL)
		snprintf(errstr, errstr_size, "redis cluster: out of memory");
	if (ctx == NULL) {
		if (fresh != NULL)
			rcluster_map_fini(fresh);
		free(fresh);
		return -1;
	}
	for (size_t k = 0; k < fresh->n_nodes; k++) {
		long old = rcluster_find(rc, fresh->nodes[k].host, fresh->nodes[k].port);

		if (old >= 0 && rc->ctx != NULL) {
			ctx[k] = rc->ctx[old];
			rc->ctx[old] = NULL;
		}
	}
	rcluster_drop_all(rc);
	free(rc->ctx);
	rcluster_map_fini(&rc->map);
	rc->map = *fresh; /* takes fresh's nodes */
	free(fresh);
	rc->ctx = ctx;
	rc->stale = 0;
	return 0;
}

static redisContext *
rcluster_node(struct rcluster *rc, size_t k, char *errstr, size_t errstr_size)
{
	if (rc->ctx[k] == NULL)
		rc->ctx[k] = rc->connect(
		    rc->opaque, rc->map.nodes[k].host, rc->map.nodes[k].port, errstr, errstr_size);
	return rc->ctx[k];
}

struct rcluster *
rcluster_new(const char *seed_host, int seed_port, rcluster_connect_fn *connect, void *opaque,
    char *errstr, size_t errstr_size)
{
	struct rcluster *rc = calloc(1, sizeof(*rc));

	if (rc == NULL) {
		snprintf(errstr, errstr_size, "redis cluster: out of memory");
		return NULL;
	}
	snprintf(rc->seed_host, sizeof(rc->seed_host), "%s", seed_host);
	rc->seed_port = seed_port;
	rc->connect = connect;
	rc->opaque = opaque;
	rcluster_map_fini(&rc->map);
	if (rcluster_connect_all(rc, errstr, errstr_size) < 0) {
		rcluster_free(rc);
		return NULL;
	}
	return rc;
}

void
rcluster_reset(struct rcluster *rc)
{
	rcluster_drop_all(rc);
}

int
rcluster_connect_all(struct rcluster *rc, char *errstr, size_t errstr_size)
{
	if (rcluster_refresh(rc, errstr, errstr_size) < 0)
		return -1;
	for (size_t k = 0; k < rc->map.n_nodes; k++)
		if (rcluster_node(rc, k, errstr, errstr_size) == NULL) {
			rcluster_drop_all(rc);
			return -1;
		}
	return 0;
}

void
rcluster_free(struct rcluster *rc)
{
	if (rc == NULL)
		return;
	rcluster_drop_all(rc);
	free(rc->ctx);
	rcluster_map_fini(&rc->map);
	free(rc->pending);
	free(rc->next);
	free(rc->node_of);
	free(rc->redir);
	free(rc->bad);
	free(rc);
}

static int
rcluster_grow(struct rcluster *rc, size_t n)
{
	size_t *p, *q;
	struct rcluster_redir *t;
	uint16_t *o;

	if (n <= rc->cap)
		return 0;
	if ((p = realloc(rc->pending, n * sizeof(*p))) != NULL)
		rc->pending = p;
	if ((q = realloc(rc->next, n * sizeof(*q))) != NULL)
		rc->next = q;
	if ((t = realloc(rc->redir, n * sizeof(*t))) != NULL)
		rc->redir = t;
	if ((o = realloc(rc->node_of, n * sizeof(*o))) != NULL)
		rc->node_of = o;
	if (p == NULL || q == NULL || t == NULL || o == NULL)
		return -1;
	rc->cap = n;
	return 0;
}

/* Appends cmd to c's pipeline: its preformatted bytes, or its arguments. */
static int
rcluster_append(redisContext *c, const struct rcluster_cmd *cmd)
{
	if (cmd->formatted != NULL)
		return redisAppendFormattedCommand(c, cmd->formatted, cmd->formatted_len);
	return redisAppendCommandArgv(c, cmd->argc, cmd->argv, cmd->argvlen);
}

static int
rcluster_append_wait(redisContext *c, const struct rcluster_wait *wait)
{
	return redisAppendCommand(c, "WAIT %d %d", wait->replicas, wait->timeout_ms);
}

/*
 * Reads a WAIT reply: 0 when at least wait->replicas acknowledged; -1 with
 * errstr (c->err set: the connection failed; else too few replicas or an
 * error reply, the connection still usable).
 */
static int
rcluster_read_wait(
    redisContext *c, const struct rcluster_wait *wait, char *errstr, size_t errstr_size)
{
	redisReply *r = NULL;
	int ret = -1;

	if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL) {
		snprintf(errstr, errstr_size, "WAIT: %s", c->errstr[0] ? c->errstr : "no reply");
		return -1;
	}
	if (r->type == REDIS_REPLY_INTEGER && r->integer >= wait->replicas)
		ret = 0;
	else if (r->type == REDIS_REPLY_INTEGER)
		snprintf(errstr, errstr_size, "WAIT: %lld of %d replicas acknowledged within %d ms",
		    r->integer, wait->replicas, wait->timeout_ms);
	else
		snprintf(errstr, errstr_size, "WAIT: %s",
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	freeReplyObject(r);
	return ret;
}

/*
 * ASKING and cmd on the node host:port, synchronously; the command's reply
 * into *out. 0, or -1 (errstr) when the node cannot be reached.
 */
static int
rcluster_asking(struct rcluster *rc, const struct rcluster_node *to, const struct rcluster_cmd *cmd,
    const struct rcluster_wait *wait, redisReply **out, char *errstr, size_t errstr_size)
{
	long k = rcluster_find(rc, to->host, to->port);
	redisContext *c = k >= 0 ? rcluster_node(rc, (size_t)k, errstr, errstr_size)
				 : rc->connect(rc->opaque, to->host, to->port, errstr, errstr_size);
	void *asking = NULL, *reply = NULL;

	if (c == NULL)
		return -1;
	if (redisAppendCommand(c, "ASKING") != REDIS_OK || rcluster_append(c, cmd) != REDIS_OK ||
	    (wait != NULL && rcluster_append_wait(c, wait) != REDIS_OK) ||
	    redisGetReply(c, &asking) != REDIS_OK || redisGetReply(c, &reply) != REDIS_OK) {
		snprintf(errstr, errstr_size, "redis cluster: %s:%d: %s", to->host, to->port,
		    c->errstr[0] ? c->errstr : "ASKING failed");
		freeReplyObject(asking);
		freeReplyObject(reply);
		redisFree(c);
		if (k >= 0)
			rc->ctx[k] = NULL;
		rc->stale = 1;
		return -1;
	}
	freeReplyObject(asking);
	if (wait != NULL && rcluster_read_wait(c, wait, errstr, errstr_size) < 0) {
		if (c->err)
			snprintf(errstr, errstr_size, "redis cluster: %s:%d: %s", to->host,
			    to->port, c->errstr);
		freeReplyObject(reply);
		if (k < 0 || c->err) {
			redisFree(c);
			if (k >= 0)
				rc->ctx[k] = NULL;
			rc->stale = 1;
		}
		return -1;
	}
	*out = reply;
	if (k < 0)
		redisFree(c);
	return 0;
}

/* Slot slot is served by master to from now on (a MOVED reply said so). */
static int
rcluster_set_owner(struct rcluster *rc, uint16_t slot, const struct rcluster_node *to)
{
	long k = rcluster_find(rc, to->host, to->port);

	if (k < 0) {
		redisContext **ctx = realloc(rc->ctx, (rc->map.n_nodes + 1) * sizeof(*ctx));

		if (ctx == NULL)
			return -1;
		rc->ctx = ctx;
		k = rcluster_map_node(&rc->map, to->host, to->port);
		if (k < 0)
			return -1;
		rc->ctx[k] = NULL;
	}
	rc->map.owner[slot] = (uint16_t)k;
	return 0;
}

/*
 * Master k failed (a connection or protocol error): its connection dropped
 * and the map to be read again. The first failure of a call is kept in errstr.
 */
static void
rcluster_fail_node(
    struct rcluster *rc, size_t k, const char *why, int *noted, char *errstr, size_t errstr_size)
{
	if (!*noted)
		snprintf(errstr, errstr_size, "redis cluster: %s:%d: %s", rc->map.nodes[k].host,
		    rc->map.nodes[k].port, why[0] ? why : "connection lost");
	*noted = 1;
	if (rc->ctx[k] != NULL)
		redisFree(rc->ctx[k]);
	rc->ctx[k] = NULL;
	rc->bad[k] = RCLUSTER_BAD;
	rc->stale = 1;
	rc->failures++;
}

/* Master k's replicas did not acknowledge (WAIT): its connection stays, its replies do not count. */
static void
rcluster_unacked(
    struct rcluster *rc, size_t k, const char *why, int *noted, char *errstr, size_t errstr_size)
{
	if (!*noted)
		snprintf(errstr, errstr_size, "redis cluster: %s:%d: %s", rc->map.nodes[k].host,
		    rc->map.nodes[k].port, why);
	*noted = 1;
	rc->bad[k] = RCLUSTER_UNACKED;
}

int
rcluster_run(struct rcluster *rc, const struct rcluster_cmd *cmds, size_t n,
    const struct rcluster_wait *wait, redisReply **replies, char *errstr, size_t errstr_size)
{
	size_t n_pending = n, n_failed = 0;
	int noted = 0;
	char scratch[256]; /* errors after the first */

	for (size_t i = 0; i < n; i++)
		replies[i] = NULL;
	if (rcluster_grow(rc, n) < 0) {
		snprintf(errstr, errstr_size, "redis cluster: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		rc->pending[i] = i;
	for (int round = 0; round < RCLUSTER_ROUNDS && n_pending > 0; round++) {
		size_t n_next = 0, n_redir = 0;
		unsigned char *bad;

		if (rc->stale &&
		    rcluster_refresh(
			rc, noted ? scratch : errstr, noted ? sizeof(scratch) : errstr_size) < 0)
			break; /* no node answers: what is pending got no reply */
		if ((bad = calloc(rc->map.n_nodes ? rc->map.n_nodes : 1, 1)) == NULL) {
			snprintf(errstr, errstr_size, "redis cluster: out of memory");
			return -1;
		}
		free(rc->bad);
		rc->bad = bad;
		/* Append every pending command to its slot's master. */
		for (size_t j = 0; j < n_pending; j++) {
			size_t i = rc->pending[j];
			uint16_t k = rc->map.owner[cmds[i].slot];
			redisContext *c;
			char why[256] = "";

			rc->node_of[i] = k;
			if (k == RCLUSTER_NO_NODE) {
				if (!noted)
					snprintf(errstr, errstr_size,
					    "redis cluster: slot %u is served by no master",
					    cmds[i].slot);
				noted = 1;
				rc->stale = 1;
				rc->failures++;
				continue;
			}
			if (rc->bad[k] == RCLUSTER_BAD)
				continue;
			c = rcluster_node(rc, k, why, sizeof(why));
			if (c == NULL || rcluster_append(c, &cmds[i]) != REDIS_OK)
				rcluster_fail_node(rc, k, c != NULL ? c->errstr : why, &noted,
				    errstr, errstr_size);
			else
				rc->bad[k] = RCLUSTER_USED;
		}
		/* WAIT after the commands of every master that got some, then every
		 * master's pipeline on the wire before any reply is read. */
		for (size_t k = 0; k < rc->map.n_nodes; k++) {
			int done = rc->ctx[k] == NULL;

			if (wait != NULL && rc->bad[k] == RCLUSTER_USED &&
			    rcluster_append_wait(rc->ctx[k], wait) != REDIS_OK) {
				rcluster_fail_node(
				    rc, k, rc->ctx[k]->errstr, &noted, errstr, errstr_size);
				continue;
			}
			while (!done)
				if (redisBufferWrite(rc->ctx[k], &done) != REDIS_OK) {
					rcluster_fail_node(
					    rc, k, rc->ctx[k]->errstr, &noted, errstr, errstr_size);
					break;
				}
		}
		/*
		 * Replies, master by master, each in its append order, then its WAIT.
		 * A command of a master that failed (or whose replicas did not
		 * acknowledge) has no reply (NULL): it may or may not have run.
		 */
		for (size_t k = 0; k < rc->map.n_nodes; k++) {
			if (rc->bad[k] != RCLUSTER_USED)
				continue;
			for (size_t j = 0; j < n_pending; j++) {
				size_t i = rc->pending[j];
				struct rcluster_node to;
				uint16_t slot;
				void *r = NULL;
				enum rcluster_redirect kind;

				if (rc->node_of[i] != k || rc->bad[k] == RCLUSTER_BAD)
					continue;
				if (redisGetReply(rc->ctx[k], &r) != REDIS_OK || r == NULL) {
					rcluster_fail_node(rc, k,
					    rc->ctx[k]->errstr[0] ? rc->ctx[k]->errstr : "no reply",
					    &noted, errstr, errstr_size);
					continue;
				}
				replies[i] = r;
				if (replies[i]->type != REDIS_REPLY_ERROR)
					continue;
				kind = rcluster_redirect_parse(
				    replies[i]->str, rc->map.nodes[k].host, &slot, &to);
				if (kind == RCLUSTER_NOT_REDIRECT &&
				    (strncmp(replies[i]->str, "CLUSTERDOWN", 11) == 0 ||
					strncmp(replies[i]->str, "TRYAGAIN", 8) == 0)) {
					/* Not run: a slot of the cluster is unserved (by default
					 * every master refuses then) or is moving. */
					if (!noted)
						snprintf(errstr, errstr_size,
						    "redis cluster: %s:%d: %s",
						    rc->map.nodes[k].host, rc->map.nodes[k].port,
						    replies[i]->str);
					noted = 1;
					rc->stale = 1;
					rc->failures++;
					freeReplyObject(replies[i]);
					replies[i] = NULL;
					continue;
				}
				if (kind == RCLUSTER_NOT_REDIRECT)
					continue;
				freeReplyObject(replies[i]);
				replies[i] = NULL;
				/* Handled once every connection is drained (below). */
				rc->redir[n_redir++] = (struct rcluster_redir){ i, slot, kind, to };
			}
			if (wait != NULL && rc->bad[k] == RCLUSTER_USED) {
				char why[256] = "";

				if (rcluster_read_wait(rc->ctx[k], wait, why, sizeof(why)) < 0) {
					if (rc->ctx[k]->err)
						rcluster_fail_node(rc, k, rc->ctx[k]->errstr,
						    &noted, errstr, errstr_size);
					else
						rcluster_unacked(
						    rc, k, why, &noted, errstr, errstr_size);
				}
			}
		}
		/* What a lost or unacknowledged master answered does not count. */
		for (size_t j = 0; j < n_pending; j++) {
			size_t i = rc->pending[j];
			uint16_t k = rc->node_of[i];

			if (k != RCLUSTER_NO_NODE && rc->bad[k] >= RCLUSTER_BAD && wait != NULL) {
				freeReplyObject(replies[i]);
				replies[i] = NULL;
			}
		}
		/*
		 * ASK: ASKING + the command at the node it named, one at a time.
		 * MOVED: sent again next round, to the node it named (set in the map
		 * after the map is read again: the node that answered knows better
		 * than gossip may have told the others yet).
		 */
		for (size_t q = 0; q < n_redir; q++) {
			struct rcluster_redir *x = &rc->redir[q];
			struct rcluster_node to;
			uint16_t slot;

			if (x->kind == RCLUSTER_MOVED) {
				rc->moved++;
				rc->stale = 1;
				rc->next[n_next++] = x->item;
				continue;
			}
			rc->ask++;
			if (rcluster_asking(rc, &x->to, &cmds[x->item], wait, &replies[x->item],
				noted ? scratch : errstr,
				noted ? sizeof(scratch) : errstr_size) < 0) {
				noted = 1;
				continue;
			}
			if (replies[x->item]->type == REDIS_REPLY_ERROR &&
			    rcluster_redirect_parse(replies[x->item]->str, x->to.host, &slot,
				&to) != RCLUSTER_NOT_REDIRECT) {
				freeReplyObject(replies[x->item]);
				replies[x->item] = NULL;
				rc->stale = 1;
				rc->next[n_next++] = x->item;
			}
		}
		if (rc->stale &&
		    rcluster_refresh(
			rc, noted ? scratch : errstr, noted ? sizeof(scratch) : errstr_size) < 0) {
			noted = 1;
			break;
		}
		for (size_t q = 0; q < n_redir; q++)
			if (rc->redir[q].kind == RCLUSTER_MOVED &&
			    rcluster_set_owner(rc, rc->redir[q].slot, &rc->redir[q].to) < 0) {
				snprintf(errstr, errstr_size, "redis cluster: out of memory");
				return -1;
			}
		memcpy(rc->pending, rc->next, n_next * sizeof(*rc->pending));
		n_pending = n_next;
	}
	for (size_t i = 0; i < n; i++)
		n_failed += replies[i] == NULL;
	if (n_failed > 0 && !noted)
		snprintf(errstr, errstr_size,
		    "redis cluster: %zu commands still redirected after %d rounds", n_failed,
		    RCLUSTER_ROUNDS);
	return (int)n_failed;
}

size_t
rcluster_master_slots(const struct rcluster *rc, uint16_t *lowest, size_t cap)
{
	size_t n = 0;

	for (size_t k = 0; k < rc->map.n_nodes; k++) {
		for (uint32_t s = 0; s < RCLUSTER_SLOTS; s++)
			if (rc->map.owner[s] == k) {
				if (n < cap)
					lowest[n] = (uint16_t)s;
				n++;
				break;
			}
	}
	return n;
}

size_t
rcluster_slot_tag(uint16_t slot, char *buf, size_t size)
{
	for (unsigned long i = 0;; i++) {
		int len = snprintf(buf, size, "%lu", i);

		if (len < 0 || (size_t)len >= size)
			return 0;
		if (rcluster_crc16(buf, (size_t)len) % RCLUSTER_SLOTS == slot)
			return (size_t)len;
	}
}

int
rcluster_check_all(struct rcluster *rc, char *errstr, size_t errstr_size)
{
	rc->stale = 1;
	if (rcluster_refresh(rc, errstr, errstr_size) < 0)
		return -1;
	if (rcluster_map_unserved(&rc->map) > 0) {
		snprintf(errstr, errstr_size, "redis cluster: %zu slots served by no master",
		    rcluster_map_unserved(&rc->map));
		return -1;
	}
	for (size_t k = 0; k < rc->map.n_nodes; k++)
		if (rcluster_node(rc, k, errstr, errstr_size) == NULL) {
			rc->stale = 1;
			return -1;
		}
	return 0;
}

struct redisContext *
rcluster_take(struct rcluster *rc, uint16_t slot, char *errstr, size_t errstr_size)
{
	uint16_t k = rc->map.owner[slot];
	redisContext *c;

	if (k == RCLUSTER_NO_NODE) {
		snprintf(
		    errstr, errstr_size, "redis cluster: slot %u is served by no master", slot);
		return NULL;
	}
	c = rcluster_node(rc, k, errstr, errstr_size);
	rc->ctx[k] = NULL;
	return c;
}
