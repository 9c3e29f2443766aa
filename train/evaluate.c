/*
 * Evaluation protocol, metrics and baselines (see evaluate.h). Everything is
 * single-threaded and in a fixed order, so results are reproducible.
 */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "modelfile.h"
#include "state.h"
#include "updater.h"

#define EVAL_KNN_LAST  5     /* ItemKNN scores from the user's last 5 items */
#define EVAL_TIE_SCALE 1e-4f /* popularity tie-break, below any real score step */

static const char *const eval_metric_names[EVAL_N_METRICS] = {
	"hr@10",
	"ndcg@10",
	"hr@20",
	"ndcg@20",
	"mrr",
	"coverage@10",
	"ild@10",
	"calibration_kl@10",
};

const char *
eval_metric_name(enum eval_metric k)
{
	return (unsigned)k < EVAL_N_METRICS ? eval_metric_names[k] : "?";
}

int
eval_replay(struct updater *up, const struct dataset *ds, const uint32_t *users,
    const uint32_t *n_hist, size_t n, size_t max_batch, struct user_state **states)
{
	struct update_event *batch;
	size_t nb = 0;
	int ret = -1;

	if (max_batch == 0)
		return -1;
	batch = malloc(max_batch * sizeof(*batch));
	if (batch == NULL)
		return -1;
	/*
	 * Users' histories back to back: the updater groups a batch into waves
	 * (the k-th event of every user in it), so many users share each SGEMM;
	 * a history cut by a full batch continues in the next one.
	 */
	for (size_t k = 0; k < n; k++) {
		size_t cnt;
		const struct dataset_event *ev = dataset_user(ds, users[k], &cnt);

		state_reset(states[k]);
		for (uint32_t j = 0; j < n_hist[k] && j < cnt; j++) {
			batch[nb].us = states[k];
			batch[nb].item = ev[j].item;
			batch[nb].type = ev[j].type;
			batch[nb].ts_ms = ev[j].ts_ms;
			batch[nb].partition = -1;
			batch[nb].offset = (int64_t)j;
			if (++nb == max_batch) {
				if (updater_apply(up, batch, nb) < 0)
					goto done;
				nb = 0;
			}
		}
	}
	if (nb > 0 && updater_apply(up, batch, nb) < 0)
		goto done;
	ret = 0;
done:
	free(batch);
	return ret;
}

void
eval_tier1_dist(const struct model *m, const struct user_state *us, float *p1)
{
	uint32_t n1 = model_n_tier1(m);
	double sum = 0;

	memset(p1, 0, n1 * sizeof(float));
	for (uint16_t t = 0; t < us->n_tiers; t++)
		if (us->tiers[t].node < n1 && us->tiers[t].w_long > 0)
			sum += us->tiers[t].w_long;
	if (!(sum > 0))
		return;
	for (uint16_t t = 0; t < us->n_tiers; t++)
		if (us->tiers[t].node < n1 && us->tiers[t].w_long > 0)
			p1[us->tiers[t].node] = (float)(us->tiers[t].w_long / sum);
}

/* a ranks before b: higher score, ties to the lower index. */
static int
eval_before(const float *scores, uint32_t a, uint32_t b)
{
	return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
}

uint32_t
eval_rank(
    const float *scores, uint32_t n_items, uint32_t target, const uint32_t *stamp, uint32_t mark)
{
	uint32_t rank = 0;

	for (uint32_t i = 0; i < n_items; i++) {
		if (i == target || stamp[i] == mark)
			continue;
		if (eval_before(scores, i, target))
			rank++;
	}
	return rank;
}

int
eval_split_make(const struct dataset *ds, struct eval_split *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->users = malloc(((size_t)ds->n_users + 1) * sizeof(uint32_t));
	sp->n_hist = malloc(((size_t)ds->n_users + 1) * sizeof(uint32_t));
	if (sp->users == NULL || sp->n_hist == NULL) {
		eval_split_fini(sp);
		return -1;
	}
	for (uint32_t u = 0; u < ds->n_users; u++) {
		size_t n;
		dataset_user(ds, u, &n);
		if (n < EVAL_MIN_EVENTS)
			continue;
		sp->users[sp->n] = u;
		sp->n_hist[sp->n] = (uint32_t)(n - 1);
		sp->n++;
	}
	return 0;
}

void
eval_split_fini(struct eval_split *sp)
{
	free(sp->users);
	free(sp->n_hist);
	memset(sp, 0, sizeof(*sp));
}

/* ---- metrics ---- */

struct eval_acc {
	const struct model *cat;
	uint32_t n_items, n_tier1, dim;
	double sum[EVAL_N_METRICS];
	size_t n_users, n_calib;
	uint8_t *covered; /* [n_items] */
	double *q;        /* [n_tier1] */
};

struct eval_acc *
eval_acc_new(const struct model *cat)
{
	struct eval_acc *ea = calloc(1, sizeof(*ea));

	if (ea == NULL)
		return NULL;
	ea->cat = cat;
	ea->n_items = model_n_items(cat);
	ea->n_tier1 = model_n_tier1(cat);
	ea->dim = model_dim(cat);
	ea->covered = calloc(ea->n_items, 1);
	ea->q = calloc(ea->n_tier1, sizeof(double));
	if (ea->covered == NULL || ea->q == NULL) {
		eval_acc_free(ea);
		return NULL;
	}
	return ea;
}

void
eval_acc_free(struct eval_acc *ea)
{
	if (ea == NULL)
		return;
	free(ea->covered);
	free(ea->q);
	free(ea);
}

void
eval_acc_add(struct eval_acc *ea, const float *scores, uint32_t target, const uint32_t *stamp,
    uint32_t mark, const float *p1)
{
	uint32_t top[EVAL_TOPK], nt = 0, rank;
	const float *emb = model_llm_embeddings(ea->cat);

	rank = target == EVAL_NO_TARGET ? UINT32_MAX
					: eval_rank(scores, ea->n_items, target, stamp, mark);
	if (rank < 10) {
		ea->sum[EVAL_HR10] += 1;
		ea->sum[EVAL_NDCG10] += 1.0 / log2(rank + 2.0);
	}
	if (rank < 20) {
		ea->sum[EVAL_HR20] += 1;
		ea->sum[EVAL_NDCG20] += 1.0 / log2(rank + 2.0);
	}
	if (target != EVAL_NO_TARGET)
		ea->sum[EVAL_MRR] += 1.0 / (rank + 1.0);

	/* Top-10 of the candidates by insertion into a sorted list. */
	for (uint32_t i = 0; i < ea->n_items; i++) {
		uint32_t pos;
		if (i != target && stamp[i] == mark)
			continue;
		if (nt == EVAL_TOPK && !eval_before(scores, i, top[nt - 1]))
			continue;
		pos = nt < EVAL_TOPK ? nt++ : EVAL_TOPK - 1;
		while (pos > 0 && eval_before(scores, i, top[pos - 1])) {
			top[pos] = top[pos - 1];
			pos--;
		}
		top[pos] = i;
	}
	for (uint32_t k = 0; k < nt; k++)
		ea->covered[top[k]] = 1;

	/* Intra-list diversity: mean pairwise 1 - cosine of LLM embeddings. */
	if (nt >= 2) {
		double d = 0;
		uint32_t pairs = 0;
		for (uint32_t a = 0; a < nt; a++)
			for (uint32_t b = a + 1; b < nt; b++) {
				const float *x = emb + (size_t)top[a] * ea->dim;
				const float *y = emb + (size_t)top[b] * ea->dim;
				double dot = 0, nx = 0, ny = 0;
				for (uint32_t k = 0; k < ea->dim; k++) {
					dot += (double)x[k] * y[k];
					nx += (double)x[k] * x[k];
					ny += (double)y[k] * y[k];
				}
				d += 1.0 - (nx > 0 && ny > 0 ? dot / sqrt(nx * ny) : 0.0);
				pairs++;
			}
		ea->sum[EVAL_ILD10] += d / pairs;
	}

	/* Calibration: KL(p || q), both smoothed by EVAL_CALIB_EPS. */
	if (p1 != NULL && nt > 0) {
		double ps = 0, kl = 0, T = ea->n_tier1;
		for (uint32_t j = 0; j < ea->n_tier1; j++)
			ps += p1[j];
		if (ps > 0) {
			memset(ea->q, 0, ea->n_tier1 * sizeof(double));
			for (uint32_t k = 0; k < nt; k++) {
				uint32_t t1 = model_item_tier1(ea->cat, top[k]);
				if (t1 < ea->n_tier1)
					ea->q[t1] += 1.0 / nt;
			}
			for (uint32_t j = 0; j < ea->n_tier1; j++) {
				double p = (p1[j] / ps + EVAL_CALIB_EPS) / (1 + T * EVAL_CALIB_EPS);
				double q = (ea->q[j] + EVAL_CALIB_EPS) / (1 + T * EVAL_CALIB_EPS);
				kl += p * log(p / q);
			}
			ea->sum[EVAL_CALIB_KL10] += kl;
			ea->n_calib++;
		}
	}
	ea->n_users++;
}

void
eval_acc_result(const struct eval_acc *ea, double *out)
{
	double n = ea->n_users ? (double)ea->n_users : 1.0;
	size_t cov = 0;

	for (int k = 0; k < EVAL_N_METRICS; k++)
		out[k] = ea->sum[k] / n;
	for (uint32_t i = 0; i < ea->n_items; i++)
		cov += ea->covered[i];
	out[EVAL_COVERAGE10] = (double)cov / ea->n_items;
	out[EVAL_CALIB_KL10] = ea->n_calib ? ea->sum[EVAL_CALIB_KL10] / (double)ea->n_calib : 0.0;
}

/* ---- baselines ---- */

static const char *const eval_baseline_names[EVAL_N_BASELINES] = { "pop", "markov", "itemknn" };

const char *
eval_baseline_name(enum eval_baseline b)
{
	return (unsigned)b < EVAL_N_BASELINES ? eval_baseline_names[b] : "?";
}

struct eval_baselines {
	uint32_t n_items;
	float *pop; /* [n_items] training occurrences */
	float *tie; /* [n_items] popularity tie-break in [0, EVAL_TIE_SCALE) */
	/* Markov: CSR of transition counts a -> b. */
	size_t *mk_off; /* [n_items+1] */
	uint32_t *mk_to;
	float *mk_cnt;
	/* ItemKNN: distinct training items per user (split order), users per item. */
	size_t *ui_off; /* [n+1] */
	uint32_t *ui_item;
	size_t *iu_off; /* [n_items+1] */
	uint32_t *iu_user;
	float *co;      /* [n_items] scratch */
	uint32_t *mark; /* [n_items] scratch */
};

static int
eval_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : (x > y);
}

static int
eval_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : (x > y);
}

void
eval_baselines_free(struct eval_baselines *bl)
{
	if (bl == NULL)
		return;
	free(bl->pop);
	free(bl->tie);
	free(bl->mk_off);
	free(bl->mk_to);
	free(bl->mk_cnt);
	free(bl->ui_off);
	free(bl->ui_item);
	free(bl->iu_off);
	free(bl->iu_user);
	free(bl->co);
	free(bl->mark);
	free(bl);
}

struct eval_baselines *
eval_baselines_new(const struct dataset *ds, const struct eval_split *sp)
{
	struct eval_baselines *bl = calloc(1, sizeof(*bl));
	uint64_t *pairs = NULL;
	size_t n_pairs = 0, total = 0, nu = 0;
	uint32_t n = ds->n_items;
	float maxpop = 0;

	if (bl == NULL)
		return NULL;
	bl->n_items = n;
	for (uint32_t k = 0; k < sp->n; k++)
		total += sp->n_hist[k];
	bl->pop = calloc(n, sizeof(float));
	bl->tie = calloc(n, sizeof(float));
	bl->mk_off = calloc((size_t)n + 1, sizeof(size_t));
	pairs = malloc((total + 1) * sizeof(uint64_t));
	bl->ui_off = calloc((size_t)sp->n + 1, sizeof(size_t));
	bl->ui_item = malloc((total + 1) * sizeof(uint32_t));
	bl->iu_off = calloc((size_t)n + 1, sizeof(size_t));
	bl->co = calloc(n, sizeof(float));
	bl->mark = calloc(n, sizeof(uint32_t));
	if (!bl->pop || !bl->tie || !bl->mk_off || !pairs || !bl->ui_off || !bl->ui_item ||
	    !bl->iu_off || !bl->co || !bl->mark)
		goto fail;

	/* Training part of user k: its first n_hist[k] - 1 events. */
	for (uint32_t k = 0; k < sp->n; k++) {
		size_t cnt, ntr = sp->n_hist[k] - 1, start = nu;
		const struct dataset_event *ev = dataset_user(ds, sp->users[k], &cnt);
		for (size_t j = 0; j < ntr; j++) {
			bl->pop[ev[j].item] += 1;
			if (j > 0)
				pairs[n_pairs++] = (uint64_t)ev[j - 1].item << 32 | ev[j].item;
			bl->ui_item[nu++] = ev[j].item;
		}
		qsort(bl->ui_item + start, nu - start, sizeof(uint32_t), eval_u32_cmp);
		size_t w = start;
		for (size_t j = start; j < nu; j++)
			if (j == start || bl->ui_item[j] != bl->ui_item[w - 1])
				bl->ui_item[w++] = bl->ui_item[j];
		nu = w;
		bl->ui_off[k + 1] = nu;
	}
	for (uint32_t i = 0; i < n; i++)
		if (bl->pop[i] > maxpop)
			maxpop = bl->pop[i];
	for (uint32_t i = 0; i < n; i++)
		bl->tie[i] = EVAL_TIE_SCALE * bl->pop[i] / (maxpop + 1.0f);

	/* Markov transitions. */
	qsort(pairs, n_pairs, sizeof(uint64_t), eval_u64_cmp);
	bl->mk_to = malloc((n_pairs + 1) * sizeof(uint32_t));
	bl->mk_cnt = malloc((n_pairs + 1) * sizeof(float));
	if (!bl->mk_to || !bl->mk_cnt)
		goto fail;
	size_t m = 0;
	for (size_t j = 0; j < n_pairs; j++) {
		uint32_t a = (uint32_t)(pairs[j] >> 32), b = (uint32_t)pairs[j];
		if (j > 0 && pairs[j] == pairs[j - 1]) {
			bl->mk_cnt[m - 1] += 1;
			continue;
		}
		bl->mk_to[m] = b;
		bl->mk_cnt[m] = 1;
		bl->mk_off[a + 1]++;
		m++;
	}
	for (uint32_t i = 0; i < n; i++)
		bl->mk_off[i + 1] += bl->mk_off[i];

	/* Item -> users inverted index for ItemKNN. */
	bl->iu_user = malloc((nu + 1) * sizeof(uint32_t));
	if (bl->iu_user == NULL)
		goto fail;
	for (size_t j = 0; j < nu; j++)
		bl->iu_off[bl->ui_item[j] + 1]++;
	for (uint32_t i = 0; i < n; i++)
		bl->iu_off[i + 1] += bl->iu_off[i];
	{
		size_t *fill = calloc((size_t)n + 1, sizeof(size_t));
		if (fill == NULL)
			goto fail;
		for (uint32_t k = 0; k < sp->n; k++)
			for (size_t j = bl->ui_off[k]; j < bl->ui_off[k + 1]; j++) {
				uint32_t it = bl->ui_item[j];
				bl->iu_user[bl->iu_off[it] + fill[it]++] = k;
			}
		free(fill);
	}
	free(pairs);
	return bl;
fail:
	free(pairs);
	eval_baselines_free(bl);
	return NULL;
}

void
eval_baseline_score(struct eval_baselines *bl, enum eval_baseline b, const struct dataset *ds,
    const struct eval_split *sp, uint32_t k, float *scores)
{
	size_t cnt, nh = sp->n_hist[k];
	const struct dataset_event *ev = dataset_user(ds, sp->users[k], &cnt);
	uint32_t n = bl->n_items;

	switch (b) {
	case EVAL_POP:
		memcpy(scores, bl->pop, n * sizeof(float));
		break;
	case EVAL_MARKOV: {
		uint32_t last = ev[nh - 1].item;
		/* Transition counts from the last item; popularity breaks ties and backs off. */
		memcpy(scores, bl->tie, n * sizeof(float));
		for (size_t j = bl->mk_off[last]; j < bl->mk_off[last + 1]; j++)
			scores[bl->mk_to[j]] += bl->mk_cnt[j];
		break;
	}
	case EVAL_ITEMKNN: {
		uint32_t last[EVAL_KNN_LAST], nl = 0;
		memcpy(scores, bl->tie, n * sizeof(float));
		/* The last EVAL_KNN_LAST distinct items of the history. */
		for (size_t j = nh; j-- > 0 && nl < EVAL_KNN_LAST;) {
			uint32_t it = ev[j].item, dup = 0;
			for (uint32_t q = 0; q < nl; q++)
				dup |= last[q] == it;
			if (!dup)
				last[nl++] = it;
		}
		for (uint32_t q = 0; q < nl; q++) {
			uint32_t a = last[q];
			float ca = (float)(bl->iu_off[a + 1] - bl->iu_off[a]);
			if (ca == 0)
				continue;
			memset(bl->co, 0, n * sizeof(float));
			for (size_t j = bl->iu_off[a]; j < bl->iu_off[a + 1]; j++) {
				uint32_t v = bl->iu_user[j];
				for (size_t x = bl->ui_off[v]; x < bl->ui_off[v + 1]; x++)
					bl->co[bl->ui_item[x]] += 1;
			}
			for (uint32_t i = 0; i < n; i++) {
				float ci = (float)(bl->iu_off[i + 1] - bl->iu_off[i]);
				if (i != a && bl->co[i] > 0)
					scores[i] += bl->co[i] / sqrtf(ca * ci);
			}
		}
		break;
	}
	default:
		memset(scores, 0, n * sizeof(float));
		break;
	}
}
