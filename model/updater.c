/*
 * The batched updater (model/updater.h): groups a batch by user, runs the
 * LSTM step of the k-th event of every user in the batch as one SGEMM
 * (a "wave"), then applies each event's tier weights, ring, consumed filter
 * and marker. All scratch is sized once by updater_new().
 */
#include "updater.h"

#include <stdlib.h>
#include <string.h>

#include "lstm.h"
#include "modelfile.h"
#include "state.h"

#define MS_PER_S     1000.0
#define PTR_HASH_MUL 0x9E3779B97F4A7C15ull

struct updater {
	const struct model *m;
	size_t max_batch;
	uint32_t hidden, din, dim, type_dim;
	float *xh;                         /* [max_batch][din + H] */
	float *c;                          /* [max_batch][H] */
	float *h;                          /* [max_batch][H] */
	float *acts;                       /* [max_batch][4H] */
	uint32_t *rank;                    /* [max_batch]: event's position among its user's */
	uint32_t *order;                   /* [max_batch]: event indices, wave by wave */
	uint32_t *wave_start;              /* [max_batch + 1] */
	const struct user_state **slot_us; /* open addressing by state pointer */
	uint32_t *slot_count;              /* events of that user seen so far in the batch */
	uint8_t *consumed_before;          /* [max_batch]: updater_consumed_before */
	size_t slot_mask;
};

struct updater *
updater_new(const struct model *m, size_t max_batch)
{
	const struct model_hparams *hp = model_hparams(m);
	struct updater *up;
	size_t cap = 1, H, K;

	if (hp == NULL || max_batch == 0 || max_batch > UINT32_MAX / 2)
		return NULL;
	while (cap < 2 * max_batch)
		cap <<= 1;
	up = calloc(1, sizeof(*up));
	if (up == NULL)
		return NULL;
	up->m = m;
	up->max_batch = max_batch;
	up->hidden = hp->hidden;
	up->dim = model_dim(m);
	up->type_dim = hp->type_dim;
	up->din = model_din(m);
	H = up->hidden;
	K = (size_t)up->din + H;
	up->xh = malloc(max_batch * K * sizeof(float));
	up->c = malloc(max_batch * H * sizeof(float));
	up->h = malloc(max_batch * H * sizeof(float));
	up->acts = malloc(max_batch * 4 * H * sizeof(float));
	up->rank = malloc(max_batch * sizeof(uint32_t));
	up->order = malloc(max_batch * sizeof(uint32_t));
	up->wave_start = malloc((max_batch + 1) * sizeof(uint32_t));
	up->slot_us = malloc(cap * sizeof(*up->slot_us));
	up->slot_count = malloc(cap * sizeof(uint32_t));
	up->consumed_before = malloc(max_batch);
	up->slot_mask = cap - 1;
	if (up->xh == NULL || up->c == NULL || up->h == NULL || up->acts == NULL ||
	    up->rank == NULL || up->order == NULL || up->wave_start == NULL ||
	    up->slot_us == NULL || up->slot_count == NULL || up->consumed_before == NULL) {
		updater_free(up);
		return NULL;
	}
	return up;
}

void
updater_free(struct updater *up)
{
	if (up == NULL)
		return;
	free(up->xh);
	free(up->c);
	free(up->h);
	free(up->acts);
	free(up->rank);
	free(up->order);
	free(up->wave_start);
	free(up->slot_us);
	free(up->slot_count);
	free(up->consumed_before);
	free(up);
}

/* Number of events of this user before it in the batch (counts it). */
static uint32_t
updater_rank(struct updater *up, const struct user_state *us)
{
	uint64_t hsh = (uint64_t)(uintptr_t)us * PTR_HASH_MUL;
	size_t s = (size_t)(hsh >> 32) & up->slot_mask;

	while (up->slot_us[s] != NULL && up->slot_us[s] != us)
		s = (s + 1) & up->slot_mask;
	if (up->slot_us[s] == NULL) {
		up->slot_us[s] = us;
		up->slot_count[s] = 0;
	}
	return up->slot_count[s]++;
}

/* Builds the LSTM input row of one event from its user's current state. */
static void
updater_row(struct updater *up, const struct update_event *ev, float *xh, float *c)
{
	const struct model_weights *w = model_weights(up->m);
	const struct user_state *us = ev->us;
	double dt_s = 0.0;

	if (us->t_ref_ms != STATE_NO_TIME && ev->ts_ms > us->t_ref_ms)
		dt_s = ((double)ev->ts_ms - (double)us->t_ref_ms) / MS_PER_S;
	lstm_input(model_item_embeddings(up->m) + (size_t)ev->item * up->dim, up->dim,
	    w->T + (size_t)ev->type * up->type_dim, up->type_dim, lstm_gap_feature(dt_s), xh);
	memcpy(xh + up->din, us->h, up->hidden * sizeof(float));
	memcpy(c, us->c, up->hidden * sizeof(float));
}

/* Everything but the LSTM step, once that step's h and c are in place (event i of the batch). */
static void
updater_finish(struct updater *up, const struct update_event *ev, uint32_t i)
{
	struct user_state *us = ev->us;
	uint64_t item_hash = model_item_hash(up->m, ev->item);

	state_tiers_apply(us, up->m, ev->item, ev->type, ev->ts_ms);
	state_ring_push(us, item_hash, ev->ts_ms, ev->type);
	/* Out of memory leaves the item out of the consumed set: it stays servable. */
	up->consumed_before[i] = state_seen_add(us, item_hash) == 1;
	us->events_applied++;
	us->last_partition = ev->partition;
	us->last_offset = ev->offset;
	us->model_version = model_hparams(up->m)->model_version;
}

int
updater_apply(struct updater *up, const struct update_event *ev, size_t n)
{
	const struct model_weights *w = model_weights(up->m);
	uint32_t n_items = model_n_items(up->m), n_waves = 0;
	size_t H = up->hidden, K = (size_t)up->din + H;

	if (n > up->max_batch)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (ev[i].us == NULL || ev[i].item >= n_items || ev[i].type >= MODEL_N_TYPES ||
		    ev[i].us->hidden != up->hidden)
			return -1;
	for (size_t s = 0; s <= up->slot_mask; s++)
		up->slot_us[s] = NULL;
	/* Rank of each event within its user; counting sort into waves. */
	memset(up->wave_start, 0, (n + 1) * sizeof(uint32_t));
	for (size_t i = 0; i < n; i++) {
		up->rank[i] = updater_rank(up, ev[i].us);
		up->wave_start[up->rank[i] + 1]++;
		if (up->rank[i] + 1 > n_waves)
			n_waves = up->rank[i] + 1;
	}
	for (uint32_t k = 0; k < n_waves; k++)
		up->wave_start[k + 1] += up->wave_start[k];
	/* wave_start[k] serves as wave k's fill cursor while events are placed in order. */
	for (size_t i = 0; i < n; i++) {
		uint32_t k = up->rank[i];
		uint32_t pos = up->wave_start[k]++;

		up->order[pos] = (uint32_t)i;
	}
	/* wave_start[k] now holds the end of wave k, i.e. the start of wave k+1. */
	for (uint32_t k = n_waves; k > 0; k--)
		up->wave_start[k] = up->wave_start[k - 1];
	up->wave_start[0] = 0;

	for (uint32_t k = 0; k < n_waves; k++) {
		uint32_t first = up->wave_start[k], batch = up->wave_start[k + 1] - first;

		for (uint32_t r = 0; r < batch; r++)
			updater_row(up, &ev[up->order[first + r]], up->xh + r * K, up->c + r * H);
		lstm_forward(
		    w->W, w->b, up->din, up->hidden, batch, up->xh, up->c, up->h, up->acts);
		for (uint32_t r = 0; r < batch; r++) {
			uint32_t i = up->order[first + r];
			const struct update_event *e = &ev[i];

			memcpy(e->us->h, up->h + r * H, H * sizeof(float));
			memcpy(e->us->c, up->c + r * H, H * sizeof(float));
			updater_finish(up, e, i);
		}
	}
	return 0;
}

const uint8_t *
updater_consumed_before(const struct updater *up)
{
	return up->consumed_before;
}
