/*
 * model/state.c: exact decay (half-life, out-of-order events), the bounded
 * tier table with eviction, the ring, the consumed filter, and the codec
 * (round trip, every truncation and byte flip rejected, version, sizes).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
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

	int all_in = 1, fp = 0;
	for (uint32_t i = 0; i < 100; i++)
		state_seen_add(us, model_id_hash((const char *)&i, sizeof(i)));
	for (uint32_t i = 0; i < 100; i++)
		if (!state_seen_has(us, model_id_hash((const char *)&i, sizeof(i))))
			all_in = 0;
	for (uint32_t i = 100; i < 10100; i++)
		fp += state_seen_has(us, model_id_hash((const char *)&i, sizeof(i)));
	CHECK(all_in, "every added item is seen");
	CHECK(fp < 200, "false positives with 100 items: %d / 10000", fp);
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
	    memcmp(a->seen, b->seen, sizeof(a->seen)) != 0)
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
	CHECK(states_equal(us, back), "decoded state equals the original");
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
	copy[3] = 2;
	CHECK(state_decode(fresh, copy, len, err, sizeof(err)) == -1 &&
		strstr(err, "unknown version 2") != NULL,
	    "wrong version: %s", err);
	CHECK(state_decode(fresh, buf, len - 1, err, sizeof(err)) == -1 && strstr(err, "truncated"),
	    "truncated: %s", err);
	/* Another hidden size: everything but h and c kept, re-warm requested. */
	CHECK(state_decode(other, buf, len, err, sizeof(err)) == 0 && other->model_version == 0 &&
		other->last_offset == us->last_offset &&
		other->last_partition == us->last_partition &&
		other->events_applied == us->events_applied && other->t_ref_ms == us->t_ref_ms &&
		other->n_tiers == us->n_tiers && other->ring_count == us->ring_count &&
		other->h[0] == 0.0f && other->c[other->hidden - 1] == 0.0f &&
		memcmp(other->seen, us->seen, STATE_SEEN_BYTES) == 0,
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
	fails += test_codec(m, m_h, m_ring);
	model_free(m);
	model_free(m_small);
	model_free(m_h);
	model_free(m_ring);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
