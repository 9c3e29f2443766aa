/*
 * Driver of tests/integration/20-sink-redis.sh: exercises daemon/sink_redis.c
 * against a real redis-server and checks every key with plain hiredis reads
 * against the encodings of schemas/redis.md.
 *   sink_redis HOST PORT KEY_PREFIX [ACL_USER ACL_PASSWORD]
 * Exit 0 when every check passed.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "../unit/fixture.h"
#include "config.h"
#include "sink_redis.h"
#include "state.h"

#define DIM 8
#define TTL_S 3600

static int fails;

struct ctx {
	const char *host, *port, *prefix;
	char topic[128];
	struct model *m;
	redisContext *rc;          /* plain reader */
};

static struct config *
make_config(const struct ctx *c)
{
	struct config *cfg = config_new();
	char err[256];

	if (cfg == NULL || config_set(cfg, "redis.host", c->host, err, sizeof(err)) < 0 ||
	    config_set(cfg, "redis.port", c->port, err, sizeof(err)) < 0 ||
	    config_set(cfg, "redis.prefix", c->prefix, err, sizeof(err)) < 0 ||
	    config_set(cfg, "topic.events", c->topic, err, sizeof(err)) < 0 ||
	    config_set(cfg, "redis.ttl_s", "3600", err, sizeof(err)) < 0 ||
	    config_set(cfg, "redis.timeout_ms", "2000", err, sizeof(err)) < 0) {
		fprintf(stderr, "config: %s\n", err);
		exit(2);
	}
	return cfg;
}

/* One sink_redis_claim of partition 0; the result, or -1 on a Redis error. */
static int
claim1(struct sink_redis *sink, int fresh, uint64_t *epoch, uint64_t *stored)
{
	char err[256];
	struct sink_claim cl = { .partition = 0, .fresh = fresh, .epoch = *epoch };

	if (sink_redis_claim(sink, &cl, 1, err, sizeof(err)) != 0) {
		fprintf(stderr, "claim: %s\n", err);
		return -1;
	}
	*epoch = cl.epoch;
	if (stored != NULL)
		*stored = cl.stored;
	return (int)cl.result;
}

/* The flushed-through marker of partition 0 raised to off with epoch; fenced[0] or -1. */
static int
mark1(struct sink_redis *sink, int64_t off, uint64_t epoch)
{
	char err[256];
	int32_t part = 0;
	int fenced = -1;

	if (sink_redis_mark_flushed(sink, &part, &off, &epoch, &fenced, 1, err, sizeof(err)) != 0)
		fprintf(stderr, "mark_flushed: %s\n", err);
	return fenced;
}

static redisReply *
cmd(struct ctx *c, const char *fmt, const char *key_suffix)
{
	char key[512];
	redisReply *r;

	snprintf(key, sizeof(key), "%s%s", c->prefix, key_suffix);
	r = redisCommand(c->rc, fmt, key);
	if (r == NULL) {
		fprintf(stderr, "redis: %s\n", c->rc->errstr);
		exit(2);
	}
	return r;
}

/* A state for one user with a few events applied and a given marker. */
static struct user_state *
make_state(struct ctx *c, int32_t partition, int64_t offset)
{
	struct user_state *us = state_new(model_hparams(c->m));
	int64_t t = 1700000000000;

	for (uint32_t i = 0; i < 5; i++)
		state_tiers_apply(us, c->m, i * 3, (uint8_t)(MODEL_EV_CLICK + (i % 3)), t + i * 60000);
	for (uint32_t i = 0; i < us->hidden; i++) {
		us->h[i] = 0.1f * (float)i;
		us->c[i] = -0.05f * (float)i;
	}
	us->last_partition = partition;
	us->last_offset = offset;
	us->events_applied = 5;
	us->model_version = model_hparams(c->m)->model_version;
	return us;
}

struct view {
	float vec[DIM];
	uint32_t items[3];
	float scores[3];
};

static void
fill_user(struct sink_user *su, const char *id, struct user_state *us, struct view *v, float base,
    uint64_t epoch)
{
	for (int i = 0; i < DIM; i++)
		v->vec[i] = base + 0.25f * (float)i;
	v->items[0] = 7;
	v->items[1] = 2;
	v->items[2] = 11;
	v->scores[0] = 0.75f;
	v->scores[1] = 0.5f;
	v->scores[2] = -1.25f;
	memset(su, 0, sizeof(*su));
	su->user_id = id;
	su->user_id_len = strlen(id);
	su->us = us;
	su->epoch = epoch;
	su->vec = v->vec;
	su->top_items = v->items;
	su->top_scores = v->scores;
	su->n_top = 3;
	su->result = (enum sink_result)99;
}

static int
flush1(struct sink_redis *sink, struct ctx *c, struct sink_user *su)
{
	char err[256];

	if (sink_redis_flush(sink, c->m, su, 1, NULL, NULL, err, sizeof(err)) < 0) {
		printf("flush error: %s\n", err);
		return -1;
	}
	return (int)su->result;
}

static void
check_user_keys(struct ctx *c, const char *id, const struct user_state *us, const struct view *v,
    uint64_t epoch)
{
	char k[256], expect[512];
	size_t len = 0;
	redisReply *r;
	uint8_t *blob;
	size_t blen;

	snprintf(k, sizeof(k), "{%s}:vec", id);
	r = cmd(c, "GET %s", k);
	CHECK(r->type == REDIS_REPLY_STRING && r->len == DIM * 4, "vec is %d bytes", DIM * 4);
	if (r->type == REDIS_REPLY_STRING && r->len == DIM * 4) {
		int same = 1;
		for (int i = 0; i < DIM; i++) {
			const uint8_t *p = (const uint8_t *)r->str + 4 * i;
			uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			    (uint32_t)p[3] << 24;
			float f;
			memcpy(&f, &bits, 4);
			same &= f == v->vec[i];
		}
		CHECK(same, "vec decodes as little-endian float32 to the written vector");
	}
	freeReplyObject(r);

	snprintf(k, sizeof(k), "{%s}:top", id);
	r = cmd(c, "GET %s", k);
	len = 0;
	len += (size_t)snprintf(expect + len, sizeof(expect) - len, "[");
	for (int i = 0; i < 3; i++) {
		size_t idl;
		const char *iid = model_item_id(c->m, v->items[i], &idl);
		len += (size_t)snprintf(expect + len, sizeof(expect) - len, "%s[\"%.*s\",%.6g]",
		    i ? "," : "", (int)idl, iid, (double)v->scores[i]);
	}
	snprintf(expect + len, sizeof(expect) - len, "]");
	CHECK(r->type == REDIS_REPLY_STRING && strcmp(r->str, expect) == 0, "top JSON %s (want %s)",
	    r->type == REDIS_REPLY_STRING ? r->str : "?", expect);
	freeReplyObject(r);

	snprintf(k, sizeof(k), "{%s}:tiers", id);
	r = cmd(c, "HGETALL %s", k);
	CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 2u * us->n_tiers,
	    "tiers hash has %u entries", (unsigned)us->n_tiers);
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2u * us->n_tiers) {
		int found = 0;
		for (uint16_t t = 0; t < us->n_tiers; t++) {
			char label[32], val[64];
			model_node_label(c->m, us->tiers[t].node, label, sizeof(label));
			snprintf(val, sizeof(val), "%.6g %.6g", (double)us->tiers[t].w_short,
			    (double)us->tiers[t].w_long);
			for (size_t e = 0; e + 1 < r->elements; e += 2)
				if (strcmp(r->element[e]->str, label) == 0 &&
				    strcmp(r->element[e + 1]->str, val) == 0)
					found++;
		}
		CHECK(found == us->n_tiers, "every tier field is '<node label>' -> '<short> <long>'");
	}
	freeReplyObject(r);

	snprintf(k, sizeof(k), "{%s}:meta", id);
	r = cmd(c, "HGETALL %s", k);
	if (r->type == REDIS_REPLY_ARRAY) {
		int64_t now = (int64_t)time(NULL) * 1000, updated = 0;
		char want_off[32], want_ev[32], want_ep[32], want_mv[32], want_part[16];
		int ok_off = 0, ok_ev = 0, ok_ep = 0, ok_mv = 0, ok_part = 0;
		snprintf(want_off, sizeof(want_off), "%" PRId64, us->last_offset);
		snprintf(want_part, sizeof(want_part), "%" PRId32, us->last_partition);
		snprintf(want_ev, sizeof(want_ev), "%" PRIu64, us->events_applied);
		snprintf(want_ep, sizeof(want_ep), "%" PRIu64, epoch);
		snprintf(want_mv, sizeof(want_mv), "%" PRIu64, us->model_version);
		for (size_t e = 0; e + 1 < r->elements; e += 2) {
			const char *f = r->element[e]->str, *val = r->element[e + 1]->str;
			if (strcmp(f, "updated_at") == 0)
				updated = strtoll(val, NULL, 10);
			ok_off |= strcmp(f, "offset") == 0 && strcmp(val, want_off) == 0;
			ok_part |= strcmp(f, "partition") == 0 && strcmp(val, want_part) == 0;
			ok_ev |= strcmp(f, "events_applied") == 0 && strcmp(val, want_ev) == 0;
			ok_ep |= strcmp(f, "epoch") == 0 && strcmp(val, want_ep) == 0;
			ok_mv |= strcmp(f, "model_version") == 0 && strcmp(val, want_mv) == 0;
		}
		CHECK(updated > now - 60000 && updated < now + 60000, "meta updated_at is now (ms)");
		CHECK(ok_off && ok_part, "meta marker partition=%s offset=%s", want_part, want_off);
		CHECK(ok_ev && ok_mv && ok_ep, "meta events_applied, model_version, epoch");
	} else {
		CHECK(0, "meta is a hash");
	}
	freeReplyObject(r);

	snprintf(k, sizeof(k), "{%s}:state", id);
	r = cmd(c, "GET %s", k);
	blen = state_encoded_size(us);
	blob = malloc(blen);
	state_encode(us, blob, blen);
	CHECK(r->type == REDIS_REPLY_STRING && r->len == blen && memcmp(r->str, blob, blen) == 0,
	    "state is state_encode(us) (%zu bytes)", blen);
	free(blob);
	freeReplyObject(r);
}

static void
check_ttls(struct ctx *c, const char *id, long long lo, long long hi)
{
	static const char *const sfx[] = { "vec", "top", "tiers", "meta", "state" };
	int ok = 1;

	for (int i = 0; i < 5; i++) {
		char k[256];
		redisReply *r;
		snprintf(k, sizeof(k), "{%s}:%s", id, sfx[i]);
		r = cmd(c, "TTL %s", k);
		ok &= r->type == REDIS_REPLY_INTEGER && r->integer >= lo && r->integer <= hi;
		freeReplyObject(r);
	}
	CHECK(ok, "TTL of all 5 keys of %s in [%lld, %lld]", id, lo, hi);
}

struct loaded {
	int calls;
	int found[3];
	size_t len[3];
	uint8_t *blob[3];
};

static void
on_state(void *opaque, size_t i, const uint8_t *blob, size_t len)
{
	struct loaded *ld = opaque;

	ld->calls++;
	if (i < 3) {
		ld->found[i] = blob != NULL;
		ld->len[i] = len;
		ld->blob[i] = blob ? malloc(len) : NULL;
		if (blob)
			memcpy(ld->blob[i], blob, len);
	}
}

int
main(int argc, char **argv)
{
	struct ctx c = { 0 };
	char dir[128], cat_path[256], model_path[256], err[512];
	struct fixture_cat fc = { 40, DIM, 3, 2, 42 };
	struct config *cfg;
	struct sink_redis *sink;
	struct user_state *us;
	struct sink_user su;
	struct view v, v2;
	uint64_t e1 = 0, e2 = 0, stored = 0;
	struct sink_redis *sink2 = NULL;
	char k_lease[160], k_epoch[160], k_flushed[200];
	redisReply *r;

	if (argc != 4 && argc != 6) {
		fprintf(stderr, "usage: sink_redis HOST PORT KEY_PREFIX [ACL_USER ACL_PASSWORD]\n");
		return 2;
	}
	c.host = argv[1];
	c.port = argv[2];
	c.prefix = argv[3];
	snprintf(c.topic, sizeof(c.topic), "%sevents", argv[3]);
	if (fixture_tmpdir(dir, sizeof(dir)) < 0)
		return 2;
	snprintf(cat_path, sizeof(cat_path), "%s/cat.icat", dir);
	snprintf(model_path, sizeof(model_path), "%s/model.imdl", dir);
	c.m = fixture_model(cat_path, model_path, &fc, 6, err, sizeof(err));
	if (c.m == NULL) {
		fprintf(stderr, "fixture model: %s\n", err);
		return 2;
	}
	c.rc = redisConnect(c.host, atoi(c.port));
	if (c.rc == NULL || c.rc->err) {
		fprintf(stderr, "cannot connect to redis\n");
		return 2;
	}

	cfg = make_config(&c);
	sink = sink_redis_new(cfg, err, sizeof(err));
	CHECK(sink != NULL, "sink_redis_new (%s)", sink ? "" : err);
	if (sink == NULL)
		return 1;

	/* Partition epochs: the first claim after an assignment. */
	CHECK(claim1(sink, 1, &e1, &stored) == SINK_CLAIM_OWNED && e1 == 1 && stored == 0,
	    "first claim of partition 0 gives epoch 1 (%" PRIu64 "), none stored before", e1);

	/* Tier names. */
	CHECK(sink_redis_write_tier_names(sink, c.m, err, sizeof(err)) == 0, "write_tier_names");
	r = cmd(&c, "HLEN %s", "tiers");
	CHECK(r->integer == model_n_nodes(c.m), "ui:tiers has one field per node (%lld)", r->integer);
	freeReplyObject(r);
	{
		char key[256];
		size_t nl;
		const char *name = model_node_name(c.m, model_n_tier1(c.m), &nl);
		char label[32];
		model_node_label(c.m, model_n_tier1(c.m), label, sizeof(label));
		snprintf(key, sizeof(key), "%stiers", c.prefix);
		r = redisCommand(c.rc, "HGET %s %s", key, label);
		CHECK(r->type == REDIS_REPLY_STRING && strncmp(r->str, name, nl) == 0 && r->len == nl &&
		    strchr(label, '/') != NULL, "level-2 node '%s' named '%.*s'", label, (int)nl, name);
		freeReplyObject(r);
	}

	/* A first write: every key with the documented encoding, TTLs set. */
	us = make_state(&c, 0, 10);
	fill_user(&su, "alice", us, &v, 1.0f, e1);
	CHECK(flush1(sink, &c, &su) == SINK_WRITTEN, "first flush writes");
	check_user_keys(&c, "alice", us, &v, e1);
	check_ttls(&c, "alice", TTL_S - 5, TTL_S);

	/* Stale markers are refused and leave every key unchanged. */
	us->last_offset = 10;
	fill_user(&su, "alice", us, &v2, 9.0f, e1);
	CHECK(flush1(sink, &c, &su) == SINK_REFUSED_STALE, "same offset refused as stale");
	us->last_offset = 4;
	us->events_applied = 99;
	CHECK(flush1(sink, &c, &su) == SINK_REFUSED_STALE, "older offset refused as stale");
	us->last_offset = 10;
	us->events_applied = 5;
	check_user_keys(&c, "alice", us, &v, e1);
	us->last_offset = 11;
	us->events_applied = 6;
	CHECK(flush1(sink, &c, &su) == SINK_WRITTEN, "newer offset written");
	check_user_keys(&c, "alice", us, &v2, e1);

	/*
	 * Ownership (schemas/redis.md "Partition ownership"): a second instance
	 * that Kafka has given the partition waits while our lease is live; our
	 * renewal keeps our epoch.
	 */
	snprintf(k_lease, sizeof(k_lease), "lease:%s:0", c.topic);
	snprintf(k_epoch, sizeof(k_epoch), "epoch:%s:0", c.topic);
	snprintf(k_flushed, sizeof(k_flushed), "flushed:%s:%s:0", cfg->group_id, c.topic);
	sink2 = sink_redis_new(cfg, err, sizeof(err));
	CHECK(sink2 != NULL && strcmp(sink_redis_owner(sink), sink_redis_owner(sink2)) != 0,
	    "a second sink is another owner (%s, %s)", sink_redis_owner(sink),
	    sink2 ? sink_redis_owner(sink2) : err);
	e2 = 0;
	CHECK(claim1(sink2, 1, &e2, &stored) == SINK_CLAIM_BUSY && stored == e1,
	    "a fresh claim while another owner's lease is live is busy, the epoch unchanged");
	CHECK(claim1(sink, 0, &e1, NULL) == SINK_CLAIM_OWNED && e1 == 1,
	    "the owner's renewal keeps its epoch (%" PRIu64 ")", e1);
	/* Our lease runs out (a frozen owner): the new owner claims above us. */
	r = cmd(&c, "DEL %s", k_lease);
	freeReplyObject(r);
	CHECK(claim1(sink2, 1, &e2, &stored) == SINK_CLAIM_OWNED && e2 == e1 + 1 && stored == e1,
	    "after the lease lapsed the new owner takes epoch %" PRIu64, e2);
	/* The stale owner wakes: neither its renewal nor a re-claim can beat the new one. */
	{
		uint64_t e = e1;
		CHECK(claim1(sink, 0, &e, NULL) == SINK_CLAIM_BUSY,
		    "the stale owner's renewal meets the new owner's lease");
		r = cmd(&c, "DEL %s", k_lease);
		freeReplyObject(r);
		e = e1;
		CHECK(claim1(sink, 0, &e, &stored) == SINK_CLAIM_FENCED && stored == e2,
		    "its re-claim with the lease gone is fenced, never above epoch %" PRIu64, e2);
		r = cmd(&c, "GET %s", k_epoch);
		CHECK(r->type == REDIS_REPLY_STRING && strtoull(r->str, NULL, 10) == e2,
		    "the epoch stays the new owner's (%s)", r->type == REDIS_REPLY_STRING ? r->str : "?");
		freeReplyObject(r);
		e = e2;
		CHECK(claim1(sink2, 0, &e, NULL) == SINK_CLAIM_OWNED && e == e2,
		    "the new owner re-takes its lapsed lease with its own epoch");
	}
	/* The flushed-through marker is fenced like a write. */
	CHECK(mark1(sink, 40, e1) == 1, "a marker raise with the old epoch is fenced");
	r = cmd(&c, "GET %s", k_flushed);
	CHECK(r->type == REDIS_REPLY_NIL, "and leaves no marker");
	freeReplyObject(r);
	CHECK(mark1(sink, 40, e2) == 0, "the new owner's marker raise is accepted");
	CHECK(mark1(sink, 30, e2) == 0, "a lower marker is accepted but not applied");
	r = cmd(&c, "GET %s", k_flushed);
	CHECK(r->type == REDIS_REPLY_STRING && strcmp(r->str, "40") == 0,
	    "the marker holds 40, never lowered (%s)", r->type == REDIS_REPLY_STRING ? r->str : "?");
	freeReplyObject(r);
	/* Releasing: only the holder's lease goes. */
	{
		int32_t part = 0;
		uint64_t e = 0;
		CHECK(sink_redis_release(sink, &part, 1, err, sizeof(err)) == 0 &&
			claim1(sink, 1, &e, NULL) == SINK_CLAIM_BUSY,
		    "a release by a non-holder leaves the holder's lease");
		CHECK(sink_redis_release(sink2, &part, 1, err, sizeof(err)) == 0,
		    "the holder releases");
		r = cmd(&c, "EXISTS %s", k_lease);
		CHECK(r->integer == 0, "its lease is gone");
		freeReplyObject(r);
	}
	sink_redis_free(sink2);
	us->last_offset = 12;
	us->events_applied = 7;
	fill_user(&su, "alice", us, &v, 5.0f, e1);
	CHECK(flush1(sink, &c, &su) == SINK_REFUSED_FENCED, "write with the old epoch fenced");
	us->last_offset = 11;
	us->events_applied = 6;
	check_user_keys(&c, "alice", us, &v2, e1);
	us->last_offset = 12;
	us->events_applied = 7;
	fill_user(&su, "alice", us, &v, 5.0f, e2);
	CHECK(flush1(sink, &c, &su) == SINK_WRITTEN, "write with the new epoch accepted");
	check_user_keys(&c, "alice", us, &v, e2);

	/* The script is re-loaded after SCRIPT FLUSH (NOSCRIPT). */
	r = redisCommand(c.rc, "SCRIPT FLUSH");
	freeReplyObject(r);
	us->last_offset = 13;
	CHECK(flush1(sink, &c, &su) == SINK_WRITTEN, "flush after SCRIPT FLUSH re-loads the script");

	/* Loading states: present and absent users, in order. */
	{
		const char *ids[3] = { "alice", "nobody", "alice" };
		size_t lens[3] = { 5, 6, 5 };
		struct loaded ld = { 0 };
		struct user_state *back = state_new(model_hparams(c.m));
		CHECK(sink_redis_load_states(sink, ids, lens, 3, on_state, &ld, err, sizeof(err)) == 0 &&
		    ld.calls == 3, "load_states calls back once per user");
		CHECK(ld.found[0] && !ld.found[1] && ld.found[2], "alice found, nobody absent");
		CHECK(ld.blob[0] && state_decode(back, ld.blob[0], ld.len[0], err, sizeof(err)) == 0 &&
		    back->last_offset == 13 && back->events_applied == 7 && back->n_tiers == us->n_tiers &&
		    back->h[3] == us->h[3], "state round trip through Redis");
		for (int i = 0; i < 3; i++)
			free(ld.blob[i]);
		state_free(back);
	}

	/* Many users in one pipelined flush. */
	{
		enum { N = 300 };
		static struct sink_user many[N];
		static struct view views[N];
		static char ids[N][16];
		struct user_state *st = make_state(&c, 1, 100);
		int all = 1;
		for (int i = 0; i < N; i++) {
			snprintf(ids[i], sizeof(ids[i]), "u%d", i);
			fill_user(&many[i], ids[i], st, &views[i], (float)i, 0);
		}
		CHECK(sink_redis_flush(sink, c.m, many, N, NULL, NULL, err, sizeof(err)) == 0, "flush of %d users", N);
		for (int i = 0; i < N; i++)
			all &= many[i].result == SINK_WRITTEN;
		CHECK(all, "all %d users written", N);
		check_user_keys(&c, "u0", st, &views[0], 0);
		check_user_keys(&c, "u299", st, &views[299], 0);
		state_free(st);
	}

	/* A marker of another partition is not comparable: accepted (schemas/redis.md). */
	us->last_partition = 3;
	us->last_offset = 1;
	fill_user(&su, "alice", us, &v2, 2.0f, 0);
	CHECK(flush1(sink, &c, &su) == SINK_WRITTEN, "marker of another partition accepted");
	sink_redis_free(sink);
	config_free(cfg);

	/* ZSET top format and ttl 0 (keys persist). */
	cfg = make_config(&c);
	config_set(cfg, "redis.top_format", "zset", err, sizeof(err));
	config_set(cfg, "redis.ttl_s", "0", err, sizeof(err));
	sink = sink_redis_new(cfg, err, sizeof(err));
	us->last_offset = 2;
	fill_user(&su, "alice", us, &v, 1.0f, 0);
	CHECK(sink && flush1(sink, &c, &su) == SINK_WRITTEN, "zset flush");
	r = cmd(&c, "ZREVRANGE %s 0 -1 WITHSCORES", "{alice}:top");
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 6) {
		size_t l0, l1, l2;
		const char *i0 = model_item_id(c.m, 7, &l0), *i1 = model_item_id(c.m, 2, &l1),
			   *i2 = model_item_id(c.m, 11, &l2);
		CHECK(strncmp(r->element[0]->str, i0, l0) == 0 && atof(r->element[1]->str) == 0.75 &&
		    strncmp(r->element[2]->str, i1, l1) == 0 && strncmp(r->element[4]->str, i2, l2) == 0 &&
		    atof(r->element[5]->str) == -1.25, "zset holds the top items by score");
	} else {
		CHECK(0, "zset has 3 members");
	}
	freeReplyObject(r);
	check_ttls(&c, "alice", -1, -1);
	sink_redis_free(sink);
	config_free(cfg);

	/* WAIT with a replica that does not exist fails the flush. */
	cfg = make_config(&c);
	config_set(cfg, "redis.wait_replicas", "1", err, sizeof(err));
	config_set(cfg, "redis.wait_timeout_ms", "100", err, sizeof(err));
	sink = sink_redis_new(cfg, err, sizeof(err));
	us->last_offset = 3;
	fill_user(&su, "alice", us, &v, 1.0f, 0);
	CHECK(sink && sink_redis_flush(sink, c.m, &su, 1, NULL, NULL, err, sizeof(err)) < 0 &&
	    strstr(err, "WAIT: 0 of 1 replicas") != NULL, "WAIT shortfall fails the flush: %s", err);
	CHECK(sink && sink_redis_reconnect(sink, err, sizeof(err)) == 0, "reconnect");
	sink_redis_free(sink);
	config_free(cfg);

	/* A closed port fails clearly. */
	cfg = make_config(&c);
	config_set(cfg, "redis.port", "1", err, sizeof(err));
	sink = sink_redis_new(cfg, err, sizeof(err));
	CHECK(sink == NULL && strstr(err, "redis 127.0.0.1:1: ") != NULL, "refused connection: %s", err);
	config_free(cfg);

	/* ACL user and wrong password. */
	if (argc == 6) {
		cfg = make_config(&c);
		config_set(cfg, "redis.user", argv[4], err, sizeof(err));
		config_set(cfg, "redis.password", argv[5], err, sizeof(err));
		sink = sink_redis_new(cfg, err, sizeof(err));
		CHECK(sink != NULL, "AUTH as ACL user %s (%s)", argv[4], sink ? "" : err);
		us->last_offset = 4;
		fill_user(&su, "bob", us, &v, 1.0f, 0);
		CHECK(sink && flush1(sink, &c, &su) == SINK_WRITTEN, "ACL user writes");
		sink_redis_free(sink);
		config_set(cfg, "redis.password", "wrong-password", err, sizeof(err));
		sink = sink_redis_new(cfg, err, sizeof(err));
		CHECK(sink == NULL && strstr(err, "AUTH as user") && strstr(err, "WRONGPASS"),
		    "wrong password fails clearly: %s", err);
		sink_redis_free(sink);
		config_free(cfg);
	}

	state_free(us);
	model_free(c.m);
	redisFree(c.rc);
	unlink(cat_path);
	unlink(model_path);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
