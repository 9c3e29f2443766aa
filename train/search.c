/*
 * The settings search (search.h): coordinate search over a small grid,
 * each candidate a short training judged on the validation items.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "evaluate.h"
#include "modelfile.h"
#include "search.h"

/* The grid, in the order the dimensions are searched (most telling first). */
static const float grid_l2[] = { 1e-5f, 1e-4f, 1e-3f };
static const float grid_dropout[] = { 0.3f, 0.1f, 0.5f };
static const float grid_init[] = { 1.0f, 0.0f };
static const float grid_hidden[] = { 128.0f, 64.0f, 256.0f };
static const float grid_lr[] = { 1e-3f, 3e-3f };
static const float grid_l2_bias[] = { 0.0f, 1e-4f, 1e-3f };
static const float grid_bptt[] = { 20.0f, 50.0f };

struct search_grid {
	enum search_dim dim;
	const char *name;
	const float *v;
	size_t n;
};

#define GRID(d, name, a)                                                                           \
	{                                                                                          \
		d, name, a, sizeof(a) / sizeof(a[0])                                               \
	}
static const struct search_grid grids[] = {
	GRID(SEARCH_L2, "l2", grid_l2),
	GRID(SEARCH_DROPOUT, "dropout", grid_dropout),
	GRID(SEARCH_INIT, "content-init", grid_init),
	GRID(SEARCH_HIDDEN, "hidden", grid_hidden),
	GRID(SEARCH_LR, "lr", grid_lr),
	GRID(SEARCH_L2_BIAS, "l2-bias", grid_l2_bias),
	GRID(SEARCH_BPTT, "bptt", grid_bptt),
};
#define N_GRIDS (sizeof(grids) / sizeof(grids[0]))

static float
dim_get(const struct train_config *c, enum search_dim d)
{
	switch (d) {
	case SEARCH_L2:
		return c->l2;
	case SEARCH_DROPOUT:
		return c->dropout;
	case SEARCH_INIT:
		return (float)c->content_init;
	case SEARCH_HIDDEN:
		return (float)c->hidden;
	case SEARCH_LR:
		return c->lr;
	case SEARCH_L2_BIAS:
		return c->l2_bias;
	case SEARCH_BPTT:
		return (float)c->bptt;
	}
	return 0;
}

static void
dim_set(struct train_config *c, enum search_dim d, float v)
{
	switch (d) {
	case SEARCH_L2:
		c->l2 = v;
		break;
	case SEARCH_DROPOUT:
		c->dropout = v;
		break;
	case SEARCH_INIT:
		c->content_init = v != 0;
		break;
	case SEARCH_HIDDEN:
		c->hidden = (uint32_t)v;
		c->hp.hidden = c->hidden;
		break;
	case SEARCH_LR:
		c->lr = v;
		break;
	case SEARCH_L2_BIAS:
		c->l2_bias = v;
		break;
	case SEARCH_BPTT:
		c->bptt = (uint32_t)v;
		break;
	}
}

void
search_flags(const struct train_config *c, char *buf, size_t size)
{
	snprintf(buf, size,
	    "--hidden %u --lr %g --l2 %g --l2-bias %g --dropout %g --bptt %u --content-init %d",
	    c->hidden, (double)c->lr, (double)c->l2, (double)c->l2_bias, (double)c->dropout,
	    c->bptt, c->content_init);
}

/* A growing text buffer; on ENOMEM it stops growing (the record is shortened). */
struct text {
	char *s;
	size_t len, cap;
};

static void
text_add(struct text *t, FILE *log, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	if (log != NULL) {
		fputs(line, log);
		fflush(log);
	}
	if (t->len + (size_t)n + 1 > t->cap) {
		size_t cap = (t->cap ? t->cap * 2 : 1024) + (size_t)n;
		char *s = cap <= MODEL_TRCH_MAX + 1 ? realloc(t->s, cap) : NULL;
		if (s == NULL)
			return;
		t->s = s;
		t->cap = cap;
	}
	memcpy(t->s + t->len, line, (size_t)n + 1);
	t->len += (size_t)n;
}

/*
 * A screen's figure of merit: validation NDCG@10 times (1 + rho)^
 * SEARCH_COLD_WEIGHT, rho the pseudo-cold HR@10 (trainer_best_cold_hr) over
 * a random ranking's (EVAL_TOPK / n_items). Warm accuracy alone rewards
 * settings that fit every item's own residual and bias, and then an item
 * placed from its content never reaches a top 10 (amazon-toys: 0 of 1833
 * cold targets); the weight makes doubling how often a new item would reach
 * the top 10 worth about 13% of warm NDCG.
 */
static double
merit(double ndcg, double cold_hr, uint32_t n_items)
{
	double rho = cold_hr * (double)n_items / EVAL_TOPK;

	return ndcg * pow(1.0 + rho, SEARCH_COLD_WEIGHT);
}

/* One screen: trains cfg for the screen's epochs; *val its best validation NDCG@10. */
static int
screen(const struct model *cat, const struct dataset *ds, const uint8_t *cold,
    const struct train_config *cfg, const char *tmp_path, double *val, double *cold_hr,
    struct trainer_stats *st, char *errstr, size_t errstr_size)
{
	struct trainer *tr = trainer_new(cat, ds, cfg, cold, tmp_path, errstr, errstr_size);
	int ret = -1;

	if (tr == NULL)
		return -1;
	if (trainer_run(tr, NULL, errstr, errstr_size) == 0) {
		*val = trainer_best_val(tr);
		*cold_hr = trainer_best_cold_hr(tr);
		trainer_stats(tr, st);
		ret = 0;
	}
	trainer_free(tr);
	return ret;
}

int
search_run(const struct model *cat, const struct dataset *ds, const uint8_t *cold,
    const struct train_config *base, const struct search_opts *o, const char *tmp_path, FILE *log,
    struct train_config *best, char **record, char *errstr, size_t errstr_size)
{
	struct text t = { 0 };
	struct train_config cur = *base, cand;
	double t0 = clock_mono_s(), best_val = -1, last_s = 0;
	uint32_t last_hidden = base->hidden, tried = 0, skipped = 0;
	char flags[256];
	int ret = -1;

	*record = NULL;
	if (base->holdout_last < 1) {
		snprintf(
		    errstr, errstr_size, "search: needs validation items (--holdout-last >= 1)");
		return -1;
	}
	cur.epochs = o->screen_epochs < base->epochs ? o->screen_epochs : base->epochs;
	cur.patience = 0;
	text_add(&t, log,
	    "search: coordinate search on the validation items, %u epochs per try, budget %.0f s, "
	    "a change kept when its merit (val_ndcg@10 x (1 + val_cold_hr@10 / random)^%g) gains "
	    "more than %.0f%%\n",
	    cur.epochs, o->budget_s, SEARCH_COLD_WEIGHT, SEARCH_MARGIN * 100);
	for (size_t g = 0; g < N_GRIDS; g++) {
		const struct search_grid *gr = &grids[g];
		float keep = dim_get(&cur, gr->dim);

		if (o->fixed & gr->dim)
			continue;
		for (size_t k = 0; k < gr->n; k++) {
			struct trainer_stats st;
			double val = 0, cold_hr = 0, score, est, ts;
			int first = best_val < 0;

			if (!first && gr->v[k] == keep)
				continue; /* the current setting: measured already */
			cand = cur;
			if (!first)
				dim_set(&cand, gr->dim, gr->v[k]);
			search_flags(&cand, flags, sizeof(flags));
			/* Cost of a try: the last one's, scaled by the hidden size. */
			est = last_s * (double)cand.hidden / (double)last_hidden;
			if (!first && clock_mono_s() - t0 + est > o->budget_s) {
				text_add(&t, log, "search: not tried (budget): %s\n", flags);
				skipped++;
				continue;
			}
			ts = clock_mono_s();
			if (screen(cat, ds, cold, &cand, tmp_path, &val, &cold_hr, &st, errstr,
				errstr_size) < 0) {
				/* A setting that diverges loses; anything else is an error. */
				if (strstr(errstr, "diverged") == NULL)
					goto done;
				text_add(
				    &t, log, "search: try %u: %s: %s\n", tried + 1, flags, errstr);
				tried++;
				continue;
			}
			last_s = clock_mono_s() - ts;
			last_hidden = cand.hidden;
			tried++;
			score = merit(val, cold_hr, model_n_items(cat));
			text_add(&t, log,
			    "search: try %u: %s: merit %.4f = val_ndcg@10 %.4f, val_cold_hr@10 "
			    "%.4f "
			    "(best epoch %u of %u, %.0f s)\n",
			    tried, flags, score, val, cold_hr, st.best_epoch, st.epochs, last_s);
			if (first) {
				best_val = score;
			} else if (score > best_val * (1.0 + SEARCH_MARGIN)) {
				text_add(&t, log, "search: kept %s %g (merit %.4f > %.4f)\n",
				    gr->name, (double)gr->v[k], score, best_val);
				best_val = score;
				cur = cand;
			}
		}
	}
	*best = *base;
	best->hidden = cur.hidden;
	best->hp.hidden = cur.hidden;
	best->lr = cur.lr;
	best->l2 = cur.l2;
	best->l2_bias = cur.l2_bias;
	best->dropout = cur.dropout;
	best->bptt = cur.bptt;
	best->content_init = cur.content_init;
	search_flags(best, flags, sizeof(flags));
	text_add(&t, log,
	    "chose: %s\nsearch: %u tried, %u not tried (budget), best screen merit %.4f, "
	    "%.0f s\n",
	    flags, tried, skipped, best_val, clock_mono_s() - t0);
	ret = 0;
done:
	if (ret == 0 && t.s != NULL)
		*record = t.s;
	else
		free(t.s);
	if (ret == 0 && *record == NULL) {
		snprintf(errstr, errstr_size, "search: out of memory");
		ret = -1;
	}
	return ret;
}
