/*
 * Offsets and assignment: commits (only behind flushed writes, delivered
 * dead letters and raised flushed-through markers), the dead-letter outage,
 * the rebalance callback (eager and cooperative: claim on assign, flush and
 * commit before a revoke), and the pause state of the assigned partitions.
 */
#include "consumer_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"
#include "dlq.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "sink_redis.h"
#include "users.h"

#define CONSUMER_DLQ_WAIT_MS 5000 /* before a commit: wait for dead letters this long */
#define CONSUMER_LIST_MAX    512  /* partition list in a log line */

/* ---- pause state -------------------------------------------------------- */

/* The partition record, growing the table; NULL on ENOMEM or a bad number. */
static struct part *
consumer_part(struct consumer *c, int32_t p)
{
	if (p < 0)
		return NULL;
	if ((size_t)p >= c->n_parts) {
		size_t n = (size_t)p + 1;
		struct part *np = realloc(c->parts, n * sizeof(*np));

		if (np == NULL)
			return NULL;
		for (size_t i = c->n_parts; i < n; i++)
			np[i] = PART_NEW(0);
		c->parts = np;
		c->n_parts = n;
	}
	return &c->parts[p];
}

/*
 * Sets every assigned partition's pause state from the daemon's own state,
 * never from what librdkafka remembers (a pause can outlive an assignment):
 * paused while Redis is down, while the partition is unclaimed (another
 * owner's lease is live) or fenced; resumed otherwise. A new assignment is
 * stated either way; after that only changes are sent: librdkafka 2.0's
 * resume of a partition that is not paused restarts its fetch from a stale
 * position (the same messages delivered twice; fixed in later releases).
 * Called after every change of those states and after every assignment.
 */
void
consumer_sync_pause(struct consumer *c)
{
	rd_kafka_topic_partition_list_t *pause = rd_kafka_topic_partition_list_new(4);
	rd_kafka_topic_partition_list_t *resume = rd_kafka_topic_partition_list_new(4);
	rd_kafka_resp_err_t err;

	for (size_t i = 0; i < c->n_parts; i++) {
		struct part *pt = &c->parts[i];
		int want = c->redis_down || c->dlq_down || !consumer_serves(c, (int32_t)i);

		if (!pt->assigned || (want == pt->paused && !pt->pause_unknown))
			continue;
		rd_kafka_topic_partition_list_add(
		    want ? pause : resume, c->cfg->topic_events, (int32_t)i);
		pt->paused = want;
		pt->pause_unknown = 0;
	}
	if (pause->cnt > 0 &&
	    (err = rd_kafka_pause_partitions(c->rk, pause)) != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("event=pause_failed error=\"%s\"", rd_kafka_err2str(err));
	if (resume->cnt > 0 &&
	    (err = rd_kafka_resume_partitions(c->rk, resume)) != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("event=resume_failed error=\"%s\"", rd_kafka_err2str(err));
	c->paused = c->redis_down;
	rd_kafka_topic_partition_list_destroy(pause);
	rd_kafka_topic_partition_list_destroy(resume);
}

/*
 * A served partition that has lag (the broker's high watermark, asked now,
 * above our position) but from which nothing was read for poll.stall_ms is
 * stalled: an error line, the counter, and the repair the daemon can make
 * itself (resume it, seek it to its position). Checked every third of
 * poll.stall_ms, only for partitions idle that long.
 */
void
consumer_check_stalls(struct consumer *c)
{
	int64_t now = clock_mono_ms();

	for (size_t i = 0; i < c->n_parts; i++) {
		struct part *pt = &c->parts[i];
		int64_t lo = -1, hi = -1, pos;
		rd_kafka_resp_err_t kerr;

		if (!consumer_serves(c, (int32_t)i) || c->redis_down ||
		    now - pt->last_read_ms < c->cfg->poll_stall_ms)
			continue;
		kerr = rd_kafka_query_watermark_offsets(
		    c->rk, c->cfg->topic_events, (int32_t)i, &lo, &hi, 2000);
		pos = pt->next_offset >= 0 ? pt->next_offset : pt->committed;
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR || pos < 0 || hi <= pos) {
			pt->stalled = 0;
			pt->last_read_ms =
			    now; /* idle and caught up (or unknown): look again later */
			continue;
		}
		if (!pt->stalled)
			c->n.partitions_stalled++;
		pt->stalled = 1;
		log_error("event=partition_stalled topic=%s partition=%zu lag=%" PRId64
			  " idle_ms=%" PRId64 " position=%" PRId64 " action=resume_and_seek",
		    c->cfg->topic_events, i, hi - pos, now - pt->last_read_ms, pos);
		{
			rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
			rd_kafka_error_t *error;

			rd_kafka_topic_partition_list_add(one, c->cfg->topic_events, (int32_t)i)
			    ->offset = pos;
			rd_kafka_resume_partitions(c->rk, one);
			pt->paused = 0;
			error = rd_kafka_seek_partitions(c->rk, one, CONSUMER_SEEK_TIMEOUT_MS);
			if (error != NULL) {
				log_warn("event=stall_seek_failed partition=%zu error=\"%s\"", i,
				    rd_kafka_error_string(error));
				rd_kafka_error_destroy(error);
			}
			rd_kafka_topic_partition_list_destroy(one);
		}
		pt->last_read_ms = now;
	}
}

/* ---- dead letters before a commit --------------------------------------- */

/*
 * A dead letter could not be delivered (or enqueued): like a Redis outage,
 * every partition pauses and nothing is committed; after a backoff
 * (consumer_dlq_retry) every served partition is read again from its
 * committed offset, so the letter is sent again, with the events after it.
 */
void
consumer_dlq_down(struct consumer *c, const char *why)
{
	int64_t now = clock_mono_ms();

	if (!c->dlq_down) {
		log_error("event=dead_letters_undeliverable topic=%s reason=\"%s\" failed=%" PRIu64
			  " action=pause_and_retry",
		    c->cfg->topic_dlq, why, dlq_failed(c->dlq));
		notify_status(c->notify, "dead-letter topic unavailable, partitions paused");
		c->dlq_down = 1;
		c->dlq_backoff_ms = CONSUMER_BACKOFF_MIN_MS * 10;
	} else if ((c->dlq_backoff_ms *= 2) > CONSUMER_BACKOFF_MAX_MS * 2) {
		c->dlq_backoff_ms = CONSUMER_BACKOFF_MAX_MS * 2;
	}
	c->dlq_retry_ms = now + c->dlq_backoff_ms;
	consumer_sync_pause(c);
}

/* Serves producer reports until no dead letter is in flight or timeout_ms passed. */
static int
consumer_wait_dead_letters(struct consumer *c, int timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;

	rd_kafka_poll(c->rkp, 0);
	while (dlq_in_flight(c->dlq) > 0 && clock_mono_ms() < deadline)
		rd_kafka_poll(c->rkp, 10);
	if (dlq_failed(c->dlq) > c->dlq_failed_seen) {
		/* Committing past a lost dead letter would lose it: pause, read it again later. */
		c->n.dlq_failures += dlq_failed(c->dlq) - c->dlq_failed_seen;
		c->dlq_failed_seen = dlq_failed(c->dlq);
		consumer_dlq_down(c, "delivery failed");
	}
	return dlq_in_flight(c->dlq) == 0 && !c->dlq_down ? 0 : -1;
}

/*
 * After a dead-letter failure: every served partition reads again from its
 * committed offset (the failed letters and everything after them), its
 * cached users dropped, and resumes.
 */
void
consumer_dlq_retry(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];

	rd_kafka_poll(c->rkp, 0);
	if (dlq_in_flight(c->dlq) > 0) { /* earlier letters still pending: wait for them */
		c->dlq_retry_ms = clock_mono_ms() + c->dlq_backoff_ms;
		return;
	}
	for (size_t i = 0; i < c->n_parts; i++)
		if (consumer_serves(c, (int32_t)i)) {
			c->parts[i].claimed = 0;
			c->parts[i].reseek = 1;
		}
	c->dlq_down = 0;
	if (consumer_claim_pending(c, 0, err, sizeof(err)) != 0) {
		consumer_redis_down(c, "claim", err);
		return;
	}
	log_info("event=dead_letters_retry action=reread_from_commit");
	notify_status(c->notify, "consuming");
}

/* ---- commits ------------------------------------------------------------ */

/* Partition i has processed offsets to commit (all partitions, or only `only` when >= 0). */
static int
consumer_committable(const struct consumer *c, size_t i, int32_t only)
{
	return consumer_serves(c, (int32_t)i) && c->parts[i].next_offset > c->parts[i].committed &&
	    !c->parts[i].unwritten && (only < 0 || (int32_t)i == only);
}

/*
 * Raises the flushed-through marker in Redis of every partition about to be
 * committed (all, or only `only` when >= 0) to its next offset: the caller
 * has flushed, so every event below it is in Redis; with redis.wait_replicas
 * the marker (and so every write before it) reached the replicas. Returns
 * 0, or -1 after entering the Redis outage mode.
 */
static int
consumer_mark_flushed(struct consumer *c, int32_t only)
{
	char err[CONSUMER_ERR_MAX];
	size_t n = 0;

	if (c->cap_mark < c->n_parts) {
		int32_t *np = realloc(c->mark_parts, c->n_parts * sizeof(*np));
		int64_t *no = np != NULL ? realloc(c->mark_offs, c->n_parts * sizeof(*no)) : NULL;
		uint64_t *ne =
		    no != NULL ? realloc(c->mark_epochs, c->n_parts * sizeof(*ne)) : NULL;
		int *nf = ne != NULL ? realloc(c->mark_fenced, c->n_parts * sizeof(*nf)) : NULL;

		if (np != NULL)
			c->mark_parts = np;
		if (no != NULL)
			c->mark_offs = no;
		if (ne != NULL)
			c->mark_epochs = ne;
		if (nf == NULL) {
			consumer_redis_down(c, "mark_flushed", "out of memory");
			return -1;
		}
		c->mark_fenced = nf;
		c->cap_mark = c->n_parts;
	}
	for (size_t i = 0; i < c->n_parts; i++)
		if (consumer_committable(c, i, only)) {
			c->mark_parts[n] = (int32_t)i;
			c->mark_epochs[n] = c->parts[i].epoch;
			c->mark_offs[n++] = c->parts[i].next_offset;
		}
	if (sink_redis_mark_flushed(c->sink, c->mark_parts, c->mark_offs, c->mark_epochs,
		c->mark_fenced, n, err, sizeof(err)) != 0) {
		c->n.flush_failures++;
		consumer_redis_down(c, "mark_flushed", err);
		return -1;
	}
	for (size_t k = 0; k < n; k++)
		if (c->mark_fenced[k] > 0) {
			consumer_fence(c, c->mark_parts[k], "mark_flushed", 0);
		} else if (c->mark_fenced[k] < 0) { /* a master lost: not committed now */
			c->parts[c->mark_parts[k]].unwritten = 1;
			consumer_slots_lost(c, "mark_flushed");
		}
	return 0;
}

/*
 * Records committed offsets (the owned partitions whose commit succeeded;
 * offsets only move forward). Returns how many partitions moved.
 */
static int
consumer_take_committed(struct consumer *c, const rd_kafka_topic_partition_list_t *l)
{
	int moved = 0;

	for (int i = 0; i < l->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &l->elems[i];

		if (tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && consumer_owns(c, tp->partition) &&
		    tp->offset > c->parts[tp->partition].committed) {
			c->parts[tp->partition].committed = tp->offset;
			moved++;
		}
	}
	return moved;
}

/* Result of an asynchronous commit, served from c->commit_q by the loop. */
static void
consumer_commit_cb(
    rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	struct consumer *c = opaque;

	(void)rk;
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		err = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (offsets != NULL)
			consumer_take_committed(c, offsets);
		c->n.commits++;
		metrics_histogram_observe(&c->commit_s, clock_mono_s() - c->commit_issued_s);
	} else {
		c->n.commit_failures++;
		/* Offsets stay uncommitted; the next flush commits them (or a new owner re-applies). */
		log_warn("event=commit_failed async=1 error=\"%s\" action=retry_next_flush",
		    rd_kafka_err2str(err));
	}
}

/*
 * Commits the next offset of every processed partition (all of them, or
 * only partition `only` when >= 0). The caller has flushed; dead letters of
 * the range are waited for here, and the flushed-through markers written.
 * async != 0 (the periodic flush) sends the commit and returns: the result
 * comes back through consumer_commit_cb, so the loop goes on reading while
 * the group coordinator writes it; rebalances, reloads and shutdown commit
 * synchronously. Returns 0 or -1.
 */
int
consumer_commit(struct consumer *c, int32_t only, int async)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	double t0;
	int n = 0;

	if (c->fatal)
		return -1;
	for (size_t i = 0; i < c->n_parts; i++)
		n += consumer_committable(c, i, only);
	if (n == 0)
		return 0;
	if (consumer_wait_dead_letters(c, CONSUMER_DLQ_WAIT_MS) != 0) {
		log_warn("event=commit_deferred reason=dead_letters_in_flight in_flight=%" PRIu64,
		    dlq_in_flight(c->dlq));
		return -1;
	}
	if (consumer_mark_flushed(c, only) != 0)
		return -1;
	/* Partitions fenced at their marker drop out here: none of their offsets move. */
	l = rd_kafka_topic_partition_list_new(n);
	for (size_t i = 0; i < c->n_parts; i++)
		if (consumer_committable(c, i, only))
			rd_kafka_topic_partition_list_add(l, c->cfg->topic_events, (int32_t)i)
			    ->offset = c->parts[i].next_offset;
	if (l->cnt == 0) {
		rd_kafka_topic_partition_list_destroy(l);
		return 0;
	}
	t0 = clock_mono_s();
	if (async) {
		c->commit_issued_s = t0;
		err = rd_kafka_commit_queue(c->rk, l, c->commit_q, consumer_commit_cb, c);
		rd_kafka_topic_partition_list_destroy(l);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return 0;
		c->n.commit_failures++;
		log_warn("event=commit_failed async=1 error=\"%s\" action=retry_next_flush",
		    rd_kafka_err2str(err));
		return -1;
	}
	err = rd_kafka_commit(c->rk, l, 0);
	t0 = clock_mono_s() - t0;
	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		err = RD_KAFKA_RESP_ERR_NO_ERROR; /* nothing new to commit */
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		consumer_take_committed(c, l);
		c->n.commits++;
		metrics_histogram_observe(&c->commit_s, t0);
	} else {
		c->n.commit_failures++;
		/* Offsets stay uncommitted; the next flush commits them (or a new owner re-applies). */
		log_warn("event=commit_failed error=\"%s\" action=retry_next_flush",
		    rd_kafka_err2str(err));
	}
	rd_kafka_topic_partition_list_destroy(l);
	return err == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

/* An evicted user's pending snapshot events go out first (they are in its ring). */
static void
consumer_evict_one(void *opaque, struct user_entry *e)
{
	consumer_snapshot(opaque, e);
}

/* Flush then commit; on a Redis error enters the outage mode. Then bounds the cache. */
int
consumer_flush_commit(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];
	size_t n, max_users = (size_t)c->cfg->cache_max_users;
	int ret;

	if (c->redis_down)
		return -1;
	if (consumer_flush(c, err, sizeof(err)) != 0) {
		consumer_redis_down(c, "flush", err);
		return -1;
	}
	if (users_count(c->users) > max_users) {
		n = users_evict(c->users, max_users * 9 / 10, consumer_evict_one, c);
		log_info("event=cache_evicted users=%zu cached=%zu", n, users_count(c->users));
	}
	ret = consumer_commit(c, -1, 1);
	if (sink_redis_masters_lost(c->sink) != c->masters_lost_seen) {
		c->masters_lost_seen = sink_redis_masters_lost(c->sink);
		consumer_slots_lost(c, "redis");
	}
	if (c->slots_lost && !c->redis_down)
		consumer_slots_back(c);
	return ret;
}

/* ---- rebalance ---------------------------------------------------------- */

static void
consumer_format_parts(const rd_kafka_topic_partition_list_t *l, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < l->cnt && o + 12 < size; i++)
		o += (size_t)snprintf(
		    buf + o, size - o, "%s%" PRId32, i ? "," : "", l->elems[i].partition);
}

static void
consumer_assign(struct consumer *c, rd_kafka_topic_partition_list_t *l, int cooperative)
{
	char err[CONSUMER_ERR_MAX], names[CONSUMER_LIST_MAX];
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t kerr = RD_KAFKA_RESP_ERR_NO_ERROR;
	int claim_failed = 0;

	rd_kafka_topic_partition_list_t *chk = rd_kafka_topic_partition_list_new(l->cnt + 1);

	for (int i = 0; i < l->cnt; i++) {
		struct part *pt;

		if (strcmp(l->elems[i].topic, c->cfg->topic_events) != 0)
			continue;
		pt = consumer_part(c, l->elems[i].partition);
		if (pt == NULL)
			continue;
		if (!pt->assigned)
			c->n_assigned++;
		/* Kafka's word: a claim may take a new epoch (unless a live lease is another's). */
		*pt = PART_NEW(1);
		pt->fresh = 1;
	}
	/*
	 * Before fetching starts: where Redis lost committed writes, the
	 * assignment itself starts at the flushed-through marker. A Redis error
	 * or another owner's live lease leaves partitions unclaimed (and paused);
	 * consumer_claim_pending claims them later.
	 */
	if (!c->redis_down && consumer_claim(c, chk, 0, err, sizeof(err)) != 0)
		claim_failed = 1;
	if (!claim_failed) {
		for (int i = 0; i < chk->cnt; i++) {
			c->parts[chk->elems[i].partition].claimed = 1;
			if (chk->elems[i].offset == RD_KAFKA_OFFSET_INVALID)
				continue;
			for (int j = 0; j < l->cnt; j++)
				if (l->elems[j].partition == chk->elems[i].partition &&
				    strcmp(l->elems[j].topic, c->cfg->topic_events) == 0)
					l->elems[j].offset = chk->elems[i].offset;
		}
	}
	rd_kafka_topic_partition_list_destroy(chk);
	if (cooperative)
		error = rd_kafka_incremental_assign(c->rk, l);
	else
		kerr = rd_kafka_assign(c->rk, l);
	consumer_format_parts(l, names, sizeof(names));
	if (error != NULL || kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("event=assign_failed partitions=%s error=\"%s\"", names,
		    error ? rd_kafka_error_string(error) : rd_kafka_err2str(kerr));
		if (error != NULL)
			rd_kafka_error_destroy(error);
		return;
	}
	log_info("event=assigned topic=%s partitions=%s protocol=%s owned=%zu",
	    c->cfg->topic_events, names, cooperative ? "cooperative" : "eager", c->n_assigned);
	c->assigned_once = 1;
	if (claim_failed)
		consumer_redis_down(c, "claim", err);
	/* Every assigned partition, new or kept, paused or resumed as the daemon can serve it. */
	consumer_sync_pause(c);
}

static void
consumer_revoke(struct consumer *c, rd_kafka_topic_partition_list_t *l, int cooperative, int lost)
{
	char err[CONSUMER_ERR_MAX], names[CONSUMER_LIST_MAX];
	size_t dropped = 0;
	int flushed = 0, n_release = 0;
	rd_kafka_error_t *error = NULL;
	int32_t *release = malloc((c->n_parts + 1) * sizeof(*release));

	consumer_format_parts(l, names, sizeof(names));
	if (!lost) {
		/* Finish what was polled, write it, commit it, then let go. */
		consumer_process_batch(c);
		if (!c->redis_down && consumer_flush(c, err, sizeof(err)) == 0) {
			flushed = 1;
			consumer_commit(c, -1, 0);
		} else if (!c->redis_down) {
			consumer_redis_down(c, "revoke", err);
		}
	}
	for (int i = 0; i < l->cnt; i++) {
		int32_t p = l->elems[i].partition;

		if (strcmp(l->elems[i].topic, c->cfg->topic_events) != 0 || !consumer_owns(c, p))
			continue;
		if (release != NULL && c->parts[p].claimed && (size_t)n_release < c->n_parts)
			release[n_release++] = p;
		c->parts[p] = PART_NEW(0);
		c->n_assigned--;
		if (flushed)
			consumer_snapshot_pending(c, p);
		dropped += users_drop_partition(c->users, p);
	}
	/* The next owner need not wait for our leases to run out (only ours are deleted). */
	if (n_release > 0 && !c->redis_down &&
	    sink_redis_release(c->sink, release, (size_t)n_release, err, sizeof(err)) != 0)
		log_warn(
		    "event=lease_release_failed error=\"%s\" action=next_owner_waits_for_expiry",
		    err);
	free(release);
	if (cooperative)
		error = rd_kafka_incremental_unassign(c->rk, l);
	else
		rd_kafka_assign(c->rk, NULL);
	if (error != NULL) {
		log_warn("event=unassign_failed error=\"%s\"", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	}
	log_info("event=%s topic=%s partitions=%s flushed=%d users_dropped=%zu owned=%zu",
	    lost ? "partitions_lost" : "revoked", c->cfg->topic_events, names, flushed, dropped,
	    c->n_assigned);
}

void
consumer_rebalance_cb(
    rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *l, void *opaque)
{
	struct consumer *c = opaque;
	int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

	switch (err) {
	case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
		consumer_assign(c, l, cooperative);
		break;
	case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
		consumer_revoke(c, l, cooperative, rd_kafka_assignment_lost(rk));
		break;
	default:
		log_error("event=rebalance_error error=\"%s\"", rd_kafka_err2str(err));
		rd_kafka_assign(rk, NULL);
		break;
	}
}
