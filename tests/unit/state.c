/*
 * model/state.c: exact decay (half-life, out-of-order events), the bounded
 * tier table with eviction, the ring, the consumed set (its false-positive
 * rate at 100, 1,000 and 10,000 items, its bound), the remembered event ids,
 * and the codec (round trip, every truncation and byte flip rejected,
 * version 1 still read, sizes).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "container.h"
#include "fixture.h"
#include "le.h"
#include "modelfile.h"
#include "state.h"

#define T0_MS   1700000000000LL
#define HOUR_MS 3600000LL

static int
rel_close(double got, double want, double tol)
{
	return fabs(got - want) <= tol * fabs(want);
}

/* A model with max_tiers entries per user over fc's catalog. */
static struct model *
small_model(const char *dir, const struct fixture_cat *fc, uint32_t max_tiers, uint32_t ring_len,
    uint32_t hidden)
{
	char cpath[128], mpath[128], err[512];
	struct model_hparams hp;
	struct model_weights w;
	struct model *cat, *m = NULL;
	float *buf = NULL;

	snprintf(cpath, sizeof(cpath), "%s/s.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/s.imdl", dir);
	if (fixture_write_catalog(cpath, fc, err, sizeof(err)) != 0 ||
	    (cat = model_load(cpath, err, sizeof(err))) == NULL) {
		printf("FAIL catalog: %s\n", err);
		return NULL;
	}
	fixture_hparams(&hp, hidden);
	hp.max_tiers = max_tiers;
	hp.ring_len = ring_len;
	if (fixture_weights(cat, &hp, 3, &w, &buf) == 0 &&
	    model_write(mpath, cat, &hp, &w, err, sizeof(err)) == 0)
		m = model_load(mpath, err, sizeof(err));
	if (m == NULL)
		printf("FAIL model: %s\n", err);
	free(buf);
	model_free(cat);
	unlink(cpath);
	unlink(mpath);
	return m;
}

static const struct tier_weight *
find(const struct user_state *us, uint32_t node)
{
	for (uint16_t i = 0; i < us->n_tiers; i++)
		if (us->tiers[i].node == node)
			return &us->tiers[i];
	return NULL;
}

static int
test_decay(const struct model *m)
{
	const struct model_hparams *hp = model_hparams(m);
	struct user_state *us = state_new(hp);
	uint32_t item = 5, n1 = model_item_tier1(m, item), n2 = model_item_tier2(m, item);
	double hl_ms = hp->half_life_short_s * 1000.0, a = hp->type_weight[MODEL_EV_CLICK];
	double hll_ms = hp->half_life_long_s * 1000.0;
	int fails = 0;

	CHECK(us != NULL && us->t_ref_ms == STATE_NO_TIME && us->n_tiers == 0 &&
		us->last_offset == -1 && us->last_partition == -1,
	    "fresh state");
	state_tiers_apply(us, m, item, MODEL_EV_CLICK, T0_MS);
	CHECK(us->t_ref_ms == T0_MS && us->n_tiers == 2, "first event sets t_ref, two nodes");
	CHECK(state_tier_short(us, m, n1, T0_MS) == (float)a &&
		state_tier_long(us, m, n2, T0_MS) == (float)a,
	    "weights = a(CLICK)");
	double w = state_tier_short(us, m, n1, T0_MS + (int64_t)hl_ms);
	CHECK(rel_close(w, a / 2, 1e-6), "short weight halves after one half-life: %.9g", w);
	w = state_tier_long(us, m, n1, T0_MS + (int64_t)hll_ms);
	CHECK(rel_close(w, a / 2, 1e-6), "long weight halves after one long half-life: %.9g", w);
	CHECK(state_tier_short(us, m, n1, T0_MS - HOUR_MS) == (float)a,
	    "query before t_ref does not grow the weight");

	/* Apply an IMPRESSION (a = 0) one half-life later: decays, adds nothing. */
	state_tiers_apply(us, m, item, MODEL_EV_IMPRESSION, T0_MS + (int64_t)hl_ms);
	const struct tier_weight *tw = find(us, n1);
	CHECK(tw != NULL && rel_close(tw->w_short, a / 2, 1e-6) &&
		us->t_ref_ms == T0_MS + (int64_t)hl_ms,
	    "stored weight halved after an event one half-life later: %.9g",
	    tw ? (double)tw->w_short : -1.0);
	/* Three more half-lives in many small steps: still exact. */
	for (int k = 1; k <= 300; k++)
		state_tiers_apply(us, m, item, MODEL_EV_IMPRESSION,
		    T0_MS + (int64_t)hl_ms + (int64_t)(3 * hl_ms * k / 300));
	tw = find(us, n1);
	CHECK(tw != NULL && rel_close(tw->w_short, a / 16, 1e-4),
	    "300 small steps over 3 half-lives: %.9g (want %.9g)", tw ? (double)tw->w_short : -1.0,
	    a / 16);

	/* Out of order: e1 at t0, e2 at t0+2h, e3 at t0+1h. */
	state_reset(us);
	state_tiers_apply(us, m, item, MODEL_EV_CLICK, T0_MS);
	state_tiers_apply(us, m, item, MODEL_EV_CLICK, T0_MS + 2 * HOUR_MS);
	state_tiers_apply(us, m, item, MODEL_EV_CLICK, T0_MS + 1 * HOUR_MS);
	double want_s = a * (exp2(-2.0 * HOUR_MS / hl_ms) + 1 + exp2(-1.0 * HOUR_MS / hl_ms));
	double want_l = a * (exp2(-2.0 * HOUR_MS / hll_ms) + 1 + exp2(-1.0 * HOUR_MS / hll_ms));
	tw = find(us, n2);
	CHECK(us->t_ref_ms == T0_MS + 2 * HOUR_MS, "older event does not rewind t_ref");
	CHECK(tw != NULL && rel_close(tw->w_short, want_s, 1e-6) &&
		rel_close(tw->w_long, want_l, 1e-6),
	    "older event adds its decayed amount: %.9g want %.9g", tw ? (double)tw->w_short : -1.0,
	    want_s);
	/* An event far in the past adds next to nothing and still does not rewind. */
	state_tiers_apply(us, m, item, MODEL_EV_CLICK, T0_MS - 1000 * HOUR_MS);
	CHECK(us->t_ref_ms == T0_MS + 2 * HOUR_MS && rel_close(find(us, n2)->w_short, want_s, 1e-6),
	    "very old event: short weight unchanged");

	/* DISLIKE (negative a) clamps at 0 and drops an entry that reaches 0. */
	state_reset(us);
	state_tiers_apply(us, m, item, MODEL_EV_VIEW, T0_MS);    /* +0.5 */
	state_tiers_apply(us, m, item, MODEL_EV_DISLIKE, T0_MS); /* -1 */
	CHECK(us->n_tiers == 0, "entries dropped when a dislike takes them to 0");
	state_tiers_apply(us, m, item, MODEL_EV_DISLIKE, T0_MS);
	CHECK(us->n_tiers == 0, "a dislike alone creates no entry");
	state_free(us);
	return fails;
}

static int
test_bound(const struct model *m, const struct fixture_cat *fc)
{
	struct user_state *us = state_new(model_hparams(m));
	int fails = 0;
	/* Items 0..3 are in level-1 nodes 0..3 and distinct level-2 nodes. */
	uint32_t t1[4], t2[4];

	for (uint32_t i = 0; i < 4; i++) {
		t1[i] = model_item_tier1(m, i);
		t2[i] = model_item_tier2(m, i);
	}
	CHECK(us->max_tiers == 4, "max_tiers 4");
	state_tiers_apply(us, m, 0, MODEL_EV_CLICK, T0_MS);    /* 1 */
	state_tiers_apply(us, m, 1, MODEL_EV_PURCHASE, T0_MS); /* 3 */
	CHECK(us->n_tiers == 4, "table full");
	state_tiers_apply(us, m, 2, MODEL_EV_LIKE, T0_MS); /* 2: evicts item 0's nodes */
	CHECK(us->n_tiers == 4 && find(us, t1[0]) == NULL && find(us, t2[0]) == NULL &&
		find(us, t1[1]) != NULL && find(us, t2[1]) != NULL && find(us, t1[2]) != NULL &&
		find(us, t2[2]) != NULL,
	    "weakest long-term entries evicted by stronger ones");
	state_tiers_apply(us, m, 3, MODEL_EV_VIEW, T0_MS); /* 0.5: too weak to enter */
	CHECK(us->n_tiers == 4 && find(us, t1[3]) == NULL && find(us, t2[3]) == NULL,
	    "a weaker new entry does not replace");
	state_tiers_apply(us, m, 2, MODEL_EV_VIEW, T0_MS); /* existing nodes still grow */
	CHECK(find(us, t1[2]) != NULL && find(us, t1[2])->w_long == 2.5f, "existing entry updated");

	/* Random stress: the bound holds, entries unique, weights finite and >= 0. */
	uint64_t s = 77;
	int ok = 1;
	for (int k = 0; k < 5000; k++) {
		uint32_t item = (uint32_t)(fixture_rand(&s) % fc->n_items);
		uint8_t type = (uint8_t)(fixture_rand(&s) % MODEL_N_TYPES);
		int64_t ts = T0_MS + (int64_t)(fixture_rand(&s) % (1000 * HOUR_MS));

		state_tiers_apply(us, m, item, type, ts);
		if (us->n_tiers > us->max_tiers)
			ok = 0;
		for (uint16_t i = 0; i < us->n_tiers; i++) {
			if (!(us->tiers[i].w_short >= 0 && us->tiers[i].w_long >= 0) ||
			    !isfinite(us->tiers[i].w_long) || us->tiers[i].node >= model_n_nodes(m))
				ok = 0;
			for (uint16_t j = 0; j < i; j++)
				if (us->tiers[j].node == us->tiers[i].node)
					ok = 0;
		}
	}
	CHECK(ok, "5000 random events: n_tiers <= max_tiers, unique, finite, >= 0");
	state_free(us);
	return fails;
}

static int
test_ring_seen(const struct model *m)
{
	struct user_state *us = state_new(model_hparams(m));
	int fails = 0, ok = 1;
	uint16_t len = us->ring_len;

	for (uint16_t i = 0; i < len + 3; i++)
		state_ring_push(us, 1000 + i, T0_MS + i, (uint8_t)(i % MODEL_N_TYPES));
	CHECK(us->ring_count == len, "ring holds ring_len events");
	for (uint16_t i = 0; i < len; i++) {
		const struct ring_event *re = state_ring_get(us, i);
		if (re->item_hash != (uint64_t)(1003 + i) || re->ts_ms != T0_MS + 3 + i)
			ok = 0;
	}
	CHECK(ok, "ring oldest first, oldest 3 overwritten");
	state_free(us);
	return fails;
}

/* The hash of catalog item "item-<i>", as the daemon hashes item ids. */
static uint64_t
item_hash(uint32_t i)
{
	char id[32];
	int n = snprintf(id, sizeof(id), "item-%u", i);

	return model_id_hash(id, (size_t)n);
}

#define FP_QUERIES 200000 /* items never consumed, asked per history size */
#define FP_BOUND   0.01   /* the old 2,048-bit Bloom filter: 45% at 1,000 items */

/*
 * The consumed set as a user's history grows: every consumed item is found,
 * and of FP_QUERIES items never consumed at most FP_BOUND are reported, at
 * 100, 1,000 and 10,000 items. Prints the measured rate and the bytes the
 * set costs (memory, state blob), the figures schemas/state.md quotes.
 */
static int
test_seen_rate(const struct model *m)
{
	static const uint32_t sizes[] = { 100, 1000, 10000 };
	int fails = 0;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct user_state *us = state_new(model_hparams(m));
		struct user_state *empty = state_new(model_hparams(m));
		uint32_t n = sizes[k], missing = 0, fp = 0;
		int added = 0;

		if (us == NULL || empty == NULL) {
			printf("FAIL state_new\n");
			return 1;
		}
		/* Items consumed twice count once. */
		for (uint32_t i = 0; i < n; i++)
			added |= (state_seen_add(us, item_hash(i)) < 0) |
			    (state_seen_add(us, item_hash(i)) < 0);
		for (uint32_t i = 0; i < n; i++)
			missing += !state_seen_has(us, item_hash(i));
		for (uint32_t i = 0; i < FP_QUERIES; i++)
			fp += state_seen_has(us, item_hash(1000000 + i));
		CHECK(added == 0 && us->n_seen == n && missing == 0,
		    "%u items consumed: %u in the set, %u missing", n, us->n_seen, missing);
		CHECK((double)fp / FP_QUERIES <= FP_BOUND,
		    "%u items consumed: false positives %u of %d (%.4f%%), bound %.0f%%", n, fp,
		    FP_QUERIES, 100.0 * fp / FP_QUERIES, 100 * FP_BOUND);
		printf("consumed set at %5u items: false positives %u of %d (%.5f%%); %zu bytes "
		       "in memory, %zu in the state blob (%zu and %zu without the set)\n",
		    n, fp, FP_QUERIES, 100.0 * fp / FP_QUERIES, state_mem_used(us),
		    state_encoded_size(us), state_mem_used(empty), state_encoded_size(empty));
		state_free(us);
		state_free(empty);
	}
	return fails;
}

/* At STATE_SEEN_MAX items the set stops growing and keeps taking new items. */
static int
test_seen_bound(const struct model *m)
{
	struct user_state *us = state_new(model_hparams(m)), *back = state_new(model_hparams(m));
	uint32_t total = STATE_SEEN_MAX + 500, newest_in = 0;
	size_t len;
	uint8_t *buf;
	char err[256];
	int fails = 0;

	if (us == NULL || back == NULL) {
		printf("FAIL state_new\n");
		return 1;
	}
	for (uint32_t i = 0; i < total; i++)
		state_seen_add(us, item_hash(i));
	for (uint32_t i = total - 100; i < total; i++)
		newest_in += state_seen_has(us, item_hash(i));
	CHECK(us->n_seen == STATE_SEEN_MAX && us->seen_cap == STATE_SEEN_MAX,
	    "set bounded at %d items (has %u, allocated %u)", STATE_SEEN_MAX, us->n_seen,
	    us->seen_cap);
	CHECK(newest_in >= 99, "the newest items are in the full set: %u of 100", newest_in);
	len = state_encoded_size(us);
	buf = malloc(len);
	CHECK(buf != NULL && state_encode(us, buf, len) == len &&
		state_decode(back, buf, len, err, sizeof(err)) == 0 &&
		back->n_seen == STATE_SEEN_MAX &&
		memcmp(back->seen, us->seen, STATE_SEEN_MAX * sizeof(uint32_t)) == 0,
	    "a full set round-trips (%zu bytes)", len);
	CHECK(
	    len < 256 * 1024, "a full set's blob stays under the daemon's 256 KiB read: %zu", len);
	free(buf);
	state_free(us);
	state_free(back);
	return fails;
}

/* The last STATE_EVENT_IDS event ids are known, older ones forgotten. */
static int
test_event_ids(const struct model *m)
{
	struct user_state *us = state_new(model_hparams(m));
	uint32_t total = STATE_EVENT_IDS + 5, known_new = 0, known_old = 0;
	char id[32];
	int fails = 0, n;

	if (us == NULL) {
		printf("FAIL state_new\n");
		return 1;
	}
	n = snprintf(id, sizeof(id), "evt-%d", 0);
	CHECK(
	    !state_event_known(us, state_event_id_hash(id, (size_t)n)), "fresh state knows no id");
	for (uint32_t i = 0; i < total; i++) {
		n = snprintf(id, sizeof(id), "evt-%u", i);
		state_event_remember(us, state_event_id_hash(id, (size_t)n));
	}
	for (uint32_t i = 0; i < total; i++) {
		n = snprintf(id, sizeof(id), "evt-%u", i);
		if (state_event_known(us, state_event_id_hash(id, (size_t)n)))
			*(i < total - STATE_EVENT_IDS ? &known_old : &known_new) += 1;
	}
	CHECK(us->n_event_ids == STATE_EVENT_IDS && known_new == STATE_EVENT_IDS && known_old == 0,
	    "the newest %d ids known (%u), the %u older forgotten (%u known)", STATE_EVENT_IDS,
	    known_new, total - STATE_EVENT_IDS, known_old);
	n = snprintf(id, sizeof(id), "evt-%u", total - 1);
	CHECK(state_event_id_hash(id, (size_t)n) != state_event_id_hash(id, (size_t)n - 1),
	    "an id and its prefix hash apart");
	state_reset(us);
	CHECK(us->n_event_ids == 0 && !state_event_known(us, state_event_id_hash(id, (size_t)n)),
	    "reset forgets the ids");
	state_free(us);
	return fails;
}

/* Equality of everything a state holds (ring compared oldest-first). */
static int
states_equal(const struct user_state *a, const struct user_state *b)
{
	if (a->t_ref_ms != b->t_ref_ms || a->last_offset != b->last_offset ||
	    a->last_partition != b->last_partition || a->hidden != b->hidden ||
	    a->events_applied != b->events_applied || a->model_version != b->model_version ||
	    a->n_tiers != b->n_tiers || a->ring_count != b->ring_count ||
	    memcmp(a->h, b->h, a->hidden * sizeof(float)) != 0 ||
	    memcmp(a->c, b->c, a->hidden * sizeof(float)) != 0 ||
	    memcmp(a->tiers, b->tiers, a->n_tiers * sizeof(struct tier_weight)) != 0 ||
	    a->n_seen != b->n_seen || a->n_event_ids != b->n_event_ids ||
	    (a->n_seen > 0 && memcmp(a->seen, b->seen, a->n_seen * sizeof(uint32_t)) != 0))
		return 0;
	/* Remembered ids: the same set, in any slot order. */
	for (uint16_t i = 0; i < a->n_event_ids; i++)
		if (!state_event_known(b, a->event_ids[i]))
			return 0;
	for (uint16_t i = 0; i < a->ring_count; i++) {
		const struct ring_event *x = state_ring_get(a, i), *y = state_ring_get(b, i);
		if (x->item_hash != y->item_hash || x->ts_ms != y->ts_ms || x->type != y->type)
			return 0;
	}
	return 1;
}

static int
test_codec(const struct model *m, const struct model *m_other_h, const struct model *m_short_ring)
{
	const struct model_hparams *hp = model_hparams(m);
	struct user_state *us = state_new(hp), *back = state_new(hp), *fresh = state_new(hp);
	struct user_state *other = state_new(model_hparams(m_other_h));
	struct user_state *shortr = state_new(model_hparams(m_short_ring));
	uint8_t buf[8192], copy[8192];
	char err[256];
	uint64_t s = 9;
	size_t len;
	int fails = 0;

	if (us == NULL || back == NULL || fresh == NULL || other == NULL || shortr == NULL) {
		printf("FAIL state_new\n");
		return 1;
	}

	for (uint32_t i = 0; i < us->hidden; i++) {
		us->h[i] = fixture_randf(&s);
		us->c[i] = 3 * fixture_randf(&s);
	}
	for (int k = 0; k < 40; k++) {
		uint32_t item = (uint32_t)(fixture_rand(&s) % model_n_items(m));
		int64_t ts = T0_MS + k * 60000;

		state_tiers_apply(us, m, item, MODEL_EV_CLICK, ts);
		state_ring_push(us, model_item_hash(m, item), ts, MODEL_EV_CLICK);
		state_seen_add(us, model_item_hash(m, item));
		state_event_remember(us, fixture_rand(&s));
	}
	us->last_offset = 123456789012LL;
	us->last_partition = 7;
	us->events_applied = 40;
	us->model_version = 1700000000;

	CHECK(state_encode(us, buf, state_encoded_size(us) - 1) == 0,
	    "encode refuses a short buffer");
	len = state_encode(us, buf, sizeof(buf));
	CHECK(len == state_encoded_size(us) && len > 0, "encoded %zu bytes", len);
	CHECK(state_decode(back, buf, len, err, sizeof(err)) == 0, "decode (%s)", err);
	CHECK(us->n_seen > 20 && us->n_event_ids == STATE_EVENT_IDS && states_equal(us, back),
	    "decoded state equals the original (%u consumed items, %u event ids)", us->n_seen,
	    us->n_event_ids);
	size_t len2 = state_encode(back, copy, sizeof(copy));
	CHECK(len2 == len && memcmp(buf, copy, len) == 0, "re-encoding is byte-identical");

	/* Every truncation is rejected and leaves the target untouched. */
	int trunc_ok = 1, flip_ok = 1;
	for (size_t l = 0; l < len; l++) {
		if (state_decode(fresh, buf, l, err, sizeof(err)) == 0 ||
		    fresh->t_ref_ms != STATE_NO_TIME)
			trunc_ok = 0;
	}
	CHECK(trunc_ok, "all %zu truncations rejected, target untouched", len);
	for (size_t at = 0; at < len; at++) {
		memcpy(copy, buf, len);
		copy[at] ^= 0x04;
		if (state_decode(fresh, copy, len, err, sizeof(err)) == 0 ||
		    fresh->t_ref_ms != STATE_NO_TIME)
			flip_ok = 0;
	}
	CHECK(flip_ok, "every single-bit flip rejected");
	memcpy(copy, buf, len);
	copy[len] = 0;
	CHECK(state_decode(fresh, copy, len + 1, err, sizeof(err)) == -1 &&
		strstr(err, "trailing bytes") != NULL,
	    "trailing byte: %s", err);
	memcpy(copy, buf, len);
	copy[3] = 3;
	CHECK(state_decode(fresh, copy, len, err, sizeof(err)) == -1 &&
		strstr(err, "unknown version 3") != NULL,
	    "wrong version: %s", err);
	CHECK(state_decode(fresh, buf, len - 1, err, sizeof(err)) == -1 && strstr(err, "truncated"),
	    "truncated: %s", err);
	/* Consumed items out of order (checksum fixed up): refused, not searched wrongly. */
	{
		size_t at = len - 4 - 4 * (size_t)us->n_seen;
		uint32_t a = le_get_u32(buf + at), b = le_get_u32(buf + at + 4);

		memcpy(copy, buf, len);
		le_put_u32(le_put_u32(copy + at, b), a);
		le_put_u32(copy + len - 4, container_crc32(0, copy, len - 4));
		CHECK(state_decode(fresh, copy, len, err, sizeof(err)) == -1 &&
			strstr(err, "consumed item 1 not above") != NULL &&
			fresh->t_ref_ms == STATE_NO_TIME,
		    "consumed items out of order: %s", err);
	}
	/* Another hidden size: everything but h and c kept, re-warm requested. */
	CHECK(state_decode(other, buf, len, err, sizeof(err)) == 0 && other->model_version == 0 &&
		other->last_offset == us->last_offset &&
		other->last_partition == us->last_partition &&
		other->events_applied == us->events_applied && other->t_ref_ms == us->t_ref_ms &&
		other->n_tiers == us->n_tiers && other->ring_count == us->ring_count &&
		other->h[0] == 0.0f && other->c[other->hidden - 1] == 0.0f &&
		other->n_seen == us->n_seen &&
		memcmp(other->seen, us->seen, us->n_seen * sizeof(uint32_t)) == 0 &&
		other->n_event_ids == us->n_event_ids,
	    "hidden mismatch keeps all but h, c and asks for a re-warm (%s)", err);

	/* A shorter ring keeps the newest events. */
	CHECK(state_decode(shortr, buf, len, err, sizeof(err)) == 0 &&
		shortr->ring_count == shortr->ring_len &&
		state_ring_get(shortr, (uint16_t)(shortr->ring_count - 1))->item_hash ==
		    state_ring_get(us, (uint16_t)(us->ring_count - 1))->item_hash &&
		state_ring_get(shortr, 0)->item_hash ==
		    state_ring_get(us, (uint16_t)(us->ring_count - shortr->ring_len))->item_hash,
	    "shorter ring keeps the newest events (%s)", err);

	/* The ring's 56-bit event time: real times exact, absurd ones clamped. */
	{
		struct user_state *r = state_new(model_hparams(m));
		int64_t want[4] = { T0_MS, -5, STATE_RING_TS_MAX, -STATE_RING_TS_MAX };
		int64_t huge[2] = { INT64_MAX / 2, INT64_MIN / 2 };
		int exact = r != NULL;

		for (int k = 0; exact && k < 4; k++) {
			state_ring_push(r, 1, want[k], MODEL_EV_SHARE);
			exact = state_ring_get(r, (uint16_t)k)->ts_ms == want[k] &&
			    state_ring_get(r, (uint16_t)k)->type == MODEL_EV_SHARE;
		}
		CHECK(exact && sizeof(struct ring_event) == 16,
		    "ring event is 16 bytes and keeps times exactly");
		state_ring_push(r, 1, huge[0], MODEL_EV_VIEW);
		state_ring_push(r, 1, huge[1], MODEL_EV_VIEW);
		CHECK(state_ring_get(r, 4)->ts_ms == STATE_RING_TS_MAX &&
			state_ring_get(r, 5)->ts_ms == -STATE_RING_TS_MAX,
		    "times beyond 56 bits are clamped");
		state_free(r);
	}

	/* A fresh state round-trips too (t_ref INT64_MIN, markers -1). */
	len = state_encode(fresh, buf, sizeof(buf));
	state_reset(back);
	back->events_applied = 99;
	CHECK(state_decode(back, buf, len, err, sizeof(err)) == 0 && states_equal(fresh, back),
	    "fresh state round trip");
	state_free(us);
	state_free(back);
	state_free(fresh);
	state_free(other);
	state_free(shortr);
	return fails;
}

/*
 * A version-1 blob of us (schemas/state.md "Version 1"), as interestd wrote
 * it before event ids and the consumed set, cut from its version-2 encoding:
 * the 56-byte header, h, c, tiers and ring, then a 2,048-bit Bloom filter
 * (all ones here, which must not turn into a consumed set that hides every
 * item) and the CRC.
 */
static size_t
encode_v1(const struct user_state *us, uint8_t *buf)
{
	uint8_t v2[8192];
	size_t n = state_encode(us, v2, sizeof(v2));
	size_t body = n - 64 - 8 * (size_t)us->n_event_ids - 4 * (size_t)us->n_seen - 4;

	memcpy(buf, v2, 56);
	buf[3] = 1;
	memcpy(buf + 56, v2 + 64, body);
	memset(buf + 56 + body, 0xff, 256);
	le_put_u32(buf + 56 + body + 256, container_crc32(0, buf, 56 + body + 256));
	return 56 + body + 256 + 4;
}

/* A version-1 blob decodes: no event ids, the ring's items as the consumed set. */
static int
test_codec_v1(const struct model *m)
{
	struct user_state *us = state_new(model_hparams(m)), *back = state_new(model_hparams(m));
	uint8_t buf[8192];
	char err[256];
	uint64_t s = 5;
	uint32_t ring_in = 0, others = 0;
	size_t len;
	int fails = 0;

	if (us == NULL || back == NULL) {
		printf("FAIL state_new\n");
		return 1;
	}
	for (uint32_t i = 0; i < us->hidden; i++)
		us->h[i] = us->c[i] = fixture_randf(&s);
	for (uint32_t k = 0; k < 3u * us->ring_len; k++) {
		uint32_t item = (uint32_t)(fixture_rand(&s) % model_n_items(m));

		state_tiers_apply(us, m, item, MODEL_EV_LIKE, T0_MS + k);
		state_ring_push(us, model_item_hash(m, item), T0_MS + k, MODEL_EV_LIKE);
	}
	us->last_partition = 3;
	us->last_offset = 4242;
	us->events_applied = 3u * us->ring_len;
	us->model_version = 17;
	len = encode_v1(us, buf);
	back->n_event_ids = 1; /* whatever was there goes */
	CHECK(state_decode(back, buf, len, err, sizeof(err)) == 0, "version-1 blob decodes (%s)",
	    err);
	for (uint16_t i = 0; i < us->ring_count; i++)
		ring_in += state_seen_has(back, state_ring_get(us, i)->item_hash);
	for (uint32_t i = 0; i < model_n_items(m); i++) {
		int in_ring = 0;

		for (uint16_t j = 0; j < us->ring_count; j++)
			in_ring |= state_ring_get(us, j)->item_hash == model_item_hash(m, i);
		others += !in_ring && state_seen_has(back, model_item_hash(m, i));
	}
	CHECK(back->last_offset == 4242 && back->last_partition == 3 && back->model_version == 17 &&
		back->t_ref_ms == us->t_ref_ms && back->n_tiers == us->n_tiers &&
		back->ring_count == us->ring_count && back->h[1] == us->h[1] &&
		back->c[0] == us->c[0] && back->n_event_ids == 0,
	    "version 1: marker, h, c, tiers and ring kept, no event ids");
	CHECK(ring_in == us->ring_count && others == 0 && back->n_seen <= us->ring_count,
	    "version 1: the consumed set is the ring's items (%u of %u), nothing else (%u)",
	    ring_in, us->ring_count, others);
	len = state_encode(back, buf, sizeof(buf));
	CHECK(len > 0 && buf[3] == 2, "re-encoded as version 2");
	buf[0] = 'X';
	CHECK(state_decode(us, buf, len, err, sizeof(err)) == -1 && strstr(err, "bad magic"),
	    "bad magic: %s", err);
	state_free(us);
	state_free(back);
	return fails;
}

int
main(void)
{
	struct fixture_cat fc = { .n_items = 60, .dim = 8, .n_tier1 = 4, .k2 = 3, .seed = 11 };
	char dir[64];
	int fails = 0;
	struct model *m, *m_small, *m_h, *m_ring;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0) {
		perror("mkdtemp");
		return 1;
	}
	m = small_model(dir, &fc, 16, 8, 12);
	m_small = small_model(dir, &fc, 4, 8, 12);
	m_h = small_model(dir, &fc, 16, 8, 13);
	m_ring = small_model(dir, &fc, 16, 3, 12);
	if (m == NULL || m_small == NULL || m_h == NULL || m_ring == NULL)
		return 1;
	CHECK(state_mem_size(model_hparams(m)) >= sizeof(struct user_state) + 2 * 12 * 4 +
		    16 * sizeof(struct tier_weight) + 8 * sizeof(struct ring_event),
	    "state_mem_size covers every array");
	fails += test_decay(m);
	fails += test_bound(m_small, &fc);
	fails += test_ring_seen(m);
	fails += test_seen_rate(m);
	fails += test_seen_bound(m);
	fails += test_event_ids(m);
	fails += test_codec(m, m_h, m_ring);
	fails += test_codec_v1(m);
	model_free(m);
	model_free(m_small);
	model_free(m_h);
	model_free(m_ring);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
