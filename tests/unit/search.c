/*
 * interest-train's settings search (train/search.h): only the settings not
 * given as flags are varied, each alternative of the grid is tried once,
 * each try's merit is its validation NDCG@10 weighted by its pseudo-cold
 * HR@10 as search.h says, the budget stops tries that would not fit (and
 * names them), no validation items is an error naming --holdout-last, and
 * the record goes into the model file's TRCH section, which the loader
 * checks is text.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "fixture.h"
#include "modelfile.h"
#include "search.h"
#include "train.h"

#define N_ITEMS  120
#define N_USERS  60
#define PER_USER 10

static int
count_lines(const char *text, const char *prefix)
{
	int n = 0;
	size_t lp = strlen(prefix);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, lp) == 0)
			n++;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return n;
}

/*
 * Every try line's merit is val_ndcg@10 x (1 + val_cold_hr@10 / random)^
 * SEARCH_COLD_WEIGHT (to the printed digits); returns the tries checked, or
 * -1 at the first that is not.
 */
static int
check_merits(const char *text, uint32_t n_items)
{
	int n = 0;

	for (const char *p = strstr(text, "search: try "); p != NULL;
	     p = strstr(p + 1, "search: try ")) {
		const char *q = strstr(p, ": merit ");
		const char *eol = strchr(p, '\n');
		double merit, ndcg, cold, want;
		if (q == NULL || (eol != NULL && q > eol) ||
		    sscanf(q, ": merit %lf = val_ndcg@10 %lf, val_cold_hr@10 %lf", &merit, &ndcg,
			&cold) != 3)
			return -1;
		want = ndcg * pow(1.0 + cold * n_items / 10.0, SEARCH_COLD_WEIGHT);
		if (cold < 0 || cold > 1 || fabs(merit - want) > 2e-4)
			return -1;
		n++;
	}
	return n;
}

int
main(void)
{
	int fails = 0;
	char dir[128], cat_path[256], csv[256], tmp[256], out[256], err[512];
	struct fixture_cat fc = { .n_items = N_ITEMS, .dim = 16, .n_tier1 = 4, .k2 = 3, .seed = 3 };
	struct model *cat = NULL, *m = NULL;
	struct dataset *ds = NULL;
	struct train_config base, best;
	struct search_opts so = { .budget_s = 1e6, .screen_epochs = 1 };
	struct trainer *tr = NULL;
	char *rec = NULL;
	uint64_t rng = 11;
	FILE *fp;

	fp = fixture_train_setup(&fc, dir, sizeof(dir), cat_path, csv, sizeof(cat_path), &cat);
	if (fp == NULL)
		return 1;
	snprintf(tmp, sizeof(tmp), "%s/m.init", dir);
	snprintf(out, sizeof(out), "%s/m.imdl", dir);
	/* Users walk the items in steps of one from a random start: learnable. */
	for (uint32_t k = 0; k < N_USERS; k++) {
		uint32_t at = (uint32_t)(fixture_rand(&rng) % N_ITEMS);
		for (uint32_t j = 0; j < PER_USER; j++)
			fprintf(
			    fp, "u%u,item-%u,VIEW,%u\n", k, (at + j) % N_ITEMS, 1000u * (j + 1));
	}
	fclose(fp);
	if ((ds = dataset_load(csv, cat, err, sizeof(err))) == NULL) {
		printf("FAIL dataset: %s\n", err);
		return 1;
	}
	train_config_default(&base);
	base.hidden = base.hp.hidden = 16;
	base.type_dim = base.hp.type_dim = 4;
	base.epochs = 3;
	base.holdout_last = 2;
	base.hp.model_version = 1;

	/* 1. Everything fixed but l2 and dropout: the base, 2 l2 and 2 dropout tries. */
	so.fixed = SEARCH_INIT | SEARCH_HIDDEN | SEARCH_LR | SEARCH_L2_BIAS | SEARCH_BPTT;
	CHECK(search_run(cat, ds, NULL, &base, &so, tmp, NULL, &best, &rec, err, sizeof(err)) == 0,
	    "search runs (%s)", err);
	if (rec != NULL) {
		printf("%s", rec);
		CHECK(count_lines(rec, "search: try ") == 5, "5 tries (base, 2 l2, 2 dropout)");
		CHECK(count_lines(rec, "chose: ") == 1, "one choice line");
		CHECK(check_merits(rec, N_ITEMS) == 5,
		    "each try's merit is its val_ndcg@10 x (1 + val_cold_hr@10 / random)^%g",
		    SEARCH_COLD_WEIGHT);
		CHECK(strstr(rec, "--hidden 16 ") != NULL && strstr(rec, "--hidden 128") == NULL,
		    "the fixed hidden size is never varied");
		CHECK(strstr(rec, "--dropout 0.5") != NULL && strstr(rec, "--l2 0.001") != NULL,
		    "the grid's alternatives are tried");
	}
	CHECK(best.hidden == 16 && best.bptt == base.bptt && best.lr == base.lr &&
		best.content_init == base.content_init && best.epochs == base.epochs &&
		best.holdout_last == base.holdout_last,
	    "fixed settings and the rest of the config are kept");
	CHECK((best.l2 == 1e-5f || best.l2 == 1e-4f || best.l2 == 1e-3f) &&
		(best.dropout == 0.3f || best.dropout == 0.1f || best.dropout == 0.5f),
	    "the choice is on the grid (l2 %g, dropout %g)", (double)best.l2, (double)best.dropout);

	/* 2. The record goes into the model file and back out (interestctl model shows it). */
	tr = trainer_new(cat, ds, &best, NULL, tmp, err, sizeof(err));
	CHECK(tr != NULL && trainer_write(tr, out, rec, err, sizeof(err)) == 0,
	    "model written with its record (%s)", err);
	m = model_load(out, err, sizeof(err));
	CHECK(m != NULL, "model loads (%s)", err);
	if (m != NULL && rec != NULL) {
		size_t len;
		const char *p = model_choice(m, &len);
		CHECK(p != NULL && len == strlen(rec) && memcmp(p, rec, len) == 0,
		    "TRCH holds the search's record");
	}
	model_free(m);
	m = NULL;
	CHECK(fixture_patch(out, "TRCH", 3, "\x01", 1) == 0, "patched a control byte into TRCH");
	m = model_load(out, err, sizeof(err));
	CHECK(m == NULL && strstr(err, "section TRCH: byte 3 is 0x01") != NULL,
	    "a TRCH that is not text is refused, naming the byte (%s)", err);
	model_free(m);
	free(rec);
	rec = NULL;

	/* 3. A budget too small for a second try: the base only, the rest named. */
	so.budget_s = 1e-9;
	so.fixed =
	    SEARCH_INIT | SEARCH_HIDDEN | SEARCH_LR | SEARCH_L2_BIAS | SEARCH_BPTT | SEARCH_DROPOUT;
	CHECK(search_run(cat, ds, NULL, &base, &so, tmp, NULL, &best, &rec, err, sizeof(err)) == 0,
	    "search runs (%s)", err);
	if (rec != NULL) {
		CHECK(count_lines(rec, "search: try ") == 1 &&
			count_lines(rec, "search: not tried (budget): ") == 2,
		    "one try, two named as not tried:\n%s", rec);
	}
	CHECK(best.l2 == base.l2, "the defaults kept");
	free(rec);
	rec = NULL;

	/* 4. No validation items: nothing to judge by. */
	base.holdout_last = 0;
	CHECK(
	    search_run(cat, ds, NULL, &base, &so, tmp, NULL, &best, &rec, err, sizeof(err)) == -1 &&
		strstr(err, "--holdout-last") != NULL,
	    "no validation items: an error naming --holdout-last (%s)", err);

	trainer_free(tr);
	dataset_free(ds);
	model_free(cat);
	fixture_train_teardown(dir, cat_path, csv, tmp, out);
	if (fails)
		return 1;
	printf("search: all passed\n");
	return 0;
}
