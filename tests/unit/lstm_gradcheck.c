/*
 * Finite-difference check of the trainer's analytic gradient for every
 * parameter block (W, b, P, pb, T, R, ib, alpha) through several LSTM steps
 * (lstm_forward/lstm_backward), the tier terms and the softmax loss, on a
 * small synthetic catalog and interaction file.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "fixture.h"
#include "lstm.h"
#include "modelfile.h"
#include "train.h"

#define GC_EPS 2e-2 /* step along a unit direction */
#define GC_TOL 2e-2 /* relative error bound (float forward pass) */

/* Directional derivative check of theta[off..off+len) along v (normalised here). */
static double
gc_direction(struct trainer *tr, size_t off, size_t len, float *v, double *ana_out, double *num_out)
{
	size_t n_par;
	float *th = trainer_params(tr, &n_par);
	float *save = malloc(len * sizeof(float));
	double nv = 0, ana = 0, lp, lm;

	for (size_t k = 0; k < len; k++)
		nv += (double)v[k] * v[k];
	nv = sqrt(nv);
	for (size_t k = 0; k < len; k++)
		v[k] = (float)(v[k] / nv);
	trainer_window_loss(tr);
	for (size_t k = 0; k < len; k++)
		ana += (double)trainer_grad(tr)[off + k] * v[k];
	memcpy(save, th + off, len * sizeof(float));
	for (size_t k = 0; k < len; k++)
		th[off + k] = save[k] + (float)GC_EPS * v[k];
	lp = trainer_window_loss(tr);
	for (size_t k = 0; k < len; k++)
		th[off + k] = save[k] - (float)GC_EPS * v[k];
	lm = trainer_window_loss(tr);
	memcpy(th + off, save, len * sizeof(float));
	free(save);
	*ana_out = ana;
	*num_out = (lp - lm) / (2 * GC_EPS);
	return fabs(ana - *num_out) / fmax(fmax(fabs(ana), fabs(*num_out)), 1e-4);
}

/* A tiny interactions file: 5 users, 6-9 events each, mixed types and gaps. */
static int
gc_write_interactions(const char *path, uint32_t n_items)
{
	FILE *fp = fopen(path, "w");
	uint64_t s = 7;

	if (fp == NULL)
		return -1;
	fprintf(fp, "user_id,item_id,type,ts\n");
	for (int u = 0; u < 5; u++) {
		int64_t ts = 1700000000000LL + u * 1000;
		int n = 6 + u % 4;
		for (int k = 0; k < n; k++) {
			static const char *const types[] = { "VIEW", "CLICK", "LIKE", "PURCHASE",
				"IMPRESSION" };
			ts += (int64_t)(fixture_rand(&s) % 86400000ull);
			fprintf(fp, "u%d,item-%u,%s,%lld\n", u,
			    (unsigned)(fixture_rand(&s) % n_items), types[fixture_rand(&s) % 5],
			    (long long)ts);
		}
	}
	return fclose(fp);
}

int
main(void)
{
	int fails = 0;
	char dir[128], cat_path[256], csv_path[256], tmp_path[256], err[512];
	struct fixture_cat fc = { .n_items = 12, .dim = 8, .n_tier1 = 3, .k2 = 2, .seed = 3 };
	struct model *cat = NULL;
	struct dataset *ds = NULL;
	struct trainer *tr = NULL;
	struct train_config cfg;
	uint64_t s = 11;

	/* lstm_gap_feature: 0 for no gap, monotone, the documented formula. */
	CHECK(lstm_gap_feature(0) == 0.0f && lstm_gap_feature(-5) == 0.0f,
	    "gap feature 0 for dt <= 0");
	CHECK(fabsf(lstm_gap_feature(3600) - (float)(log1p(60.0) / 8)) < 1e-6f,
	    "gap feature of 1 h = log1p(60)/8");

	if (fixture_tmpdir(dir, sizeof(dir)) < 0)
		return 1;
	snprintf(cat_path, sizeof(cat_path), "%s/cat.icat", dir);
	snprintf(csv_path, sizeof(csv_path), "%s/ev.csv", dir);
	snprintf(tmp_path, sizeof(tmp_path), "%s/init.imdl", dir);
	if (fixture_write_catalog(cat_path, &fc, err, sizeof(err)) < 0 ||
	    gc_write_interactions(csv_path, fc.n_items) < 0) {
		printf("FAIL setup: %s\n", err);
		return 1;
	}
	cat = model_load(cat_path, err, sizeof(err));
	CHECK(cat != NULL, "catalog loads (%s)", cat ? "" : err);
	if (cat == NULL)
		goto done;
	ds = dataset_load(csv_path, cat, err, sizeof(err));
	CHECK(ds != NULL && ds->n_users == 5, "interactions load: 5 users");
	if (ds == NULL)
		goto done;

	train_config_default(&cfg);
	cfg.hidden = 5;
	cfg.type_dim = 3;
	cfg.batch = 3;
	cfg.bptt = 6; /* 3 lanes x 6 steps: users change lanes inside the window */
	cfg.dropout = 0;
	cfg.l2 = 0.05f;
	cfg.clip = 0;
	cfg.seed = 5;
	tr = trainer_new(cat, ds, &cfg, NULL, tmp_path, err, sizeof(err));
	CHECK(tr != NULL, "trainer builds (%s)", tr ? "" : err);
	if (tr == NULL)
		goto done;

	/* Move every block off its initial value so no gradient is trivially zero. */
	size_t n_par;
	float *th = trainer_params(tr, &n_par);
	for (size_t k = 0; k < n_par; k++)
		th[k] += 0.1f * fixture_randf(&s);

	const struct model_weights *w = trainer_weights(tr);
	struct {
		const char *name;
		const float *p;
		size_t len;
	} blk[] = {
		{ "W", w->W, (size_t)(w->b - w->W) },
		{ "b", w->b, (size_t)(w->P - w->b) },
		{ "P", w->P, (size_t)(w->pb - w->P) },
		{ "pb", w->pb, (size_t)(w->T - w->pb) },
		{ "T", w->T, (size_t)(w->R - w->T) },
		{ "R", w->R, (size_t)(w->ib - w->R) },
		{ "ib", w->ib, (size_t)(w->alpha - w->ib) },
		{ "alpha", w->alpha, 4 },
	};
	double loss0 = trainer_window_loss(tr);
	CHECK(isfinite(loss0) && loss0 > 0, "window loss finite and positive (%.4f)", loss0);
	for (size_t bi = 0; bi < sizeof(blk) / sizeof(blk[0]); bi++) {
		size_t off = (size_t)(blk[bi].p - th), len = blk[bi].len;
		float *v = malloc(len * sizeof(float));
		double ana, num, rel, gnorm = 0;

		/* Along the analytic gradient itself, then along a random direction. */
		trainer_window_loss(tr);
		for (size_t k = 0; k < len; k++) {
			v[k] = trainer_grad(tr)[off + k];
			gnorm += (double)v[k] * v[k];
		}
		CHECK(gnorm > 0, "%s: gradient not zero (|g| = %.3g)", blk[bi].name, sqrt(gnorm));
		rel = gc_direction(tr, off, len, v, &ana, &num);
		CHECK(rel < GC_TOL, "%s: along gradient analytic %.6g numeric %.6g rel %.2g",
		    blk[bi].name, ana, num, rel);
		for (size_t k = 0; k < len; k++)
			v[k] = fixture_randf(&s);
		rel = gc_direction(tr, off, len, v, &ana, &num);
		CHECK(rel < GC_TOL || fabs(ana - num) < 1e-4,
		    "%s: random direction analytic %.6g numeric %.6g rel %.2g", blk[bi].name, ana,
		    num, rel);
		/* Single coordinates with the largest gradient. */
		size_t arg = 0;
		trainer_window_loss(tr);
		for (size_t k = 1; k < len; k++)
			if (fabsf(trainer_grad(tr)[off + k]) > fabsf(trainer_grad(tr)[off + arg]))
				arg = k;
		memset(v, 0, len * sizeof(float));
		v[arg] = 1;
		rel = gc_direction(tr, off, len, v, &ana, &num);
		CHECK(rel < GC_TOL, "%s[%zu]: analytic %.6g numeric %.6g rel %.2g", blk[bi].name,
		    arg, ana, num, rel);
		free(v);
	}
done:
	trainer_free(tr);
	dataset_free(ds);
	model_free(cat);
	unlink(cat_path);
	unlink(csv_path);
	rmdir(dir);
	printf("%s\n", fails ? "lstm_gradcheck: FAILED" : "lstm_gradcheck: all passed");
	return fails ? 1 : 0;
}
