/*
 * The consumer's online metrics (README "Online metrics"): each cached
 * user keeps the top-N last acknowledged written to Redis, and each event
 * applied afterwards is measured against it (daemon/online.h), counted under
 * the model version that wrote the list.
 */
#include "consumer_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "modelfile.h"
#include "online.h"
#include "sink_redis.h"
#include "users.h"

int
consumer_online_new(struct consumer *c)
{
	c->online_row = -1;
	if (!c->cfg->metrics_online)
		return 0;
	c->online = online_table_new();
	if (c->online == NULL)
		return -1;
	c->online_row = online_table_row(c->online, c->model_version);
	return c->online_row < 0 ? -1 : 0;
}

void
consumer_online_keep(struct consumer *c, struct user_entry *e, const struct sink_user *su)
{
	if (c->online == NULL)
		return;
	e->n_top = 0;
	if (c->online_row < 0 || su->n_top == 0)
		return;
	if (su->n_top > e->top_cap) {
		uint32_t *nt = realloc(e->top, su->n_top * sizeof(*nt));

		if (nt == NULL)
			return; /* not measured: its next event counts as unmeasured */
		e->top = nt;
		e->top_cap = (uint32_t)su->n_top;
	}
	memcpy(e->top, su->top_items, su->n_top * sizeof(*e->top));
	e->n_top = (uint32_t)su->n_top;
	e->top_row = c->online_row;
}

void
consumer_online_measure(struct consumer *c)
{
	const uint8_t *repeat;

	if (c->online == NULL)
		return;
	repeat = updater_consumed_before(c->up);
	for (size_t i = 0; i < c->n_uev; i++) {
		const struct user_entry *e = c->uev_entry[i];
		const struct update_event *ev = &c->uev[i];

		if (e->n_top == 0) {
			online_table_unmeasured(c->online);
			continue;
		}
		online_count(online_table_counts(c->online, e->top_row, ev->type),
		    online_rank(e->top, e->n_top, ev->item), repeat[i]);
	}
}

/* 1 when every item index of old names the same item in m (m may add items after them). */
static int
consumer_online_same_items(const struct model *old, const struct model *m)
{
	uint32_t n = model_n_items(old);

	if (old == m)
		return 1;
	if (model_n_items(m) < n)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (model_item_hash(old, i) != model_item_hash(m, i))
			return 0;
	return 1;
}

/* users_foreach: forgets e's list. */
static void
consumer_online_forget(void *opaque, struct user_entry *e)
{
	(void)opaque;
	e->n_top = 0;
}

void
consumer_online_swapped(struct consumer *c, const struct model *old)
{
	if (c->online == NULL)
		return;
	c->online_row = online_table_row(c->online, c->model_version);
	if (c->online_row < 0)
		log_warn("event=online_metrics_paused reason=out_of_memory model_version=%" PRIu64,
		    c->model_version);
	if (!consumer_online_same_items(old, c->m)) {
		users_foreach(c->users, consumer_online_forget, NULL);
		log_info("event=online_lists_forgotten reason=catalog_changed");
	}
}
