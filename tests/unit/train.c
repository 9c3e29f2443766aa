/*
 * The trainer on a small real sample (the first 50 users of MovieLens-100K's
 * u.data, items mapped onto a small synthetic catalog): the loss goes down,
 * the written model file loads with the trained weights, the same seed gives
 * byte-identical weights and a different seed different ones; and the
 * evaluation helpers rank and split as the protocol says.
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
#include "train.h"

#define SAMPLE_USERS 50
#define SAMPLE_ITEMS 1683 /* ML-100K item ids are 1..1682 */

/* Writes the first SAMPLE_USERS users' ratings (file order) as a VIEW interactions CSV. */
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
		fprintf(out, "%u,item-%u,VIEW,%lld,%u\n", u, i, ts * 1000, r);
	}
	ret = 0;
done:
	if (out != NULL && fclose(out) != 0)
		ret = -1;
	fclose(in);
	return ret;
}

static struct trainer *
train_once(const struct model *cat, const struct dataset *ds, uint64_t seed, const char *tmp,
    double *loss_before, double *loss_after, FILE *log)
{
	struct train_config cfg;
	char err[512];
	struct trainer *tr;

	train_config_default(&cfg);
	cfg.hidden = 16;
	cfg.type_dim = 4;
	cfg.batch = 8;
	cfg.bptt = 10;
	cfg.epochs = 8;
	cfg.patience = 0;
	cfg.lr = 5e-3f;
	cfg.seed = seed;
	cfg.holdout_last = 0; /* no validation: the weights of the last epoch */
	cfg.hp.model_version = 1;
	tr = trainer_new(cat, ds, &cfg, NULL, tmp, err, sizeof(err));
	if (tr == NULL) {
		printf("FAIL trainer_new: %s\n", err);
		return NULL;
	}
	*loss_before = trainer_window_loss(tr);
	if (trainer_run(tr, log, err, sizeof(err)) < 0) {
		printf("FAIL trainer_run: %s\n", err);
		trainer_free(tr);
		return NULL;
	}
	*loss_after = trainer_window_loss(tr);
	return tr;
}

int
main(void)
{
	int fails = 0, rc;
	char dir[128], ml100k[512], cat_path[256], csv_path[256], tmp_path[256], out_path[256],
	    err[512];
	struct fixture_cat fc = {
		.n_items = SAMPLE_ITEMS, .dim = 16, .n_tier1 = 4, .k2 = 3, .seed = 9
	};
	struct model *cat = NULL, *m = NULL;
	struct dataset *ds = NULL;
	struct trainer *t1 = NULL, *t2 = NULL, *t3 = NULL;
	double b1, a1, b2, a2, b3, a3;
	size_t n1, n2, n3;
	FILE *log = NULL;

	/* eval_rank: excluded items never count, ties go to the lower index. */
	{
		float sc[6] = { 0.5f, 0.9f, 0.5f, 0.1f, 0.7f, 0.5f };
		uint32_t stamp[6] = { 0, 3, 0, 0, 0, 0 };
		CHECK(eval_rank(sc, 6, 2, stamp, 3) == 2,
		    "rank skips the excluded item, ties to lower index");
		CHECK(eval_rank(sc, 6, 1, stamp, 3) == 0, "the target is never excluded");
		stamp[1] = 0;
		CHECK(eval_rank(sc, 6, 3, stamp, 3) == 5, "lowest score ranks last");
	}

	if (fixture_tmpdir(dir, sizeof(dir)) < 0)
		return 1;
	snprintf(cat_path, sizeof(cat_path), "%s/cat.icat", dir);
	snprintf(csv_path, sizeof(csv_path), "%s/sample.csv", dir);
	snprintf(tmp_path, sizeof(tmp_path), "%s/init.imdl", dir);
	snprintf(out_path, sizeof(out_path), "%s/model.imdl", dir);
	/* The data is part of the test's setup: without it the test fails. */
	rc = write_sample(fixture_ml100k(ml100k, sizeof(ml100k)), csv_path);
	CHECK(rc != 1, "%s readable (DATA_ROOT names the folder holding ml-100k/)", ml100k);
	CHECK(rc == 0, "sample of %d users written", SAMPLE_USERS);
	if (rc != 0)
		goto done;
	CHECK(fixture_write_catalog(cat_path, &fc, err, sizeof(err)) == 0, "catalog written");
	cat = model_load(cat_path, err, sizeof(err));
	CHECK(cat != NULL, "catalog loads");
	if (cat == NULL)
		goto done;
	ds = dataset_load(csv_path, cat, err, sizeof(err));
	CHECK(ds != NULL && ds->n_users == SAMPLE_USERS && ds->n_unknown_items == 0,
	    "dataset: %u users", ds ? ds->n_users : 0);
	if (ds == NULL)
		goto done;
	/* Each user's events are sorted by time. */
	{
		int sorted = 1;
		for (uint32_t u = 0; u < ds->n_users; u++) {
			size_t n;
			const struct dataset_event *ev = dataset_user(ds, u, &n);
			for (size_t k = 1; k < n; k++)
				sorted &= ev[k - 1].ts_ms <= ev[k].ts_ms;
		}
		CHECK(sorted, "events sorted by timestamp per user");
	}
	/* The leave-last-out split: everyone in ML-100K has >= 20 ratings. */
	{
		struct eval_split sp;
		size_t n;
		CHECK(
		    eval_split_make(ds, &sp) == 0 && sp.n == SAMPLE_USERS, "split keeps all users");
		dataset_user(ds, sp.users[0], &n);
		CHECK(sp.n_hist[0] == n - 1, "history = all but the test event");
		eval_split_fini(&sp);
	}

	openblas_set_num_threads(1);
	log = tmpfile();
	t1 = train_once(cat, ds, 1, tmp_path, &b1, &a1, log);
	t2 = train_once(cat, ds, 1, tmp_path, &b2, &a2, NULL);
	t3 = train_once(cat, ds, 2, tmp_path, &b3, &a3, NULL);
	if (t1 == NULL || t2 == NULL || t3 == NULL) {
		fails++;
		goto done;
	}
	CHECK(a1 < b1 - 0.3, "first-window loss decreases: %.4f -> %.4f", b1, a1);
	CHECK(a3 < b3 - 0.3, "first-window loss decreases with another seed: %.4f -> %.4f", b3, a3);
	{
		char line[256];
		int lines = 0;
		double first = 0, last = 0, l;
		unsigned ep;
		rewind(log);
		while (fgets(line, sizeof(line), log) != NULL)
			if (sscanf(line, "epoch %u loss %lf", &ep, &l) == 2) {
				if (lines++ == 0)
					first = l;
				last = l;
			}
		CHECK(lines == 8, "one log line per epoch (%d)", lines);
		CHECK(last < first - 0.3, "epoch loss decreases: %.4f -> %.4f", first, last);
	}
	float *p1 = trainer_params(t1, &n1), *p2 = trainer_params(t2, &n2);
	float *p3 = trainer_params(t3, &n3);
	CHECK(n1 == n2 && memcmp(p1, p2, n1 * sizeof(float)) == 0,
	    "same seed: byte-identical weights");
	CHECK(n1 == n3 && memcmp(p1, p3, n1 * sizeof(float)) != 0,
	    "different seed: different weights");

	CHECK(trainer_write(t1, out_path, NULL, err, sizeof(err)) == 0, "model written");
	m = model_load(out_path, err, sizeof(err));
	CHECK(
	    m != NULL && model_has_weights(m), "model file loads with weights (%s)", m ? "" : err);
	if (m != NULL) {
		const struct model_weights *w = model_weights(m);
		const struct model_hparams *hp = model_hparams(m);
		const struct model_weights *tw = trainer_weights(t1);
		size_t n_lstm = (size_t)(tw->R - tw->W), dim = model_dim(cat);
		size_t placed = 0, changed_trained = 0, untrained = 0;
		uint8_t *seen = calloc(model_n_items(cat), 1);
		CHECK(memcmp(w->W, p1, n_lstm * sizeof(float)) == 0 &&
			memcmp(w->alpha, tw->alpha, 4 * sizeof(float)) == 0,
		    "file weights = trained weights (LSTM, projection, types, tier terms)");
		for (size_t e = 0; seen != NULL && e < ds->n_events; e++)
			seen[ds->ev[e].item] = 1;
		for (uint32_t i = 0; seen != NULL && i < model_n_items(cat); i++) {
			int same =
			    memcmp(w->R + i * dim, tw->R + i * dim, dim * sizeof(float)) == 0 &&
			    w->ib[i] == tw->ib[i];
			if (seen[i]) {
				changed_trained += !same;
			} else {
				untrained++;
				placed += !same;
			}
		}
		CHECK(changed_trained == 0, "trained items' R and ib written as trained");
		CHECK(untrained > 0 && placed == untrained,
		    "all %zu items without training events placed from content", untrained);
		free(seen);
		CHECK(hp->hidden == 16 && hp->type_dim == 4 && hp->ring_len == 16 &&
			hp->max_tiers == 32 && hp->train_seed == 1,
		    "HPAR carries H, E, ring, max_tiers, seed");
		CHECK(hp->half_life_short_s == 86400.0f && hp->half_life_long_s == 30 * 86400.0f,
		    "half-lives 1 day / 30 days");
	}
done:
	if (log != NULL)
		fclose(log);
	trainer_free(t1);
	trainer_free(t2);
	trainer_free(t3);
	model_free(m);
	dataset_free(ds);
	model_free(cat);
	unlink(out_path);
	unlink(cat_path);
	unlink(csv_path);
	rmdir(dir);
	printf("%s\n", fails ? "train: FAILED" : "train: all passed");
	return fails ? 1 : 0;
}
