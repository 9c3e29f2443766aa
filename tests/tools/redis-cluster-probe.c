/*
 * Driver of tests/integration/54-redis-cluster.py: daemon/redis_cluster.c
 * against a real Redis Cluster. Reads CLUSTER SLOTS from the seed into a
 * slot map (and CLUSTER SHARDS: "shards_same 1" when it gives the same), then for each key on stdin (one per line, hex-encoded so any
 * byte can be tested) prints its slot and the master serving it, and sends
 * GET for the key to a master that does not serve it: the MOVED reply must
 * parse and name that slot and master.
 *   redis-cluster-probe HOST PORT < keys.hex
 * Prints "nodes N unserved U", then "KEYHEX SLOT HOST:PORT MOVED_OK" per key.
 * Exit 0 when the map loaded (the test compares the rest with the server).
 *   redis-cluster-probe HOST PORT --incr-until FILE < keys.hex
 * Through rcluster_run (the cluster pipeline): rounds of one INCR per key,
 * all keys of a round in one pipelined call, until FILE exists (the test
 * reshards meanwhile); every reply must be the round's number (each INCR
 * ran once). Prints "rounds R bad B moved M ask A"; exit 0 when every call
 * succeeded.
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis_cluster.h"

static struct rcluster_map map, shards;

/* 1 when a and b send every slot to the same host:port. */
static int
same_map(const struct rcluster_map *a, const struct rcluster_map *b)
{
	for (size_t s = 0; s < RCLUSTER_SLOTS; s++) {
		const struct rcluster_node *x, *y;

		if ((a->owner[s] == RCLUSTER_NO_NODE) != (b->owner[s] == RCLUSTER_NO_NODE))
			return 0;
		if (a->owner[s] == RCLUSTER_NO_NODE)
			continue;
		x = &a->nodes[a->owner[s]];
		y = &b->nodes[b->owner[s]];
		if (x->port != y->port || strcmp(x->host, y->host) != 0)
			return 0;
	}
	return 1;
}

static redisContext *
probe_connect(void *opaque, const char *host, int port, char *errstr, size_t errstr_size)
{
	struct timeval tv = { 5, 0 };
	redisContext *c = redisConnectWithTimeout(host, port, tv);

	(void)opaque;
	if (c == NULL || c->err) {
		snprintf(errstr, errstr_size, "connect %s:%d: %s", host, port,
		    c != NULL ? c->errstr : "out of memory");
		redisFree(c);
		return NULL;
	}
	return c;
}

/* --incr: rounds of pipelined INCRs over n keys through rcluster_run. */
static int
probe_incr(const char *host, int port, char **keys, size_t *lens, size_t n, const char *stop)
{
	char err[512];
	struct rcluster *rc = rcluster_new(host, port, probe_connect, NULL, err, sizeof(err));
	struct rcluster_cmd *cmds = calloc(n, sizeof(*cmds));
	const char **argv = calloc(2 * n, sizeof(*argv));
	size_t *argvlen = calloc(2 * n, sizeof(*argvlen));
	redisReply **replies = calloc(n, sizeof(*replies));
	uint64_t moved, ask, bad = 0;
	int ret = 0;

	if (rc == NULL || cmds == NULL || argv == NULL || argvlen == NULL || replies == NULL) {
		fprintf(stderr, "redis-cluster-probe: %s\n", rc == NULL ? err : "out of memory");
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		argv[2 * i] = "INCR";
		argvlen[2 * i] = 4;
		argv[2 * i + 1] = keys[i];
		argvlen[2 * i + 1] = lens[i];
		cmds[i] = (struct rcluster_cmd){ .argc = 2,
			.argv = argv + 2 * i,
			.argvlen = argvlen + 2 * i,
			.slot = rcluster_keyslot(keys[i], lens[i]) };
	}
	long r = 0;

	while (ret == 0 && access(stop, F_OK) != 0) {
		r++;
		if (rcluster_run(rc, cmds, n, NULL, replies, err, sizeof(err)) != 0) {
			fprintf(stderr, "redis-cluster-probe: round %ld: %s\n", r, err);
			ret = 1;
		}
		for (size_t i = 0; i < n; i++) {
			if (replies[i] == NULL || replies[i]->type != REDIS_REPLY_INTEGER ||
			    replies[i]->integer != r) {
				if (bad++ < 5)
					fprintf(stderr,
					    "redis-cluster-probe: round %ld key %zu: %s\n", r, i,
					    replies[i] == NULL ? "no reply"
						: replies[i]->type == REDIS_REPLY_ERROR
						? replies[i]->str
						: "not the round's count");
			}
			freeReplyObject(replies[i]);
		}
	}
	rcluster_redirects(rc, &moved, &ask);
	printf(
	    "rounds %ld bad %" PRIu64 " moved %" PRIu64 " ask %" PRIu64 "\n", r, bad, moved, ask);
	rcluster_free(rc);
	free(cmds);
	free(argv);
	free(argvlen);
	free(replies);
	return ret;
}

/* Hex line into key; returns its length, or -1 when not hex. */
static long
unhex(const char *line, char *key, size_t cap)
{
	size_t n = strcspn(line, "\r\n");

	if (n % 2 != 0 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(line + 2 * i, "%2x", &v) != 1)
			return -1;
		key[i] = (char)v;
	}
	return (long)(n / 2);
}

int
main(int argc, char **argv)
{
	struct timeval tv = { 5, 0 };
	redisContext *seed, **conns;
	redisReply *r;
	char err[512], line[4096], key[2048];

	if (argc == 5 && strcmp(argv[3], "--incr-until") == 0) {
		size_t n = 0, cap = 0;
		char **keys = NULL;
		size_t *lens = NULL;

		while (fgets(line, sizeof(line), stdin) != NULL) {
			long len = unhex(line, key, sizeof(key));

			if (len < 0)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 1024;
				keys = realloc(keys, cap * sizeof(*keys));
				lens = realloc(lens, cap * sizeof(*lens));
				if (keys == NULL || lens == NULL)
					return 1;
			}
			keys[n] = malloc((size_t)len + 1);
			if (keys[n] == NULL)
				return 1;
			memcpy(keys[n], key, (size_t)len);
			lens[n++] = (size_t)len;
		}
		int rc = probe_incr(argv[1], atoi(argv[2]), keys, lens, n, argv[4]);
		for (size_t i = 0; i < n; i++)
			free(keys[i]);
		free(keys);
		free(lens);
		return rc;
	}
	if (argc != 3) {
		fprintf(stderr,
		    "usage: redis-cluster-probe HOST PORT [--incr-until FILE] < keys.hex\n");
		return 64;
	}
	seed = redisConnectWithTimeout(argv[1], atoi(argv[2]), tv);
	if (seed == NULL || seed->err) {
		fprintf(
		    stderr, "redis-cluster-probe: connect: %s\n", seed ? seed->errstr : "ENOMEM");
		return 1;
	}
	r = redisCommand(seed, "CLUSTER SLOTS");
	if (rcluster_map_parse(r, argv[1], &map, err, sizeof(err)) != 0) {
		fprintf(stderr, "redis-cluster-probe: %s\n", err);
		return 1;
	}
	freeReplyObject(r);
	r = redisCommand(seed, "CLUSTER SHARDS");
	if (rcluster_map_parse_shards(r, argv[1], &shards, err, sizeof(err)) != 0) {
		fprintf(stderr, "redis-cluster-probe: %s\n", err);
		return 1;
	}
	freeReplyObject(r);
	printf("nodes %zu unserved %zu shards_same %d\n", map.n_nodes, rcluster_map_unserved(&map),
	    same_map(&map, &shards));
	rcluster_map_fini(&shards);
	conns = calloc(map.n_nodes, sizeof(*conns));
	for (size_t k = 0; conns != NULL && k < map.n_nodes; k++) {
		conns[k] = redisConnectWithTimeout(map.nodes[k].host, map.nodes[k].port, tv);
		if (conns[k] == NULL || conns[k]->err) {
			fprintf(stderr, "redis-cluster-probe: connect %s:%d failed\n",
			    map.nodes[k].host, map.nodes[k].port);
			return 1;
		}
	}
	while (fgets(line, sizeof(line), stdin) != NULL) {
		long len = unhex(line, key, sizeof(key));
		uint16_t slot, moved_slot = 0;
		const struct rcluster_node *owner;
		struct rcluster_node to;
		int moved_ok = 0;

		if (len < 0)
			continue;
		slot = rcluster_keyslot(key, (size_t)len);
		if (map.owner[slot] == RCLUSTER_NO_NODE) {
			printf("%.*s %u none 0\n", (int)strcspn(line, "\r\n"), line, slot);
			continue;
		}
		owner = &map.nodes[map.owner[slot]];
		if (map.n_nodes > 1) {
			size_t other = (map.owner[slot] + 1u) % map.n_nodes;

			r = redisCommand(conns[other], "GET %b", key, (size_t)len);
			moved_ok = r != NULL && r->type == REDIS_REPLY_ERROR &&
			    rcluster_redirect_parse(r->str, map.nodes[other].host, &moved_slot,
				&to) == RCLUSTER_MOVED &&
			    moved_slot == slot && to.port == owner->port &&
			    strcmp(to.host, owner->host) == 0;
			freeReplyObject(r);
		}
		printf("%.*s %u %s:%d %d\n", (int)strcspn(line, "\r\n"), line, slot, owner->host,
		    owner->port, moved_ok);
	}
	for (size_t k = 0; k < map.n_nodes; k++)
		redisFree(conns[k]);
	free(conns);
	rcluster_map_fini(&map);
	redisFree(seed);
	return 0;
}
