/*
 * The retraining gate (train/train.h): train_accept's rule at its edges, and
 * train_test's figures against an independent computation with the
 * evaluation protocol's own accumulator (train/evaluate.h), and the order
 * random < knows some targets < knows every target, on a synthetic catalog.
 */
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

#define GATE_USERS   40
#define GATE_TARGETS 3 /* every user's last event is on one of the first 3 items */
#define GATE_BOOST   100.0f

static void
check_rule(int *failsp)
{
	int fails = 0;

	CHECK(train_accept(0.5, 0.5, 0.0) == 1, "equal figures, margin 0: accepted");
	CHECK(train_accept(0.4999, 0.5, 0.0) == 0, "slightly worse, margin 0: refused");
	CHECK(train_accept(0.375, 0.5, 0.25) == 1, "25 %% worse, margin 0.25: accepted (boundary)");
	CHECK(train_accept(0.37, 0.5, 0.25) == 0, "26 %% worse, margin 0.25: refused");
	CHECK(train_accept(0.6, 0.5, 0.0) == 1, "better: accepted");
	CHECK(train_accept(0.0, 0.0, 0.0) == 1, "both 0: accepted (not worse)");
	CHECK(train_accept(0.0, 0.5, 1.0) == 1, "margin 1: always accepted");
	CHECK(train_accept(NAN, 0.5, 0.0) == 0, "NaN new figure: refused");
	CHECK(train_accept(0.5, NAN, 0.0) == 0, "NaN current figure: refused");
	CHECK(train_accept(0.5, 0.5, -0.1) == 0, "negative margin: refused");
	CHECK(train_accept(0.5, 0.5, 1.5) == 0, "margin above 1: refused");
	*failsp += fails;
}

/* Users u0..: 3 to 12 events on random items, the last on item (u % GATE_TARGETS). */
static int
write_events(const char *path, uint32_t n_items, uint32_t *n_eval)
{
	FILE *fp = fopen(path, "w");
	uint64_t s = 11;
	long long ts = 1700000000000LL;

	if (fp == NULL)
		return -1;
	*n_eval = 0;
	fprintf(fp, "user_id,item_id,type,ts\n");
	for (uint32_t u = 0; u < GATE_USERS; u++) {
		uint32_t n = 3 + (uint32_t)(fixture_rand(&s) % 10);
		*n_eval += n >= EVAL_MIN_EVENTS;
		for (uint32_t e = 0; e < n; e++) {
			uint32_t it = e + 1 == n ? u % GATE_TARGETS
						 : GATE_TARGETS +
				(uint32_t)(fixture_rand(&s) % (n_items - GATE_TARGETS));
			ts += 1000 + (long long)(fixture_rand(&s) % 60000);
			fprintf(fp, "u%u,item-%u,%s,%lld\n", u, it, e % 3 ? "VIEW" : "CLICK", ts);
		}
	}
	return fclose(fp) == 0 ? 0 : -1;
}

/*
 * The fixture's random weights with a large bias on items 0 .. n_boost-1
 * (a model that knows some targets), written to path and loaded; NULL on error.
 */
static struct model *
boosted_model(
    const struct model *cat, const struct fixture_cat *fc, uint32_t n_boost, const char *path)
{
	struct model_hparams hp;
	struct model_weights w;
	struct model *m = NULL;
	float *buf = NULL;
	char err[512];

	fixture_hparams(&hp, 8);
	hp.model_version += n_boost;
	if (fixture_weights(cat, &hp, fc->seed + 1, &w, &buf) == 0) {
		size_t ib_off = (size_t)(w.ib - buf);
		for (uint32_t i = 0; i < n_boost; i++)
			buf[ib_off + i] = GATE_BOOST;
		if (model_write(path, cat, &hp, &w, err, sizeof(err)) == 0)
			m = model_load(path, err, sizeof(err));
	}
	free(buf);
	return m;
}

/* NDCG@10 and HR@10 of m on ds by eval_replay + eval_acc (the interest-eval path). */
static int
reference(const struct model *m, const struct dataset *ds, double *ndcg, double *hr)
{
	struct eval_split sp = { 0 };
	struct user_state **us = NULL;
	struct updater *up = updater_new(m, 4096);
	struct scorer *sc = scorer_new(m);
	struct eval_acc *ea = eval_acc_new(m);
	uint32_t n_items = model_n_items(m);
	uint32_t *stamp = calloc(n_items, sizeof(uint32_t));
	float *scores = malloc(n_items * sizeof(float)), *u = malloc(model_dim(m) * sizeof(float));
	float *p1 = calloc(model_n_tier1(m), sizeof(float));
	double res[EVAL_N_METRICS];
	int ret = -1;

	if (!up || !sc || !ea || !stamp || !scores || !u || !p1 || eval_split_make(ds, &sp) < 0)
		goto done;
	us = calloc(sp.n + 1, sizeof(*us));
	for (uint32_t k = 0; us != NULL && k < sp.n; k++)
		if ((us[k] = state_new(model_hparams(m))) == NULL)
			goto done;
	if (us == NULL || eval_replay(up, ds, sp.users, sp.n_hist, sp.n, 4096, us) < 0)
		goto done;
	for (uint32_t k = 0; k < sp.n; k++) {
		size_t n;
		const struct dataset_event *ev = dataset_user(ds, sp.users[k], &n);
		for (uint32_t e = 0; e < sp.n_hist[k]; e++)
			stamp[ev[e].item] = k + 1;
		scorer_interest(m, us[k], u);
		scorer_score_all(sc, us[k], u, scores);
		eval_acc_add(ea, scores, ev[sp.n_hist[k]].item, stamp, k + 1, p1);
	}
	eval_acc_result(ea, res);
	*ndcg = res[EVAL_NDCG10];
	*hr = res[EVAL_HR10];
	ret = 0;
done:
	for (uint32_t k = 0; us != NULL && k < sp.n; k++)
		state_free(us[k]);
	free(us);
	free(stamp);
	free(scores);
	free(u);
	free(p1);
	eval_acc_free(ea);
	scorer_free(sc);
	updater_free(up);
	eval_split_fini(&sp);
	return ret;
}

int
main(void)
{
	int fails = 0;
	char dir[128], cat_path[256], rnd_path[256], orc_path[256], part_path[256];
	char csv_path[256], err[512];
	struct fixture_cat fc = { .n_items = 60, .dim = 16, .n_tier1 = 4, .k2 = 3, .seed = 5 };
	struct model *cat = NULL, *rnd = NULL, *orc = NULL, *part = NULL;
	struct dataset *ds = NULL;
	struct train_test_result tr_rnd = { 0 }, tr_orc = { 0 }, tr_part = { 0 }, tr_cat;
	uint32_t n_eval = 0;
	double ndcg = -1, hr = -1;

	check_rule(&fails);
	if (fixture_tmpdir(dir, sizeof(dir)) < 0)
		return 1;
	snprintf(cat_path, sizeof(cat_path), "%s/cat.icat", dir);
	snprintf(rnd_path, sizeof(rnd_path), "%s/random.imdl", dir);
	snprintf(orc_path, sizeof(orc_path), "%s/oracle.imdl", dir);
	snprintf(part_path, sizeof(part_path), "%s/partial.imdl", dir);
	snprintf(csv_path, sizeof(csv_path), "%s/events.csv", dir);

	rnd = fixture_model(cat_path, rnd_path, &fc, 8, err, sizeof(err));
	CHECK(rnd != NULL, "random model written (%s)", rnd ? "ok" : err);
	cat = model_load(cat_path, err, sizeof(err));
	CHECK(cat != NULL, "catalog loads");
	if (rnd == NULL || cat == NULL)
		goto done;
	/* The oracle knows every target item; the partial one the first of them. */
	orc = boosted_model(cat, &fc, GATE_TARGETS, orc_path);
	part = boosted_model(cat, &fc, 1, part_path);
	CHECK(orc != NULL && part != NULL, "oracle and partial models written");
	CHECK(write_events(csv_path, fc.n_items, &n_eval) == 0, "events written");
	ds = dataset_load(csv_path, cat, err, sizeof(err));
	CHECK(ds != NULL && ds->n_users == GATE_USERS, "dataset: %u users", ds ? ds->n_users : 0);
	if (orc == NULL || part == NULL || ds == NULL)
		goto done;

	CHECK(train_test(rnd, ds, &tr_rnd, err, sizeof(err)) == 0,
	    "train_test on the random "
	    "model");
	CHECK(tr_rnd.users == n_eval, "users tested: %u, want %u (those with >= %d events)",
	    tr_rnd.users, n_eval, EVAL_MIN_EVENTS);
	CHECK(reference(rnd, ds, &ndcg, &hr) == 0, "reference evaluation ran");
	CHECK(fabs(ndcg - tr_rnd.ndcg10) < 1e-9 && fabs(hr - tr_rnd.hr10) < 1e-9,
	    "random model: ndcg@10 %.6f hr@10 %.6f equal the protocol's %.6f %.6f", tr_rnd.ndcg10,
	    tr_rnd.hr10, ndcg, hr);
	CHECK(train_test(orc, ds, &tr_orc, err, sizeof(err)) == 0, "train_test on the oracle");
	CHECK(reference(orc, ds, &ndcg, &hr) == 0 && fabs(ndcg - tr_orc.ndcg10) < 1e-9,
	    "oracle: ndcg@10 %.6f equals the protocol's %.6f", tr_orc.ndcg10, ndcg);
	CHECK(tr_orc.hr10 == 1.0 && tr_orc.ndcg10 > 0.5,
	    "oracle: every target in the top %d (hr@10 %.3f, ndcg@10 %.3f)", GATE_TARGETS,
	    tr_orc.hr10, tr_orc.ndcg10);
	CHECK(train_test(part, ds, &tr_part, err, sizeof(err)) == 0 &&
		reference(part, ds, &ndcg, &hr) == 0 && fabs(ndcg - tr_part.ndcg10) < 1e-9 &&
		fabs(hr - tr_part.hr10) < 1e-9,
	    "partial: ndcg@10 %.6f hr@10 %.6f equal the protocol's %.6f %.6f", tr_part.ndcg10,
	    tr_part.hr10, ndcg, hr);
	CHECK(tr_rnd.ndcg10 < tr_part.ndcg10 && tr_part.ndcg10 < tr_orc.ndcg10,
	    "random %.3f < partial %.3f < oracle %.3f", tr_rnd.ndcg10, tr_part.ndcg10,
	    tr_orc.ndcg10);
	CHECK(train_accept(tr_orc.ndcg10, tr_rnd.ndcg10, 0.0) == 1 &&
		train_accept(tr_rnd.ndcg10, tr_orc.ndcg10, 0.0) == 0,
	    "the gate takes the oracle over the random model and refuses the reverse");
	CHECK(train_test(cat, ds, &tr_cat, err, sizeof(err)) == -1 && strstr(err, "not a model"),
	    "a catalog without weights is refused: %s", err);

done:
	dataset_free(ds);
	model_free(part);
	model_free(orc);
	model_free(rnd);
	model_free(cat);
	unlink(csv_path);
	unlink(part_path);
	unlink(orc_path);
	unlink(rnd_path);
	unlink(cat_path);
	rmdir(dir);
	if (fails == 0)
		printf("train_gate: all passed\n");
	return fails != 0;
}
