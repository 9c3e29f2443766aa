/*
 * model/scorer.c: interest vector and scores against naive loops, top-N
 * against a brute-force full sort, consumed items never returned, and the
 * calibration's largest-remainder allocation across tier-1 nodes, and the
 * batched top-N (one SGEMM per chunk of users) against the single-user one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "modelfile.h"
#include "scorer.h"
#include "state.h"
#include "updater.h"

#define T0_MS 1700000000000LL

struct pair {
	float s;
	uint32_t i;
};

static int
pair_cmp(const void *pa, const void *pb)
{
	const struct pair *a = pa, *b = pb;

	if (a->s != b->s)
		return a->s > b->s ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/* Unconsumed items sorted best first (full sort); returns their count. */
static size_t
brute_force(const struct model *m, const struct user_state *us, const float *s, struct pair *out)
{
	size_t k = 0;

	for (uint32_t i = 0; i < model_n_items(m); i++)
		if (!state_seen_has(us, model_item_hash(m, i)))
			out[k++] = (struct pair){ s[i], i };
	qsort(out, k, sizeof(*out), pair_cmp);
	return k;
}

/* A user with some history, through the real updater. */
static void
warm_user(const struct model *m, struct user_state *us, uint64_t seed, int n_events)
{
	struct updater *up = updater_new(m, 1);

	for (int k = 0; k < n_events; k++) {
		struct update_event ev = { .us = us,
			.item = (uint32_t)(fixture_rand(&seed) % model_n_items(m)),
			.type = (uint8_t)(1 + fixture_rand(&seed) % 6),
			.ts_ms = T0_MS + k * 600000LL,
			.partition = 0,
			.offset = k };
		updater_apply(up, &ev, 1);
	}
	updater_free(up);
}

static int
test_scores(const struct model *m, struct scorer *sc, const struct user_state *us)
{
	const struct model_weights *w = model_weights(m);
	uint32_t dim = model_dim(m), n = model_n_items(m), H = us->hidden;
	float *u = malloc(dim * sizeof(float)), *s = malloc(n * sizeof(float));
	double err_u = 0, err_s = 0, ls[3] = { 0 }, ll[3] = { 0 };
	int fails = 0;

	scorer_interest(m, us, u);
	for (uint32_t d = 0; d < dim; d++) {
		double v = w->pb[d];
		for (uint32_t k = 0; k < H; k++)
			v += (double)w->P[d * H + k] * us->h[k];
		err_u = fmax(err_u, fabs(v - u[d]));
	}
	CHECK(err_u < 1e-5, "u = P h + pb (max err %.2g)", err_u);
	CHECK(scorer_score_all(sc, us, u, s) == s, "score_all returns out");
	for (uint32_t j = 0; j < model_n_nodes(m); j++) {
		ls[model_node_level(m, j)] += state_tier_short(us, m, j, us->t_ref_ms);
		ll[model_node_level(m, j)] += state_tier_long(us, m, j, us->t_ref_ms);
	}
	CHECK(ls[1] > 0 && ll[2] > 0, "user has tier weights at both levels");
	for (uint32_t i = 0; i < n; i++) {
		const float *e = model_item_embeddings(m) + (size_t)i * dim;
		double v = w->ib[i];
		uint32_t node[3] = { 0, model_item_tier1(m, i), model_item_tier2(m, i) };

		for (uint32_t d = 0; d < dim; d++)
			v += (double)u[d] * e[d];
		for (int l = 1; l <= 2; l++) {
			if (ls[l] > 0)
				v += w->alpha[2 * (l - 1)] *
				    state_tier_short(us, m, node[l], us->t_ref_ms) / ls[l];
			if (ll[l] > 0)
				v += w->alpha[2 * (l - 1) + 1] *
				    state_tier_long(us, m, node[l], us->t_ref_ms) / ll[l];
		}
		err_s = fmax(err_s, fabs(v - s[i]));
	}
	CHECK(err_s < 1e-4, "score_all = u.e_i + ib + normalised tier terms (max err %.2g)", err_s);
	/* A second call gives the same scores (scratch reset between calls). */
	float *s2 = malloc(n * sizeof(float));
	scorer_score_all(sc, us, u, s2);
	CHECK(memcmp(s, s2, n * sizeof(float)) == 0, "score_all repeatable");
	free(s2);
	free(u);
	free(s);
	return fails;
}

static int
test_topn(const struct model *m, struct scorer *sc, struct user_state *us)
{
	uint32_t n = model_n_items(m), dim = model_dim(m);
	float *u = malloc(dim * sizeof(float)), *s = malloc(n * sizeof(float));
	float *sco = malloc(n * sizeof(float));
	uint32_t *it = malloc(n * sizeof(uint32_t));
	struct pair *bf = malloc(n * sizeof(struct pair));
	int fails = 0;
	uint64_t seed = 5;

	/* Consume about half the catalog. */
	for (int k = 0; k < 150; k++)
		state_seen_add(us, model_item_hash(m, (uint32_t)(fixture_rand(&seed) % n)));
	scorer_interest(m, us, u);
	scorer_score_all(sc, us, u, s);
	size_t avail = brute_force(m, us, s, bf);
	CHECK(avail > 20 && avail < n - 50, "%zu of %u items unconsumed", avail, n);

	size_t sizes[] = { 1, 5, 50, avail, avail + 10, n };
	for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
		size_t want = sizes[t] < avail ? sizes[t] : avail;
		size_t got = scorer_topn(sc, us, u, sizes[t], 0, it, sco);
		int same = got == want, consumed = 0;

		for (size_t k = 0; k < got && same; k++)
			if (it[k] != bf[k].i || sco[k] != bf[k].s)
				same = 0;
		for (size_t k = 0; k < got; k++)
			consumed += state_seen_has(us, model_item_hash(m, it[k]));
		CHECK(same, "top-%zu equals the brute-force full sort (%zu items)", sizes[t], got);
		CHECK(consumed == 0, "top-%zu has no consumed item", sizes[t]);
		got = scorer_topn(sc, us, u, sizes[t], 1, it, sco);
		consumed = 0;
		int ordered = 1;
		for (size_t k = 0; k < got; k++) {
			consumed += state_seen_has(us, model_item_hash(m, it[k]));
			if (k > 0 && sco[k] > sco[k - 1])
				ordered = 0;
		}
		CHECK(got == want && consumed == 0 && ordered,
		    "calibrated top-%zu: %zu items, none consumed, best first", sizes[t], got);
	}
	CHECK(scorer_topn(sc, us, u, 0, 1, it, sco) == 0, "top-0 is empty");
	free(u);
	free(s);
	free(sco);
	free(it);
	free(bf);
	return fails;
}

/* Sets a user's tier table directly: long-term weights per tier-1 node. */
static void
set_tier1_long(struct user_state *us, const double *wl, uint32_t n_tier1)
{
	us->n_tiers = 0;
	for (uint32_t j = 0; j < n_tier1; j++)
		if (wl[j] > 0)
			us->tiers[us->n_tiers++] = (struct tier_weight){ j, 0.0f, (float)wl[j] };
	us->t_ref_ms = T0_MS;
}

static int
test_calibration(const struct model *m, struct scorer *sc)
{
	struct user_state *us = state_new(model_hparams(m));
	uint32_t n = model_n_items(m), dim = model_dim(m), n1 = model_n_tier1(m);
	float *u = malloc(dim * sizeof(float)), *s = malloc(n * sizeof(float)), sco[64];
	uint32_t it[64], count[8];
	struct pair *bf = malloc(n * sizeof(struct pair));
	int fails = 0;

	/* Weights 3 : 1 : 0 : 0 over 8 slots -> 6 and 2. */
	double w1[4] = { 3, 1, 0, 0 };
	set_tier1_long(us, w1, n1);
	scorer_interest(m, us, u);
	size_t got = scorer_topn(sc, us, u, 8, 1, it, sco);
	memset(count, 0, sizeof(count));
	for (size_t k = 0; k < got; k++)
		count[model_item_tier1(m, it[k])]++;
	CHECK(got == 8 && count[0] == 6 && count[1] == 2 && count[2] == 0 && count[3] == 0,
	    "3:1 over 8 slots -> %u %u %u %u", count[0], count[1], count[2], count[3]);
	/* Each tier's slots hold that tier's best items. */
	scorer_score_all(sc, us, u, s);
	size_t avail = brute_force(m, us, s, bf);
	uint32_t seen0 = 0, seen1 = 0;
	int best_ok = 1;
	for (size_t k = 0; k < avail; k++) {
		uint32_t t1 = model_item_tier1(m, bf[k].i);
		int in = 0;
		for (size_t q = 0; q < got; q++)
			in |= it[q] == bf[k].i;
		if (t1 == 0 && seen0++ < 6 && !in)
			best_ok = 0;
		if (t1 == 1 && seen1++ < 2 && !in)
			best_ok = 0;
	}
	CHECK(best_ok, "tier slots filled with each tier's best items");
	int ordered = 1;
	for (size_t k = 1; k < got; k++)
		if (sco[k] > sco[k - 1])
			ordered = 0;
	CHECK(ordered, "calibrated output best first");

	/* Largest remainder: 1 : 1 : 1 over 10 slots -> 4 3 3 (tie to the lower node). */
	double w2[4] = { 1, 1, 1, 0 };
	set_tier1_long(us, w2, n1);
	got = scorer_topn(sc, us, u, 10, 1, it, sco);
	memset(count, 0, sizeof(count));
	for (size_t k = 0; k < got; k++)
		count[model_item_tier1(m, it[k])]++;
	CHECK(got == 10 && count[0] == 4 && count[1] == 3 && count[2] == 3 && count[3] == 0,
	    "1:1:1 over 10 slots -> %u %u %u %u", count[0], count[1], count[2], count[3]);
	/* 5 : 3 : 2 : 0 over 7 slots: shares 3.5 2.1 1.4 -> floors 3 2 1, remainders .5 .1 .4 -> 4 2 1. */
	double w3[4] = { 5, 3, 2, 0 };
	set_tier1_long(us, w3, n1);
	got = scorer_topn(sc, us, u, 7, 1, it, sco);
	memset(count, 0, sizeof(count));
	for (size_t k = 0; k < got; k++)
		count[model_item_tier1(m, it[k])]++;
	CHECK(got == 7 && count[0] == 4 && count[1] == 2 && count[2] == 1,
	    "5:3:2 over 7 slots -> %u %u %u %u", count[0], count[1], count[2], count[3]);

	/* A tier short of unconsumed items: its leftover slots go to the global best. */
	double w4[4] = { 1, 0, 0, 0 };
	set_tier1_long(us, w4, n1);
	uint32_t left = 0;
	for (uint32_t i = 0; i < n; i++)
		if (model_item_tier1(m, i) == 0 && left++ >= 3)
			state_seen_add(us, model_item_hash(m, i));
	uint32_t unconsumed0 = 0;
	for (uint32_t i = 0; i < n; i++)
		if (model_item_tier1(m, i) == 0 && !state_seen_has(us, model_item_hash(m, i)))
			unconsumed0++;
	scorer_score_all(sc, us, u, s);
	avail = brute_force(m, us, s, bf);
	got = scorer_topn(sc, us, u, 12, 1, it, sco);
	memset(count, 0, sizeof(count));
	int consumed = 0;
	for (size_t k = 0; k < got; k++) {
		count[model_item_tier1(m, it[k])]++;
		consumed += state_seen_has(us, model_item_hash(m, it[k]));
	}
	/* Expected: every unconsumed tier-0 item, then the best others. */
	uint32_t fill_ok = 1, others = 0;
	for (size_t k = 0; k < avail && others < 12 - unconsumed0; k++) {
		if (model_item_tier1(m, bf[k].i) == 0)
			continue;
		int in = 0;
		for (size_t q = 0; q < got; q++)
			in |= it[q] == bf[k].i;
		if (!in)
			fill_ok = 0;
		others++;
	}
	CHECK(got == 12 && count[0] == unconsumed0 && consumed == 0 && fill_ok,
	    "short tier (%u unconsumed): leftovers filled by the global best", unconsumed0);

	/* No long-term tier-1 weight: calibration falls back to plain top-N. */
	us->n_tiers = 0;
	uint32_t it2[64];
	float sco2[64];
	size_t g1 = scorer_topn(sc, us, u, 20, 1, it, sco);
	size_t g2 = scorer_topn(sc, us, u, 20, 0, it2, sco2);
	CHECK(g1 == g2 && memcmp(it, it2, g1 * sizeof(uint32_t)) == 0,
	    "no tier weights: calibrated == plain");
	free(u);
	free(s);
	free(bf);
	state_free(us);
	return fails;
}

#define B_USERS 150 /* > 2 chunks of 64 */
#define B_N     40

/*
 * scorer_topn_batch against scorer_topn user by user (same items, scores
 * within 1e-5, plain and calibrated), consumed items never returned, and a
 * user's results bit-identical whatever batch it is computed in (alone, at
 * another position, in a chunk of another size): the daemon's flush and the
 * offline replay batch users differently and must still agree.
 */
static int
test_batch(const struct model *m, struct scorer *sc)
{
	uint32_t dim = model_dim(m);
	struct user_state *us[B_USERS];
	float *U = malloc((size_t)B_USERS * dim * sizeof(float));
	uint32_t *it = malloc((size_t)B_USERS * B_N * sizeof(uint32_t));
	uint32_t *it2 = malloc((size_t)B_USERS * B_N * sizeof(uint32_t));
	float *sco = malloc((size_t)B_USERS * B_N * sizeof(float));
	float *sco2 = malloc((size_t)B_USERS * B_N * sizeof(float));
	size_t cnt[B_USERS], cnt2[B_USERS];
	uint32_t one_it[B_N];
	float one_sco[B_N];
	int fails = 0;

	for (int k = 0; k < B_USERS; k++) {
		us[k] = state_new(model_hparams(m));
		/* user 0 has no history (no tiers); user 1 consumed many items */
		warm_user(m, us[k], 1000 + (uint64_t)k, k == 0 ? 0 : k == 1 ? 200 : 1 + k % 37);
		scorer_interest(m, us[k], U + (size_t)k * dim);
	}
	for (int cal = 0; cal <= 1; cal++) {
		int same = 1, close = 1, seen = 0, full = 1, exact = 1, exact_sub = 1;
		double worst = 0;

		scorer_topn_batch(
		    sc, (const struct user_state *const *)us, U, B_USERS, B_N, cal, it, sco, cnt);
		for (int k = 0; k < B_USERS; k++) {
			size_t got =
			    scorer_topn(sc, us[k], U + (size_t)k * dim, B_N, cal, one_it, one_sco);
			size_t unconsumed = 0;

			for (uint32_t i = 0; i < model_n_items(m); i++)
				unconsumed += !state_seen_has(us[k], model_item_hash(m, i));
			if (cnt[k] != (unconsumed < B_N ? unconsumed : B_N))
				full = 0;
			if (got != cnt[k])
				same = 0;
			for (size_t q = 0; q < got && q < cnt[k]; q++) {
				double d = fabs((double)one_sco[q] - sco[(size_t)k * B_N + q]);

				if (one_it[q] != it[(size_t)k * B_N + q])
					same = 0;
				if (d > worst)
					worst = d;
				if (d > 1e-5)
					close = 0;
			}
			for (size_t q = 0; q < cnt[k]; q++)
				seen |= state_seen_has(
				    us[k], model_item_hash(m, it[(size_t)k * B_N + q]));
			/* alone */
			size_t c1;
			scorer_topn_batch(sc, (const struct user_state *const *)&us[k],
			    U + (size_t)k * dim, 1, B_N, cal, one_it, one_sco, &c1);
			if (c1 != cnt[k] ||
			    memcmp(one_it, it + (size_t)k * B_N, c1 * sizeof(uint32_t)) != 0 ||
			    memcmp(one_sco, sco + (size_t)k * B_N, c1 * sizeof(float)) != 0)
				exact = 0;
		}
		/*
		 * Every kernel this CPU runs: the fused ones (avx512, avx2) the same
		 * items and scores bit for bit; sse2 (no FMA) the k-th best score
		 * within 1e-5 of theirs (the items may swap only at near-ties).
		 */
		static const struct {
			const char *name;
			int fused;
		} kernels[] = { { "avx512", 1 }, { "avx2", 1 }, { "sse2", 0 } };
		int ref_fused = strcmp(scorer_kernel_name(sc), "sse2") != 0;
		int kernels_same = 1, kernels_close = 1, kernels_run = 0, other = 0;
		double kworst = 0;

		for (size_t q = 0; q < sizeof(kernels) / sizeof(kernels[0]); q++) {
			int rc = scorer_set_kernel(sc, kernels[q].name);

			if (rc == -2) {
				printf("# kernel %s: not on this CPU\n", kernels[q].name);
				continue;
			}
			kernels_run++;
			other += kernels[q].fused != ref_fused;
			scorer_topn_batch(sc, (const struct user_state *const *)us, U, B_USERS, B_N,
			    cal, it2, sco2, cnt2);
			for (int k = 0; k < B_USERS; k++) {
				const float *a = sco + (size_t)k * B_N, *b = sco2 + (size_t)k * B_N;

				if (rc != 0 || cnt2[k] != cnt[k]) {
					kernels_same = kernels_close = 0;
					continue;
				}
				if (kernels[q].fused == ref_fused) {
					if (memcmp(it2 + (size_t)k * B_N, it + (size_t)k * B_N,
						cnt[k] * sizeof(uint32_t)) != 0 ||
					    memcmp(b, a, cnt[k] * sizeof(float)) != 0)
						kernels_same = 0;
					continue;
				}
				for (size_t r = 0; r < cnt[k]; r++)
					kworst = fmax(kworst, fabs((double)a[r] - b[r]));
			}
		}
		kernels_close = kernels_close && kworst <= 1e-5;
		CHECK(scorer_set_kernel(sc, NULL) == 0 && scorer_set_kernel(sc, "avx3") == -1,
		    "kernel: the best again by NULL, an unknown name refused");
		CHECK(kernels_run >= 1 && kernels_same && kernels_close,
		    "batch (calibrate=%d): %d kernels on this CPU: the same bits as %s, %d with "
		    "%s FMA within 1e-5 (worst %.2g)",
		    cal, kernels_run, scorer_kernel_name(sc), other, ref_fused ? "no" : "", kworst);
		/* users 7.. in one call: every user at another position and chunk */
		scorer_topn_batch(sc, (const struct user_state *const *)(us + 7), U + 7 * dim,
		    B_USERS - 7, B_N, cal, it2, sco2, cnt2);
		for (int k = 7; k < B_USERS; k++) {
			size_t c = cnt2[k - 7];

			if (c != cnt[k] ||
			    memcmp(it2 + (size_t)(k - 7) * B_N, it + (size_t)k * B_N,
				c * sizeof(uint32_t)) != 0 ||
			    memcmp(sco2 + (size_t)(k - 7) * B_N, sco + (size_t)k * B_N,
				c * sizeof(float)) != 0)
				exact_sub = 0;
		}
		CHECK(same && close,
		    "batch (calibrate=%d, %d users): same items as scorer_topn, "
		    "scores within 1e-5 (worst %.2g)",
		    cal, B_USERS, worst);
		CHECK(!seen, "batch (calibrate=%d): no consumed item returned", cal);
		CHECK(cal || full, "batch (calibrate=%d): min(n, unconsumed) items per user", cal);
		CHECK(
		    exact, "batch (calibrate=%d): a user alone == in the batch, bit for bit", cal);
		CHECK(
		    exact_sub, "batch (calibrate=%d): other position and chunk, bit for bit", cal);
	}
	for (int k = 0; k < B_USERS; k++)
		cnt[k] = 99;
	scorer_topn_batch(sc, (const struct user_state *const *)us, U, B_USERS, 0, 1, it, sco, cnt);
	int zero = 1;
	for (int k = 0; k < B_USERS; k++)
		zero &= cnt[k] == 0;
	CHECK(zero, "batch top-0: every count 0");
	for (int k = 0; k < B_USERS; k++)
		state_free(us[k]);
	free(U);
	free(it);
	free(it2);
	free(sco);
	free(sco2);
	return fails;
}

/*
 * One kernel, every path: for each kernel this CPU runs, a user's top-N
 * scores are its scorer_score_all scores of those items, and
 * scorer_score_all_batch's rows are scorer_score_all's, bit for bit (the
 * trainer's validation and interest-eval rank with the daemon's numbers).
 */
static int
test_paths(const struct model *m, struct scorer *sc)
{
	enum { P_USERS = 70 }; /* > one chunk of 64 */
	static const char *const kernels[] = { "avx512", "avx2", "sse2" };
	uint32_t dim = model_dim(m), n_items = model_n_items(m);
	struct user_state *us[P_USERS];
	float *U = malloc((size_t)P_USERS * dim * sizeof(float));
	float *rows = malloc((size_t)P_USERS * n_items * sizeof(float));
	float *all = malloc((size_t)n_items * sizeof(float));
	uint32_t *it = malloc((size_t)P_USERS * B_N * sizeof(uint32_t));
	float *sco = malloc((size_t)P_USERS * B_N * sizeof(float));
	size_t cnt[P_USERS];
	int fails = 0;

	for (int k = 0; k < P_USERS; k++) {
		us[k] = state_new(model_hparams(m));
		warm_user(m, us[k], 9000 + (uint64_t)k, 1 + k % 23);
		scorer_interest(m, us[k], U + (size_t)k * dim);
	}
	for (size_t q = 0; q < sizeof(kernels) / sizeof(kernels[0]); q++) {
		int rows_same = 1, topn_same = 1;

		if (scorer_set_kernel(sc, kernels[q]) != 0)
			continue;
		scorer_topn_batch(
		    sc, (const struct user_state *const *)us, U, P_USERS, B_N, 0, it, sco, cnt);
		scorer_score_all_batch(sc, (const struct user_state *const *)us, U, P_USERS, rows);
		for (int k = 0; k < P_USERS; k++) {
			scorer_score_all(sc, us[k], U + (size_t)k * dim, all);
			if (memcmp(all, rows + (size_t)k * n_items, n_items * sizeof(float)) != 0)
				rows_same = 0;
			for (size_t r = 0; r < cnt[k]; r++)
				if (memcmp(&all[it[(size_t)k * B_N + r]], &sco[(size_t)k * B_N + r],
					sizeof(float)) != 0)
					topn_same = 0;
		}
		CHECK(rows_same && topn_same,
		    "kernel %s: top-N scores = score_all = score_all_batch, bit for bit",
		    kernels[q]);
	}
	scorer_set_kernel(sc, NULL);
	for (int k = 0; k < P_USERS; k++)
		state_free(us[k]);
	free(U);
	free(rows);
	free(all);
	free(it);
	free(sco);
	return fails;
}

/*
 * Tiered search: with probes covering the catalog it is exact, bit for bit
 * (the cell bounds never skip an item that could enter); with a small
 * budget it scores fewer items and still returns full lists of unconsumed
 * items, best first, with the exact scores.
 */
static int
test_tiered(const struct model *m, struct scorer *sc)
{
	uint32_t dim = model_dim(m), n_items = model_n_items(m);
	struct user_state *us[B_USERS];
	float *U = malloc((size_t)B_USERS * dim * sizeof(float));
	float *all = malloc((size_t)n_items * sizeof(float));
	uint32_t *it = malloc((size_t)B_USERS * B_N * sizeof(uint32_t));
	uint32_t *it2 = malloc((size_t)B_USERS * B_N * sizeof(uint32_t));
	float *sco = malloc((size_t)B_USERS * B_N * sizeof(float));
	float *sco2 = malloc((size_t)B_USERS * B_N * sizeof(float));
	size_t cnt[B_USERS], cnt2[B_USERS];
	int fails = 0;

	for (int k = 0; k < B_USERS; k++) {
		us[k] = state_new(model_hparams(m));
		warm_user(m, us[k], 5000 + (uint64_t)k, k == 0 ? 0 : k == 1 ? 200 : 1 + k % 29);
		scorer_interest(m, us[k], U + (size_t)k * dim);
	}
	for (int cal = 0; cal <= 1; cal++) {
		int same = 1, full = 1, clean = 1, sorted = 1, exact_scores = 1;
		uint64_t u0, i0, u1, i1;

		scorer_set_search(sc, 0, 0);
		scorer_topn_batch(
		    sc, (const struct user_state *const *)us, U, B_USERS, B_N, cal, it, sco, cnt);
		scorer_set_search(sc, 1, n_items);
		scorer_topn_batch(sc, (const struct user_state *const *)us, U, B_USERS, B_N, cal,
		    it2, sco2, cnt2);
		for (int k = 0; k < B_USERS; k++)
			if (cnt2[k] != cnt[k] ||
			    memcmp(it2 + (size_t)k * B_N, it + (size_t)k * B_N,
				cnt[k] * sizeof(uint32_t)) != 0 ||
			    memcmp(sco2 + (size_t)k * B_N, sco + (size_t)k * B_N,
				cnt[k] * sizeof(float)) != 0)
				same = 0;
		CHECK(same, "tiered (calibrate=%d), probes over the catalog: exact, bit for bit",
		    cal);

		scorer_set_search(sc, 1, 16);
		scorer_stats(sc, &u0, &i0);
		scorer_topn_batch(sc, (const struct user_state *const *)us, U, B_USERS, B_N, cal,
		    it2, sco2, cnt2);
		scorer_stats(sc, &u1, &i1);
		for (int k = 0; k < B_USERS; k++) {
			size_t unconsumed = 0;

			for (uint32_t i = 0; i < n_items; i++)
				unconsumed += !state_seen_has(us[k], model_item_hash(m, i));
			full &= cnt2[k] == (unconsumed < B_N ? unconsumed : B_N);
			scorer_score_all(sc, us[k], U + (size_t)k * dim, all);
			for (size_t q = 0; q < cnt2[k]; q++) {
				uint32_t i = it2[(size_t)k * B_N + q];
				float s = sco2[(size_t)k * B_N + q];

				clean &= !state_seen_has(us[k], model_item_hash(m, i));
				exact_scores &= fabs((double)all[i] - s) <= 1e-5;
				if (q > 0 &&
				    (s > sco2[(size_t)k * B_N + q - 1] ||
					it2[(size_t)k * B_N + q - 1] == i))
					sorted = 0;
			}
		}
		CHECK(u1 - u0 == B_USERS && (i1 - i0) < (uint64_t)B_USERS * n_items,
		    "tiered (calibrate=%d), 16 probe items: %.0f of %u items scored per user", cal,
		    (double)(i1 - i0) / B_USERS, n_items);
		CHECK(full && clean,
		    "tiered (calibrate=%d): min(n, unconsumed) items, none consumed", cal);
		CHECK(sorted && exact_scores,
		    "tiered (calibrate=%d): best first, distinct, the exact scores", cal);
	}
	scorer_set_search(sc, 0, 0);
	for (int k = 0; k < B_USERS; k++)
		state_free(us[k]);
	free(U);
	free(all);
	free(it);
	free(it2);
	free(sco);
	free(sco2);
	return fails;
}

int
main(void)
{
	struct fixture_cat fc = { .n_items = 300, .dim = 16, .n_tier1 = 4, .k2 = 3, .seed = 8 };
	char dir[64], cpath[128], mpath[128], err[512];
	struct model *m, *cat;
	struct scorer *sc;
	struct user_state *us;
	int fails = 0;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(cpath, sizeof(cpath), "%s/s.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/s.imdl", dir);
	m = fixture_model(cpath, mpath, &fc, 16, err, sizeof(err));
	CHECK(m != NULL, "model built (%s)", m == NULL ? err : "ok");
	if (m == NULL)
		return 1;
	cat = model_load(cpath, err, sizeof(err));
	CHECK(cat != NULL && scorer_new(cat) == NULL, "no scorer for a catalog");
	sc = scorer_new(m);
	us = state_new(model_hparams(m));
	CHECK(sc != NULL && us != NULL, "scorer and state");
	warm_user(m, us, 77, 40);
	fails += test_scores(m, sc, us);
	fails += test_topn(m, sc, us);
	fails += test_calibration(m, sc);
	fails += test_batch(m, sc);
	fails += test_paths(m, sc);
	fails += test_tiered(m, sc);
	state_free(us);
	scorer_free(sc);
	model_free(cat);
	model_free(m);
	unlink(cpath);
	unlink(mpath);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
