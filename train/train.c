/*
 * The trainer (see train.h): parameters in one flat array laid out like the
 * WGHT section, session-parallel lanes of users stepped through lstm_forward,
 * softmax over candidate items, BPTT through lstm_backward, Adam; validation
 * through the serving path (a written model file, updater, scorer); the
 * content placement of items without training events.
 */
#include "clock.h"
#include "train.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "evaluate.h"
#include "lstm.h"
#include "scorer.h"
#include "state.h"
#include "updater.h"

#define TRAIN_NONE            UINT32_MAX
#define TRAIN_ADAM_B1         0.9f
#define TRAIN_ADAM_B2         0.999f
#define TRAIN_ADAM_EPS        1e-8f
#define TRAIN_MS_PER_S        1000.0
#define TRAIN_VAL_USERS       4096  /* validation users replayed per chunk */
#define TRAIN_VAL_BATCH       65536 /* events per updater_apply in validation */
#define TRAIN_PLACE_FOLDS     5     /* cross-validation folds of the placement ridge */
#define TRAIN_PLACE_MAX_FIT   50000 /* trained items used to fit the placement, at most */
#define TRAIN_SAMPLED_AUTO    50000 /* above this many items, sampled softmax by default */
#define TRAIN_SAMPLED_DEFAULT 2048

void
train_config_default(struct train_config *cfg)
{
	static const float type_weight[MODEL_N_TYPES] = {
		0.1f,
		1.0f,
		1.0f,
		2.0f,
		2.0f,
		3.0f,
		2.0f,
		0.0f,
	};

	memset(cfg, 0, sizeof(*cfg));
	cfg->hidden = 128;
	cfg->type_dim = 8;
	cfg->seed = 1;
	cfg->epochs = 30;
	cfg->patience = 3;
	cfg->batch = 32;
	cfg->bptt = 20;
	cfg->lr = 1e-3f;
	cfg->l2 = 1e-5f;
	cfg->l2_bias = 0.0f;
	cfg->dropout = 0.3f;
	cfg->clip = 5.0f;
	cfg->holdout_last = 0;
	cfg->threads = 1;
	cfg->sampled = 0;
	cfg->min_user_events = EVAL_MIN_EVENTS;
	cfg->content_init = 1;
	cfg->cold_sim =
	    0.0f; /* measured on ML-100K: costs warm NDCG@10 (0.110 -> 0.101), cold AUC +0.01 */
	cfg->hp.n_types = MODEL_N_TYPES;
	cfg->hp.ring_len = 16;
	cfg->hp.half_life_short_s = 86400.0f;        /* 1 day */
	cfg->hp.half_life_long_s = 30.0f * 86400.0f; /* 30 days */
	memcpy(cfg->hp.type_weight, type_weight, sizeof(type_weight));
	cfg->hp.max_tiers = 32;
}

/* ---- random numbers (splitmix64: seeded, portable) ---- */

static uint64_t
train_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static float
train_uniform(uint64_t *s)
{
	return (float)(train_rand(s) >> 40) * (1.0f / 16777216.0f);
}

/* ---- shared forward pieces ---- */

/*
 * Tier features of a user: feat[node] = short weight / sum of short weights
 * on the node's level, feat[n_nodes + node] likewise for long (0 if the
 * level's sum is 0), as schemas/modelfile.md defines the score.
 */
static void
train_tier_features(const struct model *m, const struct user_state *us, float *feat)
{
	uint32_t nn = model_n_nodes(m);
	double ss[2] = { 0, 0 }, sl[2] = { 0, 0 };

	memset(feat, 0, 2 * (size_t)nn * sizeof(float));
	for (uint16_t k = 0; k < us->n_tiers; k++) {
		const struct tier_weight *tw = &us->tiers[k];
		int lv;
		if (tw->node >= nn)
			continue;
		lv = model_node_level(m, tw->node) == 1 ? 0 : 1;
		ss[lv] += tw->w_short;
		sl[lv] += tw->w_long;
	}
	for (uint16_t k = 0; k < us->n_tiers; k++) {
		const struct tier_weight *tw = &us->tiers[k];
		int lv;
		if (tw->node >= nn)
			continue;
		lv = model_node_level(m, tw->node) == 1 ? 0 : 1;
		if (ss[lv] > 0)
			feat[tw->node] = (float)(tw->w_short / ss[lv]);
		if (sl[lv] > 0)
			feat[nn + tw->node] = (float)(tw->w_long / sl[lv]);
	}
}

/*
 * Input row of one event: model embedding (EMBD + R) of item, T[type], gap.
 * The gap is measured as the updater measures it: from the newest event time
 * applied to the user so far (us->t_ref_ms, before this event's tier update),
 * 0 for the first event and for an event older than that.
 */
static void
train_input_row(const struct model *m, const struct model_weights *w, uint32_t E,
    const struct dataset_event *ev, const struct user_state *us, float *x)
{
	uint32_t dim = model_dim(m);
	const float *emb = model_llm_embeddings(m) + (size_t)ev->item * dim;
	const float *r = w->R + (size_t)ev->item * dim;
	double dt_s = 0.0;

	if (us->t_ref_ms != STATE_NO_TIME && ev->ts_ms > us->t_ref_ms)
		dt_s = ((double)ev->ts_ms - (double)us->t_ref_ms) / TRAIN_MS_PER_S;
	for (uint32_t k = 0; k < dim; k++)
		x[k] = emb[k] + r[k];
	memcpy(x + dim, w->T + (size_t)ev->type * E, E * sizeof(float));
	x[dim + E] = lstm_gap_feature(dt_s);
}

/* ---- the trainer ---- */

struct trainer {
	const struct model *cat;
	struct model *mt; /* cat + our HPAR, for dims and state_tiers_apply */
	const struct dataset *ds;
	struct train_config cfg;
	uint32_t n_items, dim, H, E, din, nn, B, L;
	size_t K, G, N;

	/* Parameters, gradients, Adam moments, best copy: WGHT layout. */
	size_t n_par;
	float *theta, *grad, *am, *av, *best;
	struct model_weights w, gw; /* pointers into theta / grad */
	uint64_t adam_t;
	float *served;           /* [n_par] weights as written: theta + content placement */
	struct model_weights sw; /* pointers into served */
	char *tmp_path;          /* model file written and reloaded for validation */
	uint8_t *trained;        /* [n_items] item has training events */
	uint32_t *trained_ids;   /* [n_trained] those items, ascending */
	uint32_t n_trained;
	float *Rp, *ibp;            /* [n_items][dim], [n_items]: content placement of every item */
	double val_cold_hr;         /* the last validation's pseudo-cold HR@10 (train_rank_cold) */
	double best_cold_hr;        /* and the best epoch's */
	uint8_t *sim_cold;          /* [n_items] this window scores the item as if unseen */
	double lambda_R, lambda_ib; /* placement ridge strengths last chosen */

	/* Training sequences: events of cold items removed, holdout cut. */
	uint32_t n_seq;
	uint32_t *seq_user; /* [n_seq] dataset user */
	size_t *seq_off;    /* [n_seq+1] into sev */
	struct dataset_event *sev;
	uint32_t *order;      /* [n_seq] shuffled each epoch */
	uint32_t *item_count; /* [n_items] training occurrences */

	/* Candidates of the softmax. */
	uint32_t *cand_all; /* seen items */
	uint32_t n_cand_all;
	int cand_all_sorted;     /* cand_all is in trainer_sort_cands order */
	uint32_t *cand;          /* this step's candidates */
	int32_t *cand_pos;       /* [n_items] position in cand or -1 */
	uint32_t *tier1, *tier2; /* [n_items] */

	/* Lanes. */
	uint32_t *lane_seq; /* [B] sequence or TRAIN_NONE */
	size_t *lane_pos;
	float *lane_h, *lane_c;
	struct user_state **lane_us;
	uint32_t next_seq;
	uint32_t epochs_done; /* passes over the shuffled users completed */
	int shuffle;          /* reshuffle at each pass (off for gradient checks) */

	/* Window buffers, [L][B][...] = [N][...]. */
	float *xh, *cprev, *cnew, *acts, *hs, *hd, *hmask, *xmask, *feat;
	int32_t *tgt; /* position in cand or -1 when inactive */
	uint32_t *in_item;
	uint8_t *in_type, *reset, *active;
	float *U, *S, *dU, *dhd, *Ec, *dEc;
	float *dh_next, *dc_next, *dxh, *dh_tot, *scratch, *a1, *a2, *fS, *fL; /* [nn + 1] */
	/* The window's candidates in runs of one tier-2 node (trainer_runs). */
	float *cib;  /* [n_items] bias each candidate is scored with */
	float *gibc; /* [n_items] its bias gradient, summed over the window */
	uint32_t *run_lo, *run_t1, *run_t2, n_runs; /* [nn + 2] */
	uint64_t *ckey;                             /* [n_items] sort keys */

	/* Validation. */
	struct eval_split val;
	uint32_t *val_hist;
	float *val_scores, *val_u;
	uint32_t *stamp;
	struct user_state **val_us; /* [TRAIN_VAL_USERS] */
	size_t n_val_us;

	/* The last window's positions, for serving-equivalence tests. */
	uint32_t *pos_seq, *pos_applied;
	double *pos_ce;
	double best_val;
	struct trainer_stats st; /* of the last trainer_run */
	uint64_t rng;
};

static void
trainer_bind(struct model_weights *w, float *base, const struct trainer *tr)
{
	size_t o = 0;

	w->W = base + o;
	o += tr->G * tr->K;
	w->b = base + o;
	o += tr->G;
	w->P = base + o;
	o += (size_t)tr->dim * tr->H;
	w->pb = base + o;
	o += tr->dim;
	w->T = base + o;
	o += (size_t)MODEL_N_TYPES * tr->E;
	w->R = base + o;
	o += (size_t)tr->n_items * tr->dim;
	w->ib = base + o;
	o += tr->n_items;
	w->alpha = base + o;
}

/* Mutable view of a parameter block inside a flat array. */
static float *
trainer_block(float *base, const float *theta, const float *blk)
{
	return base + (blk - theta);
}

/*
 * Content-echo start: the untrained model is a content-based recommender, so
 * training refines "more of what the user just had" instead of starting from
 * noise (what small data needs, and what ranks an item by its LLM embedding).
 * With Q [H][dim] Gaussian, entries of variance 1/H (Q^T Q ~ I), the cell
 * input reads g = tanh(a Q x_item) and the projection is P = b Q^T: with the
 * input gate at 1/2, the output gate at 1/2 and tanh near linear, u ~
 * a b / 4 * (decayed sum of the recent items' embeddings), so u . e_i is a
 * scaled cosine similarity (temperature a b / 4 = 8 logits per unit of cosine).
 */
static void
trainer_content_init(struct trainer *tr, float *W, float *P)
{
	const float a = 4.0f, b = 8.0f;
	float sd = 1.0f / sqrtf((float)tr->H);

	for (uint32_t h = 0; h < tr->H; h++)
		for (uint32_t k = 0; k < tr->dim; k++) {
			/* Box-Muller: one standard normal from two uniforms. */
			double u1 = train_uniform(&tr->rng), u2 = train_uniform(&tr->rng);
			float q = (float)(sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-12)) *
				      cos(6.283185307179586 * u2)) *
			    sd;
			W[(2 * (size_t)tr->H + h) * tr->K + k] = a * q;
			P[(size_t)k * tr->H + h] = b * q;
		}
}

static int
trainer_init_params(struct trainer *tr)
{
	float *th = tr->theta;
	float *W = trainer_block(th, th, tr->w.W), *b = trainer_block(th, th, tr->w.b);
	float *P = trainer_block(th, th, tr->w.P), *T = trainer_block(th, th, tr->w.T);
	float *ib = trainer_block(th, th, tr->w.ib);
	float aw = 1.0f / sqrtf((float)tr->K), ap = 1.0f / sqrtf((float)tr->H);
	double tot = 0;

	for (size_t k = 0; k < tr->G * tr->K; k++)
		W[k] = (2.0f * train_uniform(&tr->rng) - 1.0f) * aw;
	for (uint32_t k = 0; k < tr->H; k++)
		b[tr->H + k] = 1.0f; /* forget-gate bias: remember by default */
	for (size_t k = 0; k < (size_t)tr->dim * tr->H; k++)
		P[k] = (2.0f * train_uniform(&tr->rng) - 1.0f) * ap;
	if (tr->cfg.content_init)
		trainer_content_init(tr, W, P);
	for (size_t k = 0; k < (size_t)MODEL_N_TYPES * tr->E; k++)
		T[k] = (2.0f * train_uniform(&tr->rng) - 1.0f) * 0.1f;
	/* Item bias starts at log popularity, which the softmax would learn first anyway. */
	for (uint32_t i = 0; i < tr->n_items; i++)
		tot += tr->item_count[i];
	for (uint32_t i = 0; i < tr->n_items; i++)
		ib[i] =
		    tr->item_count[i] ? (float)log((tr->item_count[i] + 1.0) / (tot + 1.0)) : 0.0f;
	return 0;
}

/* ---- content placement of untrained items ---- */

/* In-place Cholesky A = L L^T of A [n][n] (lower triangle); -1 if not positive definite. */
static int
place_cholesky(double *A, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		double d = A[j * n + j];
		for (size_t k = 0; k < j; k++)
			d -= A[j * n + k] * A[j * n + k];
		if (!(d > 0))
			return -1;
		d = sqrt(d);
		A[j * n + j] = d;
		for (size_t i = j + 1; i < n; i++) {
			double v = A[i * n + j];
			for (size_t k = 0; k < j; k++)
				v -= A[i * n + k] * A[j * n + k];
			A[i * n + j] = v / d;
		}
	}
	return 0;
}

/* Solves L L^T X = B for B [n][m] in place (L from place_cholesky). */
static void
place_solve(const double *L, size_t n, double *B, size_t m)
{
	cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)n,
	    (int)m, 1.0, L, (int)n, B, (int)m);
	cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, (int)n, (int)m,
	    1.0, L, (int)n, B, (int)m);
}

/* W [p][q] = (G + lambda * diag(1,..,1,0))^-1 C; the last feature (intercept) is not shrunk. */
static int
place_ridge(
    const double *G, const double *C, size_t p, size_t q, double lambda, double *A, double *W)
{
	memcpy(A, G, p * p * sizeof(double));
	for (size_t k = 0; k + 1 < p; k++)
		A[k * p + k] += lambda;
	if (place_cholesky(A, p) < 0)
		return -1;
	memcpy(W, C, p * q * sizeof(double));
	place_solve(A, p, W, q);
	return 0;
}

/*
 * Gram Gf [p][p] and cross products Cf [p][q] of every fit item but one
 * fold's nf rows Xf, Yf: the totals G, C minus that fold's.
 */
static void
place_other_folds(const double *G, const double *C, const double *Xf, const double *Yf, size_t nf,
    size_t p, size_t q, double *Gf, double *Cf)
{
	memcpy(Gf, G, p * p * sizeof(double));
	memcpy(Cf, C, p * q * sizeof(double));
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p, (int)p, (int)nf, -1.0, Xf,
	    (int)p, Xf, (int)p, 1.0, Gf, (int)p);
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p, (int)q, (int)nf, -1.0, Xf,
	    (int)p, Yf, (int)q, 1.0, Cf, (int)q);
}

/*
 * The placement fit (train_place_untrained): fitted on the trained items' R
 * and ib, predicted into R_out and ib_out for the untrained items, or for
 * every item when all != 0 (the trainer's simulated cold items and the
 * pseudo-cold validation), the fit items then out of fold.
 */
static int
place_run(const struct model *cat, const uint8_t *trained, const float *R, const float *ib, int all,
    float *R_out, float *ib_out, double *lambda_R, double *lambda_ib)
{
	static const double grid[] = { 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4 };
	enum { N_GRID = sizeof(grid) / sizeof(grid[0]) };
	uint32_t n_items = model_n_items(cat), dim = model_dim(cat);
	const float *emb = model_llm_embeddings(cat);
	size_t p = (size_t)dim + 1, q = p, n_tr = 0, n_fit = 0, stride,
	       fold_off[TRAIN_PLACE_FOLDS + 1];
	double *X = NULL, *Y = NULL, *G = NULL, *C = NULL, *Gf = NULL, *Cf = NULL, *A = NULL;
	double *W = NULL, *P = NULL, err_R[N_GRID] = { 0 }, err_ib[N_GRID] = { 0 }, ib_shift = 0;
	uint32_t *fit = NULL, *pick = NULL;
	size_t n_seen = 0, n_pick = 0;
	int ret = -1, best_R = N_GRID - 1, best_ib = N_GRID - 1;

	for (uint32_t i = 0; i < n_items; i++)
		n_tr += trained[i] != 0;
	if (n_tr == n_items && !all)
		return 0;
	if (n_tr == 0) {
		/* Nothing to learn from: untrained items sit at their LLM embedding. */
		for (uint32_t i = 0; i < n_items; i++) {
			memset(R_out + (size_t)i * dim, 0, dim * sizeof(float));
			ib_out[i] = 0.0f;
		}
		return 0;
	}
	/* Every stride-th trained item (all of them up to TRAIN_PLACE_MAX_FIT), fold-contiguous. */
	stride = (n_tr + TRAIN_PLACE_MAX_FIT - 1) / TRAIN_PLACE_MAX_FIT;
	fit = malloc(n_tr * sizeof(uint32_t));
	pick = malloc(n_tr * sizeof(uint32_t));
	if (fit == NULL || pick == NULL)
		goto done;
	for (uint32_t i = 0; i < n_items; i++)
		if (trained[i] && n_seen++ % stride == 0)
			pick[n_pick++] = i;
	/* Fold f holds picks f, f + FOLDS, ...: items of every region of the catalog. */
	for (size_t f = 0; f < TRAIN_PLACE_FOLDS; f++) {
		fold_off[f] = n_fit;
		for (size_t r = f; r < n_pick; r += TRAIN_PLACE_FOLDS)
			fit[n_fit++] = pick[r];
	}
	fold_off[TRAIN_PLACE_FOLDS] = n_fit;
	X = malloc(n_fit * p * sizeof(double));
	Y = malloc(n_fit * q * sizeof(double));
	G = malloc(p * p * sizeof(double));
	C = malloc(p * q * sizeof(double));
	Gf = malloc(p * p * sizeof(double));
	Cf = malloc(p * q * sizeof(double));
	A = malloc(p * p * sizeof(double));
	W = malloc(p * q * sizeof(double));
	P = malloc(n_fit * q * sizeof(double));
	if (!X || !Y || !G || !C || !Gf || !Cf || !A || !W || !P)
		goto done;
	for (size_t r = 0; r < n_fit; r++) {
		size_t i = fit[r];
		for (uint32_t k = 0; k < dim; k++) {
			X[r * p + k] = emb[i * dim + k];
			Y[r * q + k] = R[i * dim + k];
		}
		X[r * p + dim] = 1.0;
		Y[r * q + dim] = ib[i];
	}
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p, (int)p, (int)n_fit, 1.0, X,
	    (int)p, X, (int)p, 0.0, G, (int)p);
	cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p, (int)q, (int)n_fit, 1.0, X,
	    (int)p, Y, (int)q, 0.0, C, (int)q);

	/* Held-out squared error of each strength, R and ib apart, fold by fold. */
	if (n_fit >= 2 * TRAIN_PLACE_FOLDS) {
		for (size_t f = 0; f < TRAIN_PLACE_FOLDS; f++) {
			size_t lo = fold_off[f], nf = fold_off[f + 1] - lo;
			if (nf == 0)
				continue;
			/* Gram and cross products of the other folds: totals minus this fold's. */
			place_other_folds(G, C, X + lo * p, Y + lo * q, nf, p, q, Gf, Cf);
			for (int g = 0; g < N_GRID; g++) {
				if (place_ridge(Gf, Cf, p, q, grid[g], A, W) < 0) {
					err_R[g] = err_ib[g] = INFINITY;
					continue;
				}
				cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nf,
				    (int)q, (int)p, 1.0, X + lo * p, (int)p, W, (int)q, 0.0, P,
				    (int)q);
				for (size_t r = 0; r < nf; r++) {
					const double *y = Y + (lo + r) * q, *yh = P + r * q;
					for (uint32_t k = 0; k < dim; k++)
						err_R[g] += (y[k] - yh[k]) * (y[k] - yh[k]);
					err_ib[g] += (y[dim] - yh[dim]) * (y[dim] - yh[dim]);
				}
			}
		}
		for (int g = 0; g < N_GRID; g++) {
			if (err_R[g] < err_R[best_R])
				best_R = g;
			if (err_ib[g] < err_ib[best_ib])
				best_ib = g;
		}
	}

	/*
	 * Scores are logits: what ranks an item is exp(ib), and the mean of
	 * exp(ib) under a prediction error of variance s2 is exp(mean + s2 / 2).
	 * s2 is the held-out variance of the chosen fit, so a new item is ranked
	 * by its expected weight rather than by its (lower) median one.
	 */
	if (n_fit >= 2 * TRAIN_PLACE_FOLDS && isfinite(err_ib[best_ib]))
		ib_shift = 0.5 * err_ib[best_ib] / (double)n_fit;

	/* Refit on every fit item: R with its strength, ib with its own. */
	for (int pass = 0; pass < 2; pass++) {
		double lambda = grid[pass == 0 ? best_R : best_ib];
		if (place_ridge(G, C, p, q, lambda, A, W) < 0)
			goto done;
		for (uint32_t i = 0; i < n_items; i++) {
			if (trained[i] && !all)
				continue;
			const float *e = emb + (size_t)i * dim;
			if (pass == 0) {
				for (uint32_t k = 0; k < dim; k++) {
					double v = W[(size_t)dim * q + k];
					for (uint32_t j = 0; j < dim; j++)
						v += e[j] * W[(size_t)j * q + k];
					R_out[(size_t)i * dim + k] = (float)v;
				}
			} else {
				double v = W[(size_t)dim * q + dim] + ib_shift;
				for (uint32_t j = 0; j < dim; j++)
					v += e[j] * W[(size_t)j * q + dim];
				ib_out[i] = (float)v;
			}
		}
	}
	/*
	 * Every item (all != 0): the fit items themselves out of fold, each
	 * predicted by the fit on the other folds, so that a trained item's
	 * placement is what it would be had it never been seen.
	 */
	for (size_t f = 0; all && n_fit >= 2 * TRAIN_PLACE_FOLDS && f < TRAIN_PLACE_FOLDS; f++) {
		size_t lo = fold_off[f], nf = fold_off[f + 1] - lo;
		if (nf == 0)
			continue;
		place_other_folds(G, C, X + lo * p, Y + lo * q, nf, p, q, Gf, Cf);
		for (int pass = 0; pass < 2; pass++) {
			if (place_ridge(Gf, Cf, p, q, grid[pass == 0 ? best_R : best_ib], A, W) < 0)
				goto done;
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nf, (int)q,
			    (int)p, 1.0, X + lo * p, (int)p, W, (int)q, 0.0, P, (int)q);
			for (size_t r = 0; r < nf; r++) {
				size_t i = fit[lo + r];
				if (pass == 0)
					for (uint32_t k = 0; k < dim; k++)
						R_out[i * dim + k] = (float)P[r * q + k];
				else
					ib_out[i] = (float)(P[r * q + dim] + ib_shift);
			}
		}
	}
	if (lambda_R != NULL)
		*lambda_R = grid[best_R];
	if (lambda_ib != NULL)
		*lambda_ib = grid[best_ib];
	ret = 0;
done:
	free(pick);
	free(fit);
	free(X);
	free(Y);
	free(G);
	free(C);
	free(Gf);
	free(Cf);
	free(A);
	free(W);
	free(P);
	return ret;
}

int
train_place_untrained(const struct model *cat, const uint8_t *trained, float *R, float *ib,
    double *lambda_R, double *lambda_ib)
{
	return place_run(cat, trained, R, ib, 0, R, ib, lambda_R, lambda_ib);
}

/*
 * The weights as they are written and served: theta, with the untrained
 * items placed from their content (train_place_untrained). Training never
 * touches those items (not inputs, not candidates), so theta keeps them at 0.
 */
static int
trainer_serve(struct trainer *tr, const float *theta)
{
	float *R = trainer_block(tr->served, tr->theta, tr->w.R);
	float *ib = trainer_block(tr->served, tr->theta, tr->w.ib);

	memcpy(tr->served, theta, tr->n_par * sizeof(float));
	return train_place_untrained(tr->cat, tr->trained, R, ib, &tr->lambda_R, &tr->lambda_ib);
}

void
trainer_free(struct trainer *tr)
{
	if (tr == NULL)
		return;
	for (uint32_t b = 0; tr->lane_us != NULL && b < tr->B; b++)
		state_free(tr->lane_us[b]);
	free(tr->lane_us);
	for (size_t k = 0; tr->val_us != NULL && k < tr->n_val_us; k++)
		state_free(tr->val_us[k]);
	free(tr->val_us);
	void *bufs[] = {
		tr->theta,
		tr->grad,
		tr->am,
		tr->av,
		tr->best,
		tr->served,
		tr->tmp_path,
		tr->trained,
		tr->trained_ids,
		tr->Rp,
		tr->ibp,
		tr->sim_cold,
		tr->pos_seq,
		tr->pos_applied,
		tr->pos_ce,
		tr->seq_user,
		tr->seq_off,
		tr->sev,
		tr->order,
		tr->item_count,
		tr->cand_all,
		tr->cand,
		tr->cand_pos,
		tr->tier1,
		tr->tier2,
		tr->lane_seq,
		tr->lane_pos,
		tr->lane_h,
		tr->lane_c,
		tr->xh,
		tr->cprev,
		tr->cnew,
		tr->acts,
		tr->hs,
		tr->hd,
		tr->hmask,
		tr->xmask,
		tr->feat,
		tr->tgt,
		tr->in_item,
		tr->in_type,
		tr->reset,
		tr->active,
		tr->U,
		tr->S,
		tr->dU,
		tr->dhd,
		tr->Ec,
		tr->dEc,
		tr->dh_next,
		tr->dc_next,
		tr->dxh,
		tr->dh_tot,
		tr->scratch,
		tr->a1,
		tr->a2,
		tr->fS,
		tr->fL,
		tr->cib,
		tr->gibc,
		tr->run_lo,
		tr->run_t1,
		tr->run_t2,
		tr->ckey,
		tr->val_hist,
		tr->val_u,
		tr->val_scores,
		tr->stamp,
	};
	for (size_t k = 0; k < sizeof(bufs) / sizeof(bufs[0]); k++)
		free(bufs[k]);
	eval_split_fini(&tr->val);
	model_free(tr->mt);
	free(tr);
}

/* Builds training sequences and counts; 0 or -1 on ENOMEM. */
static int
trainer_sequences(struct trainer *tr, const uint8_t *cold)
{
	const struct dataset *ds = tr->ds;
	size_t total = 0, o = 0;
	uint32_t s = 0;

	tr->seq_user = malloc(((size_t)ds->n_users + 1) * sizeof(*tr->seq_user));
	tr->seq_off = malloc(((size_t)ds->n_users + 1) * sizeof(*tr->seq_off));
	tr->sev = malloc((ds->n_events + 1) * sizeof(*tr->sev));
	tr->item_count = calloc(tr->n_items, sizeof(*tr->item_count));
	if (!tr->seq_user || !tr->seq_off || !tr->sev || !tr->item_count)
		return -1;
	for (uint32_t u = 0; u < ds->n_users; u++) {
		size_t n, keep, start = o;
		const struct dataset_event *ev = dataset_user(ds, u, &n);
		if (n < tr->cfg.min_user_events || n <= tr->cfg.holdout_last)
			continue;
		keep = n - tr->cfg.holdout_last;
		for (size_t k = 0; k < keep; k++) {
			if (cold != NULL && cold[ev[k].item])
				continue;
			tr->sev[o++] = ev[k];
		}
		if (o - start < 2) {
			o = start;
			continue;
		}
		for (size_t k = start; k < o; k++)
			tr->item_count[tr->sev[k].item]++;
		tr->seq_user[s] = u;
		tr->seq_off[s] = start;
		s++;
		total += o - start;
	}
	tr->seq_off[s] = o;
	tr->n_seq = s;
	(void)total;
	return 0;
}

struct trainer *
trainer_new(const struct model *cat, const struct dataset *ds, const struct train_config *cfg,
    const uint8_t *cold, const char *tmp_path, char *errstr, size_t errstr_size)
{
	struct trainer *tr = calloc(1, sizeof(*tr));
	struct model_hparams hp;

	if (tr == NULL)
		goto nomem;
	tr->cat = cat;
	tr->ds = ds;
	tr->cfg = *cfg;
	tr->rng = cfg->seed * 0x2545F4914F6CDD1Dull + 1;
	tr->n_items = model_n_items(cat);
	tr->dim = model_dim(cat);
	tr->nn = model_n_nodes(cat);
	tr->H = cfg->hidden;
	tr->E = cfg->type_dim;
	tr->din = tr->dim + tr->E + 1;
	tr->K = (size_t)tr->din + tr->H;
	tr->G = 4 * (size_t)tr->H;
	tr->B = cfg->batch;
	tr->L = cfg->bptt;
	tr->N = (size_t)tr->B * tr->L;
	if (tr->H == 0 || tr->E == 0 || tr->B == 0 || tr->L == 0 || ds->n_items != tr->n_items) {
		snprintf(
		    errstr, errstr_size, "trainer: bad configuration or dataset/catalog mismatch");
		goto fail;
	}
	if (trainer_sequences(tr, cold) < 0)
		goto nomem;
	if (tr->n_seq == 0) {
		snprintf(errstr, errstr_size, "trainer: no user has 2 training events");
		goto fail;
	}

	tr->n_par = tr->G * tr->K + tr->G + (size_t)tr->dim * tr->H + tr->dim +
	    (size_t)MODEL_N_TYPES * tr->E + (size_t)tr->n_items * tr->dim + tr->n_items + 4;
	tr->theta = calloc(tr->n_par, sizeof(float));
	tr->grad = calloc(tr->n_par, sizeof(float));
	tr->am = calloc(tr->n_par, sizeof(float));
	tr->av = calloc(tr->n_par, sizeof(float));
	tr->best = calloc(tr->n_par, sizeof(float));
	tr->served = calloc(tr->n_par, sizeof(float));
	tr->tmp_path = strdup(tmp_path);
	tr->trained = calloc(tr->n_items, 1);
	tr->trained_ids = malloc(((size_t)tr->n_items + 1) * sizeof(uint32_t));
	tr->pos_seq = calloc(tr->N, sizeof(uint32_t));
	tr->pos_applied = calloc(tr->N, sizeof(uint32_t));
	tr->pos_ce = calloc(tr->N, sizeof(double));
	tr->Rp = calloc((size_t)tr->n_items * tr->dim, sizeof(float));
	tr->ibp = calloc(tr->n_items, sizeof(float));
	tr->sim_cold = calloc(tr->n_items, 1);
	if (!tr->theta || !tr->grad || !tr->am || !tr->av || !tr->best || !tr->served ||
	    !tr->tmp_path || !tr->trained || !tr->trained_ids || !tr->pos_seq || !tr->pos_applied ||
	    !tr->pos_ce || !tr->Rp || !tr->ibp || !tr->sim_cold)
		goto nomem;
	for (uint32_t i = 0; i < tr->n_items; i++) {
		tr->trained[i] = tr->item_count[i] > 0;
		if (tr->trained[i])
			tr->trained_ids[tr->n_trained++] = i;
	}
	trainer_bind(&tr->w, tr->theta, tr);
	trainer_bind(&tr->gw, tr->grad, tr);
	trainer_bind(&tr->sw, tr->served, tr);
	trainer_init_params(tr);
	memcpy(tr->best, tr->theta, tr->n_par * sizeof(float));
	if (trainer_serve(tr, tr->theta) < 0)
		goto nomem;

	/* A model file with our HPAR, reloaded: dims and tier weights as served. */
	hp = cfg->hp;
	hp.hidden = tr->H;
	hp.type_dim = tr->E;
	hp.n_types = MODEL_N_TYPES;
	hp.train_seed = cfg->seed;
	if (model_write(tmp_path, cat, &hp, &tr->sw, errstr, errstr_size) < 0)
		goto fail;
	tr->mt = model_load(tmp_path, errstr, errstr_size);
	unlink(tmp_path);
	if (tr->mt == NULL)
		goto fail;

	/* Candidates and tiers. */
	tr->cand_all = malloc(tr->n_items * sizeof(uint32_t));
	tr->cand = malloc(tr->n_items * sizeof(uint32_t));
	tr->cand_pos = malloc(tr->n_items * sizeof(int32_t));
	tr->tier1 = malloc(tr->n_items * sizeof(uint32_t));
	tr->tier2 = malloc(tr->n_items * sizeof(uint32_t));
	if (!tr->cand_all || !tr->cand || !tr->cand_pos || !tr->tier1 || !tr->tier2)
		goto nomem;
	for (uint32_t i = 0; i < tr->n_items; i++) {
		tr->cand_pos[i] = -1;
		tr->tier1[i] = model_item_tier1(cat, i);
		tr->tier2[i] = model_item_tier2(cat, i);
		if (tr->item_count[i] > 0)
			tr->cand_all[tr->n_cand_all++] = i;
	}
	if (tr->cfg.sampled == 0 && tr->n_cand_all > TRAIN_SAMPLED_AUTO)
		tr->cfg.sampled = TRAIN_SAMPLED_DEFAULT;
	if (tr->cfg.sampled >= tr->n_cand_all)
		tr->cfg.sampled = 0;

	/* Lanes and window buffers. */
	size_t N = tr->N, B = tr->B, H = tr->H, nc = tr->n_items;
	tr->order = malloc(tr->n_seq * sizeof(uint32_t));
	tr->lane_seq = malloc(B * sizeof(uint32_t));
	tr->lane_pos = calloc(B, sizeof(size_t));
	tr->lane_h = calloc(B * H, sizeof(float));
	tr->lane_c = calloc(B * H, sizeof(float));
	tr->lane_us = calloc(B, sizeof(*tr->lane_us));
	tr->xh = calloc(N * tr->K, sizeof(float));
	tr->cprev = calloc(N * H, sizeof(float));
	tr->cnew = calloc(N * H, sizeof(float));
	tr->acts = calloc(N * tr->G, sizeof(float));
	tr->hs = calloc(N * H, sizeof(float));
	tr->hd = calloc(N * H, sizeof(float));
	tr->hmask = calloc(N * H, sizeof(float));
	tr->xmask = calloc(N * tr->dim, sizeof(float));
	tr->feat = calloc(N * 2 * tr->nn, sizeof(float));
	tr->tgt = calloc(N, sizeof(int32_t));
	tr->in_item = calloc(N, sizeof(uint32_t));
	tr->in_type = calloc(N, 1);
	tr->reset = calloc(N, 1);
	tr->active = calloc(N, 1);
	tr->U = calloc(N * tr->dim, sizeof(float));
	tr->S = calloc(N * nc, sizeof(float));
	tr->dU = calloc(N * tr->dim, sizeof(float));
	tr->dhd = calloc(N * H, sizeof(float));
	tr->Ec = calloc(nc * tr->dim, sizeof(float));
	tr->dEc = calloc(nc * tr->dim, sizeof(float));
	tr->dh_next = calloc(B * H, sizeof(float));
	tr->dc_next = calloc(B * H, sizeof(float));
	tr->dxh = calloc(B * tr->K, sizeof(float));
	tr->dh_tot = calloc(B * H, sizeof(float));
	tr->scratch = calloc(B * tr->G, sizeof(float));
	tr->a1 = calloc(tr->nn + 1, sizeof(float));
	tr->a2 = calloc(tr->nn + 1, sizeof(float));
	tr->fS = calloc(tr->nn + 1, sizeof(float));
	tr->fL = calloc(tr->nn + 1, sizeof(float));
	tr->cib = calloc(tr->n_items, sizeof(float));
	tr->gibc = calloc(tr->n_items, sizeof(float));
	tr->run_lo = calloc(tr->nn + 2, sizeof(uint32_t));
	tr->run_t1 = calloc(tr->nn + 2, sizeof(uint32_t));
	tr->run_t2 = calloc(tr->nn + 2, sizeof(uint32_t));
	tr->ckey = calloc(tr->n_items, sizeof(uint64_t));
	if (!tr->order || !tr->lane_seq || !tr->lane_pos || !tr->lane_h || !tr->lane_c ||
	    !tr->lane_us || !tr->xh || !tr->cprev || !tr->cnew || !tr->acts || !tr->hs || !tr->hd ||
	    !tr->hmask || !tr->xmask || !tr->feat || !tr->tgt || !tr->in_item || !tr->in_type ||
	    !tr->reset || !tr->active || !tr->U || !tr->S || !tr->dU || !tr->dhd || !tr->Ec ||
	    !tr->dEc || !tr->dh_next || !tr->dc_next || !tr->dxh || !tr->dh_tot || !tr->scratch ||
	    !tr->a1 || !tr->a2 || !tr->fS || !tr->fL || !tr->cib || !tr->gibc || !tr->run_lo ||
	    !tr->run_t1 || !tr->run_t2 || !tr->ckey)
		goto nomem;
	for (size_t b = 0; b < B; b++) {
		tr->lane_us[b] = state_new(model_hparams(tr->mt));
		if (tr->lane_us[b] == NULL)
			goto nomem;
	}

	/* Validation: each user's event right after the training part. */
	if (cfg->holdout_last > 0) {
		uint32_t k = 0;
		if (eval_split_make(ds, &tr->val) < 0)
			goto nomem;
		tr->val_hist = malloc((tr->val.n + 1) * sizeof(uint32_t));
		tr->val_u = malloc((size_t)SCORER_BATCH * tr->dim * sizeof(float));
		tr->val_scores = malloc((size_t)SCORER_BATCH * tr->n_items * sizeof(float));
		tr->stamp = calloc(tr->n_items, sizeof(uint32_t));
		tr->n_val_us = tr->val.n < TRAIN_VAL_USERS ? tr->val.n : TRAIN_VAL_USERS;
		tr->val_us = calloc(tr->n_val_us + 1, sizeof(*tr->val_us));
		if (!tr->val_hist || !tr->val_u || !tr->val_scores || !tr->stamp || !tr->val_us)
			goto nomem;
		for (size_t j = 0; j < tr->n_val_us; j++)
			if ((tr->val_us[j] = state_new(model_hparams(tr->mt))) == NULL)
				goto nomem;
		for (uint32_t j = 0; j < tr->val.n; j++) {
			size_t n;
			dataset_user(ds, tr->val.users[j], &n);
			if (n <= cfg->holdout_last)
				continue;
			tr->val.users[k] = tr->val.users[j];
			tr->val_hist[k] = (uint32_t)(n - cfg->holdout_last);
			k++;
		}
		tr->val.n = k;
	}
	tr->best_val = -1.0;
	return tr;

nomem:
	snprintf(errstr, errstr_size, "trainer: out of memory");
fail:
	trainer_free(tr);
	return NULL;
}

/*
 * Buffers of a serving-path measurement (train_score_users): up to n_us
 * states made for the model's hyper-parameters, stamp [n_items] all zero,
 * u [dim], scores [n_items].
 */
struct train_scoring {
	struct user_state **us;
	size_t n_us;
	uint32_t *stamp;
	float *u, *scores; /* [SCORER_BATCH][dim], [SCORER_BATCH][n_items] */
	/*
	 * Optional (Rp != NULL): the pseudo-cold measurement. Each trained
	 * target is ranked once more with its own R and ib (the model's) swapped
	 * for its out-of-fold content placement Rp, ibp: the rank it would have
	 * as a new item. HR@10 of those ranks into cold_hits over cold_n targets.
	 */
	const float *R, *ib, *Rp, *ibp;
	const uint8_t *trained;
	double cold_hits, cold_n;
};

/* The pseudo-cold rank of target t for batch row r (struct train_scoring). */
static void
train_rank_cold(
    const struct model *m, struct train_scoring *ts, uint32_t r, uint32_t t, uint32_t mark)
{
	uint32_t dim = model_dim(m), n_items = model_n_items(m), rank;
	const float *u = ts->u + (size_t)r * dim, *R = ts->R + (size_t)t * dim,
		    *Rp = ts->Rp + (size_t)t * dim;
	float *sc = ts->scores + (size_t)r * n_items, keep = sc[t];
	double d = (double)ts->ibp[t] - ts->ib[t];

	for (uint32_t k = 0; k < dim; k++)
		d += (double)u[k] * ((double)Rp[k] - R[k]);
	sc[t] = (float)(keep + d);
	rank = eval_rank(sc, n_items, t, ts->stamp, mark);
	sc[t] = keep;
	ts->cold_hits += rank < EVAL_TOPK;
	ts->cold_n += 1;
}

/*
 * Replays the first n_hist[k] events of dataset user users[k] (k < n)
 * through updater_apply, chunk by chunk (ts->n_us users each), then scores
 * every item with scorer_interest + scorer_score_all, exactly what the
 * daemon would serve, and ranks event n_hist[k] against every item but the
 * replayed history (never the target). Adds NDCG@10 and HR@10 of each user
 * to *ndcg and *hits; leaves ts->stamp zero. Returns 0, or -1 on ENOMEM.
 */
static int
train_score_users(const struct model *m, struct updater *up, struct scorer *sc,
    const struct dataset *ds, const uint32_t *users, const uint32_t *n_hist, uint32_t n,
    struct train_scoring *ts, double *ndcg, double *hits)
{
	uint32_t n_items = model_n_items(m);
	int ret = 0;

	for (uint32_t k0 = 0; k0 < n; k0 += (uint32_t)ts->n_us) {
		uint32_t nk = n - k0 < ts->n_us ? n - k0 : (uint32_t)ts->n_us;
		if (eval_replay(up, ds, users + k0, n_hist + k0, nk, TRAIN_VAL_BATCH, ts->us) < 0) {
			ret = -1;
			break;
		}
		for (uint32_t j0 = 0; j0 < nk; j0 += SCORER_BATCH) {
			uint32_t ng = nk - j0 < SCORER_BATCH ? nk - j0 : SCORER_BATCH;
			for (uint32_t r = 0; r < ng; r++)
				scorer_interest(
				    m, ts->us[j0 + r], ts->u + (size_t)r * model_dim(m));
			scorer_score_all_batch(sc, (const struct user_state *const *)ts->us + j0,
			    ts->u, ng, ts->scores);
			for (uint32_t r = 0; r < ng; r++) {
				uint32_t k = k0 + j0 + r, mark = k + 1, rank;
				size_t n_ev;
				const struct dataset_event *ev = dataset_user(ds, users[k], &n_ev);
				for (uint32_t e = 0; e < n_hist[k]; e++)
					ts->stamp[ev[e].item] = mark;
				rank = eval_rank(ts->scores + (size_t)r * n_items, n_items,
				    ev[n_hist[k]].item, ts->stamp, mark);
				if (rank < EVAL_TOPK) {
					*hits += 1;
					*ndcg += 1.0 / log2(rank + 2.0);
				}
				if (ts->Rp != NULL && ts->trained[ev[n_hist[k]].item])
					train_rank_cold(m, ts, r, ev[n_hist[k]].item, mark);
			}
		}
	}
	memset(ts->stamp, 0, n_items * sizeof(uint32_t));
	return ret;
}

/*
 * Mean NDCG@10 (and HR@10 into *hr) on the validation items, through the
 * serving path: the live weights as trainer_write() would write them go to
 * a model file, which is loaded and measured by train_score_users.
 * Returns -1 with errstr on failure.
 */
static double
trainer_validate(struct trainer *tr, double *hr, char *errstr, size_t errstr_size)
{
	struct model *m = NULL;
	struct updater *up = NULL;
	struct scorer *sc = NULL;
	struct train_scoring ts = { .us = tr->val_us,
		.n_us = tr->n_val_us,
		.stamp = tr->stamp,
		.u = tr->val_u,
		.scores = tr->val_scores };
	double ndcg = 0, hits = 0, ret = -1;

	*hr = 0;
	if (tr->val.n == 0)
		return 0;
	ts.R = trainer_block(tr->served, tr->theta, tr->w.R);
	ts.ib = trainer_block(tr->served, tr->theta, tr->w.ib);
	ts.Rp = tr->Rp;
	ts.ibp = tr->ibp;
	ts.trained = tr->trained;
	if (trainer_serve(tr, tr->theta) < 0 ||
	    place_run(tr->cat, tr->trained, ts.R, ts.ib, 1, tr->Rp, tr->ibp, NULL, NULL) < 0) {
		snprintf(
		    errstr, errstr_size, "trainer: validation: placement failed (out of memory)");
		return -1;
	}
	if (model_write(
		tr->tmp_path, tr->cat, model_hparams(tr->mt), &tr->sw, errstr, errstr_size) < 0)
		return -1;
	m = model_load(tr->tmp_path, errstr, errstr_size);
	unlink(tr->tmp_path);
	if (m == NULL)
		return -1;
	up = updater_new(m, TRAIN_VAL_BATCH);
	sc = scorer_new(m);
	if (up == NULL || sc == NULL) {
		snprintf(errstr, errstr_size, "trainer: validation: out of memory");
		goto done;
	}
	if (train_score_users(
		m, up, sc, tr->ds, tr->val.users, tr->val_hist, tr->val.n, &ts, &ndcg, &hits) < 0) {
		snprintf(errstr, errstr_size, "trainer: validation: replay failed (out of memory)");
		goto done;
	}
	*hr = hits / tr->val.n;
	tr->val_cold_hr = ts.cold_n > 0 ? ts.cold_hits / ts.cold_n : 0;
	ret = ndcg / tr->val.n;
done:
	scorer_free(sc);
	updater_free(up);
	model_free(m);
	return ret;
}

int
train_test(const struct model *m, const struct dataset *ds, struct train_test_result *res,
    char *errstr, size_t errstr_size)
{
	struct eval_split sp = { 0 };
	struct train_scoring ts = { 0 };
	struct updater *up = NULL;
	struct scorer *sc = NULL;
	double ndcg = 0, hits = 0;
	int ret = -1;

	if (!model_has_weights(m) || model_n_items(m) != ds->n_items) {
		snprintf(errstr, errstr_size, "test: not a model of the dataset's catalog");
		return -1;
	}
	if (eval_split_make(ds, &sp) < 0)
		goto nomem;
	ts.n_us = sp.n < TRAIN_VAL_USERS ? sp.n : TRAIN_VAL_USERS;
	ts.us = calloc(ts.n_us + 1, sizeof(*ts.us));
	ts.stamp = calloc(ds->n_items + 1, sizeof(uint32_t));
	ts.u = malloc((size_t)SCORER_BATCH * ((size_t)model_dim(m) + 1) * sizeof(float));
	ts.scores = malloc((size_t)SCORER_BATCH * ((size_t)ds->n_items + 1) * sizeof(float));
	up = updater_new(m, TRAIN_VAL_BATCH);
	sc = scorer_new(m);
	if (!ts.us || !ts.stamp || !ts.u || !ts.scores || !up || !sc)
		goto nomem;
	for (size_t j = 0; j < ts.n_us; j++)
		if ((ts.us[j] = state_new(model_hparams(m))) == NULL)
			goto nomem;
	if (train_score_users(m, up, sc, ds, sp.users, sp.n_hist, sp.n, &ts, &ndcg, &hits) < 0)
		goto nomem;
	res->users = sp.n;
	res->ndcg10 = sp.n ? ndcg / sp.n : 0.0;
	res->hr10 = sp.n ? hits / sp.n : 0.0;
	ret = 0;
	goto done;
nomem:
	snprintf(errstr, errstr_size, "test: out of memory");
done:
	for (size_t j = 0; ts.us != NULL && j < ts.n_us; j++)
		state_free(ts.us[j]);
	free(ts.us);
	free(ts.stamp);
	free(ts.u);
	free(ts.scores);
	scorer_free(sc);
	updater_free(up);
	eval_split_fini(&sp);
	return ret;
}

int
train_accept(double new_ndcg, double cur_ndcg, double max_regression)
{
	if (!isfinite(new_ndcg) || !isfinite(cur_ndcg) || !(max_regression >= 0) ||
	    !(max_regression <= 1))
		return 0;
	return new_ndcg >= cur_ndcg * (1.0 - max_regression);
}

/* A new pass over the users: seeded shuffle (or stored order), from the start. */
static void
trainer_shuffle(struct trainer *tr)
{
	for (uint32_t s = 0; s < tr->n_seq; s++)
		tr->order[s] = s;
	for (uint32_t s = tr->n_seq; tr->shuffle && s > 1; s--) {
		uint32_t j = (uint32_t)(train_rand(&tr->rng) % s), tmp = tr->order[s - 1];
		tr->order[s - 1] = tr->order[j];
		tr->order[j] = tmp;
	}
	tr->next_seq = 0;
}

/* Fills step t of the window for every lane; returns the number of active lanes. */
static uint32_t
trainer_fill_step(struct trainer *tr, uint32_t t)
{
	uint32_t n_active = 0, dim = tr->dim;
	float keep = 1.0f - tr->cfg.dropout, scale = keep > 0 ? 1.0f / keep : 0.0f;

	for (uint32_t b = 0; b < tr->B; b++) {
		size_t n = (size_t)t * tr->B + b;
		float *row = tr->xh + n * tr->K;
		float *hl = tr->lane_h + (size_t)b * tr->H, *cl = tr->lane_c + (size_t)b * tr->H;
		tr->reset[n] = 0;
		/* Next user when the lane's user has no more (input, target) pairs. */
		if (tr->lane_seq[b] == TRAIN_NONE ||
		    tr->seq_off[tr->lane_seq[b]] + tr->lane_pos[b] + 1 >=
			tr->seq_off[tr->lane_seq[b] + 1]) {
			/*
			 * Lanes never idle: when every user has been handed out, the
			 * next pass starts at once (and the epoch counter advances), so
			 * no window trains on a few long users' tails alone.
			 */
			if (tr->next_seq == tr->n_seq) {
				trainer_shuffle(tr);
				tr->epochs_done++;
			}
			tr->lane_seq[b] = tr->order[tr->next_seq++];
			tr->lane_pos[b] = 0;
			memset(hl, 0, tr->H * sizeof(float));
			memset(cl, 0, tr->H * sizeof(float));
			tr->reset[n] = 1;
			if (tr->lane_seq[b] != TRAIN_NONE)
				state_reset(tr->lane_us[b]);
		}
		if (tr->lane_seq[b] == TRAIN_NONE) {
			memset(row, 0, tr->K * sizeof(float));
			memset(tr->cprev + n * tr->H, 0, tr->H * sizeof(float));
			tr->active[n] = 0;
			tr->tgt[n] = -1;
			continue;
		}
		const struct dataset_event *ev =
		    tr->sev + tr->seq_off[tr->lane_seq[b]] + tr->lane_pos[b];
		train_input_row(tr->mt, &tr->w, tr->E, ev, tr->lane_us[b], row);
		if (tr->cfg.dropout > 0) {
			float *xm = tr->xmask + n * dim;
			for (uint32_t k = 0; k < dim; k++) {
				xm[k] = train_uniform(&tr->rng) < keep ? scale : 0.0f;
				row[k] *= xm[k];
			}
		}
		memcpy(row + tr->din, hl, tr->H * sizeof(float));
		memcpy(tr->cprev + n * tr->H, cl, tr->H * sizeof(float));
		state_tiers_apply(tr->lane_us[b], tr->mt, ev->item, ev->type, ev->ts_ms);
		train_tier_features(tr->mt, tr->lane_us[b], tr->feat + n * 2 * tr->nn);
		tr->in_item[n] = ev->item;
		tr->in_type[n] = ev->type;
		tr->pos_seq[n] = tr->lane_seq[b];
		tr->pos_applied[n] = (uint32_t)tr->lane_pos[b] + 1;
		tr->tgt[n] = (int32_t)ev[1].item; /* mapped to a candidate position later */
		tr->active[n] = 1;
		tr->lane_pos[b]++;
		n_active++;
	}
	return n_active;
}

/* Chooses this step's candidates; returns their count. */
static int
train_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : (x > y);
}

/* Tier node of an item for the runs: the node, or nn for none. */
static uint32_t
trainer_node(const struct trainer *tr, const uint32_t *tier, uint32_t i)
{
	return tier[i] < tr->nn ? tier[i] : tr->nn;
}

/*
 * Orders cand[0..nc) by (tier-2 node, tier-1 node, item), so the candidates
 * of one node are contiguous: their tier terms are one constant per run.
 */
static void
trainer_sort_cands(struct trainer *tr, uint32_t *cand, uint32_t nc)
{
	for (uint32_t c = 0; c < nc; c++)
		tr->ckey[c] = (uint64_t)trainer_node(tr, tr->tier2, cand[c]) << 40 |
		    (uint64_t)trainer_node(tr, tr->tier1, cand[c]) << 24 | cand[c];
	qsort(tr->ckey, nc, sizeof(uint64_t), train_u64_cmp);
	for (uint32_t c = 0; c < nc; c++)
		cand[c] = (uint32_t)(tr->ckey[c] & 0xFFFFFFu);
}

/* Runs of equal (tier-1, tier-2) node over the sorted cand[0..nc). */
static void
trainer_runs(struct trainer *tr, uint32_t nc)
{
	tr->n_runs = 0;
	for (uint32_t c = 0; c < nc; c++) {
		uint32_t i = tr->cand[c], t1 = trainer_node(tr, tr->tier1, i),
			 t2 = trainer_node(tr, tr->tier2, i), r = tr->n_runs;
		if (r == 0 || tr->run_t1[r - 1] != t1 || tr->run_t2[r - 1] != t2) {
			tr->run_lo[r] = c;
			tr->run_t1[r] = t1;
			tr->run_t2[r] = t2;
			tr->n_runs++;
		}
	}
	tr->run_lo[tr->n_runs] = nc;
}

static uint32_t
trainer_candidates(struct trainer *tr)
{
	uint32_t nc = 0;

	if (tr->cfg.sampled == 0) {
		if (!tr->cand_all_sorted) {
			trainer_sort_cands(tr, tr->cand_all, tr->n_cand_all);
			tr->cand_all_sorted = 1;
		}
		memcpy(tr->cand, tr->cand_all, tr->n_cand_all * sizeof(uint32_t));
		nc = tr->n_cand_all;
	} else {
		/* The window's targets plus uniform negatives among the seen items. */
		for (size_t n = 0; n < tr->N; n++) {
			uint32_t it;
			if (!tr->active[n])
				continue;
			it = (uint32_t)tr->tgt[n];
			if (tr->cand_pos[it] < 0) {
				tr->cand_pos[it] = (int32_t)nc;
				tr->cand[nc++] = it;
			}
		}
		for (uint32_t s = 0; s < tr->cfg.sampled; s++) {
			uint32_t it = tr->cand_all[train_rand(&tr->rng) % tr->n_cand_all];
			if (tr->cand_pos[it] < 0) {
				tr->cand_pos[it] = (int32_t)nc;
				tr->cand[nc++] = it;
			}
		}
		for (uint32_t c = 0; c < nc; c++)
			tr->cand_pos[tr->cand[c]] = -1;
		trainer_sort_cands(tr, tr->cand, nc);
	}
	for (uint32_t c = 0; c < nc; c++)
		tr->cand_pos[tr->cand[c]] = (int32_t)c;
	trainer_runs(tr, nc);
	return nc;
}

/* ---- the softmax row: vector kernels ---- */

#define TRAIN_LANES 16
typedef float train_vec __attribute__((vector_size(TRAIN_LANES * sizeof(float))));
typedef int32_t train_ivec __attribute__((vector_size(TRAIN_LANES * sizeof(int32_t))));

/*
 * exp(x) for x <= 0 (a softmax row minus its maximum), lane-wise: x = n ln2 +
 * r with |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial (relative
 * error below 2e-7), times 2^n through the exponent bits; below -87 the
 * result is 2^-126 (about 1e-38), not 0.
 */
static inline __attribute__((always_inline)) void
train_exp_vec(train_vec *xp)
{
	train_vec x = *xp, lo = x - x - 87.0f, t, r, p;
	train_ivec gt = x > lo, n;

	x = (train_vec)(((train_ivec)x & gt) | ((train_ivec)lo & ~gt));
	t = x * 1.44269504f - 0.5f;
	n = __builtin_convertvector(t, train_ivec); /* toward zero: t <= -0.5 rounds down */
	t = __builtin_convertvector(n, train_vec);
	r = x - t * 0.693145752f - t * 1.42860677e-06f;
	p = 1.0f +
	    r *
		(1.0f +
		    r *
			(0.5f +
			    r *
				(1.0f / 6 +
				    r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
	*xp = (train_vec)((train_ivec)p + (n << 23));
}

#define TRAIN_LOAD(v, p)  memcpy(&(v), (p), sizeof(train_vec))
#define TRAIN_STORE(p, v) memcpy((p), &(v), sizeof(train_vec))

/* Scalar exp for the tails, the same arithmetic as train_exp_vec. */
static inline float
train_exp1(float x)
{
	train_vec v = { 0 };
	v[0] = x;
	train_exp_vec(&v);
	return v[0];
}

/*
 * One position's row: s[c] += cib[c] + add(run of c); returns the maximum.
 * Runs are trainer_runs' over the candidates.
 */
__attribute__((target_clones("avx512f", "avx2", "default"))) static float
train_row_logits(float *s, const float *cib, const uint32_t *run_lo, const uint32_t *run_t1,
    const uint32_t *run_t2, uint32_t n_runs, const float *a1, const float *a2)
{
	train_vec vm = { 0 };
	float mx = -INFINITY;

	vm = vm - INFINITY;
	for (uint32_t r = 0; r < n_runs; r++) {
		uint32_t c = run_lo[r], hi = run_lo[r + 1];
		float add = a1[run_t1[r]] + a2[run_t2[r]];
		for (; c + TRAIN_LANES <= hi; c += TRAIN_LANES) {
			train_vec v, b;
			TRAIN_LOAD(v, s + c);
			TRAIN_LOAD(b, cib + c);
			v += b + add;
			train_ivec gt = v > vm;
			TRAIN_STORE(s + c, v);
			vm = (train_vec)(((train_ivec)v & gt) | ((train_ivec)vm & ~gt));
		}
		for (; c < hi; c++) {
			s[c] += cib[c] + add;
			mx = s[c] > mx ? s[c] : mx;
		}
	}
	for (int k = 0; k < TRAIN_LANES; k++)
		mx = vm[k] > mx ? vm[k] : mx;
	return mx;
}

/* s[c] = exp(s[c] - mx) over the row; returns the sum. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static double
train_row_exp(float *s, uint32_t nc, float mx)
{
	train_vec acc = { 0 };
	double z = 0;
	uint32_t c = 0;

	for (; c + TRAIN_LANES <= nc; c += TRAIN_LANES) {
		train_vec e;
		TRAIN_LOAD(e, s + c);
		e -= mx;
		train_exp_vec(&e);
		TRAIN_STORE(s + c, e);
		acc += e;
	}
	for (; c < nc; c++) {
		s[c] = train_exp1(s[c] - mx);
		z += s[c];
	}
	for (int k = 0; k < TRAIN_LANES; k++)
		z += acc[k];
	return z;
}

/*
 * s[c] = s[c] * scale (softmax share, divided by the positions), added into
 * gibc; the sum of each run into run_sum[r] (its tier terms' gradient).
 */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
train_row_grad(
    float *s, float *gibc, const uint32_t *run_lo, uint32_t n_runs, float scale, float *run_sum)
{
	for (uint32_t r = 0; r < n_runs; r++) {
		uint32_t c = run_lo[r], hi = run_lo[r + 1];
		train_vec acc = { 0 };
		float sum = 0;
		for (; c + TRAIN_LANES <= hi; c += TRAIN_LANES) {
			train_vec d, g;
			TRAIN_LOAD(d, s + c);
			TRAIN_LOAD(g, gibc + c);
			d *= scale;
			g += d;
			TRAIN_STORE(s + c, d);
			TRAIN_STORE(gibc + c, g);
			acc += d;
		}
		for (; c < hi; c++) {
			s[c] *= scale;
			gibc[c] += s[c];
			sum += s[c];
		}
		for (int k = 0; k < TRAIN_LANES; k++)
			sum += acc[k];
		run_sum[r] = sum;
	}
}

/*
 * The items whose R and ib rows a window updates: when training (update),
 * the items with training events, ascending (*rows = trained_ids), since
 * the others are never inputs or candidates, so their theta, gradient and
 * Adam moments stay 0 and an Adam step leaves them 0; the per-window passes
 * then cost O(trained items), not O(n_items) (a 10^6-item catalog with a
 * few 10^4 trained items). Without update (gradient checks, which may move
 * any parameter) every item: *rows = NULL, *n = n_items.
 */
static void
trainer_rows(const struct trainer *tr, int update, const uint32_t **rows, uint32_t *n)
{
	*rows = update ? tr->trained_ids : NULL;
	*n = update ? tr->n_trained : tr->n_items;
}

/* Zeroes the gradient of the dense blocks and of the rows' R and ib. */
static void
trainer_grad_zero(struct trainer *tr, const uint32_t *rows, uint32_t n_rows)
{
	size_t r_off = (size_t)(tr->w.R - tr->theta), ib_off = (size_t)(tr->w.ib - tr->theta);
	size_t al_off = (size_t)(tr->w.alpha - tr->theta), dim = tr->dim;

	if (rows == NULL) {
		memset(tr->grad, 0, tr->n_par * sizeof(float));
		return;
	}
	memset(tr->grad, 0, r_off * sizeof(float));
	for (uint32_t j = 0; j < n_rows; j++) {
		memset(tr->grad + r_off + rows[j] * dim, 0, dim * sizeof(float));
		tr->grad[ib_off + rows[j]] = 0.0f;
	}
	memset(tr->grad + al_off, 0, (tr->n_par - al_off) * sizeof(float));
}

/*
 * Squared norm of the gradient, summed in parameter order; the items left
 * out have a zero gradient (trainer_rows), so the sum is the full one.
 */
static double
trainer_grad_norm2(const struct trainer *tr, const uint32_t *rows, uint32_t n_rows)
{
	size_t r_off = (size_t)(tr->w.R - tr->theta), ib_off = (size_t)(tr->w.ib - tr->theta);
	size_t al_off = (size_t)(tr->w.alpha - tr->theta), dim = tr->dim;
	const float *g = tr->grad;
	double norm = 0;

	for (size_t k = 0; k < r_off; k++)
		norm += (double)g[k] * g[k];
	for (uint32_t j = 0; j < n_rows; j++) {
		size_t i = rows != NULL ? rows[j] : j;
		for (size_t k = r_off + i * dim; k < r_off + (i + 1) * dim; k++)
			norm += (double)g[k] * g[k];
	}
	for (uint32_t j = 0; j < n_rows; j++) {
		size_t k = ib_off + (rows != NULL ? rows[j] : j);
		norm += (double)g[k] * g[k];
	}
	for (size_t k = al_off; k < tr->n_par; k++)
		norm += (double)g[k] * g[k];
	return norm;
}

/* One Adam step of theta[lo..hi) with the gradient scaled by gs. */
static void
trainer_adam(struct trainer *tr, size_t lo, size_t hi, float gs, float step)
{
	for (size_t k = lo; k < hi; k++) {
		float g = tr->grad[k] * gs;
		tr->am[k] = TRAIN_ADAM_B1 * tr->am[k] + (1.0f - TRAIN_ADAM_B1) * g;
		tr->av[k] = TRAIN_ADAM_B2 * tr->av[k] + (1.0f - TRAIN_ADAM_B2) * g * g;
		tr->theta[k] -= step * tr->am[k] / (sqrtf(tr->av[k]) + TRAIN_ADAM_EPS);
	}
}

/*
 * One window: forward, loss, backward into tr->grad, then (if update) Adam.
 * Returns the summed cross-entropy; *count = positions trained.
 */
static double
trainer_window(struct trainer *tr, size_t *count, int update)
{
	const uint32_t *rows;
	uint32_t n_rows;
	uint32_t B = tr->B, H = tr->H, dim = tr->dim, nn = tr->nn, L = tr->L, nc;
	size_t N = tr->N, n_act = 0;
	const float *emb = model_llm_embeddings(tr->cat);
	float keep = 1.0f - tr->cfg.dropout, scale = keep > 0 ? 1.0f / keep : 0.0f;
	double loss = 0;
	const float *al = tr->w.alpha;

	/* Forward through the window, one lstm_forward per step for all lanes. */
	for (uint32_t t = 0; t < L; t++) {
		size_t o = (size_t)t * B;
		n_act += trainer_fill_step(tr, t);
		memcpy(tr->cnew + o * H, tr->cprev + o * H, (size_t)B * H * sizeof(float));
		lstm_forward(tr->w.W, tr->w.b, tr->din, H, B, tr->xh + o * tr->K, tr->cnew + o * H,
		    tr->hs + o * H, tr->acts + o * tr->G);
		for (uint32_t b = 0; b < B; b++) {
			if (!tr->active[o + b])
				continue;
			memcpy(tr->lane_h + (size_t)b * H, tr->hs + (o + b) * H, H * sizeof(float));
			memcpy(
			    tr->lane_c + (size_t)b * H, tr->cnew + (o + b) * H, H * sizeof(float));
		}
	}
	*count = n_act;
	if (n_act == 0)
		return 0;

	/* Dropout on h, then U = hd P^T + pb for all positions. */
	for (size_t k = 0; k < N * H; k++) {
		float mk =
		    tr->cfg.dropout > 0 ? (train_uniform(&tr->rng) < keep ? scale : 0.0f) : 1.0f;
		tr->hmask[k] = mk;
		tr->hd[k] = tr->hs[k] * mk;
	}
	for (size_t n = 0; n < N; n++)
		memcpy(tr->U + n * dim, tr->w.pb, dim * sizeof(float));
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)dim, (int)H, 1.0f, tr->hd,
	    (int)H, tr->w.P, (int)H, 1.0f, tr->U, (int)dim);

	/* Candidates, their embeddings, S = U Ec^T + ib + tier terms. */
	nc = trainer_candidates(tr);
	/*
	 * Simulated cold items (training steps only): a random cold_sim share of
	 * the candidates is scored with its content placement (Rp, ibp), exactly
	 * as an item without training events is served, and no gradient reaches
	 * its R or ib; when such an item is the target, only the interest vector
	 * can rank it, so u learns to agree with the items' content.
	 */
	for (uint32_t c = 0; c < nc; c++) {
		size_t i = tr->cand[c];
		const float *r = tr->w.R + i * dim;
		tr->sim_cold[i] =
		    update && tr->cfg.cold_sim > 0 && train_uniform(&tr->rng) < tr->cfg.cold_sim;
		if (tr->sim_cold[i])
			r = tr->Rp + i * dim;
		for (uint32_t k = 0; k < dim; k++)
			tr->Ec[(size_t)c * dim + k] = emb[i * dim + k] + r[k];
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)nc, (int)dim, 1.0f, tr->U,
	    (int)dim, tr->Ec, (int)dim, 0.0f, tr->S, (int)nc);
	trainer_rows(tr, update, &rows, &n_rows);
	trainer_grad_zero(tr, rows, n_rows);
	float *gib = trainer_block(tr->grad, tr->theta, tr->w.ib);
	float *galpha = trainer_block(tr->grad, tr->theta, tr->w.alpha);
	float inv = 1.0f / (float)n_act;
	for (uint32_t c = 0; c < nc; c++) {
		uint32_t i = tr->cand[c];
		tr->cib[c] = tr->sim_cold[i] ? tr->ibp[i] : tr->w.ib[i];
		tr->gibc[c] = 0.0f;
	}
	float *run_sum = tr->scratch; /* [n_runs <= nn + 1] <= B * 4H floats */
	for (size_t n = 0; n < N; n++) {
		float *s = tr->S + n * nc;
		const float *f = tr->feat + n * 2 * nn;
		double mx, z;
		int32_t tg;
		if (!tr->active[n]) {
			memset(s, 0, nc * sizeof(float));
			continue;
		}
		/* Tier terms per node (index nn: no node, 0), and the features as sentinels too. */
		for (uint32_t j = 0; j < nn; j++) {
			tr->a1[j] = al[0] * f[j] + al[1] * f[nn + j];
			tr->a2[j] = al[2] * f[j] + al[3] * f[nn + j];
			tr->fS[j] = f[j];
			tr->fL[j] = f[nn + j];
		}
		tr->a1[nn] = tr->a2[nn] = tr->fS[nn] = tr->fL[nn] = 0.0f;
		mx = train_row_logits(
		    s, tr->cib, tr->run_lo, tr->run_t1, tr->run_t2, tr->n_runs, tr->a1, tr->a2);
		tg = tr->cand_pos[tr->tgt[n]];
		float s_tg = s[tg];
		z = train_row_exp(s, nc, (float)mx);
		tr->pos_ce[n] = -(s_tg - mx - log(z));
		loss += tr->pos_ce[n];
		/* dS = (softmax - onehot) / n_act; ib and tier-term gradients. */
		train_row_grad(
		    s, tr->gibc, tr->run_lo, tr->n_runs, (float)(1.0 / z) * inv, run_sum);
		s[tg] -= inv;
		tr->gibc[tg] -= inv;
		for (uint32_t r = 0; r < tr->n_runs; r++) {
			float g = run_sum[r];
			if (tg >= (int32_t)tr->run_lo[r] && tg < (int32_t)tr->run_lo[r + 1])
				g -= inv;
			galpha[0] += g * tr->fS[tr->run_t1[r]];
			galpha[1] += g * tr->fL[tr->run_t1[r]];
			galpha[2] += g * tr->fS[tr->run_t2[r]];
			galpha[3] += g * tr->fL[tr->run_t2[r]];
		}
	}
	for (uint32_t c = 0; c < nc; c++)
		if (!tr->sim_cold[tr->cand[c]])
			gib[tr->cand[c]] += tr->gibc[c];
	if (tr->cfg.sampled != 0)
		for (uint32_t c = 0; c < nc; c++)
			tr->cand_pos[tr->cand[c]] = -1;

	/* dEc = dS^T U -> dR;  dU = dS Ec;  dP = dU^T hd;  dpb;  dhd = dU P. */
	float *gR = trainer_block(tr->grad, tr->theta, tr->w.R);
	float *gP = trainer_block(tr->grad, tr->theta, tr->w.P);
	float *gpb = trainer_block(tr->grad, tr->theta, tr->w.pb);
	float *gT = trainer_block(tr->grad, tr->theta, tr->w.T);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nc, (int)dim, (int)N, 1.0f, tr->S,
	    (int)nc, tr->U, (int)dim, 0.0f, tr->dEc, (int)dim);
	for (uint32_t c = 0; c < nc; c++) {
		size_t i = tr->cand[c];
		if (tr->sim_cold[i])
			continue;
		for (uint32_t k = 0; k < dim; k++)
			gR[i * dim + k] += tr->dEc[(size_t)c * dim + k];
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)dim, (int)nc, 1.0f,
	    tr->S, (int)nc, tr->Ec, (int)dim, 0.0f, tr->dU, (int)dim);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)dim, (int)H, (int)N, 1.0f, tr->dU,
	    (int)dim, tr->hd, (int)H, 1.0f, gP, (int)H);
	for (size_t n = 0; n < N; n++)
		for (uint32_t k = 0; k < dim; k++)
			gpb[k] += tr->dU[n * dim + k];
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)H, (int)dim, 1.0f,
	    tr->dU, (int)dim, tr->w.P, (int)H, 0.0f, tr->dhd, (int)H);
	for (size_t k = 0; k < N * H; k++)
		tr->dhd[k] *= tr->hmask[k];

	/* BPTT through the window; no gradient crosses a lane's user change. */
	float *gW = trainer_block(tr->grad, tr->theta, tr->w.W);
	float *gb = trainer_block(tr->grad, tr->theta, tr->w.b);
	memset(tr->dh_next, 0, (size_t)B * H * sizeof(float));
	memset(tr->dc_next, 0, (size_t)B * H * sizeof(float));
	for (uint32_t t = L; t-- > 0;) {
		size_t o = (size_t)t * B;
		for (size_t k = 0; k < (size_t)B * H; k++)
			tr->dh_tot[k] = tr->dhd[o * H + k] + tr->dh_next[k];
		lstm_backward(tr->w.W, tr->din, H, B, tr->xh + o * tr->K, tr->cprev + o * H,
		    tr->cnew + o * H, tr->acts + o * tr->G, tr->dh_tot, tr->dc_next, gW, gb,
		    tr->dxh, tr->dc_next, tr->scratch);
		for (uint32_t b = 0; b < B; b++) {
			const float *dx = tr->dxh + (size_t)b * tr->K;
			size_t n = o + b;
			if (tr->active[n]) {
				float *gr = gR + (size_t)tr->in_item[n] * dim;
				const float *xm = tr->xmask + n * dim;
				for (uint32_t k = 0; k < dim; k++)
					gr[k] += tr->cfg.dropout > 0 ? dx[k] * xm[k] : dx[k];
				for (uint32_t k = 0; k < tr->E; k++)
					gT[(size_t)tr->in_type[n] * tr->E + k] += dx[dim + k];
			}
			if (tr->reset[n] || !tr->active[n]) {
				memset(tr->dh_next + (size_t)b * H, 0, H * sizeof(float));
				memset(tr->dc_next + (size_t)b * H, 0, H * sizeof(float));
			} else {
				memcpy(
				    tr->dh_next + (size_t)b * H, dx + tr->din, H * sizeof(float));
			}
		}
	}

	/* L2 on R, global-norm clip, Adam, over the rows' items (trainer_rows). */
	double norm = 0;
	float *gbias = trainer_block(tr->grad, tr->theta, tr->w.ib);
	for (uint32_t j = 0; j < n_rows; j++) {
		size_t i = rows != NULL ? rows[j] : j;
		for (uint32_t k = 0; k < dim; k++)
			gR[i * dim + k] += tr->cfg.l2 * tr->w.R[i * dim + k];
		if (tr->cfg.l2_bias > 0)
			gbias[i] += tr->cfg.l2_bias * tr->w.ib[i];
	}
	if (!update)
		return loss;
	norm = sqrt(trainer_grad_norm2(tr, rows, n_rows));
	float gs = (tr->cfg.clip > 0 && norm > tr->cfg.clip) ? (float)(tr->cfg.clip / norm) : 1.0f;
	tr->adam_t++;
	float bc1 = 1.0f - powf(TRAIN_ADAM_B1, (float)tr->adam_t);
	float bc2 = 1.0f - powf(TRAIN_ADAM_B2, (float)tr->adam_t);
	float step = tr->cfg.lr * sqrtf(bc2) / bc1;
	size_t r_off = (size_t)(tr->w.R - tr->theta), ib_off = (size_t)(tr->w.ib - tr->theta);
	trainer_adam(tr, 0, r_off, gs, step);
	for (uint32_t j = 0; j < n_rows; j++) {
		size_t i = rows != NULL ? rows[j] : j;
		trainer_adam(tr, r_off + i * dim, r_off + (i + 1) * dim, gs, step);
	}
	for (uint32_t j = 0; j < n_rows; j++) {
		size_t i = rows != NULL ? rows[j] : j;
		trainer_adam(tr, ib_off + i, ib_off + i + 1, gs, step);
	}
	trainer_adam(tr, (size_t)(tr->w.alpha - tr->theta), tr->n_par, gs, step);
	return loss;
}

int
trainer_run(struct trainer *tr, FILE *log, char *errstr, size_t errstr_size)
{
	uint32_t since_best = 0;
	double run_t0 = clock_mono_s();
	memset(&tr->st, 0, sizeof(tr->st));
	tr->shuffle = 1;
	trainer_shuffle(tr);
	tr->epochs_done = 0;
	for (uint32_t b = 0; b < tr->B; b++)
		tr->lane_seq[b] = TRAIN_NONE;
	/* Epoch 0: the starting weights compete too (small data may not beat them). */
	if (tr->val.n > 0) {
		double hr = 0, val = trainer_validate(tr, &hr, errstr, errstr_size);
		if (val < 0)
			return -1;
		if (log != NULL)
			fprintf(log,
			    "epoch 0 val_ndcg@10 %.4f val_hr@10 %.4f val_cold_hr@10 %.4f\n", val,
			    hr, tr->val_cold_hr);
		tr->best_val = val;
		tr->best_cold_hr = tr->val_cold_hr;
		memcpy(tr->best, tr->theta, tr->n_par * sizeof(float));
	}

	for (uint32_t ep = 1; ep <= tr->cfg.epochs; ep++) {
		double t0, tw;
		double loss = 0, val = 0, hr = 0;
		size_t positions = 0;

		t0 = clock_mono_s();
		/* The budget: an epoch costs about what the last one did. */
		if (tr->cfg.train_budget_s > 0 && ep > 1 &&
		    t0 - run_t0 + (t0 - run_t0) / (ep - 1) > tr->cfg.train_budget_s) {
			if (log != NULL)
				fprintf(log,
				    "stopped: --train-budget-s %.0f s reached after %u epochs "
				    "(%.0f s); "
				    "the best epoch so far is kept\n",
				    tr->cfg.train_budget_s, ep - 1, t0 - run_t0);
			break;
		}
		/* The content placement the simulated cold items use, from this epoch's start. */
		if (tr->cfg.cold_sim > 0 &&
		    place_run(tr->cat, tr->trained, tr->w.R, tr->w.ib, 1, tr->Rp, tr->ibp, NULL,
			NULL) < 0) {
			snprintf(errstr, errstr_size, "trainer: content placement: out of memory");
			return -1;
		}
		/* Windows until the lanes have taken every user once more. */
		while (tr->epochs_done < ep) {
			size_t cnt;
			loss += trainer_window(tr, &cnt, 1);
			positions += cnt;
		}
		tw = clock_mono_s();
		tr->st.epochs = ep;
		tr->st.positions += positions;
		tr->st.train_s += tw - t0;
		if (!isfinite(loss)) {
			snprintf(errstr, errstr_size, "trainer: loss diverged in epoch %u", ep);
			return -1;
		}
		if (tr->val.n > 0) {
			val = trainer_validate(tr, &hr, errstr, errstr_size);
			if (val < 0)
				return -1;
		}
		if (log != NULL)
			fprintf(log,
			    "epoch %u loss %.4f val_ndcg@10 %.4f val_hr@10 %.4f val_cold_hr@10 "
			    "%.4f "
			    "time_s %.1f\n",
			    ep, positions ? loss / (double)positions : 0.0, val, hr,
			    tr->val_cold_hr, clock_mono_s() - t0);
		if (log != NULL)
			fflush(log);
		if (tr->val.n == 0 || val > tr->best_val) {
			tr->best_val = val;
			tr->best_cold_hr = tr->val_cold_hr;
			tr->st.best_epoch = ep;
			memcpy(tr->best, tr->theta, tr->n_par * sizeof(float));
			since_best = 0;
		} else if (tr->cfg.patience > 0 && ++since_best >= tr->cfg.patience) {
			break;
		}
	}
	memcpy(tr->theta, tr->best, tr->n_par * sizeof(float));
	if (trainer_serve(tr, tr->theta) < 0) {
		snprintf(
		    errstr, errstr_size, "trainer: placement of untrained items: out of memory");
		return -1;
	}
	if (log != NULL) {
		uint32_t n_cold = 0;
		for (uint32_t i = 0; i < tr->n_items; i++)
			n_cold += !tr->trained[i];
		fprintf(log, "placed %u untrained items from content (ridge lambda R %g, ib %g)\n",
		    n_cold, tr->lambda_R, tr->lambda_ib);
	}
	if (log != NULL && tr->st.train_s > 0)
		fprintf(log,
		    "trained %u epochs (best %u), %llu positions in %.1f s: %.0f training events/s "
		    "per thread (%u threads)\n",
		    tr->st.epochs, tr->st.best_epoch, (unsigned long long)tr->st.positions,
		    tr->st.train_s, (double)tr->st.positions / tr->st.train_s / tr->cfg.threads,
		    tr->cfg.threads);
	return 0;
}

void
trainer_stats(const struct trainer *tr, struct trainer_stats *st)
{
	*st = tr->st;
}

double
trainer_best_val(const struct trainer *tr)
{
	return tr->best_val;
}

double
trainer_best_cold_hr(const struct trainer *tr)
{
	return tr->best_cold_hr;
}

int
trainer_write(const struct trainer *tr, const char *path, const char *choice, char *errstr,
    size_t errstr_size)
{
	/* served: placed by trainer_new (initial weights), then by trainer_run (best epoch). */
	return model_write_choice(
	    path, tr->cat, model_hparams(tr->mt), &tr->sw, choice, errstr, errstr_size);
}

/* Starts an epoch over the users in stored order (no shuffle). */
static void
trainer_rewind(struct trainer *tr)
{
	tr->shuffle = 0;
	trainer_shuffle(tr);
	for (uint32_t b = 0; b < tr->B; b++)
		tr->lane_seq[b] = TRAIN_NONE;
}

double
trainer_window_loss(struct trainer *tr)
{
	size_t cnt;
	double ce, l2 = 0, l2b = 0;

	trainer_rewind(tr);
	ce = trainer_window(tr, &cnt, 0);
	for (size_t k = 0; k < (size_t)tr->n_items * tr->dim; k++)
		l2 += (double)tr->w.R[k] * tr->w.R[k];
	for (uint32_t i = 0; i < tr->n_items; i++)
		l2b += (double)tr->w.ib[i] * tr->w.ib[i];
	return (cnt ? ce / (double)cnt : 0.0) + 0.5 * tr->cfg.l2 * l2 + 0.5 * tr->cfg.l2_bias * l2b;
}

size_t
trainer_window_positions(
    const struct trainer *tr, size_t cap, uint32_t *user, uint32_t *n_applied, double *ce)
{
	size_t got = 0;

	for (size_t n = 0; n < tr->N; n++) {
		if (!tr->active[n])
			continue;
		if (got < cap) {
			user[got] = tr->seq_user[tr->pos_seq[n]];
			n_applied[got] = tr->pos_applied[n];
			ce[got] = tr->pos_ce[n];
		}
		got++;
	}
	return got;
}

float *
trainer_params(struct trainer *tr, size_t *n_par)
{
	*n_par = tr->n_par;
	return tr->theta;
}

const float *
trainer_grad(const struct trainer *tr)
{
	return tr->grad;
}

const struct model_weights *
trainer_weights(const struct trainer *tr)
{
	return &tr->w;
}
