/*
 * Scoring (model/scorer.h, schemas/modelfile.md "Semantics"): the interest
 * vector, every item's score u.e_i + (ib_i + tier terms), and top-N by
 * bounded heaps behind a per-user score threshold (no full sort), with
 * optional calibration across the user's tier-1 interests.
 *
 * The item embeddings are re-packed once per model into blocks of 16 items
 * of one tier-2 node, dimension-major, so one 64-byte vector holds a
 * dimension of 16 items and the whole block shares one tier term per user.
 * A kernel per instruction set computes a few users x 16 items at a time in
 * registers (AVX-512: 8 users, AVX2: 6, SSE2: 2), adds
 * bias and tier term, and hands a block to the selection only when one of
 * its scores reaches the user's threshold: no score row is ever written to
 * memory, so a user costs one pass over the packed embeddings (shared by
 * the 64 users of a chunk through the cache) and almost nothing else.
 */
#include "scorer.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "modelfile.h"
#include "state.h"

/*
 * The compiler fuses nothing: a multiply-add is fused only where a kernel
 * says so (SCORER_MADD_*), so a score's bits do not depend on the compiler.
 */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define N_LEVELS     2            /* tier levels with learned terms */
#define SCORER_LANES 16           /* items per packed block: one 64-byte vector */
#define SCORER_GROUP SCORER_BATCH /* users per kernel call, accumulators in registers */
#define SCORER_CHUNK 64           /* users scored together */
#define SCORER_SPAN  32         /* blocks per cache span: 32 x 16 x d floats (128 KiB at d = 64) */
#define SCORER_PAD   UINT32_MAX /* item index of a padding lane */
/* Cells one user's tiered search takes at most: probe_items in cells of 16, one per tier-1 node. */
#define SCORER_MAX_PROBES (SCORER_PROBE_ITEMS_MAX / SCORER_LANES + 256) /* n_tier1 <= 256 */

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
	float *ubuf;     /* [SCORER_CHUNK + GROUP][dim] user vectors, zero past the chunk's users */
	uint32_t kernel; /* index into scorer_kernels */
	uint32_t cap;    /* top-N size of the current call */
	uint32_t pool_cap;                    /* heap slots per user the pools hold */
	struct scored *pool_best, *pool_tier; /* [SCORER_CHUNK][pool_cap] */
	uint32_t *pool_tiers;                 /* [SCORER_CHUNK][3][n_tier1] */
	float *pool_nt;                       /* [SCORER_CHUNK][n_nodes] */
	float *pool_thr;                      /* [SCORER_CHUNK][n_tier1] */
	struct scorer_sel sel[SCORER_CHUNK];
	struct scorer_sel *selp[SCORER_CHUNK]; /* &sel[k] */
	/* Tiered search (scorer_set_search) over cells: a bias band of one tier-2 node (scorer_cells). */
	int tiered;
	uint32_t probe_items; /* items a user's probes cover at least */
	uint32_t n_cells;
	uint32_t *cell_blk;   /* [n_cells + 1] first block of each cell */
	uint32_t *cell_order; /* [n_cells] by band (1st cell of every leaf, 2nd, ...), then leaf */
	uint32_t *cell_items; /* [n_cells] items in it */
	float *cell_c;        /* [n_cells][dim] centroid of its item embeddings */
	float *cell_r;        /* [n_cells] largest distance of one of its items to it */
	float *cell_b;        /* [n_cells] largest item bias */
	uint32_t *node_cell0; /* [n_nodes + 1] node j's cells: node_cells[node_cell0[j] ..] */
	uint32_t *node_cells; /* [2 n_cells] the cells of each node (its tier-2 and tier-1) */
	float *ub;            /* [SCORER_CHUNK][n_cells] users' bounds of the cells' scores */
	float *est;           /* [SCORER_CHUNK][n_cells] users' estimates of their best scores */
	uint32_t *heap;       /* [n_cells] probe selection scratch (cell indices) */
	uint32_t *probe;      /* [SCORER_CHUNK][SCORER_MAX_PROBES] cells, best bound first */
	uint32_t n_probe[SCORER_CHUNK];
	uint32_t n_first[SCORER_CHUNK]; /* probes of the first pass: the best that fill the top-N */
	uint32_t *cell_count;           /* [n_cells + 1] */
	uint32_t *pair_user; /* [SCORER_CHUNK * SCORER_MAX_PROBES] users grouped by cell */
	float *gbuf;         /* [SCORER_CHUNK + SCORER_GROUP][dim] a cell's users' vectors */
	struct scorer_sel *gsel[SCORER_CHUNK];
	uint64_t stat_users, stat_items; /* users served, items scored for them */
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

/* qsort order of items by bias: higher first, then lower index. */
static int
scorer_bias_cmp(const void *pa, const void *pb)
{
	const struct scored *a = pa, *b = pb;

	return a->s > b->s ? -1 : a->s < b->s ? 1 : a->item < b->item ? -1 : a->item > b->item;
}

/*
 * Packs the model's item embeddings and biases into blocks of SCORER_LANES
 * items sharing one (tier-2, tier-1) node pair: items ordered by tier-2
 * node, then tier-1 node, then bias (highest first), then index; a block
 * closes at a node change and its empty lanes are padding (bias -inf, item
 * SCORER_PAD). Inside a node the popular items come first, so heaps fill
 * with strong items early and the tiered search's cells (scorer_cells) have
 * narrow bias ranges. Returns 0 or -1 on ENOMEM.
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
	struct scored *by_bias = malloc(((size_t)n + 1) * sizeof(*by_bias));
	int rc = -1;

	if (t2 == NULL || a == NULL || b == NULL || count == NULL)
		goto done;
	if (by_bias == NULL)
		goto done;
	for (uint32_t i = 0; i < n; i++) {
		sc->item_tier1[i] = model_item_tier1(m, i);
		t2[i] = model_item_tier2(m, i);
		by_bias[i] = (struct scored){ ib[i], i };
	}
	qsort(by_bias, n, sizeof(*by_bias), scorer_bias_cmp);
	for (uint32_t i = 0; i < n; i++)
		a[i] = by_bias[i].item;
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
	free(by_bias);
	return rc;
}

/*
 * The cells of the tiered search. A leaf is the run of blocks of one
 * (tier-2, tier-1) node pair, its items by bias, highest first
 * (scorer_pack); it is cut into cells of 1, 1, 2, 4, 8, ... blocks, so
 * the few most popular items of every node form small cells of narrow bias
 * range and the long tail a few big ones. Each cell keeps the centroid of
 * its items' embeddings, the largest distance of an item to it and the
 * largest item bias, so that u.c + |u| r + max bias + the user's node terms
 * bounds every score inside. Derived from the model at load (O(items x
 * dim)), so live items are placed with the model they arrive in. Returns 0
 * or -1 on ENOMEM.
 */
/* Whether block b starts a leaf (its node pair is not the previous block's). */
static int
scorer_new_leaf(const struct scorer *sc, uint32_t b)
{
	return b == 0 || sc->bnode2[b] != sc->bnode2[b - 1] || sc->bnode1[b] != sc->bnode1[b - 1];
}

static int
scorer_cells(struct scorer *sc)
{
	uint32_t dim = sc->dim, nl = 0;

	for (uint32_t b = 0, j = 0; b < sc->n_blocks; b++, j++) {
		j = scorer_new_leaf(sc, b) ? 0 : j;
		nl += (j & (j - 1)) == 0; /* j = 0, 1, 2, 4, 8, ... */
	}
	sc->n_cells = nl;
	sc->cell_blk = malloc(((size_t)nl + 1) * sizeof(uint32_t));
	sc->cell_order = malloc(((size_t)nl + 1) * sizeof(uint32_t));
	sc->cell_items = calloc((size_t)nl + 1, sizeof(uint32_t));
	sc->cell_c = calloc(((size_t)nl + 1) * dim, sizeof(float));
	sc->cell_r = calloc((size_t)nl + 1, sizeof(float));
	sc->cell_b = malloc(((size_t)nl + 1) * sizeof(float));
	sc->ub = malloc((size_t)SCORER_CHUNK * (nl + 1) * sizeof(float));
	sc->est = malloc((size_t)SCORER_CHUNK * (nl + 1) * sizeof(float));
	sc->heap = malloc(((size_t)nl + 1) * sizeof(uint32_t));
	sc->probe = malloc((size_t)SCORER_CHUNK * SCORER_MAX_PROBES * sizeof(uint32_t));
	sc->cell_count = malloc(((size_t)nl + 2) * sizeof(uint32_t));
	sc->pair_user = malloc((size_t)SCORER_CHUNK * SCORER_MAX_PROBES * sizeof(uint32_t));
	sc->gbuf = calloc((size_t)(SCORER_CHUNK + SCORER_GROUP) * dim, sizeof(float));
	if (sc->cell_blk == NULL || sc->cell_order == NULL || sc->cell_items == NULL ||
	    sc->cell_c == NULL || sc->cell_r == NULL || sc->cell_b == NULL || sc->ub == NULL ||
	    sc->est == NULL || sc->heap == NULL || sc->probe == NULL || sc->cell_count == NULL ||
	    sc->pair_user == NULL || sc->gbuf == NULL)
		return -1;
	uint32_t *band = sc->heap, n_bands = 0, *count;

	for (uint32_t b = 0, j = 0, l = 0, c = 0; b < sc->n_blocks; b++, j++) {
		j = scorer_new_leaf(sc, b) ? 0 : j;
		c = j == 0 ? 0 : c + ((j & (j - 1)) == 0);
		if ((j & (j - 1)) == 0) {
			band[l] = c;
			n_bands = c + 1 > n_bands ? c + 1 : n_bands;
			sc->cell_blk[l++] = b;
		}
	}
	/* The order of a pass over cells: every leaf's most popular cell, then the next band. */
	count = calloc((size_t)n_bands + 1, sizeof(uint32_t));
	if (count == NULL)
		return -1;
	for (uint32_t l = 0; l < nl; l++)
		count[band[l] + 1]++;
	for (uint32_t c = 0; c < n_bands; c++)
		count[c + 1] += count[c];
	for (uint32_t l = 0; l < nl; l++)
		sc->cell_order[count[band[l]]++] = l;
	free(count);
	sc->cell_blk[nl] = sc->n_blocks;
	for (uint32_t l = 0; l < nl; l++) {
		float *c = sc->cell_c + (size_t)l * dim;
		double r2 = 0.0;

		sc->cell_b[l] = -INFINITY;
		for (uint32_t b = sc->cell_blk[l]; b < sc->cell_blk[l + 1]; b++)
			for (uint32_t q = 0; q < SCORER_LANES; q++) {
				if (sc->pitem[(size_t)b * SCORER_LANES + q] == SCORER_PAD)
					continue;
				sc->cell_items[l]++;
				if (sc->pbias[(size_t)b * SCORER_LANES + q] > sc->cell_b[l])
					sc->cell_b[l] = sc->pbias[(size_t)b * SCORER_LANES + q];
				for (uint32_t d = 0; d < dim; d++)
					c[d] += sc->pe[((size_t)b * dim + d) * SCORER_LANES + q];
			}
		for (uint32_t d = 0; d < dim; d++)
			c[d] /= (float)sc->cell_items[l];
		for (uint32_t b = sc->cell_blk[l]; b < sc->cell_blk[l + 1]; b++)
			for (uint32_t q = 0; q < SCORER_LANES; q++) {
				double d2 = 0.0;

				if (sc->pitem[(size_t)b * SCORER_LANES + q] == SCORER_PAD)
					continue;
				for (uint32_t d = 0; d < dim; d++) {
					double x =
					    (double)
						sc->pe[((size_t)b * dim + d) * SCORER_LANES + q] -
					    c[d];

					d2 += x * x;
				}
				if (d2 > r2)
					r2 = d2;
			}
		/* Raised by a relative 1e-5 of |c| + r: the float dot products of the items may
		 * exceed the real ones by that much (64 products: ~4e-6). */
		double cn = 0.0;

		for (uint32_t d = 0; d < dim; d++)
			cn += (double)c[d] * c[d];
		sc->cell_r[l] = (float)(sqrt(r2) + 1e-5 * (sqrt(cn) + sqrt(r2)));
	}
	/* The cells of every node, for the users' node terms (scorer_bounds). */
	sc->node_cell0 = calloc((size_t)sc->n_nodes + 2, sizeof(uint32_t));
	sc->node_cells = malloc(((size_t)nl * 2 + 1) * sizeof(uint32_t));
	if (sc->node_cell0 == NULL || sc->node_cells == NULL)
		return -1;
	for (uint32_t l = 0; l < nl; l++) {
		sc->node_cell0[sc->bnode1[sc->cell_blk[l]] + 2]++;
		sc->node_cell0[sc->bnode2[sc->cell_blk[l]] + 2]++;
	}
	for (uint32_t j = 0; j < sc->n_nodes; j++)
		sc->node_cell0[j + 2] += sc->node_cell0[j + 1];
	for (uint32_t l = 0; l < nl; l++) {
		sc->node_cells[sc->node_cell0[sc->bnode1[sc->cell_blk[l]] + 1]++] = l;
		sc->node_cells[sc->node_cell0[sc->bnode2[sc->cell_blk[l]] + 1]++] = l;
	}
	return 0;
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
	    sc->ubuf == NULL || sc->pool_tiers == NULL || sc->pool_nt == NULL ||
	    sc->pool_thr == NULL || scorer_pack(sc) != 0 || scorer_cells(sc) != 0 ||
	    scorer_set_kernel(sc, NULL) != 0) {
		scorer_free(sc);
		return NULL;
	}
	for (size_t k = 0; k < SCORER_CHUNK; k++) {
		struct scorer_sel *sel = &sc->sel[k];

		sc->selp[k] = sel;
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
	free(sc->cell_blk);
	free(sc->node_cell0);
	free(sc->node_cells);
	free(sc->cell_order);
	free(sc->cell_items);
	free(sc->cell_c);
	free(sc->cell_r);
	free(sc->cell_b);
	free(sc->ub);
	free(sc->est);
	free(sc->heap);
	free(sc->probe);
	free(sc->cell_count);
	free(sc->pair_user);
	free(sc->gbuf);
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

/*
 * The multiply-add of one kernel step: acc + e * x for a register e of W
 * item values and one user value x. With FMA (AVX-512, AVX2 + FMA) it is
 * one fused operation, rounded once; SSE2 has none and rounds the product
 * and the sum. A score is the same chain of these in dimension order on
 * every CPU with FMA, so those kernels agree bit for bit with each other;
 * the SSE2 kernel differs from them in the last bits (tests/unit/scorer.c
 * bounds the difference).
 */
#define SCORER_MADD_PLAIN(acc, e, x) ((acc) + (e) * (x))
#define SCORER_MADD_FMA8(acc, e, x)  _mm256_fmadd_ps((e), _mm256_set1_ps(x), (acc))
#define SCORER_MADD_FMA16(acc, e, x) _mm512_fmadd_ps((e), _mm512_set1_ps(x), (acc))
/* Whether any lane of a comparison result is set. */
#define SCORER_ANY4(hit)  _mm_movemask_ps((__m128)(hit))
#define SCORER_ANY8(hit)  _mm256_movemask_ps((__m256)(hit))
#define SCORER_ANY16(hit) _mm512_test_epi32_mask((__m512i)(hit), (__m512i)(hit))

/*
 * One pass of a kernel of W-float registers (AVX-512: 16, AVX2: 8, SSE2: 4)
 * over n_users users, selections sel_of[k] and vectors U[k * dim ..] (zero
 * rows after them, up to R), against blocks [blk0, blk1): span by span, so
 * a span's packed embeddings stay in cache while every group of R users
 * passes over them. A 16-item block is 16 / W registers, so R * 16 / W
 * accumulators stay in registers (AVX-512: 8 users, 8 of its 32; AVX2: 6,
 * 12 of 16; SSE2: 2, 8 of 16; a wider vector type would be split through
 * memory by the compiler). A block's scores are dot + (bias + the user's
 * tier term of the block's nodes). With out == NULL they go to the
 * selection when one reaches its threshold; otherwise every item's score is
 * stored, user k's in out[k * n_items + item].
 */
/* The body is laid out by hand. */
/* clang-format off */
#define SCORER_PASS(NAME, VT, IVT, TARGET, W, R, MADD, ANY)                                \
__attribute__((target(TARGET))) static void                                               \
NAME(struct scorer *sc, const float *Uall, struct scorer_sel *const *sel_of,              \
    size_t n_users, uint32_t blk0, uint32_t blk1, float *out)                             \
{                                                                                         \
	enum { PARTS = SCORER_LANES / (W), ROWS = (R) };                                  \
	uint32_t dim = sc->dim;                                                           \
                                                                                          \
	for (uint32_t b0 = blk0; b0 < blk1; b0 += SCORER_SPAN) {                          \
	uint32_t b1 = blk1 - b0 < SCORER_SPAN ? blk1 : b0 + SCORER_SPAN;                  \
	for (size_t g = 0; g < n_users; g += ROWS) {                                      \
	size_t ng = n_users - g < ROWS ? n_users - g : ROWS;                              \
	const float *U = Uall + g * dim;                                                  \
	for (uint32_t blk = b0; blk < b1; blk++) {                                        \
		const float *pe = sc->pe + (size_t)blk * dim * SCORER_LANES;              \
		const uint32_t *item = sc->pitem + (size_t)blk * SCORER_LANES;            \
		VT a[ROWS * PARTS], e[PARTS];                                             \
                                                                                          \
		_Pragma("GCC unroll 16")                                                  \
		for (unsigned q = 0; q < ROWS * PARTS; q++)                               \
			a[q] = (VT){ 0 };                                                 \
		_Pragma("GCC unroll 2")                                                   \
		for (uint32_t k = 0; k < dim; k++) {                                      \
			_Pragma("GCC unroll 4")                                           \
			for (unsigned p = 0; p < PARTS; p++)                              \
				memcpy(&e[p], pe + (size_t)k * SCORER_LANES + p * (W),    \
				    sizeof(e[p]));                                        \
			_Pragma("GCC unroll 8")                                           \
			for (unsigned r = 0; r < ROWS; r++) {                             \
				_Pragma("GCC unroll 4")                                   \
				for (unsigned p = 0; p < PARTS; p++)                      \
					a[r * PARTS + p] = MADD(a[r * PARTS + p], e[p],   \
					    U[(size_t)r * dim + k]);                      \
			}                                                                 \
		}                                                                         \
		_Pragma("GCC unroll 8")                                                   \
		for (unsigned r = 0; r < ROWS; r++) {                                     \
			if (r >= ng)                                                      \
				break;                                                    \
			struct scorer_sel *sel = sel_of[g + r];                           \
			float term = sel->nt[sc->bnode1[blk]] + sel->nt[sc->bnode2[blk]]; \
			float f[SCORER_LANES];                                            \
			VT sv[PARTS], bias;                                               \
                                                                                          \
			for (unsigned p = 0; p < PARTS; p++) {                            \
				memcpy(&bias, sc->pbias + (size_t)blk * SCORER_LANES +    \
				    p * (W), sizeof(bias));                               \
				sv[p] = a[r * PARTS + p] + (bias + term);                 \
			}                                                                 \
			if (out != NULL) {                                                \
				float *row = out + (g + r) * sc->n_items;                 \
                                                                                          \
				memcpy(f, sv, sizeof(f));                                 \
				for (unsigned l = 0; l < SCORER_LANES; l++)               \
					if (item[l] != SCORER_PAD)                        \
						row[item[l]] = f[l];                      \
				continue;                                                 \
			}                                                                 \
			float thr = scorer_block_thr(sc, sel, blk);                       \
			IVT hit = { 0 };                                                  \
                                                                                          \
			for (unsigned p = 0; p < PARTS; p++)                              \
				hit |= sv[p] >= thr;                                      \
			if (!ANY(hit))                                                    \
				continue; /* the common case once the heaps are full */   \
			memcpy(f, sv, sizeof(f));                                         \
			scorer_lanes_offer(sc, sel, blk, f);                              \
		}                                                                         \
	}                                                                                 \
	}                                                                                 \
	}                                                                                 \
}
/* clang-format on */

/*
 * A kernel of W-float registers: groups of R users, then the users left
 * over in groups of RT (a pass of R rows for one user would waste most of
 * its multiplies; the tiered search passes over small cells with few users
 * each, and scorer_score_all scores one user).
 */
#define SCORER_KERNEL(NAME, TARGET, W, R, RT, MADD, ANY)                                           \
	typedef float NAME##_vec __attribute__((vector_size((W) * sizeof(float))));                \
	typedef int32_t NAME##_ivec __attribute__((vector_size((W) * sizeof(int32_t))));           \
	SCORER_PASS(NAME##_big, NAME##_vec, NAME##_ivec, TARGET, W, R, MADD, ANY)                  \
	SCORER_PASS(NAME##_tail, NAME##_vec, NAME##_ivec, TARGET, W, RT, MADD, ANY)                \
	static void NAME(struct scorer *sc, const float *U, struct scorer_sel *const *sel_of,      \
	    size_t n_users, uint32_t blk0, uint32_t blk1, float *out)                              \
	{                                                                                          \
		size_t big = n_users / (R) * (R);                                                  \
                                                                                                   \
		if (big > 0)                                                                       \
			NAME##_big(sc, U, sel_of, big, blk0, blk1, out);                           \
		if (big < n_users)                                                                 \
			NAME##_tail(sc, U + big * sc->dim, sel_of + big, n_users - big, blk0,      \
			    blk1, out == NULL ? NULL : out + big * sc->n_items);                   \
	}

SCORER_KERNEL(scorer_chunk_avx512, "avx512f", 16, SCORER_GROUP, 1, SCORER_MADD_FMA16, SCORER_ANY16)
SCORER_KERNEL(scorer_chunk_avx2, "avx2,fma", 8, 6, 2, SCORER_MADD_FMA8, SCORER_ANY8)
SCORER_KERNEL(scorer_chunk_sse2, "sse2", 4, 2, 1, SCORER_MADD_PLAIN, SCORER_ANY4)

/* Whether this CPU has the instructions of a kernel (__builtin_cpu_supports takes literals). */
static int
scorer_has_avx512(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
}

static int
scorer_has_avx2_fma(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static const struct scorer_kernel {
	const char *name;
	int (*runs)(void); /* NULL: every x86-64 */
	void (*chunk)(struct scorer *sc, const float *U, struct scorer_sel *const *sel_of,
	    size_t n_users, uint32_t blk0, uint32_t blk1, float *out);
} scorer_kernels[] = {
	{ "avx512", scorer_has_avx512, scorer_chunk_avx512 },
	{ "avx2", scorer_has_avx2_fma, scorer_chunk_avx2 },
	{ "sse2", NULL, scorer_chunk_sse2 },
};
#define SCORER_N_KERNELS (sizeof(scorer_kernels) / sizeof(scorer_kernels[0]))

/* Whether this CPU runs kernel k. */
static int
scorer_kernel_runs(const struct scorer_kernel *k)
{
	return k->runs == NULL || k->runs();
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

/*
 * n rows of dim floats from src (NULL: none) into dst, then SCORER_GROUP zero
 * rows: a kernel's last group reads up to that many rows past its users.
 */
static void
scorer_load_rows(float *dst, const float *src, size_t n, uint32_t dim)
{
	if (n > 0)
		memcpy(dst, src, n * dim * sizeof(float));
	memset(dst + n * dim, 0, (size_t)SCORER_GROUP * dim * sizeof(float));
}

/* ---- tiered search --------------------------------------------------------- */

void
scorer_set_search(struct scorer *sc, int tiered, uint32_t probe_items)
{
	sc->tiered = tiered != 0;
	sc->probe_items =
	    probe_items < SCORER_PROBE_ITEMS_MAX ? probe_items : SCORER_PROBE_ITEMS_MAX;
}

void
scorer_stats(const struct scorer *sc, uint64_t *users, uint64_t *items_scored)
{
	*users = sc->stat_users;
	*items_scored = sc->stat_items;
}

/*
 * For the chunk's nc users and every cell: the estimate of its best score
 * into sc->est, u.c (one SGEMM) + the largest bias + the user's terms of the
 * cell's nodes, and the bound of all its scores into sc->ub, the estimate +
 * |u| r plus a relative 1e-5 of the bias and terms for rounding (the radius
 * carries its own, scorer_cells). The estimate ranks the cells: in the
 * models' high-dimensional embeddings |u| r dwarfs the spread of the
 * scores, so the bound ranks them badly (docs/BENCH.md), but it is what
 * lets a cell be skipped safely.
 */
static void
scorer_bounds(struct scorer *sc, size_t nc)
{
	uint32_t nl = sc->n_cells, dim = sc->dim;

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nc, (int)nl, (int)dim, 1.0f,
	    sc->ubuf, (int)dim, sc->cell_c, (int)dim, 0.0f, sc->ub, (int)nl);
	for (size_t k = 0; k < nc; k++) {
		const float *u = sc->ubuf + k * dim, *nt = sc->sel[k].nt;
		float *ub = sc->ub + k * nl;
		double n2 = 0.0;

		for (uint32_t d = 0; d < dim; d++)
			n2 += (double)u[d] * u[d];
		float un = (float)sqrt(n2);
		float *est = sc->est + k * nl, tmax = 0.0f;
		const struct user_state *us = sc->sel[k].us;

		for (uint32_t l = 0; l < nl; l++)
			est[l] = ub[l] + sc->cell_b[l];
		/* The node terms: nonzero only on the user's own nodes (scorer_node_terms). */
		for (uint16_t t = 0; t < us->n_tiers; t++) {
			uint32_t node = us->tiers[t].node;

			if (node >= sc->n_nodes || nt[node] == 0.0f)
				continue;
			tmax = fabsf(nt[node]) > tmax ? fabsf(nt[node]) : tmax;
			for (uint32_t q = sc->node_cell0[node]; q < sc->node_cell0[node + 1]; q++)
				est[sc->node_cells[q]] += nt[node];
		}
		for (uint32_t l = 0; l < nl; l++)
			ub[l] = est[l] + un * sc->cell_r[l] +
			    (1e-5f * (fabsf(sc->cell_b[l]) + 2.0f * tmax) + 1e-6f);
	}
}

/* Cell a ranks before cell b for one user: higher estimate, then lower index. */
static int
cell_before(const float *est, uint32_t a, uint32_t b)
{
	return est[a] > est[b] || (est[a] == est[b] && a < b);
}

/* Moves heap entry i of n (root = worst, cell_before order) down to its place. */
static void
cell_sift_down(const float *est, uint32_t *h, uint32_t n, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, worst = i, t;

		if (l < n && cell_before(est, h[worst], h[l]))
			worst = l;
		if (r < n && cell_before(est, h[worst], h[r]))
			worst = r;
		if (worst == i)
			return;
		t = h[i], h[i] = h[worst], h[worst] = t;
		i = worst;
	}
}

/*
 * The best cells (cell_before order) of in[0..n) (NULL: 0..n-1) that hold
 * at least want items (all of them if they hold fewer), at most cap of
 * them, into out; returns their count. One pass with a heap whose root is
 * its worst cell: a cell that does not beat the root of a heap holding want
 * items (or cap cells) is passed over, and the worst cells leave while the
 * rest still hold want.
 */
static uint32_t
scorer_best_cells(const struct scorer *sc, const float *est, const uint32_t *in, uint32_t n,
    uint64_t want, uint32_t cap, uint32_t *out)
{
	uint32_t m = 0;
	uint64_t held = 0;

	for (uint32_t q = 0; q < n; q++) {
		uint32_t c = in != NULL ? in[q] : q, i;

		if ((held >= want || m == cap) && !cell_before(est, c, out[0]))
			continue;
		if (m == cap) { /* full of small cells: c takes the worst one's place */
			held -= sc->cell_items[out[0]];
			held += sc->cell_items[c];
			out[0] = c;
			cell_sift_down(est, out, m, 0);
			continue;
		}
		for (i = m++; i > 0 && cell_before(est, out[(i - 1) / 2], c); i = (i - 1) / 2)
			out[i] = out[(i - 1) / 2];
		out[i] = c;
		held += sc->cell_items[c];
		while (m > 1 && held - sc->cell_items[out[0]] >= want) {
			held -= sc->cell_items[out[0]];
			out[0] = out[--m];
			cell_sift_down(est, out, m, 0);
		}
	}
	return m;
}

/*
 * User k's probes: the best cells by estimate that hold probe_items items,
 * and at least top-N plus the user's consumed count (so the list is full
 * whenever the catalog can fill it); the best cells holding that minimum
 * first (n_first); calibrated, plus the best cell of every tier-1 node with
 * a quota that none of them is in.
 */
static void
scorer_pick_probes(struct scorer *sc, size_t k)
{
	uint32_t nl = sc->n_cells, np;
	const float *est = sc->est + k * nl;
	uint32_t *probe = sc->probe + k * SCORER_MAX_PROBES;
	const struct scorer_sel *sel = &sc->sel[k];

	uint64_t want = (uint64_t)sc->cap + sel->us->n_seen;

	/* In band order: the popular cells first fill the heap, most others fail one test. */
	np = scorer_best_cells(sc, est, sc->cell_order, nl,
	    want > sc->probe_items ? want : sc->probe_items, SCORER_MAX_PROBES - sc->n_tier1,
	    probe);
	/* The first pass: the best of them that hold the minimum, moved to the front. */
	uint32_t nf = scorer_best_cells(sc, est, probe, np, want, np, sc->heap),
		 worst = sc->heap[0];

	for (uint32_t p = 0, f = 0; p < np; p++)
		if (probe[p] == worst || cell_before(est, probe[p], worst)) {
			uint32_t t = probe[f];

			probe[f++] = probe[p];
			probe[p] = t;
		}
	sc->n_first[k] = nf;
	for (uint32_t j = 0; sel->calibrated && j < sc->n_tier1; j++) {
		uint32_t best = UINT32_MAX, p = 0;

		if (sel->quota[j] == 0)
			continue;
		while (p < np && sc->bnode1[sc->cell_blk[probe[p]]] != j)
			p++;
		if (p < np)
			continue;
		for (uint32_t l = 0; l < nl; l++)
			if (sc->bnode1[sc->cell_blk[l]] == j &&
			    (best == UINT32_MAX || cell_before(est, l, best)))
				best = l;
		if (best != UINT32_MAX)
			probe[np++] = best;
	}
	sc->n_probe[k] = np;
}

/*
 * Scores the chunk's users on their first probes (first != 0) or the rest,
 * cell by cell: the
 * users probing one cell share a kernel pass over its blocks. A user whose
 * bound for the cell is below its threshold is left out (nothing there
 * could enter its heaps), so the result is the exact top-N over the probed
 * cells.
 */
static void
scorer_probe_pass(struct scorer *sc, size_t nc, int first)
{
	uint32_t nl = sc->n_cells, dim = sc->dim, *cnt = sc->cell_count, start;

	memset(cnt, 0, ((size_t)nl + 1) * sizeof(uint32_t));
	for (size_t k = 0; k < nc; k++)
		for (uint32_t p = first ? 0 : sc->n_first[k];
		     p < (first ? sc->n_first[k] : sc->n_probe[k]); p++)
			cnt[sc->probe[k * SCORER_MAX_PROBES + p] + 1]++;
	for (uint32_t l = 0; l < nl; l++)
		cnt[l + 1] += cnt[l];
	for (size_t k = 0; k < nc; k++)
		for (uint32_t p = first ? 0 : sc->n_first[k];
		     p < (first ? sc->n_first[k] : sc->n_probe[k]); p++)
			sc->pair_user[cnt[sc->probe[k * SCORER_MAX_PROBES + p]]++] = (uint32_t)k;
	/* cnt[l] is now the end of cell l's users, cnt[l - 1] their start. */
	for (uint32_t o = 0; o < nl; o++) {
		uint32_t l = sc->cell_order[o], b = sc->cell_blk[l];
		uint32_t end = cnt[l];
		size_t ng = 0;

		start = l == 0 ? 0 : cnt[l - 1];
		for (uint32_t q = start; q < end; q++) {
			uint32_t k = sc->pair_user[q];
			struct scorer_sel *sel = &sc->sel[k];

			if (sc->ub[(size_t)k * nl + l] < scorer_block_thr(sc, sel, b))
				continue;
			memcpy(
			    sc->gbuf + ng * dim, sc->ubuf + (size_t)k * dim, dim * sizeof(float));
			sc->gsel[ng++] = sel;
		}
		if (ng == 0)
			continue;
		scorer_load_rows(sc->gbuf + ng * dim, NULL, 0, dim);
		scorer_kernels[sc->kernel].chunk(
		    sc, sc->gbuf, sc->gsel, ng, b, sc->cell_blk[l + 1], NULL);
		sc->stat_items += (uint64_t)ng * sc->cell_items[l];
	}
}

/*
 * Tiered top-N of the chunk's nc users: estimates and bounds, probes, then
 * every user's best cells that fill its top-N first (so its heaps fill with
 * good items and its threshold rises) and the rest of its probes after,
 * each skipped when its bound no longer reaches the threshold.
 */
static void
scorer_tiered(struct scorer *sc, size_t nc)
{
	scorer_bounds(sc, nc);
	for (size_t k = 0; k < nc; k++)
		scorer_pick_probes(sc, k);
	scorer_probe_pass(sc, nc, 1);
	scorer_probe_pass(sc, nc, 0);
}

void
scorer_score_all_batch(struct scorer *sc, const struct user_state *const *us, const float *U,
    size_t n_users, float *out)
{
	uint32_t dim = sc->dim;

	for (size_t off = 0; off < n_users; off += SCORER_CHUNK) {
		size_t nc = n_users - off < SCORER_CHUNK ? n_users - off : SCORER_CHUNK;

		scorer_load_rows(sc->ubuf, U + off * dim, nc, dim);
		for (size_t k = 0; k < nc; k++)
			scorer_node_terms(sc, us[off + k], sc->sel[k].nt);
		scorer_kernels[sc->kernel].chunk(
		    sc, sc->ubuf, sc->selp, nc, 0, sc->n_blocks, out + off * sc->n_items);
	}
}

const float *
scorer_score_all(struct scorer *sc, const struct user_state *us, const float *u, float *out)
{
	scorer_score_all_batch(sc, &us, u, 1, out);
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

		scorer_load_rows(sc->ubuf, U + off * dim, nc, dim);
		for (size_t k = 0; k < nc; k++)
			scorer_begin(sc, &sc->sel[k], us[off + k], calibrate);
		sc->stat_users += nc;
		if (sc->tiered) {
			scorer_tiered(sc, nc);
		} else {
			scorer_kernels[sc->kernel].chunk(
			    sc, sc->ubuf, sc->selp, nc, 0, sc->n_blocks, NULL);
			sc->stat_items += (uint64_t)nc * sc->n_items;
		}
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

		scorer_load_rows(sc->ubuf, U + off * dim, nc, dim);
		for (size_t k = 0; k < nc; k++) {
			sc->sel[k].thr = INFINITY;
			for (uint32_t j = 0; j < sc->n_tier1; j++)
				sc->sel[k].thr_tier[j] = INFINITY;
		}
		scorer_kernels[sc->kernel].chunk(sc, sc->ubuf, sc->selp, nc, 0, sc->n_blocks, NULL);
	}
}
