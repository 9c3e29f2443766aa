/*
 * Per-user state: LSTM (h, c), short- and long-term tier weights decayed in
 * continuous event time (sparse, bounded), a ring of the last K events, the
 * set of consumed items (32-bit fingerprints, sized to the history), the ids
 * of the last STATE_EVENT_IDS events, the applied-offset marker, and its
 * versioned binary codec (layout: schemas/state.md).
 */
#ifndef MODEL_STATE_H
#define MODEL_STATE_H

#include <stddef.h>
#include <stdint.h>

struct model;
struct model_hparams;

#define STATE_SEEN_MAX     32768                    /* consumed items remembered (4 bytes each) */
#define STATE_EVENT_IDS    16                       /* event ids remembered (8 bytes each) */
#define STATE_NO_TIME      INT64_MIN                /* t_ref_ms before the first event */
#define STATE_RING_TS_MAX  ((INT64_C(1) << 55) - 1) /* |ring event time| bound, ms */
#define STATE_DECODE_NOMEM (-2) /* state_decode: a valid blob, no memory to hold it */

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
	/*
	 * Consumed items: fingerprints (state_seen_add), strictly increasing,
	 * in their own allocation of seen_cap, grown as the history grows.
	 */
	uint32_t *seen;
	uint32_t n_seen, seen_cap;
	/* Hashes of the ids of the last events taken (state_event_remember), a ring. */
	uint64_t event_ids[STATE_EVENT_IDS];
	uint16_t n_event_ids, event_ids_head; /* event_ids_head: next slot to write */
};

/*
 * A zeroed state sized for hp in one allocation (the consumed set gets its
 * own as it grows); NULL on ENOMEM. state_free() is NULL-safe and frees both.
 */
struct user_state *state_new(const struct model_hparams *hp);
void state_free(struct user_state *us);
/* Back to the state of a user never seen (keeps the sizes, frees the consumed set). */
void state_reset(struct user_state *us);
/* Bytes one state of these sizes occupies in memory, without its consumed set. */
size_t state_mem_size(const struct model_hparams *hp);
/* Bytes us occupies in memory, its consumed set's allocation included. */
size_t state_mem_used(const struct user_state *us);

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

/*
 * Adds the item to the consumed set. Returns 0 when added, 1 when it was in
 * the set already, or -1 on ENOMEM (the set is unchanged: the item stays
 * servable). At STATE_SEEN_MAX items a new item
 * takes the place of an earlier one chosen by its fingerprint (that one
 * becomes servable again).
 */
int state_seen_add(struct user_state *us, uint64_t item_hash);
/*
 * 1 if the item was consumed, 0 if not. Items are told apart by a 32-bit
 * fingerprint, so an item never consumed is reported with probability
 * n_seen / 2^32 (2.3e-6 at 10,000 items); a consumed item always is.
 */
int state_seen_has(const struct user_state *us, uint64_t item_hash);
/* Copies src's consumed set into dst. Returns 0, or -1 on ENOMEM (dst unchanged). */
int state_seen_copy(struct user_state *dst, const struct user_state *src);

/*
 * Duplicates by event id (BehaviourEvent.event_id): the hash the state
 * remembers an id by (event_id_hash), whether it is among the last
 * STATE_EVENT_IDS remembered (1) or not (0), and remembering one (the
 * oldest is forgotten when full).
 */
uint64_t state_event_id_hash(const char *event_id, size_t len);
int state_event_known(const struct user_state *us, uint64_t id_hash);
void state_event_remember(struct user_state *us, uint64_t id_hash);
/* Copies src's remembered event ids into dst. */
void state_event_ids_copy(struct user_state *dst, const struct user_state *src);

/* Encoded size of us. */
size_t state_encoded_size(const struct user_state *us);
/* Encodes into buf; returns bytes written or 0 if size is too small. */
size_t state_encode(const struct user_state *us, uint8_t *buf, size_t size);
/*
 * Decodes into us (sized by state_new for the current model). A blob written
 * under a model with another hidden size keeps its tiers, ring, consumed set,
 * event ids and marker; h and c are zeroed and model_version set to 0, so the
 * caller re-warms them from the ring. A version-1 blob (schemas/state.md) has
 * no event ids, and its consumed set is the ring's items. Returns 0, -1 with
 * a reason in errstr (bad magic, version or checksum, truncated, more tier
 * entries than max_tiers), or STATE_DECODE_NOMEM (the blob is good but its
 * consumed set could not be allocated: retry, do not start afresh); on
 * failure us is untouched.
 */
int state_decode(
    struct user_state *us, const uint8_t *buf, size_t len, char *errstr, size_t errstr_size);

#endif
