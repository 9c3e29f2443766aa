/*
 * daemon/redis_cluster.c: key slots against the cluster specification's
 * examples and hash-tag rules (the server's own CLUSTER KEYSLOT is compared
 * in tests/integration/54-redis-cluster.py), CLUSTER SLOTS and CLUSTER
 * SHARDS replies parsed into a slot map (malformed ones refused with the
 * entry or shard named), and MOVED / ASK redirections read.
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

/* RESP text, appended: an array header, a bulk string, an integer. */
static char resp[8192];
static size_t resp_len;

static void
r_add(int w)
{
	if (w > 0 && (size_t)w < sizeof(resp) - resp_len)
		resp_len += (size_t)w;
}

static void
r_arr_hdr(long long n)
{
	r_add(snprintf(resp + resp_len, sizeof(resp) - resp_len, "*%lld\r\n", n));
}

static void
r_bulk(const char *s)
{
	r_add(snprintf(resp + resp_len, sizeof(resp) - resp_len, "$%zu\r\n%s\r\n", strlen(s), s));
}

static void
r_num(long long n)
{
	r_add(snprintf(resp + resp_len, sizeof(resp) - resp_len, ":%lld\r\n", n));
}

/* One node map of CLUSTER SHARDS (7 fields). */
static void
r_node(const char *endpoint, long long port, const char *role, const char *health)
{
	r_arr_hdr(14);
	r_bulk("id");
	r_bulk("0123456789abcdef0123456789abcdef01234567");
	r_bulk("port");
	r_num(port);
	r_bulk("ip");
	r_bulk("127.0.0.200");
	r_bulk("endpoint");
	r_bulk(endpoint);
	r_bulk("role");
	r_bulk(role);
	r_bulk("replication-offset");
	r_num(14);
	r_bulk("health");
	r_bulk(health);
}

/* A shard header: slots (n_ranges pairs from ranges[]) and the nodes array of n_nodes. */
static void
r_shard(const long long *ranges, int n_ranges, int n_nodes)
{
	r_arr_hdr(4);
	r_bulk("slots");
	r_arr_hdr(2 * n_ranges);
	for (int i = 0; i < 2 * n_ranges; i++)
		r_num(ranges[i]);
	r_bulk("nodes");
	r_arr_hdr(n_nodes);
}

static redisReply *
r_parse(void)
{
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	if (rd != NULL && redisReaderFeed(rd, resp, resp_len) == REDIS_OK)
		(void)redisReaderGetReply(rd, &r);
	redisReaderFree(rd);
	resp_len = 0;
	return r;
}

static int
test_shards(void)
{
	int fails = 0;
	static struct rcluster_map map;
	static const long long a[] = { 0, 5460 }, b[] = { 5461, 8000, 9000, 10922 },
			       c[] = { 8001, 8999, 10923, 16383 }, bad[] = { 9000, 100000 };
	redisReply *r;
	char err[256];

	/* As Redis 7.0 answers after a failover: the failed master a shard of its own, no slots. */
	r_arr_hdr(4);
	r_shard(a, 1, 2);
	r_node("127.0.0.1", 7001, "master", "online");
	r_node("127.0.0.1", 7004, "replica", "online");
	r_shard(b, 2, 2);
	r_node("127.0.0.9", 7005, "replica", "online");
	r_node("", 7002, "master", "online");
	r_shard(NULL, 0, 1);
	r_node("127.0.0.4", 7006, "master", "fail");
	r_shard(c, 2, 1);
	r_node("127.0.0.3", 7003, "master", "online");
	r = r_parse();
	memset(&map, 0, sizeof(map));
	CHECK(r != NULL && rcluster_map_parse_shards(r, "10.0.0.9", &map, err, sizeof(err)) == 0,
	    "CLUSTER SHARDS of 3 masters and a failed one parsed");
	CHECK(map.n_nodes == 3 && rcluster_map_unserved(&map) == 0,
	    "3 masters (the slotless failed one skipped), every slot served");
	CHECK(map.nodes[map.owner[0]].port == 7001 && map.nodes[map.owner[5460]].port == 7001 &&
		map.nodes[map.owner[9000]].port == 7002 &&
		map.nodes[map.owner[8500]].port == 7003 && map.nodes[map.owner[16383]].port == 7003,
	    "every range of a shard goes to its master, not its replica");
	CHECK(strcmp(map.nodes[map.owner[6000]].host, "10.0.0.9") == 0,
	    "an empty endpoint is the seed's host");
	freeReplyObject(r);

	r_arr_hdr(2);
	r_shard(a, 1, 1);
	r_node("127.0.0.1", 7001, "master", "online");
	r_shard(bad, 1, 1);
	r_node("127.0.0.2", 7002, "master", "online");
	r = r_parse();
	CHECK(r != NULL && rcluster_map_parse_shards(r, "h", &map, err, sizeof(err)) == -1 &&
		strstr(err, "shard 1") != NULL && strstr(err, "9000-100000") != NULL &&
		map.n_nodes == 0,
	    "a slot range past 16383 refused, shard named, map empty");
	printf("  (%s)\n", err);
	freeReplyObject(r);

	r_arr_hdr(1);
	r_shard(a, 1, 1);
	r_node("127.0.0.1", 7004, "replica", "online");
	r = r_parse();
	CHECK(r != NULL && rcluster_map_parse_shards(r, "h", &map, err, sizeof(err)) == -1 &&
		strstr(err, "no master") != NULL,
	    "a shard with slots and no master refused");
	freeReplyObject(r);
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
	int fails = test_keyslot() + test_map() + test_shards() + test_redirect();

	printf("%s\n", fails ? "FAIL" : "redis_cluster: all passed");
	return fails ? 1 : 0;
}
