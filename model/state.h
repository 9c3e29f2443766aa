/*
 * Per-user state: LSTM (h, c), short- and long-term tier weights decayed in
 * continuous event time (sparse, bounded), a ring of the last K events, a
 * small filter of consumed items, the applied-offset marker, and its
 * versioned binary codec (layout: schemas/state.md).
 */
#ifndef MODEL_STATE_H
#define MODEL_STATE_H

#include <stddef.h>
#include <stdint.h>

struct model;
struct model_hparams;

#define STATE_SEEN_BYTES  256                      /* consumed-items Bloom filter, 2048 bits */
#define STATE_NO_TIME     INT64_MIN                /* t_ref_ms before the first event */
#define STATE_RING_TS_MAX ((INT64_C(1) << 55) - 1) /* |ring event time| bound, ms */

struct tier_weight {
	uint32_t node;
	float w_short; /* as of user_state.t_ref_ms */
	float w_long;
};

/*
 * 16 bytes, not 24: the event time fits 56 bits (+-1.1 million years of
 * milliseconds), the type the other 8 (state_ring_push stores them).
 */
struct ring_event {
	uint64_t item_hash; /* model_id_hash() of the item id */
	int64_t ts_ms : 56;
	uint64_t type : 8;
};

struct user_state {
	int64_t t_ref_ms;       /* newest event time applied; weights are as of it */
	int64_t last_offset;    /* last applied Kafka offset, -1 for none */
	int32_t last_partition; /* its partition, -1 for none */
	uint32_t hidden;        /* H: h and c have this many floats */
	uint64_t events_applied;
	uint64_t model_version; /* model that produced h and c */
	uint16_t max_tiers, n_tiers;
	uint16_t ring_len, ring_head, ring_count; /* ring_head: next slot to write */
	float *h, *c;                             /* [hidden] each, inside this allocation */
	struct tier_weight *tiers;                /* [max_tiers], the first n_tiers used */
	struct ring_event *ring;                  /* [ring_len] */
	uint8_t seen[STATE_SEEN_BYTES];
};

/* A zeroed state sized for hp in one allocation; NULL on ENOMEM. state_free() is NULL-safe. */
struct user_state *state_new(const struct model_hparams *hp);
void state_free(struct user_state *us);
/* Back to the state of a user never seen (keeps the sizes). */
void state_reset(struct user_state *us);
/* Bytes one state of these sizes occupies in memory. */
size_t state_mem_size(const struct model_hparams *hp);

/*
 * Moves the tier weights for one event of item at ts_ms: when ts_ms is at or
 * after t_ref_ms every weight decays by 2^(-dt/half_life) and t_ref_ms
 * advances; an older event's contribution is decayed by its age instead and
 * t_ref_ms never rewinds. Adds a(type) to the item's level-1 and level-2
 * nodes; when the table is full the weakest long-term entry is evicted.
 */
void state_tiers_apply(
    struct user_state *us, const struct model *m, uint32_t item, uint8_t type, int64_t ts_ms);
/* Weight of a node decayed to now_ms (>= t_ref_ms); 0 if absent. */
float state_tier_short(
    const struct user_state *us, const struct model *m, uint32_t node, int64_t now_ms);
float state_tier_long(
    const struct user_state *us, const struct model *m, uint32_t node, int64_t now_ms);

void state_ring_push(struct user_state *us, uint64_t item_hash, int64_t ts_ms, uint8_t type);
/* The i-th ring event, oldest first (i < ring_count). */
const struct ring_event *state_ring_get(const struct user_state *us, uint16_t i);

void state_seen_add(struct user_state *us, uint64_t item_hash);
/* 1 if the item was (probably: Bloom filter) consumed, 0 if surely not. */
int state_seen_has(const struct user_state *us, uint64_t item_hash);

/* Encoded size of us. */
size_t state_encoded_size(const struct user_state *us);
/* Encodes into buf; returns bytes written or 0 if size is too small. */
size_t state_encode(const struct user_state *us, uint8_t *buf, size_t size);
/*
 * Decodes into us (sized by state_new for the current model). A blob written
 * under a model with another hidden size keeps its tiers, ring, filter and
 * marker; h and c are zeroed and model_version set to 0, so the caller
 * re-warms them from the ring. Returns 0, or -1 with a reason in errstr (bad
 * magic, version or checksum, truncated, more tier entries than max_tiers);
 * on failure us is untouched.
 */
int state_decode(
    struct user_state *us, const uint8_t *buf, size_t len, char *errstr, size_t errstr_size);

#endif
