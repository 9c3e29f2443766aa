/*
 * The user cache: linear-probing open addressing over entry pointers (power
 * of two capacity, at most 70% full, backward-shift deletion so no
 * tombstones), and a swap-remove dirty list. Entries are allocated when a
 * user is first seen after an assignment, never per event.
 */
#include "users.h"

#include <stdlib.h>
#include <string.h>

#include "modelfile.h"
#include "state.h"

#define USERS_MIN_CAP  1024 /* initial slots */
#define USERS_LOAD_NUM 7    /* grow when count > cap * 7 / 10 */
#define USERS_LOAD_DEN 10

struct users {
	struct user_entry **slots; /* [cap], NULL = empty */
	size_t cap;                /* power of two */
	size_t count;
	struct user_entry **dirty; /* [dirty_cap] */
	size_t n_dirty, dirty_cap;
	struct model_hparams hp;
};

static uint64_t
users_hash(const char *id, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)id[i];
		h *= 1099511628211ULL;
	}
	/* Mix the high bits down: the table uses the low ones. */
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h;
}

struct users *
users_new(const struct model_hparams *hp)
{
	struct users *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NULL;
	u->cap = USERS_MIN_CAP;
	u->slots = calloc(u->cap, sizeof(*u->slots));
	u->dirty_cap = 256;
	u->dirty = malloc(u->dirty_cap * sizeof(*u->dirty));
	if (u->slots == NULL || u->dirty == NULL) {
		users_free(u);
		return NULL;
	}
	u->hp = *hp;
	return u;
}

static void
users_entry_free(struct user_entry *e)
{
	if (e == NULL)
		return;
	state_free(e->us);
	free(e->top);
	free(e->id);
	free(e);
}

void
users_free(struct users *u)
{
	if (u == NULL)
		return;
	if (u->slots != NULL)
		for (size_t i = 0; i < u->cap; i++)
			users_entry_free(u->slots[i]);
	free(u->slots);
	free(u->dirty);
	free(u);
}

/* Slot holding id, or the empty slot where it would go. */
static size_t
users_find_slot(const struct users *u, const char *id, size_t id_len, uint64_t h)
{
	size_t mask = u->cap - 1, i = (size_t)h & mask;

	for (;;) {
		const struct user_entry *e = u->slots[i];

		if (e == NULL || (e->id_len == id_len && memcmp(e->id, id, id_len) == 0))
			return i;
		i = (i + 1) & mask;
	}
}

struct user_entry *
users_get(struct users *u, const char *id, size_t id_len)
{
	return u->slots[users_find_slot(u, id, id_len, users_hash(id, id_len))];
}

static int
users_grow(struct users *u)
{
	size_t ncap = u->cap * 2;
	struct user_entry **ns = calloc(ncap, sizeof(*ns));
	struct user_entry **old = u->slots;
	size_t ocap = u->cap;

	if (ns == NULL)
		return -1;
	u->slots = ns;
	u->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		struct user_entry *e = old[i];

		if (e != NULL)
			u->slots[users_find_slot(
			    u, e->id, e->id_len, users_hash(e->id, e->id_len))] = e;
	}
	free(old);
	return 0;
}

struct user_entry *
users_upsert(struct users *u, const char *id, size_t id_len, int32_t partition, int *created)
{
	uint64_t h = users_hash(id, id_len);
	size_t slot = users_find_slot(u, id, id_len, h);
	struct user_entry *e = u->slots[slot];

	*created = 0;
	if (e != NULL) {
		e->partition = partition;
		return e;
	}
	if ((u->count + 1) * USERS_LOAD_DEN > u->cap * USERS_LOAD_NUM) {
		if (users_grow(u) != 0)
			return NULL;
		slot = users_find_slot(u, id, id_len, h);
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->id = malloc(id_len + 1);
	e->us = state_new(&u->hp);
	if (e->id == NULL || e->us == NULL) {
		users_entry_free(e);
		return NULL;
	}
	memcpy(e->id, id, id_len);
	e->id[id_len] = '\0';
	e->id_len = id_len;
	e->partition = partition;
	u->slots[slot] = e;
	u->count++;
	*created = 1;
	return e;
}

void
users_mark_dirty(struct users *u, struct user_entry *e)
{
	if (e->dirty)
		return;
	if (u->n_dirty == u->dirty_cap) {
		/* The list can only hold cached entries, so it never outgrows the table. */
		size_t ncap = u->dirty_cap * 2;
		struct user_entry **nd = realloc(u->dirty, ncap * sizeof(*nd));

		if (nd == NULL) {
			/* Keep the entry findable: users_dirty() must list it. Grow by one. */
			nd = realloc(u->dirty, (u->dirty_cap + 1) * sizeof(*nd));
			if (nd == NULL)
				abort(); /* cannot lose a dirty user silently */
			ncap = u->dirty_cap + 1;
		}
		u->dirty = nd;
		u->dirty_cap = ncap;
	}
	e->dirty = 1;
	e->dirty_pos = u->n_dirty;
	u->dirty[u->n_dirty++] = e;
}

struct user_entry *const *
users_dirty(const struct users *u, size_t *n)
{
	*n = u->n_dirty;
	return u->dirty;
}

size_t
users_dirty_count(const struct users *u)
{
	return u->n_dirty;
}

void
users_clean_all(struct users *u)
{
	for (size_t i = 0; i < u->n_dirty; i++)
		u->dirty[i]->dirty = 0;
	u->n_dirty = 0;
}

static void
users_unlist_dirty(struct users *u, struct user_entry *e)
{
	size_t pos = e->dirty_pos;

	if (!e->dirty)
		return;
	u->n_dirty--;
	if (pos != u->n_dirty) {
		u->dirty[pos] = u->dirty[u->n_dirty];
		u->dirty[pos]->dirty_pos = pos;
	}
	e->dirty = 0;
}

/* Empties slot i and shifts the rest of its probe run back (no tombstones). */
static void
users_remove_slot(struct users *u, size_t i)
{
	size_t mask = u->cap - 1, j = i;

	u->slots[i] = NULL;
	for (;;) {
		struct user_entry *e;
		size_t home;

		j = (j + 1) & mask;
		e = u->slots[j];
		if (e == NULL)
			break;
		home = (size_t)users_hash(e->id, e->id_len) & mask;
		/* Move e into the hole if its home is not cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
			u->slots[i] = e;
			u->slots[j] = NULL;
			i = j;
		}
	}
	u->count--;
}

void
users_drop(struct users *u, struct user_entry *e)
{
	size_t slot = users_find_slot(u, e->id, e->id_len, users_hash(e->id, e->id_len));

	if (u->slots[slot] != e)
		return;
	users_unlist_dirty(u, e);
	users_remove_slot(u, slot);
	users_entry_free(e);
}

size_t
users_drop_partition(struct users *u, int32_t partition)
{
	size_t n = 0;

	/*
	 * Backward shifting can move a not-yet-visited entry into slot i, or
	 * wrap an entry from the start of the table to before i; re-examine the
	 * same slot after a removal and rescan once at the end for wrapped ones.
	 */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < u->cap; i++) {
			struct user_entry *e;

			while ((e = u->slots[i]) != NULL && e->partition == partition) {
				users_unlist_dirty(u, e);
				users_remove_slot(u, i);
				users_entry_free(e);
				n++;
			}
		}
	}
	return n;
}

size_t
users_drop_all(struct users *u)
{
	size_t n = u->count;

	for (size_t i = 0; i < u->cap; i++) {
		users_entry_free(u->slots[i]);
		u->slots[i] = NULL;
	}
	u->count = 0;
	u->n_dirty = 0;
	return n;
}

size_t
users_evict(struct users *u, size_t max_users,
    void (*before_drop)(void *opaque, struct user_entry *e), void *opaque)
{
	size_t dropped = 0;

	while (u->count > max_users) {
		long double sum = 0;
		size_t n_clean = 0, round = 0;
		uint64_t mean;

		for (size_t i = 0; i < u->cap; i++)
			if (u->slots[i] != NULL && !u->slots[i]->dirty) {
				sum += (long double)u->slots[i]->touched;
				n_clean++;
			}
		if (n_clean == 0)
			break;
		mean = (uint64_t)(sum / (long double)n_clean);
		/* As in users_drop_partition: re-check a slot after a removal, two passes. */
		for (int pass = 0; pass < 2 && u->count > max_users; pass++) {
			for (size_t i = 0; i < u->cap && u->count > max_users; i++) {
				struct user_entry *e;

				while ((e = u->slots[i]) != NULL && !e->dirty &&
				    e->touched <= mean && u->count > max_users) {
					if (before_drop != NULL)
						before_drop(opaque, e);
					users_remove_slot(u, i);
					users_entry_free(e);
					round++;
				}
			}
		}
		dropped += round;
		if (round == 0)
			break;
	}
	return dropped;
}

size_t
users_count(const struct users *u)
{
	return u->count;
}

void
users_foreach(struct users *u, void (*fn)(void *opaque, struct user_entry *e), void *opaque)
{
	for (size_t i = 0; i < u->cap; i++)
		if (u->slots[i] != NULL)
			fn(opaque, u->slots[i]);
}

/* Orders tier weights strongest long-term first (qsort). */
static int
users_cmp_tier(const void *a, const void *b)
{
	const struct tier_weight *x = a, *y = b;

	return (x->w_long < y->w_long) - (x->w_long > y->w_long);
}

int
users_state_convert(struct user_state *dst, const struct user_state *src)
{
	uint16_t n_tiers = src->n_tiers, first;

	state_reset(dst);
	dst->t_ref_ms = src->t_ref_ms;
	dst->last_offset = src->last_offset;
	dst->last_partition = src->last_partition;
	dst->events_applied = src->events_applied;
	dst->model_version = src->model_version;
	memcpy(dst->tiers, src->tiers,
	    (n_tiers < dst->max_tiers ? n_tiers : dst->max_tiers) * sizeof(*dst->tiers));
	if (n_tiers > dst->max_tiers) {
		/* Keep the strongest: sort a copy in place of dst's table is too small; sort src order. */
		struct tier_weight *tmp = malloc(n_tiers * sizeof(*tmp));

		if (tmp != NULL) {
			memcpy(tmp, src->tiers, n_tiers * sizeof(*tmp));
			qsort(tmp, n_tiers, sizeof(*tmp), users_cmp_tier);
			memcpy(dst->tiers, tmp, dst->max_tiers * sizeof(*tmp));
			free(tmp);
		}
		n_tiers = dst->max_tiers;
	}
	dst->n_tiers = n_tiers;
	first = src->ring_count > dst->ring_len ? (uint16_t)(src->ring_count - dst->ring_len) : 0;
	for (uint16_t i = first; i < src->ring_count; i++) {
		const struct ring_event *re = state_ring_get(src, i);

		state_ring_push(dst, re->item_hash, re->ts_ms, re->type);
	}
	state_event_ids_copy(dst, src);
	return state_seen_copy(dst, src);
}

int
users_set_hparams(struct users *u, const struct model_hparams *hp)
{
	int same = hp->hidden == u->hp.hidden && hp->ring_len == u->hp.ring_len &&
	    hp->max_tiers == u->hp.max_tiers;

	u->hp = *hp;
	if (same)
		return 0;
	for (size_t i = 0; i < u->cap; i++) {
		struct user_entry *e = u->slots[i];
		struct user_state *ns;

		if (e == NULL)
			continue;
		ns = state_new(hp);
		if (ns == NULL || users_state_convert(ns, e->us) != 0) {
			state_free(ns);
			return -1;
		}
		state_free(e->us);
		e->us = ns;
	}
	return 0;
}
