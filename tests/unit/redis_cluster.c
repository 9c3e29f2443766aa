/*
 * daemon/redis_cluster.c: key slots against the cluster specification's
 * examples and hash-tag rules (the server's own CLUSTER KEYSLOT is compared
 * in tests/integration/54-redis-cluster.py), CLUSTER SLOTS replies parsed
 * into a slot map (malformed ones refused with the entry named), and MOVED /
 * ASK redirections read.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "redis_cluster.h"

static uint16_t
slot_of(const char *key)
{
	return rcluster_keyslot(key, strlen(key));
}

static int
test_keyslot(void)
{
	int fails = 0;
	/* CRC16/XMODEM's check value: "123456789" -> 0x31C3. */
	CHECK(slot_of("123456789") == 0x31C3 % RCLUSTER_SLOTS, "CRC16/XMODEM check value");
	CHECK(slot_of("foo") == 12182 && slot_of("hello") == 866,
	    "the cluster tutorial's slots (foo 12182, hello 866)");
	CHECK(slot_of("{user1000}.following") == slot_of("user1000") &&
		slot_of("{user1000}.followers") == slot_of("user1000"),
	    "hash tag: only the bytes between { and } count");
	CHECK(slot_of("foo{}{bar}") == rcluster_keyslot("foo{}{bar}", 10) &&
		slot_of("foo{}{bar}") != slot_of("bar"),
	    "an empty tag {} hashes the whole key");
	CHECK(slot_of("foo{{bar}}zap") == slot_of("{bar"), "tag of foo{{bar}}zap is {bar");
	CHECK(slot_of("foo{bar}{zap}") == slot_of("bar"), "only the first tag counts");
	CHECK(slot_of("ui:{u-42}:vec") == slot_of("ui:{u-42}:meta") &&
		slot_of("ui:{u-42}:vec") == slot_of("u-42"),
	    "a user's keys share the user's slot");
	CHECK(slot_of("no{tag") != slot_of("tag") && slot_of("no}x{") != slot_of("x"),
	    "an unclosed tag hashes the whole key");
	/* Bytes past a NUL count: keys are binary. */
	CHECK(rcluster_keyslot("a\0b", 3) != rcluster_keyslot("a", 1),
	    "binary keys: length, not NUL");
	return fails;
}

/* A reply tree on the stack: integers, strings, arrays. */
static redisReply *
r_int(redisReply *r, long long v)
{
	memset(r, 0, sizeof(*r));
	r->type = REDIS_REPLY_INTEGER;
	r->integer = v;
	return r;
}

static redisReply *
r_str(redisReply *r, const char *s)
{
	memset(r, 0, sizeof(*r));
	r->type = REDIS_REPLY_STRING;
	r->str = (char *)(uintptr_t)s;
	r->len = strlen(s);
	return r;
}

static redisReply *
r_arr(redisReply *r, redisReply **elems, size_t n)
{
	memset(r, 0, sizeof(*r));
	r->type = REDIS_REPLY_ARRAY;
	r->element = elems;
	r->elements = n;
	return r;
}

/* One CLUSTER SLOTS entry [first, last, [host, port, id]] in storage s[0..6], e[0..5]. */
static redisReply *
r_entry(redisReply *s, redisReply **e, long long first, long long last, const char *host,
    long long port)
{
	e[3] = r_str(&s[3], host);
	e[4] = r_int(&s[4], port);
	e[5] = r_str(&s[5], "0123456789abcdef0123456789abcdef01234567");
	e[0] = r_int(&s[0], first);
	e[1] = r_int(&s[1], last);
	e[2] = r_arr(&s[2], e + 3, 3);
	return r_arr(&s[6], e, 3);
}

static int
test_map(void)
{
	int fails = 0;
	static struct rcluster_map map; /* 32 KiB: not on the stack */
	redisReply st[4][7], top, *el[4][6], *ents[4];
	char err[256];

	ents[0] = r_entry(st[0], el[0], 0, 5460, "127.0.0.1", 7001);
	ents[1] = r_entry(st[1], el[1], 5461, 10922, "127.0.0.2", 7002);
	ents[2] = r_entry(st[2], el[2], 10923, 16383, "", 7003);
	ents[3] =
	    r_entry(st[3], el[3], 100, 200, "127.0.0.1", 7001); /* a second range, same master */
	memset(&map, 0, sizeof(map));
	CHECK(rcluster_map_parse(r_arr(&top, ents, 4), "10.0.0.9", &map, err, sizeof(err)) == 0,
	    "CLUSTER SLOTS of 3 masters parsed");
	CHECK(map.n_nodes == 3 && rcluster_map_unserved(&map) == 0, "3 masters, every slot served");
	CHECK(map.owner[0] == map.owner[5460] && map.owner[5461] == map.owner[10922] &&
		map.owner[5460] != map.owner[5461] && map.owner[10923] != map.owner[10922],
	    "slot ranges map to their masters");
	CHECK(strcmp(map.nodes[map.owner[16383]].host, "10.0.0.9") == 0 &&
		map.nodes[map.owner[16383]].port == 7003,
	    "an empty host is the seed's host");

	/* Refusals name the entry; the map is left empty. */
	ents[1] = r_entry(st[1], el[1], 9000, 100000, "127.0.0.2", 7002);
	CHECK(rcluster_map_parse(r_arr(&top, ents, 3), "h", &map, err, sizeof(err)) == -1 &&
		strstr(err, "entry 1") != NULL && strstr(err, "9000-100000") != NULL &&
		map.n_nodes == 0 && rcluster_map_unserved(&map) == RCLUSTER_SLOTS,
	    "a slot range past 16383 refused, entry named, map empty");
	printf("  (%s)\n", err);
	ents[1] = r_entry(st[1], el[1], 5461, 10922, "127.0.0.2", 0);
	CHECK(rcluster_map_parse(r_arr(&top, ents, 3), "h", &map, err, sizeof(err)) == -1 &&
		strstr(err, "port 0") != NULL,
	    "port 0 refused");
	ents[1] = r_entry(st[1], el[1], 5461, 10922, "127.0.0.2", 7002);
	CHECK(rcluster_map_parse(r_arr(&top, ents, 2), "h", &map, err, sizeof(err)) == 0 &&
		rcluster_map_unserved(&map) == RCLUSTER_SLOTS - 10923,
	    "slots no master serves are counted");
	r_str(&top, "CLUSTERDOWN");
	top.type = REDIS_REPLY_ERROR;
	CHECK(rcluster_map_parse(&top, "h", &map, err, sizeof(err)) == -1 &&
		strstr(err, "CLUSTERDOWN") != NULL,
	    "an error reply is the reason");
	rcluster_map_fini(&map);
	return fails;
}

static int
test_redirect(void)
{
	int fails = 0;
	struct rcluster_node to;
	uint16_t slot = 0;

	CHECK(rcluster_redirect_parse("MOVED 3999 127.0.0.1:6381", "x", &slot, &to) ==
		    RCLUSTER_MOVED &&
		slot == 3999 && strcmp(to.host, "127.0.0.1") == 0 && to.port == 6381,
	    "MOVED slot host:port");
	CHECK(rcluster_redirect_parse("ASK 12 10.1.2.3:7000", "x", &slot, &to) == RCLUSTER_ASK &&
		slot == 12 && strcmp(to.host, "10.1.2.3") == 0 && to.port == 7000,
	    "ASK slot host:port");
	CHECK(rcluster_redirect_parse("MOVED 5 :7004", "127.0.0.7", &slot, &to) == RCLUSTER_MOVED &&
		strcmp(to.host, "127.0.0.7") == 0 && to.port == 7004,
	    "an empty host is the current node's");
	CHECK(rcluster_redirect_parse("MOVED 5 ::1:7004", "x", &slot, &to) == RCLUSTER_MOVED &&
		strcmp(to.host, "::1") == 0 && to.port == 7004,
	    "an IPv6 host keeps its colons");
	CHECK(rcluster_redirect_parse("ERR unknown command", "x", &slot, &to) ==
		    RCLUSTER_NOT_REDIRECT &&
		rcluster_redirect_parse("MOVED 16384 h:1", "x", &slot, &to) ==
		    RCLUSTER_NOT_REDIRECT &&
		rcluster_redirect_parse("MOVED 1 h:70000", "x", &slot, &to) ==
		    RCLUSTER_NOT_REDIRECT &&
		rcluster_redirect_parse("MOVED x h:1", "x", &slot, &to) == RCLUSTER_NOT_REDIRECT,
	    "other errors and malformed redirects are not redirects");
	return fails;
}

int
main(void)
{
	int fails = test_keyslot() + test_map() + test_redirect();

	printf("%s\n", fails ? "FAIL" : "redis_cluster: all passed");
	return fails ? 1 : 0;
}
