/*
 * The picture of one user that `interestctl report` writes: the interest
 * hierarchy as two sunbursts (long- and short-term tier weights, tier 1
 * inside, tier 2 outside) and how the top tier-1 weights moved over the
 * user's recent events (the ring). Pure code: the caller fetches the state
 * and passes it in; nothing here touches the network.
 */
#ifndef DAEMON_REPORT_H
#define DAEMON_REPORT_H

#include <stdint.h>
#include <stdio.h>

struct model;
struct user_state;

#define REPORT_TOP_TIER1 5  /* tier-1 nodes drawn in the timeline */
#define REPORT_RING_MAX  64 /* ring events drawn at most (the model allows 64) */

/*
 * How the long-term weights of the user's top tier-1 nodes moved over the
 * ring's events, oldest first: w[l][j] is node[l]'s long-term weight right
 * after event j. The ring events are replayed through state_tiers_apply from
 * an empty tier table; when with_history is 1, the part of each current
 * weight the ring does not explain (older events) is added back, decayed to
 * each event's time, so the last point equals the current weight.
 */
struct report_timeline {
	uint32_t n_events;               /* ring events, <= REPORT_RING_MAX */
	uint32_t n_lines;                /* <= REPORT_TOP_TIER1 */
	uint32_t node[REPORT_TOP_TIER1]; /* tier-1 nodes, by current long-term weight */
	float w[REPORT_TOP_TIER1][REPORT_RING_MAX];
	int64_t ts_ms[REPORT_RING_MAX]; /* event time */
	int32_t item[REPORT_RING_MAX];  /* item index, -1 when the model lacks the item */
	uint8_t type[REPORT_RING_MAX];  /* enum model_event_type */
	int with_history;
};

/* What one report shows. Everything is borrowed for the call. */
struct report_input {
	const char *user_id;         /* NUL-terminated; escaped on output */
	const struct user_state *us; /* decoded ui:{u}:state */
	const struct model *m;       /* the model the daemon serves (tier tree, names) */
	int64_t updated_at_ms;       /* meta.updated_at, 0 when unknown */
	int html;                    /* 1: an HTML page holding the SVG */
};

/*
 * Fills tl from us and m (see struct report_timeline). Returns 0, or -1 with
 * the reason in errstr when m has no hyper-parameters (a catalog) or out of
 * memory.
 */
int report_timeline(const struct model *m, const struct user_state *us, struct report_timeline *tl,
    char *errstr, size_t errstr_size);

/*
 * Writes the report of in as one SVG document (or an HTML page holding it)
 * to out. Tier names come from the model (TNAM); every text is XML-escaped
 * and invalid UTF-8 replaced. Returns 0, or -1 with the reason in errstr
 * (write error, as report_timeline).
 */
int report_write_svg(FILE *out, const struct report_input *in, char *errstr, size_t errstr_size);

#endif
