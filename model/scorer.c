/*
 * Scoring (model/scorer.h, schemas/modelfile.md "Semantics"): the interest
 * vector, every item's score u.e_i + (ib_i + tier terms), and top-N by
 * bounded heaps behind a per-user score threshold (no full sort), with
 * optional calibration across the user's tier-1 interests.
 *
 * The item embeddings are re-packed once per model into blocks of 16 items
 * of one tier-2 node, dimension-major, so one 64-byte vector holds a
 * dimension of 16 items and the whole block shares one tier term per user.
 * A small kernel computes 8 users x 16 items at a time in registers, adds
 * bias and tier term, and hands a block to the selection only when one of
 * its scores reaches the user's threshold: no score row is ever written to
 * memory, so a user costs one pass over the packed embeddings (shared by
 * the 64 users of a chunk through the cache) and almost nothing else.
 */
#include "scorer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "modelfile.h"
#include "state.h"

/* Products and sums stay separate operations: the same bits on every CPU. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define N_LEVELS     2            /* tier levels with learned terms */
#define SCORER_LANES 16           /* items per packed block: one 64-byte vector */
#define SCORER_GROUP SCORER_BATCH /* users per kernel call, accumulators in registers */
#define SCORER_CHUNK 64           /* users scored together */
#define SCORER_SPAN  32         /* blocks per cache span: 32 x 16 x d floats (128 KiB at d = 64) */
#define SCORER_PAD   UINT32_MAX /* item index of a padding lane */

typedef float scorer_vec __attribute__((vector_size(SCORER_LANES * sizeof(float))));
typedef int32_t scorer_ivec __attribute__((vector_size(SCORER_LANES * sizeof(int32_t))));

struct scored {
	float s;
	uint32_t item;
};

/* One user's selection while its chunk is scored (pools in struct scorer). */
struct scorer_sel {
	const struct user_state *us;
	float thr;       /* no score below it can enter the global heap */
	float *thr_tier; /* [n_tier1]: ... nor node j's tier heap (+inf: no such heap) */
	uint32_t n_best;
	int calibrated;
	struct scored *best;      /* [cap]: global heap, root = worst kept */
	struct scored *tier_best; /* [cap]: one heap per tier-1 node, back to back */
	uint32_t *quota;          /* [n_tier1] slots of each tier-1 node */
	uint32_t *tier_start;     /* [n_tier1] its heap's first slot in tier_best */
	uint32_t *tier_size;      /* [n_tier1] its heap's fill */
	float *nt;                /* [n_nodes] the user's tier term per node, 0 elsewhere */
};

struct scorer {
	const struct model *m;
	uint32_t n_items, n_nodes, n_tier1, dim;
	/* The packed catalog, built once per model. */
	uint32_t n_blocks;
	float *pe;            /* [n_blocks][dim][LANES], 64-byte aligned */
	float *pbias;         /* [n_blocks][LANES]: item bias, -inf in padding lanes */
	uint32_t *pitem;      /* [n_blocks][LANES]: item index, SCORER_PAD in padding */
	uint32_t *bnode1;     /* [n_blocks] the block's tier-1 node */
	uint32_t *bnode2;     /* [n_blocks] the block's tier-2 node */
	uint32_t *item_tier1; /* [n_items] */
	/* Scratch. */
	double *remainder; /* [n_tier1] largest-remainder fractions */
	uint8_t *picked;   /* [n_items], all zero between calls */
	float *ubuf;       /* [SCORER_CHUNK + GROUP][dim] user vectors, zero past the chunk's users */
	uint32_t kernel;   /* index into scorer_kernels */
	uint32_t cap;      /* top-N size of the current call */
	uint32_t pool_cap; /* heap slots per user the pools hold */
	struct scored *pool_best, *pool_tier; /* [SCORER_CHUNK][pool_cap] */
	uint32_t *pool_tiers;                 /* [SCORER_CHUNK][3][n_tier1] */
	float *pool_nt;                       /* [SCORER_CHUNK][n_nodes] */
	float *pool_thr;                      /* [SCORER_CHUNK][n_tier1] */
	struct scorer_sel sel[SCORER_CHUNK];
};

void
scorer_interest(const struct model *m, const struct user_state *us, float *u)
{
	const struct model_weights *w = model_weights(m);
	uint32_t dim = model_dim(m);

	memcpy(u, w->pb, dim * sizeof(float));
	cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)dim, (int)us->hidden, 1.0f, w->P,
	    (int)us->hidden, us->h, 1, 1.0f, u, 1);
}

/*
 * The user's tier term of every node into nt[n_nodes]: each level's weights
 * normalised by that level's sum, 0 for the nodes the user does not hold
 * (and nodes from an older model that this one lacks are ignored).
 */
static void
scorer_node_terms(const struct scorer *sc, const struct user_state *us, float *nt)
{
	const struct model *m = sc->m;
	const struct model_weights *w = model_weights(m);
	double sum_short[N_LEVELS] = { 0 }, sum_long[N_LEVELS] = { 0 };

	memset(nt, 0, sc->n_nodes * sizeof(float));
	for (uint16_t t = 0; t < us->n_tiers; t++) {
		uint32_t node = us->tiers[t].node;

		if (node >= sc->n_nodes)
			continue;
		uint32_t lv = model_node_level(m, node) - 1;
		sum_short[lv] += us->tiers[t].w_short;
		sum_long[lv] += us->tiers[t].w_long;
	}
	for (uint16_t t = 0; t < us->n_tiers; t++) {
		uint32_t node = us->tiers[t].node;
		double term = 0.0;

		if (node >= sc->n_nodes)
			continue;
		uint32_t lv = model_node_level(m, node) - 1;
		if (sum_short[lv] > 0.0)
			term += (double)w->alpha[2 * lv] * us->tiers[t].w_short / sum_short[lv];
		if (sum_long[lv] > 0.0)
			term += (double)w->alpha[2 * lv + 1] * us->tiers[t].w_long / sum_long[lv];
		nt[node] = (float)term;
	}
}

/* a ranks before b: higher score, then lower item index (deterministic ties). */
static int
scored_better(struct scored a, struct scored b)
{
	return a.s > b.s || (a.s == b.s && a.item < b.item);
}

static int
scored_cmp(const void *pa, const void *pb)
{
	const struct scored *a = pa, *b = pb;

	return scored_better(*a, *b) ? -1 : scored_better(*b, *a) ? 1 : 0;
}

/*
 * Offers x to a heap of at most cap entries whose root is its worst entry:
 * kept if the heap is not full or x beats the root.
 */
static void
heap_offer(struct scored *heap, uint32_t *size, uint32_t cap, struct scored x)
{
	uint32_t k;

	if (*size < cap) {
		k = (*size)++;
		while (k > 0 && scored_better(heap[(k - 1) / 2], x)) {
			heap[k] = heap[(k - 1) / 2];
			k = (k - 1) / 2;
		}
		heap[k] = x;
		return;
	}
	if (cap == 0 || !scored_better(x, heap[0]))
		return;
	k = 0;
	for (;;) {
		uint32_t l = 2 * k + 1, r = l + 1, worst = l;

		if (l >= *size)
			break;
		if (r < *size && scored_better(heap[l], heap[r]))
			worst = r;
		if (!scored_better(x, heap[worst]))
			break;
		heap[k] = heap[worst];
		k = worst;
	}
	heap[k] = x;
}

/*
 * Stable counting sort of idx[n] by key[idx[k]] (keys < n_keys) into out;
 * count is scratch of n_keys + 1.
 */
static void
scorer_sort_by(const uint32_t *idx, uint32_t n, const uint32_t *key, uint32_t n_keys,
    uint32_t *count, uint32_t *out)
{
	memset(count, 0, ((size_t)n_keys + 1) * sizeof(uint32_t));
	for (uint32_t k = 0; k < n; k++)
		count[key[idx[k]] + 1]++;
	for (uint32_t j = 0; j < n_keys; j++)
		count[j + 1] += count[j];
	for (uint32_t k = 0; k < n; k++)
		out[count[key[idx[k]]]++] = idx[k];
}

/*
 * Packs the model's item embeddings and biases into blocks of SCORER_LANES
 * items sharing one (tier-2, tier-1) node pair: items ordered by tier-2
 * node, then tier-1 node, then index; a block closes at a node change and
 * its empty lanes are padding (bias -inf, item SCORER_PAD). Returns 0 or -1
 * on ENOMEM.
 */
static int
scorer_pack(struct scorer *sc)
{
	const struct model *m = sc->m;
	const float *emb = model_item_embeddings(m);
	const float *ib = model_weights(m)->ib;
	uint32_t n = sc->n_items, dim = sc->dim, nb = 0;
	uint32_t *t2 = calloc((size_t)n + 1, sizeof(uint32_t));
	uint32_t *a = calloc((size_t)n + 1, sizeof(uint32_t));
	uint32_t *b = calloc((size_t)n + 1, sizeof(uint32_t));
	uint32_t *count = malloc(((size_t)sc->n_nodes + 1) * sizeof(uint32_t));
	int rc = -1;

	if (t2 == NULL || a == NULL || b == NULL || count == NULL)
		goto done;
	for (uint32_t i = 0; i < n; i++) {
		sc->item_tier1[i] = model_item_tier1(m, i);
		t2[i] = model_item_tier2(m, i);
		a[i] = i;
	}
	scorer_sort_by(a, n, sc->item_tier1, sc->n_nodes, count, b);
	scorer_sort_by(b, n, t2, sc->n_nodes, count, a);
	/* Count the blocks, then fill them. */
	for (uint32_t k = 0, lane = 0; k < n; k++) {
		if (k > 0 &&
		    (t2[a[k]] != t2[a[k - 1]] || sc->item_tier1[a[k]] != sc->item_tier1[a[k - 1]]))
			lane = 0;
		if (lane == 0)
			nb++;
		lane = (lane + 1) % SCORER_LANES;
	}
	sc->n_blocks = nb;
	sc->pe =
	    aligned_alloc(64, ((size_t)nb * dim * SCORER_LANES + SCORER_LANES) * sizeof(float));
	sc->pbias = malloc(((size_t)nb + 1) * SCORER_LANES * sizeof(float));
	sc->pitem = malloc(((size_t)nb + 1) * SCORER_LANES * sizeof(uint32_t));
	sc->bnode1 = malloc(((size_t)nb + 1) * sizeof(uint32_t));
	sc->bnode2 = malloc(((size_t)nb + 1) * sizeof(uint32_t));
	if (sc->pe == NULL || sc->pbias == NULL || sc->pitem == NULL || sc->bnode1 == NULL ||
	    sc->bnode2 == NULL)
		goto done;
	memset(sc->pe, 0, (size_t)nb * dim * SCORER_LANES * sizeof(float));
	for (size_t q = 0; q < (size_t)nb * SCORER_LANES; q++) {
		sc->pbias[q] = -INFINITY;
		sc->pitem[q] = SCORER_PAD;
	}
	for (uint32_t k = 0, lane = 0, blk = 0; k < n; k++) {
		uint32_t i = a[k];

		if (k > 0 &&
		    (t2[i] != t2[a[k - 1]] || sc->item_tier1[i] != sc->item_tier1[a[k - 1]]))
			lane = 0;
		if (k > 0 && lane == 0)
			blk++;
		sc->bnode1[blk] = sc->item_tier1[i];
		sc->bnode2[blk] = t2[i];
		sc->pbias[(size_t)blk * SCORER_LANES + lane] = ib[i];
		sc->pitem[(size_t)blk * SCORER_LANES + lane] = i;
		for (uint32_t d = 0; d < dim; d++)
			sc->pe[((size_t)blk * dim + d) * SCORER_LANES + lane] =
			    emb[(size_t)i * dim + d];
		lane = (lane + 1) % SCORER_LANES;
	}
	rc = 0;
done:
	free(t2);
	free(a);
	free(b);
	free(count);
	return rc;
}

struct scorer *
scorer_new(const struct model *m)
{
	struct scorer *sc;

	if (!model_has_weights(m))
		return NULL;
	sc = calloc(1, sizeof(*sc));
	if (sc == NULL)
		return NULL;
	sc->m = m;
	sc->n_items = model_n_items(m);
	sc->n_nodes = model_n_nodes(m);
	sc->n_tier1 = model_n_tier1(m);
	sc->dim = model_dim(m);
	sc->remainder = malloc(((size_t)sc->n_tier1 + 1) * sizeof(double));
	sc->picked = calloc((size_t)sc->n_items + 1, 1);
	sc->item_tier1 = malloc(((size_t)sc->n_items + 1) * sizeof(uint32_t));
	sc->ubuf = calloc((size_t)(SCORER_CHUNK + SCORER_GROUP) * sc->dim, sizeof(float));
	sc->pool_tiers = malloc((size_t)SCORER_CHUNK * 3 * (sc->n_tier1 + 1) * sizeof(uint32_t));
	sc->pool_nt = calloc((size_t)SCORER_CHUNK * (sc->n_nodes + 1), sizeof(float));
	sc->pool_thr = calloc((size_t)SCORER_CHUNK * (sc->n_tier1 + 1), sizeof(float));
	if (sc->remainder == NULL || sc->picked == NULL || sc->item_tier1 == NULL ||
	    sc->ubuf == NULL || sc->pool_tiers == NULL || sc->pool_nt == NULL || sc->pool_thr == NULL ||
	    scorer_pack(sc) != 0 || scorer_set_kernel(sc, NULL) != 0) {
		scorer_free(sc);
		return NULL;
	}
	for (size_t k = 0; k < SCORER_CHUNK; k++) {
		struct scorer_sel *sel = &sc->sel[k];
		uint32_t *t = sc->pool_tiers + k * 3 * (sc->n_tier1 + 1);

		sel->quota = t;
		sel->tier_start = t + sc->n_tier1 + 1;
		sel->tier_size = t + 2 * (sc->n_tier1 + 1);
		sel->nt = sc->pool_nt + k * (sc->n_nodes + 1);
		sel->thr_tier = sc->pool_thr + k * (sc->n_tier1 + 1);
	}
	return sc;
}

void
scorer_free(struct scorer *sc)
{
	if (sc == NULL)
		return;
	free(sc->pe);
	free(sc->pbias);
	free(sc->pitem);
	free(sc->bnode1);
	free(sc->bnode2);
	free(sc->item_tier1);
	free(sc->remainder);
	free(sc->picked);
	free(sc->ubuf);
	free(sc->pool_best);
	free(sc->pool_tier);
	free(sc->pool_tiers);
	free(sc->pool_nt);
	free(sc->pool_thr);
	free(sc);
}

/*
 * Sizes the heap pools for cap slots per user (grows only: a daemon's top-N
 * is fixed, so this allocates once). Returns 0 or -1 on ENOMEM.
 */
static int
scorer_pools(struct scorer *sc, uint32_t cap)
{
	struct scored *best, *tier;

	if (cap <= sc->pool_cap)
		return 0;
	best = malloc((size_t)SCORER_CHUNK * cap * sizeof(struct scored));
	tier = malloc((size_t)SCORER_CHUNK * cap * sizeof(struct scored));
	if (best == NULL || tier == NULL) {
		free(best);
		free(tier);
		return -1;
	}
	free(sc->pool_best);
	free(sc->pool_tier);
	sc->pool_best = best;
	sc->pool_tier = tier;
	sc->pool_cap = cap;
	for (size_t k = 0; k < SCORER_CHUNK; k++) {
		sc->sel[k].best = best + k * cap;
		sc->sel[k].tier_best = tier + k * cap;
	}
	return 0;
}

/*
 * Largest-remainder split of n slots over tier-1 nodes by the user's
 * long-term tier-1 weights into quota. Returns 0 if the user has no such
 * weight.
 */
static int
scorer_quotas(struct scorer *sc, const struct user_state *us, uint32_t n, uint32_t *quota)
{
	const struct model *m = sc->m;
	double total = 0.0;
	uint32_t given = 0;

	memset(quota, 0, sc->n_tier1 * sizeof(uint32_t));
	for (uint32_t j = 0; j < sc->n_tier1; j++)
		sc->remainder[j] = 0.0;
	for (uint16_t t = 0; t < us->n_tiers; t++) {
		uint32_t node = us->tiers[t].node;

		if (node < sc->n_tier1 && model_node_level(m, node) == 1 &&
		    us->tiers[t].w_long > 0.0f) {
			sc->remainder[node] = us->tiers[t].w_long;
			total += us->tiers[t].w_long;
		}
	}
	if (!(total > 0.0))
		return 0;
	for (uint32_t j = 0; j < sc->n_tier1; j++) {
		double share = (double)n * sc->remainder[j] / total;
		uint32_t q = (uint32_t)share;

		quota[j] = q;
		sc->remainder[j] = share - q;
		given += q;
	}
	while (given < n) {
		uint32_t top = 0;

		for (uint32_t j = 1; j < sc->n_tier1; j++)
			if (sc->remainder[j] > sc->remainder[top])
				top = j;
		quota[top]++;
		sc->remainder[top] = -1.0; /* one extra slot per node at most */
		given++;
	}
	return 1;
}

/* The worst kept score of a full heap (root), -inf for NaN. */
static float
heap_floor(const struct scored *heap)
{
	return isnan(heap[0].s) ? -INFINITY : heap[0].s;
}

/*
 * The score below which no item of block blk can enter any of sel's heaps:
 * the global heap's, or that of the block's tier-1 node (every item of a
 * block has the same one). An item scoring exactly the threshold is left
 * to the exact test of scorer_offer.
 */
static inline __attribute__((always_inline)) float
scorer_block_thr(const struct scorer *sc, const struct scorer_sel *sel, uint32_t blk)
{
	float t = sel->thr_tier[sc->bnode1[blk]];

	return t < sel->thr ? t : sel->thr;
}

/* Starts user us's selection in sel: empty heaps, quotas, tier terms. */
static void
scorer_begin(struct scorer *sc, struct scorer_sel *sel, const struct user_state *us, int calibrate)
{
	sel->us = us;
	sel->n_best = 0;
	sel->thr = -INFINITY;
	sel->calibrated = calibrate && scorer_quotas(sc, us, sc->cap, sel->quota);
	if (sel->calibrated) {
		uint32_t start = 0;

		for (uint32_t j = 0; j < sc->n_tier1; j++) {
			sel->tier_start[j] = start;
			sel->tier_size[j] = 0;
			sel->thr_tier[j] = sel->quota[j] > 0 ? -INFINITY : INFINITY;
			start += sel->quota[j];
		}
	} else {
		for (uint32_t j = 0; j < sc->n_tier1; j++)
			sel->thr_tier[j] = INFINITY;
	}
	scorer_node_terms(sc, us, sel->nt);
}

/*
 * Offers item i with score s to sel's heaps. The consumed filter is tested
 * only for an item that would enter a heap: heap_offer would reject every
 * other one anyway, so the picks are the same as testing every item, at a
 * few hundred filter tests instead of n_items.
 */
static void
scorer_offer(struct scorer *sc, struct scorer_sel *sel, float s, uint32_t i)
{
	struct scored x = { s, i };
	int to_best = sel->n_best < sc->cap || scored_better(x, sel->best[0]);
	int to_tier = 0;
	uint32_t j = 0;

	if (sel->calibrated) {
		j = sc->item_tier1[i];
		to_tier = sel->tier_size[j] < sel->quota[j] ||
		    (sel->quota[j] > 0 && scored_better(x, sel->tier_best[sel->tier_start[j]]));
	}
	if (!to_best && !to_tier)
		return;
	if (state_seen_has(sel->us, model_item_hash(sc->m, i)))
		return;
	if (to_best) {
		heap_offer(sel->best, &sel->n_best, sc->cap, x);
		if (sel->n_best == sc->cap)
			sel->thr = heap_floor(sel->best);
	}
	if (to_tier) {
		struct scored *heap = sel->tier_best + sel->tier_start[j];

		heap_offer(heap, &sel->tier_size[j], sel->quota[j], x);
		if (sel->tier_size[j] == sel->quota[j])
			sel->thr_tier[j] = heap_floor(heap);
	}
}

/*
 * Ends sel: the picks, best first, into items/scores (calibrated: each
 * tier-1 node's quota from its own heap, topped up from the global best).
 * Returns the count.
 */
static size_t
scorer_finish(struct scorer *sc, struct scorer_sel *sel, uint32_t *items, float *scores)
{
	struct scored *res = sel->tier_best; /* results collect here, front to back */
	uint32_t out = 0;

	if (sel->calibrated) {
		/* Compact the per-tier picks to the front, then top up from the global best. */
		for (uint32_t j = 0; j < sc->n_tier1; j++) {
			for (uint32_t k = 0; k < sel->tier_size[j]; k++) {
				struct scored x = sel->tier_best[sel->tier_start[j] + k];

				sc->picked[x.item] = 1;
				res[out++] = x;
			}
		}
		qsort(sel->best, sel->n_best, sizeof(struct scored), scored_cmp);
		for (uint32_t k = 0; k < sel->n_best && out < sc->cap; k++)
			if (!sc->picked[sel->best[k].item])
				res[out++] = sel->best[k];
		for (uint32_t k = 0; k < out; k++)
			sc->picked[res[k].item] = 0;
	} else {
		res = sel->best;
		out = sel->n_best;
	}
	qsort(res, out, sizeof(struct scored), scored_cmp);
	for (uint32_t k = 0; k < out; k++) {
		items[k] = res[k].item;
		scores[k] = res[k].s;
	}
	return out;
}

/* ---- the kernel ------------------------------------------------------------ */

/*
 * acc[r] = the dot products of user vector U[r] (rows dim apart) with the
 * 16 items of the packed block pe, for SCORER_GROUP users: products added
 * in dimension order, each a multiply then an add, in named accumulators so
 * they stay in registers. scorer_dot1 is the same arithmetic for one user,
 * so a user's scores do not depend on which path or group computed them.
 */
static inline __attribute__((always_inline)) void
scorer_dot8(const float *pe, const float *U, uint32_t dim, scorer_vec *acc)
{
	scorer_vec a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
	scorer_vec a4 = { 0 }, a5 = { 0 }, a6 = { 0 }, a7 = { 0 };
	const float *u0 = U, *u1 = U + dim, *u2 = U + 2 * dim, *u3 = U + 3 * dim;
	const float *u4 = U + 4 * dim, *u5 = U + 5 * dim, *u6 = U + 6 * dim, *u7 = U + 7 * dim;

	for (uint32_t k = 0; k < dim; k++) {
		scorer_vec e;

		memcpy(&e, pe + (size_t)k * SCORER_LANES, sizeof(e));
		a0 += e * u0[k];
		a1 += e * u1[k];
		a2 += e * u2[k];
		a3 += e * u3[k];
		a4 += e * u4[k];
		a5 += e * u5[k];
		a6 += e * u6[k];
		a7 += e * u7[k];
	}
	acc[0] = a0;
	acc[1] = a1;
	acc[2] = a2;
	acc[3] = a3;
	acc[4] = a4;
	acc[5] = a5;
	acc[6] = a6;
	acc[7] = a7;
}

static inline __attribute__((always_inline)) void
scorer_dot1(const float *pe, const float *u, uint32_t dim, scorer_vec *acc)
{
	scorer_vec a0 = { 0 };

	for (uint32_t k = 0; k < dim; k++) {
		scorer_vec e;

		memcpy(&e, pe + (size_t)k * SCORER_LANES, sizeof(e));
		a0 += e * u[k];
	}
	*acc = a0;
}

/*
 * The block's final scores for one user: dot + (bias + the user's tier
 * term of the block's nodes), the same expression for every item.
 */
static inline __attribute__((always_inline)) void
scorer_block_scores(
    const struct scorer *sc, const float *nt, uint32_t blk, const scorer_vec *dot, scorer_vec *s)
{
	scorer_vec bias;
	float term = nt[sc->bnode1[blk]] + nt[sc->bnode2[blk]];

	memcpy(&bias, sc->pbias + (size_t)blk * SCORER_LANES, sizeof(bias));
	*s = *dot + (bias + term);
}

/* Offers the lanes of block blk whose score sv[lane] reaches sel's threshold. */
static inline __attribute__((always_inline)) void
scorer_lanes_offer(struct scorer *sc, struct scorer_sel *sel, uint32_t blk, const float *sv)
{
	for (uint32_t l = 0; l < SCORER_LANES; l++) {
		uint32_t i = sc->pitem[(size_t)blk * SCORER_LANES + l];

		if (sv[l] >= scorer_block_thr(sc, sel, blk) && i != SCORER_PAD)
			scorer_offer(sc, sel, sv[l], i);
	}
}

/* Offers the lanes of block blk that reach sel's threshold. */
static inline __attribute__((always_inline)) void
scorer_block_offer(struct scorer *sc, struct scorer_sel *sel, uint32_t blk, const scorer_vec *s)
{
	scorer_ivec hit = *s >= scorer_block_thr(sc, sel, blk);
	uint64_t w[SCORER_LANES / 2];
	float sv[SCORER_LANES];

	memcpy(w, &hit, sizeof(w));
	if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) == 0)
		return; /* the common case once the heaps are full */
	memcpy(sv, s, sizeof(sv));
	scorer_lanes_offer(sc, sel, blk, sv);
}

/*
 * Scores the n_users users of sel[] (vectors in sc->ubuf, zero rows past
 * them) against every block: span by span, so a span's packed embeddings
 * stay in cache while every group of SCORER_GROUP users passes over them.
 * The AVX-512 kernel: a block's 16 items are one register.
 */
__attribute__((target("avx512f"))) static void
scorer_chunk_avx512(struct scorer *sc, size_t n_users)
{
	uint32_t dim = sc->dim;

	for (uint32_t b0 = 0; b0 < sc->n_blocks; b0 += SCORER_SPAN) {
		uint32_t b1 = sc->n_blocks - b0 < SCORER_SPAN ? sc->n_blocks : b0 + SCORER_SPAN;

		for (size_t g = 0; g < n_users; g += SCORER_GROUP) {
			size_t ng = n_users - g < SCORER_GROUP ? n_users - g : SCORER_GROUP;

			for (uint32_t blk = b0; blk < b1; blk++) {
				scorer_vec acc[SCORER_GROUP];

				scorer_dot8(sc->pe + (size_t)blk * dim * SCORER_LANES,
				    sc->ubuf + g * dim, dim, acc);
				for (size_t r = 0; r < ng; r++) {
					struct scorer_sel *sel = &sc->sel[g + r];
					scorer_vec s;

					scorer_block_scores(sc, sel->nt, blk, &acc[r], &s);
					scorer_block_offer(sc, sel, blk, &s);
				}
			}
		}
	}
}

/*
 * The same kernel for narrower registers of W floats (AVX2: 8, SSE2: 4). A
 * 16-item block is 16 / W registers, so ROWS = 8 W / 16 users share a pass
 * (8 accumulator registers, half of the 16 these instruction sets have; a
 * 16-float vector type there would be split through memory by the
 * compiler). Same arithmetic per item as scorer_dot8 (a multiply, then an
 * add, in dimension order), so every kernel computes the same bits.
 */
#define SCORER_NARROW_KERNEL(NAME, TARGET, W, R)                                               \
	typedef float NAME##_vec __attribute__((vector_size((W) * sizeof(float))));             \
	typedef int32_t NAME##_ivec __attribute__((vector_size((W) * sizeof(int32_t))));        \
	__attribute__((target(TARGET))) static void NAME(struct scorer *sc, size_t n_users)     \
	{                                                                                       \
		enum { PARTS = SCORER_LANES / (W), ROWS = (R) };                                \
		uint32_t dim = sc->dim;                                                         \
                                                                                                \
		for (uint32_t b0 = 0; b0 < sc->n_blocks; b0 += SCORER_SPAN) {                   \
			uint32_t b1 =                                                           \
			    sc->n_blocks - b0 < SCORER_SPAN ? sc->n_blocks : b0 + SCORER_SPAN;  \
			for (size_t g = 0; g < n_users; g += ROWS) {                            \
				size_t ng = n_users - g < ROWS ? n_users - g : ROWS;            \
				const float *U = sc->ubuf + g * dim;                            \
				for (uint32_t blk = b0; blk < b1; blk++) {                      \
					const float *pe = sc->pe + (size_t)blk * dim * SCORER_LANES; \
					NAME##_vec a[ROWS * PARTS];                                 \
					_Pragma("GCC unroll 16") for (unsigned q = 0; q < ROWS * PARTS; q++) \
					    a[q] = (NAME##_vec){ 0 };                               \
					for (uint32_t k = 0; k < dim; k++) {                    \
						NAME##_vec e[PARTS];                            \
						_Pragma("GCC unroll 4") for (unsigned p = 0; p < PARTS; p++) \
						    memcpy(&e[p], pe + (size_t)k * SCORER_LANES + p * (W), \
							sizeof(e[p]));                          \
						_Pragma("GCC unroll 8") for (unsigned r = 0; r < ROWS; r++) \
						    _Pragma("GCC unroll 4") for (unsigned p = 0; p < PARTS; p++) \
							a[r * PARTS + p] += e[p] * U[(size_t)r * dim + k]; \
					}                                                       \
					for (size_t r = 0; r < ng; r++) {                       \
						struct scorer_sel *sel = &sc->sel[g + r];       \
						const float *nt = sel->nt;                      \
						float term = nt[sc->bnode1[blk]] + nt[sc->bnode2[blk]]; \
						float thr = scorer_block_thr(sc, sel, blk);     \
						NAME##_ivec hit = { 0 };                        \
						NAME##_vec sv[PARTS];                           \
						for (unsigned p = 0; p < PARTS; p++) {               \
							NAME##_vec bias;                        \
							memcpy(&bias,                           \
							    sc->pbias + (size_t)blk * SCORER_LANES + p * (W), \
							    sizeof(bias));                      \
							sv[p] = a[r * PARTS + p] + (bias + term); \
							hit |= sv[p] >= thr;                    \
						}                                               \
						int any = 0;                                    \
						for (int l = 0; l < (W); l++)                   \
							any |= hit[l];                          \
						if (!any)                                       \
							continue;                               \
						float f[SCORER_LANES];                          \
						memcpy(f, sv, sizeof(f));                       \
						scorer_lanes_offer(sc, sel, blk, f);            \
					}                                                       \
				}                                                               \
			}                                                                       \
		}                                                                               \
	}

SCORER_NARROW_KERNEL(scorer_chunk_avx2, "avx2", 8, 6)
SCORER_NARROW_KERNEL(scorer_chunk_sse2, "sse2", 4, 2)

static const struct scorer_kernel {
	const char *name;
	const char *cpu_feature; /* __builtin_cpu_supports name, NULL: every x86-64 */
	void (*chunk)(struct scorer *sc, size_t n_users);
} scorer_kernels[] = {
	{ "avx512", "avx512f", scorer_chunk_avx512 },
	{ "avx2", "avx2", scorer_chunk_avx2 },
	{ "sse2", NULL, scorer_chunk_sse2 },
};
#define SCORER_N_KERNELS (sizeof(scorer_kernels) / sizeof(scorer_kernels[0]))

/* Whether this CPU runs kernel k. */
static int
scorer_kernel_runs(const struct scorer_kernel *k)
{
	if (k->cpu_feature == NULL)
		return 1;
	__builtin_cpu_init();
	if (strcmp(k->cpu_feature, "avx512f") == 0)
		return __builtin_cpu_supports("avx512f");
	return __builtin_cpu_supports("avx2");
}

const char *
scorer_kernel_name(const struct scorer *sc)
{
	return scorer_kernels[sc->kernel].name;
}

int
scorer_set_kernel(struct scorer *sc, const char *name)
{
	for (size_t k = 0; k < SCORER_N_KERNELS; k++) {
		if (name != NULL && strcmp(name, scorer_kernels[k].name) != 0)
			continue;
		if (!scorer_kernel_runs(&scorer_kernels[k])) {
			if (name != NULL)
				return -2;
			continue;
		}
		sc->kernel = (uint32_t)k;
		return 0;
	}
	return -1;
}

/* Every item's score for one user (vector u, node terms nt) into out. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
scorer_all_blocks(const struct scorer *sc, const float *u, const float *nt, float *out)
{
	for (uint32_t blk = 0; blk < sc->n_blocks; blk++) {
		scorer_vec acc[1], s;
		float sv[SCORER_LANES];

		scorer_dot1(sc->pe + (size_t)blk * sc->dim * SCORER_LANES, u, sc->dim, acc);
		scorer_block_scores(sc, nt, blk, &acc[0], &s);
		memcpy(sv, &s, sizeof(sv));
		for (uint32_t l = 0; l < SCORER_LANES; l++) {
			uint32_t i = sc->pitem[(size_t)blk * SCORER_LANES + l];

			if (i != SCORER_PAD)
				out[i] = sv[l];
		}
	}
}

/* scorer_all_blocks for the first ng (<= SCORER_GROUP) users of ubuf, rows of out. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
scorer_all_blocks_group(const struct scorer *sc, size_t ng, float *out)
{
	for (uint32_t blk = 0; blk < sc->n_blocks; blk++) {
		scorer_vec acc[SCORER_GROUP];

		scorer_dot8(sc->pe + (size_t)blk * sc->dim * SCORER_LANES, sc->ubuf, sc->dim, acc);
		for (size_t r = 0; r < ng; r++) {
			scorer_vec s;
			float sv[SCORER_LANES];
			float *row = out + r * sc->n_items;

			scorer_block_scores(sc, sc->sel[r].nt, blk, &acc[r], &s);
			memcpy(sv, &s, sizeof(sv));
			for (uint32_t l = 0; l < SCORER_LANES; l++) {
				uint32_t i = sc->pitem[(size_t)blk * SCORER_LANES + l];

				if (i != SCORER_PAD)
					row[i] = sv[l];
			}
		}
	}
}

void
scorer_score_all_batch(struct scorer *sc, const struct user_state *const *us, const float *U,
    size_t n_users, float *out)
{
	size_t dim = sc->dim;

	for (size_t off = 0; off < n_users; off += SCORER_GROUP) {
		size_t ng = n_users - off < SCORER_GROUP ? n_users - off : SCORER_GROUP;

		memcpy(sc->ubuf, U + off * dim, ng * dim * sizeof(float));
		memset(sc->ubuf + ng * dim, 0, (SCORER_GROUP - ng) * dim * sizeof(float));
		for (size_t k = 0; k < ng; k++)
			scorer_node_terms(sc, us[off + k], sc->sel[k].nt);
		scorer_all_blocks_group(sc, ng, out + off * sc->n_items);
	}
}

const float *
scorer_score_all(struct scorer *sc, const struct user_state *us, const float *u, float *out)
{
	struct scorer_sel *sel = &sc->sel[0];

	scorer_node_terms(sc, us, sel->nt);
	scorer_all_blocks(sc, u, sel->nt, out);
	return out;
}

size_t
scorer_topn(struct scorer *sc, const struct user_state *us, const float *u, size_t n, int calibrate,
    uint32_t *items, float *scores)
{
	size_t count = 0;

	scorer_topn_batch(sc, &us, u, 1, n, calibrate, items, scores, &count);
	return count;
}

void
scorer_topn_batch(struct scorer *sc, const struct user_state *const *us, const float *U,
    size_t n_users, size_t n, int calibrate, uint32_t *items, float *scores, size_t *counts)
{
	uint32_t dim = sc->dim;
	uint32_t cap = n < sc->n_items ? (uint32_t)n : sc->n_items;

	if (cap == 0 || scorer_pools(sc, cap) != 0) {
		for (size_t k = 0; k < n_users; k++)
			counts[k] = 0;
		return;
	}
	sc->cap = cap;
	for (size_t off = 0; off < n_users; off += SCORER_CHUNK) {
		size_t nc = n_users - off < SCORER_CHUNK ? n_users - off : SCORER_CHUNK;

		memcpy(sc->ubuf, U + off * dim, nc * dim * sizeof(float));
		/* Rows past the users: read by a kernel's last group (<= SCORER_GROUP rows), unused. */
		memset(sc->ubuf + nc * dim, 0, SCORER_GROUP * dim * sizeof(float));
		for (size_t k = 0; k < nc; k++)
			scorer_begin(sc, &sc->sel[k], us[off + k], calibrate);
		scorer_kernels[sc->kernel].chunk(sc, nc);
		for (size_t k = 0; k < nc; k++)
			counts[off + k] = scorer_finish(
			    sc, &sc->sel[k], items + (off + k) * n, scores + (off + k) * n);
	}
}

void
scorer_kernel_pass(struct scorer *sc, const float *U, size_t n_users)
{
	uint32_t dim = sc->dim;

	for (size_t off = 0; off < n_users; off += SCORER_CHUNK) {
		size_t nc = n_users - off < SCORER_CHUNK ? n_users - off : SCORER_CHUNK;

		memcpy(sc->ubuf, U + off * dim, nc * dim * sizeof(float));
		memset(sc->ubuf + nc * dim, 0, SCORER_GROUP * dim * sizeof(float));
		for (size_t k = 0; k < nc; k++) {
			sc->sel[k].thr = INFINITY;
			for (uint32_t j = 0; j < sc->n_tier1; j++)
				sc->sel[k].thr_tier[j] = INFINITY;
		}
		scorer_kernels[sc->kernel].chunk(sc, nc);
	}
}
