/*
 * The daemon's user cache: an open-addressing hash map from user id to the
 * user's state (model/state.h) plus what the consumer loop tracks per user
 * (loaded from Redis yet, dirty since the last flush, events since the last
 * snapshot, the partition its events come from), the dirty list, and the
 * per-partition view a rebalance needs (flush then drop a revoked
 * partition's users).
 */
#ifndef DAEMON_USERS_H
#define DAEMON_USERS_H

#include <stddef.h>
#include <stdint.h>

struct model_hparams;
struct user_state;

/* One cached user. Owned by the cache; valid until it is dropped. */
struct user_entry {
	char *id; /* NUL-terminated copy of the user id */
	size_t id_len;
	struct user_state *us;    /* sized for the cache's current hparams */
	int32_t partition;        /* partition of the user's newest event */
	int loaded;               /* state read from Redis (or known absent) */
	int dirty;                /* applied events not yet flushed */
	uint32_t since_snapshot;  /* events applied since the last snapshot */
	int64_t snapshot_mono_ms; /* monotonic time of the last snapshot (or first event) */
	size_t dirty_pos;         /* index in the dirty list while dirty (users.c) */
	uint64_t touched;         /* caller's clock of the last event (users_evict) */
	/*
	 * Erasure (schemas/redis.md "Erasure"): the gate keeps events of the
	 * erased past out; the pending erase is done in Redis at the next flush.
	 */
	int erased;               /* the gate below is set */
	int32_t erased_partition; /* the tombstone's partition and offset */
	int64_t erased_offset;
	int64_t erased_ts_ms; /* events at or before this event time stay out */
	int erase_pending;    /* tombstone applied, keys not yet deleted in Redis */
	/*
	 * Online metrics (README "Online metrics"): the top-N last acknowledged
	 * written to Redis for the user, as item indices of the serving model,
	 * best first; 4 bytes per item, allocated at the first write.
	 */
	uint32_t *top;  /* [top_cap]; freed with the entry */
	uint32_t n_top; /* 0: no previous list (not measured) */
	uint32_t top_cap;
	int top_row; /* online_table row of the model version that wrote it */
};

struct users;

/*
 * An empty cache whose states are sized for hp (copied). NULL on ENOMEM.
 * Free with users_free (NULL-safe), which frees every entry.
 */
struct users *users_new(const struct model_hparams *hp);
void users_free(struct users *u);

/* The cached entry of id, or NULL. O(1) expected. */
struct user_entry *users_get(struct users *u, const char *id, size_t id_len);

/*
 * The entry of id, created (fresh state, loaded = 0, clean) when absent;
 * *created says which. The entry's partition is set to partition either way.
 * NULL on ENOMEM (the cache is unchanged).
 */
struct user_entry *users_upsert(
    struct users *u, const char *id, size_t id_len, int32_t partition, int *created);

/* Puts e on the dirty list (idempotent). */
void users_mark_dirty(struct users *u, struct user_entry *e);

/*
 * The dirty list: *n entries, in no particular order. Borrowed until
 * the next users_* call that adds, drops or cleans entries.
 */
struct user_entry *const *users_dirty(const struct users *u, size_t *n);
size_t users_dirty_count(const struct users *u);
/* Clears every entry's dirty flag and empties the list (after a flush). */
void users_clean_all(struct users *u);

/*
 * Drops one entry (dirty or not: the caller decides whether its changes may
 * be lost) and frees it. e is invalid afterwards.
 */
void users_drop(struct users *u, struct user_entry *e);
/* Drops every entry whose partition is `partition`; returns how many. */
size_t users_drop_partition(struct users *u, int32_t partition);
/* Drops every entry; returns how many. */
size_t users_drop_all(struct users *u);

/*
 * Bounds the cache: while more than max_users are cached, drops the clean
 * entries least recently touched, approximately: in rounds, each dropping
 * clean entries touched at or before the mean of the clean entries' touched
 * values in table order, stopping at max_users, so an entry older than one
 * dropped may stay. before_drop (may be NULL) sees each entry just before it
 * goes. Dirty entries are never dropped, so the count can stay above
 * max_users. Returns how many were dropped.
 */
size_t users_evict(struct users *u, size_t max_users,
    void (*before_drop)(void *opaque, struct user_entry *e), void *opaque);

/* Number of cached users. */
size_t users_count(const struct users *u);

/*
 * Calls fn for every entry (any order). fn must not add or drop entries.
 */
void users_foreach(struct users *u, void (*fn)(void *opaque, struct user_entry *e), void *opaque);

/*
 * Re-sizes every cached state for new hyper-parameters (after a model swap
 * whose hidden / ring_len / max_tiers differ): a new state keeps the marker,
 * events_applied, model_version, t_ref_ms, tier weights (the strongest
 * long-term ones if fewer fit), the newest ring events that fit, the
 * consumed set and the remembered event ids; h and c start at zero. New entries get hp-sized states.
 * Returns 0, or -1 on ENOMEM (states not yet converted keep the old sizes:
 * the caller should drop all entries then).
 */
int users_set_hparams(struct users *u, const struct model_hparams *hp);

/*
 * Copies src's non-LSTM state into dst, which may be sized differently
 * (the rules of users_set_hparams); dst's h and c are zeroed. Returns 0, or
 * -1 on ENOMEM (dst's consumed set then stays empty).
 */
int users_state_convert(struct user_state *dst, const struct user_state *src);

#endif
