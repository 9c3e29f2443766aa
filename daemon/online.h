/*
 * Online metrics of the serving model (README "Online metrics"): where a
 * user's next event's item stands in the top-N last written for the user,
 * as hit@10, hit@N, reciprocal rank and NDCG@10, counted per model version
 * and event type. The daemon and `interestctl replay --online` count with
 * online_count, so the two cannot diverge.
 */
#ifndef DAEMON_ONLINE_H
#define DAEMON_ONLINE_H

#include <stddef.h>
#include <stdint.h>

#define ONLINE_K 10 /* the cut-off of hit@10 and NDCG@10 */

/* The counters of one (model version, event type). */
struct online_counts {
	uint64_t events;  /* measured: a previous list, the item not consumed before */
	uint64_t repeats; /* the item consumed before: apart, never in the denominators */
	uint64_t hits_k;  /* rank <= ONLINE_K */
	uint64_t hits_n;  /* in the list */
	double rr_sum;    /* 1 / rank (0 when absent) */
	double ndcg_sum;  /* 1 / log2(rank + 1) when rank <= ONLINE_K, else 0 */
};

/* The 1-based rank of item in list[0..n) (best first), or 0 when absent. */
uint32_t online_rank(const uint32_t *list, size_t n, uint32_t item);

/*
 * Counts one event whose item has 1-based rank `rank` (0: absent) in the
 * user's previous list: a repeat (the user had consumed the item before
 * this event) only in repeats, any other event in events and the sums.
 */
void online_count(struct online_counts *oc, uint32_t rank, int repeat);

/*
 * Counters per model version seen since start and per event type
 * (MODEL_N_TYPES), plus the applied events that had no previous list.
 * Grows by one row per new model version, so its labels stay bounded by the
 * models served.
 */
struct online_table;

/* An empty table; NULL on ENOMEM. Free with online_table_free (NULL-safe). */
struct online_table *online_table_new(void);
void online_table_free(struct online_table *t);

/*
 * The row of model_version, added when new. Returns its index (stable for
 * the table's life), or -1 on ENOMEM.
 */
int online_table_row(struct online_table *t, uint64_t model_version);

/* The counters of row (from online_table_row) and event type (< MODEL_N_TYPES). */
struct online_counts *online_table_counts(struct online_table *t, int row, uint32_t type);

/* Counts one applied event that had no previous list to measure. */
void online_table_unmeasured(struct online_table *t);

/*
 * Appends the /metrics families interestd_online_* (metrics.h conventions:
 * buf, size, running length *o): one sample per model version and event
 * type of every row.
 */
void online_table_render(const struct online_table *t, char *buf, size_t size, size_t *o);

#endif
