/*
 * Scoring (model/scorer.h, schemas/modelfile.md "Semantics"): interest
 * vector, every item's score by one SGEMV plus the per-level tier terms,
 * and top-N by bounded heaps (no full sort) with optional calibration
 * across the user's tier-1 interests.
 */
#include "scorer.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "modelfile.h"
#include "state.h"

#define N_LEVELS 2                /* tier levels with learned terms */
#define SCORER_CHUNK 64           /* users per SGEMM in scorer_topn_batch */

struct scored {
	float s;
	uint32_t item;
};

struct scorer {
	const struct model *m;
	uint32_t n_items, n_nodes, n_tier1;
	float *scores;                /* [n_items] */
	float *node_term;             /* [n_nodes], all zero between calls */
	struct scored *best;          /* [n_items]: global heap */
	struct scored *tier_best;     /* [n_items]: one heap per tier-1 node, back to back */
	uint32_t *quota;              /* [n_tier1] slots of each tier-1 node */
	uint32_t *tier_start;         /* [n_tier1] its heap's first slot in tier_best */
	uint32_t *tier_size;          /* [n_tier1] its heap's fill */
	double *remainder;            /* [n_tier1] largest-remainder fractions */
	uint8_t *picked;              /* [n_items], all zero between calls */
	/* Per model, built once: each item's tier-1 node, and every node's items. */
	uint32_t *item_tier1;         /* [n_items] */
	uint32_t *node_first;         /* [n_nodes + 1]: node k's items are node_items[first[k]..first[k+1]) */
	uint32_t *node_items;         /* [2 * n_items]: every item listed under its two nodes */
	/* Batched scoring: one SGEMM fills SCORER_CHUNK users' rows. */
	float *chunk;                 /* [SCORER_CHUNK][n_items] */
};
/*
 * Per-node item lists from model_item_tier1/2 (counting sort by node), so a
 * user's tier terms touch only the items under the user's nodes.
 */
static void
scorer_index_nodes(struct scorer *sc)
{
	const struct model *m = sc->m;

	memset(sc->node_first, 0, (sc->n_nodes + 1) * sizeof(uint32_t));
	for (uint32_t i = 0; i < sc->n_items; i++) {
		sc->item_tier1[i] = model_item_tier1(m, i);
		sc->node_first[sc->item_tier1[i] + 1]++;
		sc->node_first[model_item_tier2(m, i) + 1]++;
	}
	for (uint32_t k = 0; k < sc->n_nodes; k++)
		sc->node_first[k + 1] += sc->node_first[k];
	/* node_first[k] is the fill cursor of node k while placing, then shifted back. */
	for (uint32_t i = 0; i < sc->n_items; i++) {
		sc->node_items[sc->node_first[sc->item_tier1[i]]++] = i;
		sc->node_items[sc->node_first[model_item_tier2(m, i)]++] = i;
	}
	for (uint32_t k = sc->n_nodes; k > 0; k--)
		sc->node_first[k] = sc->node_first[k - 1];
	sc->node_first[0] = 0;
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
	sc->scores = malloc(sc->n_items * sizeof(float));
	sc->node_term = calloc(sc->n_nodes, sizeof(float));
	sc->best = malloc(sc->n_items * sizeof(struct scored));
	sc->tier_best = malloc(sc->n_items * sizeof(struct scored));
	sc->quota = malloc(sc->n_tier1 * sizeof(uint32_t));
	sc->tier_start = malloc(sc->n_tier1 * sizeof(uint32_t));
	sc->tier_size = malloc(sc->n_tier1 * sizeof(uint32_t));
	sc->remainder = malloc(sc->n_tier1 * sizeof(double));
	sc->picked = calloc(sc->n_items, 1);
	sc->item_tier1 = malloc(sc->n_items * sizeof(uint32_t));
	sc->node_first = malloc((sc->n_nodes + 1) * sizeof(uint32_t));
	sc->node_items = malloc(2 * (size_t)sc->n_items * sizeof(uint32_t));
	sc->chunk = malloc((size_t)SCORER_CHUNK * sc->n_items * sizeof(float));
	if (sc->scores == NULL || sc->node_term == NULL || sc->best == NULL ||
	    sc->tier_best == NULL || sc->quota == NULL || sc->tier_start == NULL ||
	    sc->tier_size == NULL || sc->remainder == NULL || sc->picked == NULL ||
	    sc->item_tier1 == NULL || sc->node_first == NULL || sc->node_items == NULL ||
	    sc->chunk == NULL) {
		scorer_free(sc);
		return NULL;
	}
	scorer_index_nodes(sc);
	return sc;
}

void
scorer_free(struct scorer *sc)
{
	if (sc == NULL)
		return;
	free(sc->scores);
	free(sc->node_term);
	free(sc->best);
	free(sc->tier_best);
	free(sc->quota);
	free(sc->tier_start);
	free(sc->tier_size);
	free(sc->remainder);
	free(sc->picked);
	free(sc->item_tier1);
	free(sc->node_first);
	free(sc->node_items);
	free(sc->chunk);
	free(sc);
}

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
 * The user's tier term of every node it holds into sc->node_term (each
 * level's weights normalised by that level's sum; nodes from an older model
 * that this one lacks are ignored). Returns 1 if any term was set; the
 * caller then clears them with scorer_clear_terms.
 */
static int
scorer_node_terms(struct scorer *sc, const struct user_state *us)
{
	const struct model *m = sc->m;
	const struct model_weights *w = model_weights(m);
	double sum_short[N_LEVELS] = { 0 }, sum_long[N_LEVELS] = { 0 };
	int any = 0;

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
		sc->node_term[node] = (float)term;
		any = 1;
	}
	return any;
}

static void
scorer_clear_terms(struct scorer *sc, const struct user_state *us)
{
	for (uint16_t t = 0; t < us->n_tiers; t++)
		if (us->tiers[t].node < sc->n_nodes)
			sc->node_term[us->tiers[t].node] = 0.0f;
}

const float *
scorer_score_all(struct scorer *sc, const struct user_state *us, const float *u, float *out)
{
	const struct model *m = sc->m;
	const struct model_weights *w = model_weights(m);
	uint32_t dim = model_dim(m);

	cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)sc->n_items, (int)dim, 1.0f,
	    model_item_embeddings(m), (int)dim, u, 1, 0.0f, out, 1);
	for (uint32_t i = 0; i < sc->n_items; i++)
		out[i] += w->ib[i];
	if (scorer_node_terms(sc, us)) {
		for (uint32_t i = 0; i < sc->n_items; i++)
			out[i] += sc->node_term[sc->item_tier1[i]] +
			    sc->node_term[model_item_tier2(m, i)];
		scorer_clear_terms(sc, us);
	}
	return out;
}

/*
 * The tier terms of row (item scores with the item bias already in), added
 * only to the items under the user's nodes: every other item's term is
 * 0 + 0, which would leave its score as it is. The sum per item is the same
 * expression scorer_score_all adds, so the two agree bit for bit.
 */
static void
scorer_add_terms(struct scorer *sc, const struct user_state *us, float *row)
{
	const struct model *m = sc->m;

	if (!scorer_node_terms(sc, us))
		return;
	for (uint16_t t = 0; t < us->n_tiers; t++) {
		uint32_t node = us->tiers[t].node;

		if (node >= sc->n_nodes)
			continue;
		for (uint32_t k = sc->node_first[node]; k < sc->node_first[node + 1]; k++) {
			uint32_t i = sc->node_items[k];

			if (sc->picked[i])
				continue;
			sc->picked[i] = 1;
			row[i] += sc->node_term[sc->item_tier1[i]] +
			    sc->node_term[model_item_tier2(m, i)];
		}
	}
	for (uint16_t t = 0; t < us->n_tiers; t++) {
		uint32_t node = us->tiers[t].node;

		if (node >= sc->n_nodes)
			continue;
		for (uint32_t k = sc->node_first[node]; k < sc->node_first[node + 1]; k++)
			sc->picked[sc->node_items[k]] = 0;
	}
	scorer_clear_terms(sc, us);
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
 * Largest-remainder split of n slots over tier-1 nodes by the user's
 * long-term tier-1 weights. Returns 0 if the user has no such weight.
 */
static int
scorer_quotas(struct scorer *sc, const struct user_state *us, uint32_t n)
{
	const struct model *m = sc->m;
	double total = 0.0;
	uint32_t given = 0;

	memset(sc->quota, 0, sc->n_tier1 * sizeof(uint32_t));
	for (uint32_t j = 0; j < sc->n_tier1; j++)
		sc->remainder[j] = 0.0;
	for (uint16_t t = 0; t < us->n_tiers; t++) {
		uint32_t node = us->tiers[t].node;

		if (node < sc->n_tier1 && model_node_level(m, node) == 1 && us->tiers[t].w_long > 0.0f) {
			sc->remainder[node] = us->tiers[t].w_long;
			total += us->tiers[t].w_long;
		}
	}
	if (!(total > 0.0))
		return 0;
	for (uint32_t j = 0; j < sc->n_tier1; j++) {
		double share = (double)n * sc->remainder[j] / total;
		uint32_t q = (uint32_t)share;

		sc->quota[j] = q;
		sc->remainder[j] = share - q;
		given += q;
	}
	while (given < n) {
		uint32_t top = 0;

		for (uint32_t j = 1; j < sc->n_tier1; j++)
			if (sc->remainder[j] > sc->remainder[top])
				top = j;
		sc->quota[top]++;
		sc->remainder[top] = -1.0;  /* one extra slot per node at most */
		given++;
	}
	return 1;
}

/*
 * Best cap items of row into items/scores, best first (see scorer_topn).
 * The consumed filter is tested only for an item that would enter a heap:
 * heap_offer would reject every other one anyway, so the picks are the same
 * as testing every item, at a few hundred filter tests instead of n_items.
 */
static size_t
scorer_select(struct scorer *sc, const struct user_state *us, const float *row, uint32_t cap,
    int calibrate, uint32_t *items, float *scores)
{
	const struct model *m = sc->m;
	uint32_t n_best = 0, out = 0;
	int calibrated = 0;

	if (calibrate && scorer_quotas(sc, us, cap)) {
		uint32_t start = 0;

		calibrated = 1;
		for (uint32_t j = 0; j < sc->n_tier1; j++) {
			sc->tier_start[j] = start;
			sc->tier_size[j] = 0;
			start += sc->quota[j];
		}
	}
	for (uint32_t i = 0; i < sc->n_items; i++) {
		struct scored x = { row[i], i };
		int to_best = n_best < cap || scored_better(x, sc->best[0]);
		int to_tier = 0;
		uint32_t j = 0;

		if (calibrated) {
			j = sc->item_tier1[i];
			to_tier = sc->tier_size[j] < sc->quota[j] ||
			    (sc->quota[j] > 0 &&
				scored_better(x, sc->tier_best[sc->tier_start[j]]));
		}
		if (!to_best && !to_tier)
			continue;
		if (state_seen_has(us, model_item_hash(m, i)))
			continue;
		if (to_best)
			heap_offer(sc->best, &n_best, cap, x);
		if (to_tier)
			heap_offer(sc->tier_best + sc->tier_start[j], &sc->tier_size[j], sc->quota[j], x);
	}
	struct scored *res = sc->tier_best;  /* results collect here, front to back */
	if (calibrated) {
		/* Compact the per-tier picks to the front, then top up from the global best. */
		for (uint32_t j = 0; j < sc->n_tier1; j++) {
			for (uint32_t k = 0; k < sc->tier_size[j]; k++) {
				struct scored x = sc->tier_best[sc->tier_start[j] + k];

				sc->picked[x.item] = 1;
				res[out++] = x;
			}
		}
		qsort(sc->best, n_best, sizeof(struct scored), scored_cmp);
		for (uint32_t k = 0; k < n_best && out < cap; k++)
			if (!sc->picked[sc->best[k].item])
				res[out++] = sc->best[k];
		for (uint32_t k = 0; k < out; k++)
			sc->picked[res[k].item] = 0;
	} else {
		res = sc->best;
		out = n_best;
	}
	qsort(res, out, sizeof(struct scored), scored_cmp);
	for (uint32_t k = 0; k < out; k++) {
		items[k] = res[k].item;
		scores[k] = res[k].s;
	}
	return out;
}

size_t
scorer_topn(struct scorer *sc, const struct user_state *us, const float *u, size_t n,
    int calibrate, uint32_t *items, float *scores)
{
	uint32_t cap = n < sc->n_items ? (uint32_t)n : sc->n_items;

	if (cap == 0)
		return 0;
	scorer_score_all(sc, us, u, sc->scores);
	return scorer_select(sc, us, sc->scores, cap, calibrate, items, scores);
}

void
scorer_topn_batch(struct scorer *sc, const struct user_state *const *us, const float *U,
    size_t n_users, size_t n, int calibrate, uint32_t *items, float *scores, size_t *counts)
{
	const struct model *m = sc->m;
	const float *ib = model_weights(m)->ib;
	uint32_t dim = model_dim(m);
	uint32_t cap = n < sc->n_items ? (uint32_t)n : sc->n_items;

	if (cap == 0) {
		for (size_t k = 0; k < n_users; k++)
			counts[k] = 0;
		return;
	}
	for (size_t off = 0; off < n_users; off += SCORER_CHUNK) {
		size_t nc = n_users - off < SCORER_CHUNK ? n_users - off : SCORER_CHUNK;

		/* chunk[k][i] = U[off + k] . e_i for every item: one pass over the embeddings. */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nc, (int)sc->n_items,
		    (int)dim, 1.0f, U + off * dim, (int)dim, model_item_embeddings(m), (int)dim,
		    0.0f, sc->chunk, (int)sc->n_items);
		for (size_t k = 0; k < nc; k++) {
			float *row = sc->chunk + k * sc->n_items;
			size_t at = off + k;

			for (uint32_t i = 0; i < sc->n_items; i++)
				row[i] += ib[i];
			scorer_add_terms(sc, us[at], row);
			counts[at] = scorer_select(sc, us[at], row, cap, calibrate, items + at * n,
			    scores + at * n);
		}
	}
}
