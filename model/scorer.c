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
};

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
	if (sc->scores == NULL || sc->node_term == NULL || sc->best == NULL ||
	    sc->tier_best == NULL || sc->quota == NULL || sc->tier_start == NULL ||
	    sc->tier_size == NULL || sc->remainder == NULL || sc->picked == NULL) {
		scorer_free(sc);
		return NULL;
	}
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

const float *
scorer_score_all(struct scorer *sc, const struct user_state *us, const float *u, float *out)
{
	const struct model *m = sc->m;
	const struct model_weights *w = model_weights(m);
	uint32_t dim = model_dim(m);
	double sum_short[N_LEVELS] = { 0 }, sum_long[N_LEVELS] = { 0 };
	int any = 0;

	cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)sc->n_items, (int)dim, 1.0f,
	    model_item_embeddings(m), (int)dim, u, 1, 0.0f, out, 1);
	for (uint32_t i = 0; i < sc->n_items; i++)
		out[i] += w->ib[i];

	/* Tier terms: each level's weights normalised by that level's sum. Nodes
	 * from an older model that this one lacks are ignored. */
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
	if (any) {
		for (uint32_t i = 0; i < sc->n_items; i++)
			out[i] += sc->node_term[model_item_tier1(m, i)] +
			    sc->node_term[model_item_tier2(m, i)];
		for (uint16_t t = 0; t < us->n_tiers; t++)
			if (us->tiers[t].node < sc->n_nodes)
				sc->node_term[us->tiers[t].node] = 0.0f;
	}
	return out;
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

size_t
scorer_topn(struct scorer *sc, const struct user_state *us, const float *u, size_t n,
    int calibrate, uint32_t *items, float *scores)
{
	const struct model *m = sc->m;
	uint32_t cap = n < sc->n_items ? (uint32_t)n : sc->n_items, n_best = 0, out = 0;
	int calibrated = 0;

	if (cap == 0)
		return 0;
	scorer_score_all(sc, us, u, sc->scores);
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
		struct scored x = { sc->scores[i], i };

		if (state_seen_has(us, model_item_hash(m, i)))
			continue;
		heap_offer(sc->best, &n_best, cap, x);
		if (calibrated) {
			uint32_t j = model_item_tier1(m, i);

			heap_offer(sc->tier_best + sc->tier_start[j], &sc->tier_size[j], sc->quota[j], x);
		}
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
