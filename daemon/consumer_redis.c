/*
 * The consumer's Redis writes and outages: the flush (pending erasures, then
 * every dirty user in chunks through the write script; refused users leave
 * the cache) and the outage mode (pause every partition on a Redis error or
 * ACL denial, back off, reconnect, re-claim, flush, resume).
 */
#include "consumer_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "notify.h"
#include "sink_redis.h"
#include "state.h"
#include "users.h"
#include "userview.h"

/*
 * Redis refused a command or key to redis.user (NOPERM): not an outage but
 * an ACL to fix, so an error line naming it (once per distinct message per
 * CONSUMER_PROBLEM_LOG_EVERY_MS) and the STATUS. The caller still pauses and
 * retries: granting the permission heals it without a restart.
 */
static void
consumer_redis_denied(struct consumer *c, const char *what, const char *err)
{
	/* The reason is Redis's NOPERM text; which user's write met it first does not count. */
	const char *reason = strstr(err, "NOPERM") != NULL ? strstr(err, "NOPERM") : err;
	char status[CONSUMER_ERR_MAX];
	uint64_t suppressed;

	c->redis_denials++;
	if (!log_throttle_pass(&c->denied_log, reason, strlen(reason), clock_mono_ms(),
		CONSUMER_PROBLEM_LOG_EVERY_MS, &suppressed))
		return;
	log_error("event=redis_permission_denied during=%s user=%s error=\"%s\" "
		  "suppressed=%" PRIu64 " action=pause_and_retry "
		  "hint=\"grant the command or key pattern to this ACL user (docs/SECURITY.md); "
		  "no restart needed\"",
	    what, c->cfg->redis_user != NULL ? c->cfg->redis_user : "default", err, suppressed);
	snprintf(status, sizeof(status), "redis permission denied, partitions paused: %s", err);
	notify_status(c->notify, status);
}

/* Redis failed: pause everything, keep polling, retry with backoff. */
void
consumer_redis_down(struct consumer *c, const char *what, const char *err)
{
	int64_t now = clock_mono_ms();
	int denied = sink_redis_permission_denied(c->sink);

	if (denied)
		consumer_redis_denied(c, what, err);
	if (!c->redis_down) {
		if (!denied) {
			log_warn("event=redis_unavailable during=%s error=\"%s\" action=pause",
			    what, err);
			notify_status(c->notify, "redis unavailable, partitions paused");
		}
		c->redis_down = 1;
		c->down_since_ms = now;
		c->backoff_ms = CONSUMER_BACKOFF_MIN_MS;
	} else {
		c->backoff_ms *= 2;
		if (c->backoff_ms > CONSUMER_BACKOFF_MAX_MS)
			c->backoff_ms = CONSUMER_BACKOFF_MAX_MS;
		log_debug("event=redis_retry_failed during=%s backoff_ms=%" PRId64 " error=\"%s\"",
		    what, c->backoff_ms, err);
	}
	c->next_retry_ms = now + c->backoff_ms;
	consumer_sync_pause(c);
}

/* Appends e to the list (*v)[0..*n) of capacity *cap; -1 when out of memory. */
static int
entry_list_add(struct user_entry ***v, size_t *n, size_t *cap, struct user_entry *e)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct user_entry **nv = realloc(*v, ncap * sizeof(*nv));

		if (nv == NULL)
			return -1;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = e;
	return 0;
}

static int
consumer_add_refused(struct consumer *c, struct user_entry *e)
{
	return entry_list_add(&c->refused, &c->n_refused, &c->cap_refused, e);
}

/*
 * Erases in Redis every dirty user with a pending erasure (before their
 * writes: the write script then sees the erasure marker). A fenced user is
 * added to the refused list and keeps erase_pending (not written). Returns
 * 0, or -1 on a Redis error (errstr; the erasures stay pending).
 */
static int
consumer_flush_erasures(struct consumer *c, struct user_entry *const *dirty, size_t n_dirty,
    int *refuse_oom, char *errstr, size_t errstr_size)
{
	size_t n = 0;

	for (size_t i = 0; i < n_dirty; i++) {
		struct user_entry *e = dirty[i];
		int32_t p = e->erased_partition;

		if (!e->erase_pending)
			continue;
		if (n == c->cap_er) {
			size_t ncap = c->cap_er ? c->cap_er * 2 : 16;
			struct sink_erase *ner = realloc(c->er, ncap * sizeof(*ner));
			struct user_entry **nee;

			if (ner == NULL)
				goto nomem;
			c->er = ner;
			nee = realloc(c->er_entries, ncap * sizeof(*nee));
			if (nee == NULL)
				goto nomem;
			c->er_entries = nee;
			c->cap_er = ncap;
		}
		c->er[n] = (struct sink_erase){ e->id, e->id_len, p, e->erased_offset,
			e->erased_ts_ms, consumer_epoch(c, p), 0 };
		c->er_entries[n++] = e;
	}
	if (n == 0)
		return 0;
	if (sink_redis_erase(c->sink, c->er, n, errstr, errstr_size) != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		static const char *const results[] = { "erased", "kept_newer_state", "fenced" };
		struct user_entry *e = c->er_entries[i];

		log_info("event=user_erased user=%s partition=%" PRId32 " offset=%" PRId64
			 " ts_ms=%" PRId64 " result=%s",
		    e->id, e->erased_partition, e->erased_offset, e->erased_ts_ms,
		    results[c->er[i].result]);
		/* Fenced: the new owner erases; ours stays pending, is not written and is dropped. */
		if (c->er[i].result == 2) {
			*refuse_oom |= consumer_add_refused(c, e);
			if (consumer_owns(c, e->erased_partition))
				c->parts[e->erased_partition].fence_pending = 1;
		} else
			e->erase_pending = 0;
	}
	return 0;
nomem:
	snprintf(errstr, errstr_size, "out of memory");
	return -1;
}

/* sink_prepare_fn: vectors and top-N of users[first..first + n), slots first.. of c->uv. */
static void
consumer_fill_users(void *opaque, struct sink_user *users, size_t first, size_t n)
{
	struct consumer *c = opaque;

	userview_fill_slots(c->uv, users, first, n);
}

/*
 * Writes every dirty user (vector + top-N computed once, userview_fill_batch) in
 * chunks of flush.max_users, after the pending erasures. Returns 0 when
 * every chunk was acknowledged (dirty flags cleared, refused users dropped
 * from the cache), -1 on a Redis error (errstr; every user stays dirty).
 */
int
consumer_flush(struct consumer *c, char *errstr, size_t errstr_size)
{
	size_t n_dirty, stale = 0, fenced = 0, erased = 0, written = 0, next = 0;
	struct user_entry *const *dirty = users_dirty(c->users, &n_dirty);
	int refuse_oom = 0, unwritten_oom = 0;

	c->n_unwritten = 0;
	for (size_t p = 0; p < c->n_parts; p++)
		c->parts[p].unwritten = 0;
	if (n_dirty == 0)
		return 0;
	c->n_refused = 0;
	if (consumer_flush_erasures(c, dirty, n_dirty, &refuse_oom, errstr, errstr_size) != 0) {
		c->n.flush_failures++;
		return -1;
	}
	while (next < n_dirty) {
		size_t k = 0;

		/* A user erased with nothing applied after it has no keys to write. */
		for (; next < n_dirty && k < c->cap_flush; next++) {
			struct user_entry *e = dirty[next];
			int32_t p = e->us->last_partition;

			if (e->erase_pending ||
			    (e->erased && e->us->last_partition == e->erased_partition &&
				e->us->last_offset == e->erased_offset))
				continue;
			if (!consumer_serves(c, p)) {
				/* Never written unfenced: dropped, its partition reads it again. */
				if (consumer_owns(c, p))
					c->parts[p].reseek = 1;
				refuse_oom |= consumer_add_refused(c, e);
				continue;
			}
			c->su[k].user_id = e->id;
			c->su[k].user_id_len = e->id_len;
			c->su[k].us = e->us;
			c->su[k].epoch = c->parts[p].epoch;
			c->fe[k++] = e;
		}
		/* Vectors and top-N: filled 64 users at a time while Redis runs the previous ones. */
		if (k > 0 &&
		    sink_redis_flush(c->sink, c->m, c->su, k, consumer_fill_users, c, errstr,
			errstr_size) != 0) {
			c->n.flush_failures++;
			return -1;
		}
		for (size_t i = 0; i < k; i++) {
			switch (c->su[i].result) {
			case SINK_WRITTEN:
				written++;
				consumer_online_keep(c, c->fe[i], &c->su[i]);
				break;
			case SINK_REFUSED_STALE:
				stale++;
				refuse_oom |= consumer_add_refused(c, c->fe[i]);
				break;
			case SINK_REFUSED_FENCED:
				fenced++;
				refuse_oom |= consumer_add_refused(c, c->fe[i]);
				if (consumer_owns(c, c->su[i].us->last_partition))
					c->parts[c->su[i].us->last_partition].fence_pending = 1;
				break;
			case SINK_REFUSED_ERASED:
				erased++;
				refuse_oom |= consumer_add_refused(c, c->fe[i]);
				break;
			case SINK_UNAVAILABLE: /* its master lost: written again next time */
				unwritten_oom |= entry_list_add(
				    &c->unwritten, &c->n_unwritten, &c->cap_unwritten, c->fe[i]);
				if (consumer_owns(c, c->su[i].us->last_partition))
					c->parts[c->su[i].us->last_partition].unwritten = 1;
				break;
			}
		}
	}
	if (unwritten_oom) {
		snprintf(errstr, errstr_size, "out of memory listing the users to write again");
		c->n.flush_failures++;
		return -1; /* every user stays dirty */
	}
	users_clean_all(c->users);
	for (size_t i = 0; i < c->n_unwritten; i++)
		users_mark_dirty(c->users, c->unwritten[i]);
	if (c->n_unwritten > 0)
		consumer_slots_lost(c, "flush");
	/*
	 * A refused user's newer state is in Redis (another owner wrote it, or
	 * the user was erased): forget ours; the next event loads theirs.
	 */
	for (size_t i = 0; i < c->n_refused; i++)
		users_drop(c->users, c->refused[i]);
	if (refuse_oom) {
		/* Could not list them all: drop every cached state, Redis has the truth. */
		users_drop_all(c->users);
		log_warn("event=cache_dropped reason=out_of_memory");
	}
	if (stale + fenced + erased > 0)
		log_warn("event=flush_refused stale=%zu fenced=%zu erased=%zu "
			 "action=dropped_cached_states",
		    stale, fenced, erased);
	/* A fenced write: the partition is someone else's now, none of it is committed. */
	for (size_t p = 0; p < c->n_parts; p++)
		if (c->parts[p].fence_pending) {
			c->parts[p].fence_pending = 0;
			consumer_fence(c, (int32_t)p, "flush", 0);
		}
	c->n.refused_stale += stale;
	c->n.refused_fenced += fenced;
	c->n.refused_erased += erased;
	c->n.flushes++;
	c->n.users_flushed += written;
	return 0;
}

/*
 * The Redis we reach now may be a promoted replica that lost writes it had
 * acknowledged: every served partition re-claims its own epoch (never a new
 * one: Kafka may have given it away meanwhile), runs the failover check and
 * reads again from its committed offset, its cached users reloaded; the
 * per-user markers skip what Redis kept. Returns 0 or -1 (errstr).
 */
static int
consumer_reclaim_served(struct consumer *c, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < c->n_parts; i++)
		if (consumer_serves(c, (int32_t)i)) {
			c->parts[i].claimed = 0;
			c->parts[i].reseek = 1;
		}
	return consumer_claim_pending(c, 0, errstr, errstr_size);
}

void
consumer_slots_lost(struct consumer *c, const char *during)
{
	if (!c->slots_lost) {
		log_warn("event=redis_slots_unavailable during=%s error=\"%s\" "
			 "action=write_the_other_slots_keep_their_users_dirty_commit_nothing_until_"
			 "all_are_written",
		    during, sink_redis_unavailable_error(c->sink));
		notify_status(c->notify, "a Redis master is unreachable: its users wait");
	}
	c->slots_lost = 1;
}

void
consumer_slots_back(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];

	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].unwritten)
			return; /* not yet */
	if (!sink_redis_cluster_whole(c->sink))
		return; /* a master still lost: its marker cannot be read yet */
	c->slots_lost = 0;
	log_info("event=redis_slots_recovered action=reclaim_check_markers_read_from_commit");
	notify_status(c->notify, "consuming");
	if (consumer_reclaim_served(c, err, sizeof(err)) != 0)
		consumer_redis_down(c, "claim", err);
}

/* Retries Redis after the backoff: reconnect, claim, flush, resume, commit. */
void
consumer_redis_retry(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];

	if (sink_redis_reconnect(c->sink, err, sizeof(err)) != 0) {
		consumer_redis_down(c, "reconnect", err);
		return;
	}
	if (consumer_reclaim_served(c, err, sizeof(err)) != 0) {
		consumer_redis_down(c, "claim", err);
		return;
	}
	if (consumer_flush(c, err, sizeof(err)) != 0) {
		consumer_redis_down(c, "flush", err);
		return;
	}
	if (c->tier_names_pending &&
	    sink_redis_write_tier_names(c->sink, c->m, err, sizeof(err)) == 0)
		c->tier_names_pending = 0;
	log_info("event=redis_recovered down_ms=%" PRId64 " action=resume",
	    clock_mono_ms() - c->down_since_ms);
	c->redis_down = 0;
	consumer_sync_pause(c);
	c->next_renew_ms = clock_mono_ms() + c->cfg->redis_lease_ms / 3;
	notify_status(c->notify, "consuming");
	consumer_commit(c, -1, 0);
}
