/*
 * Live catalog items (schemas/items.md "Items topic"): a second Kafka
 * consumer, in no group, reads every partition of the compacted topic.items
 * from the beginning; each ItemUpdate is validated against the model file
 * (embedder, dim, tree fingerprint, nodes, a unit-norm finite embedding) and
 * kept in a table by item id, a tombstone withdraws one, a bad record is
 * dead-lettered as bad_item_update:<field>. items_build turns the table into
 * a model (the model file plus the live items it lacks) for the consumer to
 * swap in.
 */
#ifndef DAEMON_ITEMS_H
#define DAEMON_ITEMS_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct dlq;
struct model;

/* Why an update was refused; the dead-letter reason is "bad_item_update:<name>". */
enum items_refusal {
	ITEMS_BAD_DECODE = 0, /* not single-object ItemUpdate (framing, fingerprint, Avro body) */
	ITEMS_BAD_KEY,        /* key missing or not the item_id */
	ITEMS_BAD_ITEM_ID,    /* empty or over 255 bytes */
	ITEMS_BAD_TITLE,      /* over 4096 bytes */
	ITEMS_BAD_EMBEDDER,   /* not the model's embedder */
	ITEMS_BAD_DIM,        /* not the model's dim */
	ITEMS_BAD_EMBEDDING,  /* not dim floats, a float not finite, or norm not within 1e-3 of 1 */
	ITEMS_BAD_TIER1,      /* not a level-1 node */
	ITEMS_BAD_TIER2,      /* not a child of tier1 */
	ITEMS_BAD_TREE,       /* fingerprint of another tier tree */
	ITEMS_N_REFUSALS
};

/* Stable field name of a refusal ("decode", "key", "item_id", "dim", ...). */
const char *items_refusal_name(enum items_refusal r);

struct items_counters {
	uint64_t records;   /* records read (tombstones included) */
	uint64_t added;     /* updates taken into the live table */
	uint64_t withdrawn; /* tombstones that removed a live item */
	uint64_t known;     /* updates and tombstones of model-file items (ignored) */
	uint64_t refused[ITEMS_N_REFUSALS]; /* dead-lettered, by reason */
	uint64_t dlq_failed;                /* dead letters that could not be enqueued */
	uint64_t stale;                     /* live items left out of a build (another tree) */
};

struct items;

/*
 * A reader of cfg->topic_items (must be set) with its own librdkafka
 * consumer (the kafka.* and kafka.consumer.* pass-through, no group joined,
 * nothing committed). base is the model file updates are validated
 * against (borrowed, see items_set_base); dlq (borrowed) takes the refused
 * records. NULL with the reason in errstr.
 */
struct items *items_new(const struct config *cfg, const struct model *base, struct dlq *dlq,
    char *errstr, size_t errstr_size);
/* Closes the consumer and frees the table; NULL-safe. */
void items_free(struct items *it);

/* The model file new updates are validated against from now on (borrowed until replaced). */
void items_set_base(struct items *it, const struct model *base);

/*
 * Reads topic.items up to the high watermark each partition had when this
 * call started, for at most timeout_ms. Returns 0 when caught up (also when
 * the topic does not exist yet), 1 on timeout (the rest arrives through
 * items_poll).
 */
int items_catch_up(struct items *it, int timeout_ms);

/*
 * Without blocking on records: looks the topic's partitions up again every
 * 2 s while it has none, every 30 s once it has (a metadata request of at
 * most 500 ms; 30 s after a failed one), then takes what has arrived (at
 * most 4096 records per call).
 */
void items_poll(struct items *it);

/* Non-zero when the live table changed since the last items_build. */
int items_pending(const struct items *it);

/*
 * The serving model for base: base plus every live item base lacks and
 * whose record fits base (embedder, dim, tree; others are counted stale and
 * logged). *out is a new model (caller frees) or NULL when nothing is added
 * (serve base itself). Returns 0, or -1 with the reason in errstr.
 */
int items_build(struct items *it, const struct model *base, struct model **out, char *errstr,
    size_t errstr_size);
/* The last build is serving: clears the pending flag. */
void items_applied(struct items *it);

/* Live items in the table. */
size_t items_live(const struct items *it);
/* The counters (valid until items_free). */
const struct items_counters *items_counters(const struct items *it);

#define ITEMS_TREE_FP_LEN 64 /* hex digits of a tree fingerprint (SHA-256) */

/*
 * The tree fingerprint of m: lower-case hex SHA-256 (libcrypto) of its TNOD
 * then TCEN section bytes, ITEMS_TREE_FP_LEN digits and a NUL into out.
 * Returns 0, or -1 when libcrypto failed (out is then "", which matches no
 * item's tree).
 */
int items_tree_fingerprint(const struct model *m, char out[ITEMS_TREE_FP_LEN + 1]);

#endif
