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

int
rcluster_map_parse(const struct redisReply *r, const char *seed_host, struct rcluster_map *map,
    char *errstr, size_t errstr_size)
{
	rcluster_map_fini(map);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(errstr, errstr_size, "CLUSTER SLOTS: %s",
		    r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
		return -1;
	}
	for (size_t e = 0; e < r->elements; e++) {
		const redisReply *ent = r->element[e], *master, *host, *port;
		long long first, last;
		long k;

		if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 3 ||
		    ent->element[0]->type != REDIS_REPLY_INTEGER ||
		    ent->element[1]->type != REDIS_REPLY_INTEGER ||
		    ent->element[2]->type != REDIS_REPLY_ARRAY) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SLOTS entry %zu: not [first slot, last slot, master, ...]", e);
			goto fail;
		}
		first = ent->element[0]->integer;
		last = ent->element[1]->integer;
		if (first < 0 || last < first || last >= RCLUSTER_SLOTS) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SLOTS entry %zu: slot range %lld-%lld out of 0-%d", e, first,
			    last, RCLUSTER_SLOTS - 1);
			goto fail;
		}
		master = ent->element[2];
		if (master->elements < 2 || master->element[0]->type != REDIS_REPLY_STRING ||
		    master->element[1]->type != REDIS_REPLY_INTEGER) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SLOTS entry %zu: master is not [host, port, ...]", e);
			goto fail;
		}
		host = master->element[0];
		port = master->element[1];
		if (host->len >= RCLUSTER_MAX_HOST || strcmp(host->str, "?") == 0 ||
		    port->integer <= 0 || port->integer > 65535) {
			snprintf(errstr, errstr_size,
			    "CLUSTER SLOTS entry %zu: master endpoint \"%.64s\" port %lld unusable",
			    e, host->str, port->integer);
			goto fail;
		}
		k = rcluster_map_node(
		    map, host->len > 0 ? host->str : seed_host, (int)port->integer);
		if (k < 0) {
			snprintf(errstr, errstr_size, "CLUSTER SLOTS: out of memory");
			goto fail;
		}
		for (long long s = first; s <= last; s++)
			map->owner[s] = (uint16_t)k;
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
