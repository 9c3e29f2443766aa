/*
 * Online metrics of the serving model: the rank of an event's item in the
 * user's previous top-N turned into hit@10, hit@N, reciprocal rank and
 * NDCG@10, and the table of those counters per model version and event
 * type that /metrics renders.
 */
#include "online.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "metrics.h"
#include "modelfile.h"

struct online_row {
	uint64_t model_version;
	struct online_counts by_type[MODEL_N_TYPES];
};

struct online_table {
	struct online_row *rows;
	size_t n_rows, cap_rows;
	uint64_t unmeasured;
};

uint32_t
online_rank(const uint32_t *list, size_t n, uint32_t item)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == item)
			return (uint32_t)(i + 1);
	return 0;
}

void
online_count(struct online_counts *oc, uint32_t rank, int repeat)
{
	if (repeat) {
		oc->repeats++;
		return;
	}
	oc->events++;
	if (rank == 0)
		return;
	oc->hits_n++;
	oc->rr_sum += 1.0 / (double)rank;
	if (rank <= ONLINE_K) {
		oc->hits_k++;
		oc->ndcg_sum += 1.0 / log2((double)rank + 1.0);
	}
}

struct online_table *
online_table_new(void)
{
	return calloc(1, sizeof(struct online_table));
}

void
online_table_free(struct online_table *t)
{
	if (t == NULL)
		return;
	free(t->rows);
	free(t);
}

int
online_table_row(struct online_table *t, uint64_t model_version)
{
	for (size_t i = 0; i < t->n_rows; i++)
		if (t->rows[i].model_version == model_version)
			return (int)i;
	if (t->n_rows == INT32_MAX)
		return -1;
	if (t->n_rows == t->cap_rows) {
		size_t ncap = t->cap_rows ? t->cap_rows * 2 : 4;
		struct online_row *nr = realloc(t->rows, ncap * sizeof(*nr));

		if (nr == NULL)
			return -1;
		t->rows = nr;
		t->cap_rows = ncap;
	}
	t->rows[t->n_rows] = (struct online_row){ .model_version = model_version };
	return (int)t->n_rows++;
}

struct online_counts *
online_table_counts(struct online_table *t, int row, uint32_t type)
{
	return &t->rows[row].by_type[type];
}

void
online_table_unmeasured(struct online_table *t)
{
	t->unmeasured++;
}

/* The value of one family in a cell. */
enum online_field { ONLINE_EVENTS, ONLINE_REPEATS, ONLINE_HITS, ONLINE_RR, ONLINE_NDCG };

/* Appends the samples of one family for every cell with events or repeats. */
static void
online_render_family(const struct online_table *t, enum online_field f, const char *name,
    const char *help, char *buf, size_t size, size_t *o)
{
	metrics_family(buf, size, o, name, "counter", help);
	for (size_t r = 0; r < t->n_rows; r++)
		for (uint32_t ty = 0; ty < MODEL_N_TYPES; ty++) {
			const struct online_counts *oc = &t->rows[r].by_type[ty];
			const char *type = model_event_type_name(ty);
			uint64_t v = t->rows[r].model_version;

			if (oc->events == 0 && oc->repeats == 0)
				continue;
			switch (f) {
			case ONLINE_EVENTS:
			case ONLINE_REPEATS:
				metrics_printf(buf, size, o,
				    "%s{model_version=\"%" PRIu64 "\",type=\"%s\"} %" PRIu64 "\n",
				    name, v, type, f == ONLINE_EVENTS ? oc->events : oc->repeats);
				break;
			case ONLINE_HITS:
				metrics_printf(buf, size, o,
				    "%s{model_version=\"%" PRIu64
				    "\",type=\"%s\",k=\"10\"} %" PRIu64
				    "\n%s{model_version=\"%" PRIu64
				    "\",type=\"%s\",k=\"n\"} %" PRIu64 "\n",
				    name, v, type, oc->hits_k, name, v, type, oc->hits_n);
				break;
			case ONLINE_RR:
			case ONLINE_NDCG:
				metrics_printf(buf, size, o,
				    "%s{model_version=\"%" PRIu64 "\",type=\"%s\"} %.17g\n", name,
				    v, type, f == ONLINE_RR ? oc->rr_sum : oc->ndcg_sum);
				break;
			}
		}
}

void
online_table_render(const struct online_table *t, char *buf, size_t size, size_t *o)
{
	online_render_family(t, ONLINE_EVENTS, "interestd_online_events_total",
	    "Events measured against the user's previous top-N (not repeats), by the "
	    "model_version that wrote the list and the event type.",
	    buf, size, o);
	online_render_family(t, ONLINE_REPEATS, "interestd_online_repeats_total",
	    "Events on an item the user had consumed before (never in a top-N): apart.", buf, size,
	    o);
	online_render_family(t, ONLINE_HITS, "interestd_online_hits_total",
	    "Measured events whose item was in the previous top-N: in the first 10 (k=\"10\") or "
	    "anywhere (k=\"n\").",
	    buf, size, o);
	online_render_family(t, ONLINE_RR, "interestd_online_reciprocal_rank_sum",
	    "Sum over measured events of 1/rank of the item in the previous top-N (0 if absent).",
	    buf, size, o);
	online_render_family(t, ONLINE_NDCG, "interestd_online_ndcg10_sum",
	    "Sum over measured events of 1/log2(rank+1) if rank <= 10, else 0.", buf, size, o);
	metrics_family(buf, size, o, "interestd_online_unmeasured_total", "counter",
	    "Applied events of a user with no previous top-N in memory (new, loaded, erased, "
	    "catalog changed).");
	metrics_printf(
	    buf, size, o, "interestd_online_unmeasured_total %" PRIu64 "\n", t->unmeasured);
}
