/*
 * Training and serving compute the same thing: a small model is trained on
 * real MovieLens-100K users read in file (arrival) order, so timestamps go
 * backwards inside a user; then the trainer's own forward (the per-position
 * cross-entropies of a window) is recomputed through the daemon's code
 * (model file as written, updater_apply, scorer_interest, scorer_score_all)
 * and must agree within 1e-4. Also: eval_replay's batching does not change
 * a state, the dataset keeps file order when asked, and the content
 * placement of untrained items recovers a linear map.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "evaluate.h"
#include "fixture.h"
#include "modelfile.h"
#include "scorer.h"
#include "state.h"
#include "train.h"
#include "updater.h"

#define SAMPLE_USERS 40
#define SAMPLE_ITEMS 1683 /* ML-100K item ids are 1..1682 */
#define MAX_POS      4096
#define CE_TOL       1e-4

/* Event type from a 1..5 rating, so every type embedding row used is exercised. */
static const char *
rating_type(unsigned r)
{
	static const char *const t[] = { "VIEW", "DISLIKE", "VIEW", "CLICK", "LIKE", "PURCHASE" };
	return r <= 5 ? t[r] : "VIEW";
}

/* The first SAMPLE_USERS users of u.data in its (non-chronological) file order. */
static int
write_sample(const char *src, const char *dst)
{
	FILE *in = fopen(src, "r"), *out = NULL;
	unsigned seen[SAMPLE_USERS], n_seen = 0, u, i, r;
	long long ts;
	int ret = -1;

	if (in == NULL)
		return 1;
	out = fopen(dst, "w");
	if (out == NULL)
		goto done;
	fprintf(out, "user_id,item_id,type,ts,value\n");
	while (fscanf(in, "%u %u %u %lld", &u, &i, &r, &ts) == 4) {
		unsigned k;
		for (k = 0; k < n_seen && seen[k] != u; k++)
			;
		if (k == n_seen) {
			if (n_seen == SAMPLE_USERS)
				continue;
			seen[n_seen++] = u;
		}
		fprintf(out, "%u,item-%u,%s,%lld,%u\n", u, i, rating_type(r), ts * 1000, r);
	}
	ret = 0;
done:
	if (out != NULL && fclose(out) != 0)
		ret = -1;
	fclose(in);
	return ret;
}

/* Cross-entropy of target over the candidate items (cand[i] != 0). */
static double
cand_ce(const float *s, const uint8_t *cand, uint32_t n, uint32_t target)
{
	double mx = -INFINITY, z = 0;

	for (uint32_t i = 0; i < n; i++)
		if (cand[i] && s[i] > mx)
			mx = s[i];
	for (uint32_t i = 0; i < n; i++)
		if (cand[i])
			z += exp(s[i] - mx);
	return -(s[target] - mx - log(z));
}

/* Content placement recovers R = A x + a0 and ib = b.x + b0 exactly enough. */
static int
check_placement(const struct model *cat)
{
	int fails = 0;
	uint32_t n = model_n_items(cat), dim = model_dim(cat);
	const float *emb = model_llm_embeddings(cat);
	float *R = calloc((size_t)n * dim, sizeof(float)), *ib = calloc(n, sizeof(float));
	float *A = malloc((size_t)dim * dim * sizeof(float)), bvec[64];
	uint8_t *trained = calloc(n, 1);
	uint64_t rng = 77;
	double err_R = 0, err_ib = 0, lr = -1, li = -1, moved = 0;

	if (!R || !ib || !A || !trained || dim > 64) {
		printf("FAIL placement: setup\n");
		fails++;
		goto done;
	}
	for (size_t k = 0; k < (size_t)dim * dim; k++)
		A[k] = 0.3f * fixture_randf(&rng);
	for (uint32_t k = 0; k < dim; k++)
		bvec[k] = fixture_randf(&rng);
	/* Truth for every item; training "saw" 80% of them, the rest start at junk. */
	for (uint32_t i = 0; i < n; i++) {
		const float *x = emb + (size_t)i * dim;
		double v = -5.0;
		trained[i] = fixture_rand(&rng) % 5 != 0;
		for (uint32_t k = 0; k < dim; k++) {
			double r = 0.01;
			for (uint32_t j = 0; j < dim; j++)
				r += A[(size_t)k * dim + j] * x[j];
			R[(size_t)i * dim + k] = trained[i] ? (float)r : 9.0f;
			v += bvec[k] * x[k];
		}
		ib[i] = trained[i] ? (float)v : 9.0f;
	}
	float *R0 = malloc((size_t)n * dim * sizeof(float));
	if (R0 == NULL)
		goto done;
	memcpy(R0, R, (size_t)n * dim * sizeof(float));
	CHECK(train_place_untrained(cat, trained, R, ib, &lr, &li) == 0,
	    "placement runs (lambda R %g, ib %g)", lr, li);
	for (uint32_t i = 0; i < n; i++) {
		const float *x = emb + (size_t)i * dim;
		double v = -5.0;
		if (trained[i]) {
			moved += memcmp(R + (size_t)i * dim, R0 + (size_t)i * dim,
				     dim * sizeof(float)) != 0;
			continue;
		}
		for (uint32_t k = 0; k < dim; k++) {
			double r = 0.01;
			for (uint32_t j = 0; j < dim; j++)
				r += A[(size_t)k * dim + j] * x[j];
			err_R = fmax(err_R, fabs(R[(size_t)i * dim + k] - r));
			v += bvec[k] * x[k];
		}
		err_ib = fmax(err_ib, fabs(ib[i] - v));
	}
	CHECK(moved == 0, "trained items are left alone");
	CHECK(err_R < 0.05, "untrained R predicted from content: max error %.4f", err_R);
	CHECK(err_ib < 0.05, "untrained ib predicted from content: max error %.4f", err_ib);
	CHECK(lr <= 1.0 && li <= 1.0, "noise-free data picks weak shrinkage (%g, %g)", lr, li);
	free(R0);
done:
	free(trained);
	free(A);
	free(ib);
	free(R);
	return fails;
}

int
main(void)
{
	int fails = 0, rc;
	char dir[128], ml100k[512], cat_path[256], csv_path[256], tmp_path[256], out_path[256],
	    err[512];
	struct fixture_cat fc = {
		.n_items = SAMPLE_ITEMS, .dim = 16, .n_tier1 = 4, .k2 = 3, .seed = 5
	};
	struct model *cat = NULL, *m = NULL;
	struct dataset *ds = NULL, *ds_time = NULL;
	struct trainer *tr = NULL;
	struct updater *up = NULL;
	struct scorer *sc = NULL;
	struct user_state *us = NULL, **batch_us = NULL, **seq_us = NULL;
	uint32_t *pos_user = NULL, *pos_n = NULL;
	double *pos_ce = NULL;
	float *u = NULL, *scores = NULL;
	uint8_t *cand = NULL;

	openblas_set_num_threads(1);
	if (fixture_tmpdir(dir, sizeof(dir)) < 0)
		return 1;
	snprintf(cat_path, sizeof(cat_path), "%s/cat.icat", dir);
	snprintf(csv_path, sizeof(csv_path), "%s/sample.csv", dir);
	snprintf(tmp_path, sizeof(tmp_path), "%s/tmp.imdl", dir);
	snprintf(out_path, sizeof(out_path), "%s/model.imdl", dir);
	CHECK(fixture_write_catalog(cat_path, &fc, err, sizeof(err)) == 0, "catalog written");
	cat = model_load(cat_path, err, sizeof(err));
	CHECK(cat != NULL, "catalog loads");
	if (cat == NULL)
		goto done;
	fails += check_placement(cat);

	/* The data is part of the test's setup: without it the test fails. */
	rc = write_sample(fixture_ml100k(ml100k, sizeof(ml100k)), csv_path);
	CHECK(rc != 1, "%s readable (DATA_ROOT names the folder holding ml-100k/)", ml100k);
	CHECK(rc == 0, "sample of %d users written", SAMPLE_USERS);
	if (rc != 0)
		goto done;
	ds = dataset_load_order(csv_path, cat, DATASET_FILE_ORDER, err, sizeof(err));
	ds_time = dataset_load(csv_path, cat, err, sizeof(err));
	CHECK(ds != NULL && ds_time != NULL && ds->n_users == SAMPLE_USERS &&
		ds->n_events == ds_time->n_events,
	    "dataset loads in file and in time order");
	if (ds == NULL || ds_time == NULL)
		goto done;
	{
		size_t backwards = 0, sorted_bad = 0, differ = 0;
		for (uint32_t k = 0; k < ds->n_users; k++) {
			size_t n, nt;
			const struct dataset_event *ev = dataset_user(ds, k, &n);
			const struct dataset_event *et = dataset_user(ds_time, k, &nt);
			for (size_t j = 1; j < n; j++) {
				backwards += ev[j].ts_ms < ev[j - 1].ts_ms;
				sorted_bad += et[j].ts_ms < et[j - 1].ts_ms;
			}
			for (size_t j = 0; j < n; j++)
				differ += ev[j].item != et[j].item;
		}
		CHECK(backwards > 100 && differ > 0, "file order kept: %zu backward steps",
		    backwards);
		CHECK(sorted_bad == 0, "time order sorted");
	}

	/* A small model trained on the file-order sequences; no dropout, full softmax. */
	{
		struct train_config cfg;
		train_config_default(&cfg);
		cfg.hidden = 16;
		cfg.type_dim = 4;
		cfg.batch = 8;
		cfg.bptt = 12;
		cfg.epochs = 3;
		cfg.patience = 0;
		cfg.lr = 5e-3f;
		cfg.dropout = 0.0f;
		cfg.l2 = 0.0f;
		cfg.hp.model_version = 1;
		tr = trainer_new(cat, ds, &cfg, NULL, tmp_path, err, sizeof(err));
		CHECK(tr != NULL, "trainer_new (%s)", tr ? "" : err);
		if (tr == NULL)
			goto done;
		CHECK(trainer_run(tr, NULL, err, sizeof(err)) == 0, "trained 3 epochs");
		CHECK(trainer_write(tr, out_path, NULL, err, sizeof(err)) == 0, "model written");
	}
	m = model_load(out_path, err, sizeof(err));
	CHECK(m != NULL, "model loads (%s)", m ? "" : err);
	if (m == NULL)
		goto done;
	{
		const float *al = model_weights(m)->alpha;
		CHECK(al[0] != 0 && al[1] != 0 && al[2] != 0 && al[3] != 0,
		    "tier terms trained (%.3f %.3f %.3f %.3f)", al[0], al[1], al[2], al[3]);
	}

	/* The trainer's window, position by position, against the serving path. */
	double window = trainer_window_loss(tr);
	pos_user = malloc(MAX_POS * sizeof(uint32_t));
	pos_n = malloc(MAX_POS * sizeof(uint32_t));
	pos_ce = malloc(MAX_POS * sizeof(double));
	cand = calloc(model_n_items(m), 1);
	u = malloc(model_dim(m) * sizeof(float));
	scores = malloc(model_n_items(m) * sizeof(float));
	up = updater_new(m, 4096);
	sc = scorer_new(m);
	us = state_new(model_hparams(m));
	if (!pos_user || !pos_n || !pos_ce || !cand || !u || !scores || !up || !sc || !us) {
		printf("FAIL out of memory\n");
		fails++;
		goto done;
	}
	/* Candidates: every item of a user with >= 5 events (holdout 0, no cold items). */
	for (uint32_t k = 0; k < ds->n_users; k++) {
		size_t n;
		const struct dataset_event *ev = dataset_user(ds, k, &n);
		for (size_t j = 0; n >= EVAL_MIN_EVENTS && j < n; j++)
			cand[ev[j].item] = 1;
	}
	size_t n_pos = trainer_window_positions(tr, MAX_POS, pos_user, pos_n, pos_ce);
	CHECK(n_pos > 50 && n_pos <= MAX_POS, "window has %zu positions", n_pos);
	{
		double worst = 0, sum = 0, sum_tr = 0;
		size_t gaps_differ = 0;
		for (size_t p = 0; p < n_pos && p < MAX_POS; p++) {
			size_t n;
			const struct dataset_event *ev = dataset_user(ds, pos_user[p], &n);
			struct update_event batch[256];
			int64_t t_max = INT64_MIN;
			if (pos_n[p] >= n || pos_n[p] > 256) {
				printf("FAIL position %zu out of range\n", p);
				fails++;
				continue;
			}
			state_reset(us);
			for (uint32_t j = 0; j < pos_n[p]; j++) {
				batch[j] = (struct update_event){ us, ev[j].item, ev[j].type,
					ev[j].ts_ms, -1, j };
				/* Would "seconds since the previous event" differ from the updater's gap? */
				if (j > 0 && ev[j - 1].ts_ms < t_max &&
				    ev[j].ts_ms > ev[j - 1].ts_ms)
					gaps_differ++;
				if (ev[j].ts_ms > t_max)
					t_max = ev[j].ts_ms;
			}
			if (updater_apply(up, batch, pos_n[p]) < 0) {
				printf("FAIL updater_apply\n");
				fails++;
				continue;
			}
			scorer_interest(m, us, u);
			scorer_score_all(sc, us, u, scores);
			double ce = cand_ce(scores, cand, model_n_items(m), ev[pos_n[p]].item);
			worst = fmax(worst, fabs(ce - pos_ce[p]));
			sum += ce;
			sum_tr += pos_ce[p];
		}
		CHECK(gaps_differ > 0, "the window has events whose gap depends on the rule (%zu)",
		    gaps_differ);
		CHECK(worst < CE_TOL,
		    "per-position cross-entropy: trainer = updater+scorer, max |diff| %.2e", worst);
		CHECK(fabs(sum / (double)n_pos - window) < CE_TOL,
		    "window loss %.6f = serving-path mean %.6f", window, sum / (double)n_pos);
		(void)sum_tr;
	}

	/* eval_replay: batching across users (and cutting histories) changes nothing. */
	{
		struct eval_split sp;
		uint32_t n_users = 12;
		double worst = 0;
		int same_meta = 1;
		CHECK(eval_split_make(ds, &sp) == 0 && sp.n >= n_users, "split");
		batch_us = calloc(n_users, sizeof(*batch_us));
		seq_us = calloc(n_users, sizeof(*seq_us));
		for (uint32_t k = 0; batch_us && seq_us && k < n_users; k++) {
			batch_us[k] = state_new(model_hparams(m));
			seq_us[k] = state_new(model_hparams(m));
		}
		if (batch_us && seq_us && batch_us[n_users - 1] && seq_us[n_users - 1]) {
			CHECK(
			    eval_replay(up, ds, sp.users, sp.n_hist, n_users, 4096, batch_us) == 0,
			    "replay in one batch");
			CHECK(eval_replay(up, ds, sp.users, sp.n_hist, n_users, 7, seq_us) == 0,
			    "replay in batches of 7 events");
			for (uint32_t k = 0; k < n_users; k++) {
				for (uint32_t j = 0; j < model_hparams(m)->hidden; j++)
					worst =
					    fmax(worst, fabs(batch_us[k]->h[j] - seq_us[k]->h[j]));
				same_meta &= batch_us[k]->events_applied == sp.n_hist[k] &&
				    seq_us[k]->events_applied == sp.n_hist[k] &&
				    batch_us[k]->t_ref_ms == seq_us[k]->t_ref_ms &&
				    batch_us[k]->n_tiers == seq_us[k]->n_tiers;
			}
			CHECK(worst < 1e-5, "same h either way (max |diff| %.2e)", worst);
			CHECK(same_meta, "same events applied, t_ref and tiers");
		}
		for (uint32_t k = 0; k < n_users; k++) {
			state_free(batch_us ? batch_us[k] : NULL);
			state_free(seq_us ? seq_us[k] : NULL);
		}
		eval_split_fini(&sp);
	}
done:
	free(batch_us);
	free(seq_us);
	state_free(us);
	scorer_free(sc);
	updater_free(up);
	free(scores);
	free(u);
	free(cand);
	free(pos_ce);
	free(pos_n);
	free(pos_user);
	trainer_free(tr);
	model_free(m);
	dataset_free(ds_time);
	dataset_free(ds);
	model_free(cat);
	unlink(out_path);
	unlink(tmp_path);
	unlink(csv_path);
	unlink(cat_path);
	rmdir(dir);
	printf("%s\n", fails ? "serving_equiv: FAILED" : "serving_equiv: all passed");
	return fails ? 1 : 0;
}
