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
	if (uv->sc == NULL || uv->vec == NULL || uv->items == NULL || uv->scores == NULL) {
		userview_free(uv);
		return NULL;
	}
	return uv;
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
	su->user_id = user_id;
	su->user_id_len = user_id_len;
	su->us = us;
	su->epoch = 0;
	su->vec = vec;
	su->top_items = items;
	su->top_scores = scores;
	su->n_top = scorer_topn(uv->sc, us, vec, uv->top_n, uv->calibrate, items, scores);
	return 0;
}
