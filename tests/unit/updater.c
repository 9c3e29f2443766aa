/*
 * model/updater.c: one event against a naive LSTM step written out here
 * (input row, time gap, gate order), and a batch of interleaved users equal
 * to applying the same events one at a time, one user after the other.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "modelfile.h"
#include "state.h"
#include "updater.h"

#define T0_MS    1700000000000LL
#define N_USERS  9
#define N_EVENTS 120

static double
sigm(double z)
{
	return 1.0 / (1.0 + exp(-z));
}

/* The cell of schemas/modelfile.md, in double, for one user. */
static void
naive_step(const struct model *m, const float *h, const float *c, uint32_t item, uint8_t type,
    double dt_s, double *h_out, double *c_out)
{
	const struct model_weights *w = model_weights(m);
	uint32_t H = model_hparams(m)->hidden, E = model_hparams(m)->type_dim, dim = model_dim(m);
	uint32_t din = dim + E + 1, K = din + H;
	double *xh = malloc(K * sizeof(double));
	const float *e = model_item_embeddings(m) + (size_t)item * dim;

	for (uint32_t k = 0; k < dim; k++)
		xh[k] = e[k];
	for (uint32_t k = 0; k < E; k++)
		xh[dim + k] = w->T[type * E + k];
	xh[dim + E] = log1p((dt_s > 0 ? dt_s : 0) / 60.0) / 8.0;
	for (uint32_t k = 0; k < H; k++)
		xh[din + k] = h[k];
	for (uint32_t j = 0; j < H; j++) {
		double z[4];
		for (int g = 0; g < 4; g++) {
			const float *row = w->W + ((size_t)g * H + j) * K;
			z[g] = w->b[g * H + j];
			for (uint32_t k = 0; k < K; k++)
				z[g] += row[k] * xh[k];
		}
		c_out[j] = sigm(z[1]) * c[j] + sigm(z[0]) * tanh(z[2]);
		h_out[j] = sigm(z[3]) * tanh(c_out[j]);
	}
	free(xh);
}

static int
test_naive(const struct model *m)
{
	struct updater *up = updater_new(m, 4);
	struct user_state *us = state_new(model_hparams(m));
	uint32_t H = us->hidden;
	double h1[64], c1[64], h2[64], c2[64];
	float h0[64] = { 0 }, c0[64] = { 0 }, hf[64], cf[64];
	double err1 = 0, err2 = 0;
	int fails = 0;
	struct update_event ev = { .us = us,
		.item = 7,
		.type = MODEL_EV_CLICK,
		.ts_ms = T0_MS,
		.partition = 3,
		.offset = 41 };

	naive_step(m, h0, c0, 7, MODEL_EV_CLICK, 0, h1, c1);
	CHECK(updater_apply(up, &ev, 1) == 0, "one event applied");
	for (uint32_t k = 0; k < H; k++) {
		err1 = fmax(err1, fabs(us->h[k] - h1[k]));
		err1 = fmax(err1, fabs(us->c[k] - c1[k]));
		hf[k] = us->h[k];
		cf[k] = us->c[k];
	}
	CHECK(err1 < 1e-5, "first event equals the naive cell (max err %.2g)", err1);
	/* Second event 3 hours later, a different type: gap feature and T[type] matter. */
	naive_step(m, hf, cf, 11, MODEL_EV_PURCHASE, 3 * 3600.0, h2, c2);
	ev.item = 11;
	ev.type = MODEL_EV_PURCHASE;
	ev.ts_ms = T0_MS + 3 * 3600 * 1000LL;
	ev.offset = 42;
	CHECK(updater_apply(up, &ev, 1) == 0, "second event applied");
	for (uint32_t k = 0; k < H; k++) {
		err2 = fmax(err2, fabs(us->h[k] - h2[k]));
		err2 = fmax(err2, fabs(us->c[k] - c2[k]));
	}
	CHECK(err2 < 1e-5, "second event (3 h gap) equals the naive cell (max err %.2g)", err2);
	CHECK(us->events_applied == 2 && us->last_partition == 3 && us->last_offset == 42 &&
		us->model_version == model_hparams(m)->model_version && us->ring_count == 2 &&
		state_ring_get(us, 1)->item_hash == model_item_hash(m, 11) &&
		state_seen_has(us, model_item_hash(m, 7)) && us->t_ref_ms == ev.ts_ms &&
		us->n_tiers > 0,
	    "marker, counters, ring, filter, tiers updated");

	/* The consumed flags: item 7 again (consumed), then 3 twice in one batch. */
	{
		struct update_event three[3] = { ev, ev, ev };
		const uint8_t *before;

		three[0].item = 7;
		three[1].item = 3;
		three[2].item = 3;
		for (int i = 0; i < 3; i++)
			three[i].offset = 43 + i;
		CHECK(updater_apply(up, three, 3) == 0, "three events applied");
		before = updater_consumed_before(up);
		CHECK(before[0] == 1 && before[1] == 0 && before[2] == 1,
		    "consumed before: %d %d %d (want 1 0 1: the batch's earlier event counts)",
		    before[0], before[1], before[2]);
		ev.offset = 46;
	}

	/* Refusals leave the state alone. */
	struct update_event bad[5];
	for (int i = 0; i < 5; i++)
		bad[i] = ev;
	CHECK(updater_apply(up, bad, 5) == -1, "batch larger than max_batch refused");
	bad[1].item = model_n_items(m);
	CHECK(updater_apply(up, bad, 2) == -1, "item out of range refused");
	bad[1].item = 0;
	bad[1].type = MODEL_N_TYPES;
	CHECK(updater_apply(up, bad, 2) == -1, "type out of range refused");
	CHECK(us->events_applied == 5, "refused batches applied nothing");
	CHECK(updater_apply(up, bad, 0) == 0, "empty batch");
	updater_free(up);
	state_free(us);
	return fails;
}

static int
test_batch_equals_sequential(const struct model *m)
{
	const struct model_hparams *hp = model_hparams(m);
	struct user_state *a[N_USERS], *b[N_USERS];
	struct update_event evb[N_EVENTS], evs;
	struct updater *up = updater_new(m, N_EVENTS), *up1 = updater_new(m, 1);
	uint64_t s = 1234;
	int fails = 0;
	int64_t clock[N_USERS];

	for (int u = 0; u < N_USERS; u++) {
		a[u] = state_new(hp);
		b[u] = state_new(hp);
		clock[u] = T0_MS + u * 1000;
	}
	/* Users with very different event counts (user 0 the most), interleaved;
	 * some timestamps go backwards within a user. */
	for (int i = 0; i < N_EVENTS; i++) {
		int u = (fixture_rand(&s) % 3 == 0) ? 0 : (int)(fixture_rand(&s) % N_USERS);
		int64_t step = (int64_t)(fixture_rand(&s) % 7200000) - 600000;

		clock[u] += step;
		evb[i] = (struct update_event){ .us = a[u],
			.item = (uint32_t)(fixture_rand(&s) % model_n_items(m)),
			.type = (uint8_t)(fixture_rand(&s) % MODEL_N_TYPES),
			.ts_ms = clock[u],
			.partition = 2,
			.offset = 100 + i };
	}
	CHECK(updater_apply(up, evb, N_EVENTS) == 0, "batch of %d events applied", N_EVENTS);
	/* Sequential: user by user, each user's events in batch order, one at a time. */
	for (int u = 0; u < N_USERS; u++) {
		for (int i = 0; i < N_EVENTS; i++) {
			if (evb[i].us != a[u])
				continue;
			evs = evb[i];
			evs.us = b[u];
			if (updater_apply(up1, &evs, 1) != 0)
				fails++;
		}
	}
	double max_err = 0;
	int rest_equal = 1, moved = 0;
	for (int u = 0; u < N_USERS; u++) {
		for (uint32_t k = 0; k < hp->hidden; k++) {
			max_err = fmax(max_err, fabs(a[u]->h[k] - b[u]->h[k]));
			max_err = fmax(max_err, fabs(a[u]->c[k] - b[u]->c[k]));
			if (a[u]->h[k] != 0)
				moved = 1;
		}
		if (a[u]->events_applied != b[u]->events_applied ||
		    a[u]->t_ref_ms != b[u]->t_ref_ms || a[u]->last_offset != b[u]->last_offset ||
		    a[u]->n_tiers != b[u]->n_tiers ||
		    memcmp(a[u]->tiers, b[u]->tiers, a[u]->n_tiers * sizeof(struct tier_weight)) !=
			0 ||
		    a[u]->n_seen != b[u]->n_seen ||
		    (a[u]->n_seen > 0 &&
			memcmp(a[u]->seen, b[u]->seen, a[u]->n_seen * sizeof(uint32_t)) != 0) ||
		    a[u]->ring_count != b[u]->ring_count)
			rest_equal = 0;
		for (uint16_t i = 0; i < a[u]->ring_count; i++)
			if (state_ring_get(a[u], i)->item_hash !=
				state_ring_get(b[u], i)->item_hash ||
			    state_ring_get(a[u], i)->ts_ms != state_ring_get(b[u], i)->ts_ms)
				rest_equal = 0;
	}
	CHECK(moved, "hidden states moved");
	CHECK(max_err < 1e-5, "batched h, c == sequential (max err %.2g)", max_err);
	CHECK(rest_equal, "tiers, ring, filter, markers equal");
	uint64_t total = 0;
	for (int u = 0; u < N_USERS; u++)
		total += a[u]->events_applied;
	CHECK(total == N_EVENTS && a[0]->events_applied > 20,
	    "every event applied once (user 0: %llu)", (unsigned long long)a[0]->events_applied);
	for (int u = 0; u < N_USERS; u++) {
		state_free(a[u]);
		state_free(b[u]);
	}
	updater_free(up);
	updater_free(up1);
	return fails;
}

int
main(void)
{
	struct fixture_cat fc = { .n_items = 80, .dim = 16, .n_tier1 = 4, .k2 = 3, .seed = 21 };
	char dir[64], cpath[128], mpath[128], err[512];
	struct model *m, *cat;
	int fails = 0;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(cpath, sizeof(cpath), "%s/u.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/u.imdl", dir);
	m = fixture_model(cpath, mpath, &fc, 24, err, sizeof(err));
	CHECK(m != NULL, "model built (%s)", m == NULL ? err : "ok");
	if (m == NULL)
		return 1;
	cat = model_load(cpath, err, sizeof(err));
	CHECK(cat != NULL && updater_new(cat, 8) == NULL, "no updater for a catalog");
	fails += test_naive(m);
	fails += test_batch_equals_sequential(m);
	model_free(cat);
	model_free(m);
	unlink(cpath);
	unlink(mpath);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
