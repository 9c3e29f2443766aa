/*
 * The trainer's content-echo start (trainer_content_init): before any
 * training, a user who just had item j gets an interest vector pointing at
 * j's LLM embedding, so the untrained model already ranks by content; the
 * random start does not.
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

#define N_ITEMS  300
#define N_USERS  40
#define PER_USER 6

/* Mean cosine between u (after each user's first event) and that item's LLM embedding. */
static double
echo_cosine(const struct model *cat, const struct dataset *ds, int content_init, const char *tmp,
    const char *out)
{
	struct train_config cfg;
	struct trainer *tr;
	struct model *m = NULL;
	struct updater *up = NULL;
	struct user_state *us[N_USERS] = { 0 };
	uint32_t users[N_USERS], n_hist[N_USERS];
	float u[64];
	char err[512];
	double sum = -2.0;
	uint32_t dim = model_dim(cat);

	train_config_default(&cfg);
	cfg.hidden = 64;
	cfg.type_dim = 4;
	cfg.content_init = content_init;
	cfg.hp.model_version = 1;
	tr = trainer_new(cat, ds, &cfg, NULL, tmp, err, sizeof(err));
	if (tr == NULL || trainer_write(tr, out, NULL, err, sizeof(err)) < 0) {
		printf("FAIL trainer: %s\n", err);
		goto done;
	}
	m = model_load(out, err, sizeof(err));
	up = m != NULL ? updater_new(m, 1024) : NULL;
	if (up == NULL) {
		printf("FAIL model: %s\n", m == NULL ? err : "updater");
		goto done;
	}
	for (uint32_t k = 0; k < N_USERS; k++) {
		users[k] = k;
		n_hist[k] = 1;
		if ((us[k] = state_new(model_hparams(m))) == NULL)
			goto done;
	}
	if (eval_replay(up, ds, users, n_hist, N_USERS, 1024, us) < 0)
		goto done;
	sum = 0;
	for (uint32_t k = 0; k < N_USERS; k++) {
		size_t n;
		const struct dataset_event *ev = dataset_user(ds, k, &n);
		const float *e = model_llm_embeddings(m) + (size_t)ev[0].item * dim;
		double dot = 0, nu = 0, ne = 0;
		scorer_interest(m, us[k], u);
		for (uint32_t j = 0; j < dim; j++) {
			dot += (double)u[j] * e[j];
			nu += (double)u[j] * u[j];
			ne += (double)e[j] * e[j];
		}
		sum += dot / sqrt(nu * ne + 1e-30);
	}
	sum /= N_USERS;
done:
	for (uint32_t k = 0; k < N_USERS; k++)
		state_free(us[k]);
	updater_free(up);
	model_free(m);
	trainer_free(tr);
	return sum;
}

int
main(void)
{
	int fails = 0;
	char dir[128], cat_path[256], csv[256], tmp[256], out[256], err[512];
	struct fixture_cat fc = { .n_items = N_ITEMS, .dim = 16, .n_tier1 = 4, .k2 = 3, .seed = 5 };
	struct model *cat = NULL;
	struct dataset *ds = NULL;
	uint64_t rng = 7;
	FILE *fp;

	fp = fixture_train_setup(&fc, dir, sizeof(dir), cat_path, csv, sizeof(cat_path), &cat);
	if (fp == NULL)
		return 1;
	snprintf(tmp, sizeof(tmp), "%s/m.init", dir);
	snprintf(out, sizeof(out), "%s/m.imdl", dir);
	for (uint32_t k = 0; k < N_USERS; k++)
		for (uint32_t j = 0; j < PER_USER; j++)
			fprintf(fp, "u%u,item-%u,VIEW,%u\n", k,
			    (unsigned)(fixture_rand(&rng) % N_ITEMS), 1000u * (j + 1));
	fclose(fp);
	ds = dataset_load(csv, cat, err, sizeof(err));
	if (ds == NULL) {
		printf("FAIL dataset: %s\n", err);
		return 1;
	}
	double c_echo = echo_cosine(cat, ds, 1, tmp, out);
	double c_rand = echo_cosine(cat, ds, 0, tmp, out);
	printf("mean cos(u, e_item) after one event: content start %.3f, random start %.3f\n",
	    c_echo, c_rand);
	CHECK(c_echo > 0.6, "content start: u points at the item just consumed (%.3f)", c_echo);
	CHECK(c_echo > fabs(c_rand) + 0.3, "random start does not (%.3f vs %.3f)", c_rand, c_echo);
	dataset_free(ds);
	model_free(cat);
	fixture_train_teardown(dir, cat_path, csv, tmp, out);
	if (fails)
		return 1;
	printf("train_init: all passed\n");
	return 0;
}
