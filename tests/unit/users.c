/*
 * daemon/users.c: insert/lookup across growth, the dirty list, per-partition
 * drops (every survivor still found after backward-shift deletion), single
 * drops, and re-sizing states for new hyper-parameters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "modelfile.h"
#include "state.h"
#include "users.h"

#define N_USERS 5000
#define N_PARTS 7

static int
all_findable(struct users *u, int n, int dropped_part)
{
	char id[32];

	for (int i = 0; i < n; i++) {
		int len = snprintf(id, sizeof(id), "user-%d", i);
		struct user_entry *e = users_get(u, id, (size_t)len);
		int want = dropped_part < 0 || i % N_PARTS != dropped_part;

		if ((e != NULL) != want)
			return 0;
		if (e != NULL && (strcmp(e->id, id) != 0 || e->partition != i % N_PARTS))
			return 0;
	}
	return 1;
}

static void
count_evicted(void *opaque, struct user_entry *e)
{
	size_t *n = opaque;

	*n += e->dirty == 0;
}

/* Every entry still in the table is found by its own id. */
static int
all_ok_after_evict(struct users *u)
{
	char id[32];
	int ok = 1;

	for (int i = 0; i < 1000; i++) {
		int len = snprintf(id, sizeof(id), "ev-%d", i);
		struct user_entry *e = users_get(u, id, (size_t)len);

		if (e != NULL && strcmp(e->id, id) != 0)
			ok = 0;
	}
	return ok;
}

int
main(void)
{
	struct model_hparams hp;
	struct users *u;
	struct user_entry *e, *e2;
	struct user_entry *const *dl;
	size_t n;
	char id[32];
	int fails = 0, created, ok;

	fixture_hparams(&hp, 8);
	u = users_new(&hp);
	CHECK(u != NULL, "users_new");
	if (u == NULL)
		return 1;

	ok = 1;
	for (int i = 0; i < N_USERS; i++) {
		int len = snprintf(id, sizeof(id), "user-%d", i);

		e = users_upsert(u, id, (size_t)len, i % N_PARTS, &created);
		ok &= e != NULL && created && e->us != NULL && e->us->hidden == 8 && !e->loaded;
	}
	CHECK(ok, "%d users inserted with fresh states (table grew)", N_USERS);
	CHECK(users_count(u) == N_USERS, "count %zu", users_count(u));
	CHECK(all_findable(u, N_USERS, -1), "every user found by id with its partition");
	e = users_upsert(u, "user-3", 6, 3, &created);
	CHECK(e != NULL && !created, "upsert of a known id returns it, not created");
	CHECK(users_get(u, "user-", 5) == NULL && users_get(u, "user-50000", 10) == NULL,
	    "unknown ids (prefix, longer) not found");

	/* Dirty list */
	for (int i = 0; i < 100; i++) {
		int len = snprintf(id, sizeof(id), "user-%d", i);

		e = users_get(u, id, (size_t)len);
		users_mark_dirty(u, e);
		users_mark_dirty(u, e);
	}
	CHECK(users_dirty_count(u) == 100, "100 dirty, marking twice is idempotent (%zu)",
	    users_dirty_count(u));
	dl = users_dirty(u, &n);
	ok = n == 100;
	for (size_t i = 0; i < n && ok; i++)
		ok = dl[i]->dirty && dl[i]->dirty_pos == i;
	CHECK(ok, "dirty list entries flagged, positions consistent");

	/* Drop one dirty entry: list shrinks, the rest still listed. */
	e = users_get(u, "user-10", 7);
	users_drop(u, e);
	CHECK(users_get(u, "user-10", 7) == NULL && users_dirty_count(u) == 99 &&
		users_count(u) == N_USERS - 1,
	    "drop of a dirty user unlists and removes it");
	dl = users_dirty(u, &n);
	ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= dl[i]->dirty_pos == i && strcmp(dl[i]->id, "user-10") != 0;
	CHECK(ok, "dirty list consistent after the drop");
	/* Put user-10 back so the partition checks below see all users. */
	e = users_upsert(u, "user-10", 7, 10 % N_PARTS, &created);
	CHECK(e != NULL && created, "re-insert after drop creates a fresh entry");

	users_clean_all(u);
	CHECK(users_dirty_count(u) == 0, "clean_all empties the list");
	e = users_get(u, "user-0", 6);
	CHECK(e != NULL && !e->dirty, "clean_all clears flags");

	/* Per-partition drop, with some dirty users in it. */
	for (int i = 0; i < 50; i++) {
		int len = snprintf(id, sizeof(id), "user-%d", i);

		users_mark_dirty(u, users_get(u, id, (size_t)len));
	}
	n = users_drop_partition(u, 3);
	CHECK(n == (N_USERS + N_PARTS - 1 - 3) / N_PARTS, "drop_partition(3) dropped %zu", n);
	CHECK(all_findable(u, N_USERS, 3), "partition 3 gone, every other user still found");
	dl = users_dirty(u, &n);
	ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= dl[i]->partition != 3 && dl[i]->dirty_pos == i;
	CHECK(ok && n == 50 - 7, "dirty list lost exactly partition 3's users (%zu left)", n);
	CHECK(users_drop_partition(u, 3) == 0, "second drop of partition 3 finds none");

	/* Re-sizing states keeps marker, counts, ring, tiers, consumed items, event ids. */
	e = users_get(u, "user-1", 6);
	e->us->last_partition = 1;
	e->us->last_offset = 42;
	e->us->events_applied = 9;
	e->us->t_ref_ms = 123456;
	e->us->model_version = 5;
	for (int i = 0; i < 8; i++)
		state_ring_push(e->us, 1000u + (uint64_t)i, 10 * i, (uint8_t)(i % MODEL_N_TYPES));
	e->us->n_tiers = 3;
	for (uint16_t i = 0; i < 3; i++)
		e->us->tiers[i] = (struct tier_weight){ i, 1.0f + i, 10.0f - (float)i };
	e->us->h[0] = 1.0f;
	for (uint64_t i = 0; i < 100; i++)
		state_seen_add(e->us, 5000 + i);
	state_event_remember(e->us, 77);
	state_event_remember(e->us, 78);
	hp.hidden = 16;
	hp.ring_len = 4;
	hp.max_tiers = 2;
	CHECK(users_set_hparams(u, &hp) == 0, "set_hparams to new sizes");
	e2 = users_get(u, "user-1", 6);
	CHECK(e2 == e && e2->us->hidden == 16 && e2->us->ring_len == 4 && e2->us->max_tiers == 2,
	    "state re-sized in place (hidden %u ring %u tiers %u)", e2->us->hidden,
	    e2->us->ring_len, e2->us->max_tiers);
	CHECK(e2->us->last_partition == 1 && e2->us->last_offset == 42 &&
		e2->us->events_applied == 9 && e2->us->t_ref_ms == 123456 &&
		e2->us->model_version == 5,
	    "marker, events_applied, t_ref, model_version kept");
	CHECK(e2->us->ring_count == 4 && state_ring_get(e2->us, 0)->item_hash == 1004 &&
		state_ring_get(e2->us, 3)->item_hash == 1007,
	    "newest 4 ring events kept, in order");
	CHECK(e2->us->n_tiers == 2 && e2->us->tiers[0].node == 0 && e2->us->tiers[1].node == 1,
	    "strongest long-term tiers kept");
	CHECK(e2->us->h[0] == 0.0f, "h restarts at zero");
	CHECK(e2->us->n_seen == 100 && state_seen_has(e2->us, 5000) &&
		state_seen_has(e2->us, 5099) && !state_seen_has(e2->us, 5100) &&
		e2->us->n_event_ids == 2 && state_event_known(e2->us, 77) &&
		state_event_known(e2->us, 78),
	    "consumed items (%u) and event ids (%u) kept", e2->us->n_seen, e2->us->n_event_ids);
	e = users_upsert(u, "new-user", 8, 0, &created);
	CHECK(e != NULL && created && e->us->hidden == 16, "new users get the new sizes");

	/* Eviction: the least recently touched clean users go first, dirty ones never. */
	users_drop_all(u);
	for (int i = 0; i < 1000; i++) {
		int len = snprintf(id, sizeof(id), "ev-%d", i);

		e = users_upsert(u, id, (size_t)len, 0, &created);
		e->touched = (uint64_t)i;
		if (i < 10)
			users_mark_dirty(u, e); /* the oldest ten are dirty */
	}
	{
		size_t evicted = 0, gone_old = 0, kept_dirty = 0;

		n = users_evict(u, 300, count_evicted, &evicted);
		for (int i = 0; i < 1000; i++) {
			int len = snprintf(id, sizeof(id), "ev-%d", i);

			e = users_get(u, id, (size_t)len);
			if (i < 10)
				kept_dirty += e != NULL;
			else if (i < 690)
				gone_old += e == NULL;
		}
		CHECK(n == 700 && evicted == 700 && users_count(u) == 300,
		    "evict to 300: dropped %zu (callback saw %zu), %zu left", n, evicted,
		    users_count(u));
		CHECK(kept_dirty == 10, "dirty users never evicted (%zu of 10 kept)", kept_dirty);
		CHECK(gone_old >= 600,
		    "mostly the least recently touched went (%zu of the oldest 680)", gone_old);
		CHECK(all_ok_after_evict(u), "every survivor still found by id");
		users_clean_all(u);
		n = users_evict(u, 0, NULL, NULL);
		CHECK(n == 300 && users_count(u) == 0, "evict to 0 when all clean");
	}

	users_upsert(u, "user-1", 6, 0, &created);
	users_mark_dirty(u, users_get(u, "user-1", 6));
	n = users_drop_all(u);
	CHECK(n > 0 && users_count(u) == 0 && users_dirty_count(u) == 0 &&
		users_get(u, "user-1", 6) == NULL,
	    "drop_all empties everything");
	users_free(u);
	users_free(NULL);
	printf("%s\n", fails ? "FAILED" : "all passed");
	return fails != 0;
}
