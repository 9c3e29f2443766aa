/*
 * The published view of a user (interest vector, top-N) computed from its
 * state, with buffers for one flush's worth of users. Shared by the daemon's
 * flush and `interestctl replay`.
 */
#include "userview.h"

#include <stdlib.h>

#include "modelfile.h"
#include "scorer.h"
#include "sink_redis.h"
#include "state.h"

struct userview {
	const struct model *m;
	struct scorer *sc;
	size_t max_users, top_n, dim;
	int calibrate;
	float *vec;                   /* [max_users][dim] */
	uint32_t *items;              /* [max_users][top_n] */
	float *scores;                /* [max_users][top_n] */
	size_t *counts;               /* [max_users] */
	const struct user_state **us; /* [max_users] */
};

struct userview *
userview_new(const struct model *m, size_t max_users, size_t top_n, int calibrate)
{
	struct userview *uv = calloc(1, sizeof(*uv));

	if (uv == NULL)
		return NULL;
	uv->m = m;
	uv->max_users = max_users;
	uv->top_n = top_n;
	uv->dim = model_dim(m);
	uv->calibrate = calibrate;
	uv->sc = scorer_new(m);
	uv->vec = calloc(max_users * uv->dim, sizeof(*uv->vec));
	uv->items = calloc(max_users * (top_n ? top_n : 1), sizeof(*uv->items));
	uv->scores = calloc(max_users * (top_n ? top_n : 1), sizeof(*uv->scores));
	uv->counts = calloc(max_users ? max_users : 1, sizeof(*uv->counts));
	uv->us = calloc(max_users ? max_users : 1, sizeof(*uv->us));
	if (uv->sc == NULL || uv->vec == NULL || uv->items == NULL || uv->scores == NULL ||
	    uv->counts == NULL || uv->us == NULL) {
		userview_free(uv);
		return NULL;
	}
	return uv;
}

void
userview_set_search(struct userview *uv, int tiered, uint32_t probe_items)
{
	scorer_set_search(uv->sc, tiered, probe_items);
}

const char *
userview_kernel(const struct userview *uv)
{
	return scorer_kernel_name(uv->sc);
}

void
userview_free(struct userview *uv)
{
	if (uv == NULL)
		return;
	scorer_free(uv->sc);
	free(uv->vec);
	free(uv->items);
	free(uv->scores);
	free(uv->counts);
	free(uv->us);
	free(uv);
}

int
userview_fill(struct userview *uv, size_t slot, const char *user_id, size_t user_id_len,
    const struct user_state *us, struct sink_user *su)
{
	float *vec;
	uint32_t *items;
	float *scores;

	if (slot >= uv->max_users)
		return -1;
	vec = uv->vec + slot * uv->dim;
	items = uv->items + slot * uv->top_n;
	scores = uv->scores + slot * uv->top_n;
	scorer_interest(uv->m, us, vec);
	scorer_topn_batch(
	    uv->sc, &us, vec, 1, uv->top_n, uv->calibrate, items, scores, &uv->counts[slot]);
	su->user_id = user_id;
	su->user_id_len = user_id_len;
	su->us = us;
	su->epoch = 0;
	su->vec = vec;
	su->top_items = items;
	su->top_scores = scores;
	su->n_top = uv->counts[slot];
	return 0;
}

int
userview_fill_batch(struct userview *uv, struct sink_user *su, size_t n)
{
	return userview_fill_slots(uv, su, 0, n);
}

int
userview_fill_slots(struct userview *uv, struct sink_user *su, size_t first, size_t n)
{
	if (first > uv->max_users || n > uv->max_users - first)
		return -1;
	for (size_t k = first; k < first + n; k++) {
		uv->us[k] = su[k].us;
		scorer_interest(uv->m, su[k].us, uv->vec + k * uv->dim);
	}
	scorer_topn_batch(uv->sc, uv->us + first, uv->vec + first * uv->dim, n, uv->top_n,
	    uv->calibrate, uv->items + first * uv->top_n, uv->scores + first * uv->top_n,
	    uv->counts + first);
	for (size_t k = first; k < first + n; k++) {
		su[k].vec = uv->vec + k * uv->dim;
		su[k].top_items = uv->items + k * uv->top_n;
		su[k].top_scores = uv->scores + k * uv->top_n;
		su[k].n_top = uv->counts[k];
	}
	return 0;
}
