/*
 * Partition ownership (schemas/redis.md): claims and lease renewals with
 * their epochs, fencing when a newer owner's epoch refuses us, the ownership
 * check of fenced partitions, the failover check of the flushed-through
 * markers, and the in-flight records that name a poison message.
 */
#include "consumer_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "sink_redis.h"
#include "users.h"

#define CONSUMER_COMMITTED_TIMEOUT_MS 10000 /* committed-offset fetch for the failover check */

/*
  * Poison messages (schemas/redis.md "Poison messages"): for each partition
 * of l (committed offsets filled in) claimed on Kafka's word, the range its
 * last owner had in flight when it died. A range: the partition is read one message per batch
 * up to its end, each recorded alone, so a message that kills the daemon is
 * named. A single offset that has now been in flight at poll.max_crashes
 * deaths: it is dead-lettered as `crashed` when read, never applied.
 * Returns 0, or -1 on a Redis error (errstr).
 */
static int
consumer_inflight_check(
    struct consumer *c, const rd_kafka_topic_partition_list_t *l, char *errstr, size_t errstr_size)
{
	struct sink_inflight *in;
	size_t n = 0;
	int ret = -1;

	if (l->cnt == 0)
		return 0;
	in = calloc((size_t)l->cnt, sizeof(*in));
	if (in == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	for (int i = 0; i < l->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &l->elems[i];

		/* A re-claim (Redis back) is not a death: our own batch may be in flight. */
		if (!consumer_owns(c, tp->partition) || !c->parts[tp->partition].fresh_claim)
			continue;
		in[n++] = (struct sink_inflight){ .partition = tp->partition,
			.check = 1,
			.committed = tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0
			    ? tp->offset
			    : -1 };
	}
	if (sink_redis_inflight(c->sink, in, n, errstr, errstr_size) != 0)
		goto done;
	for (size_t i = 0; i < n; i++) {
		struct part *pt =
		    consumer_owns(c, in[i].partition) ? &c->parts[in[i].partition] : NULL;

		if (pt == NULL || in[i].from < 0)
			continue;
		if (in[i].from == in[i].to && in[i].crashes >= c->cfg->poll_max_crashes) {
			pt->poison = in[i].from;
			pt->poison_crashes = in[i].crashes;
			log_error("event=poison_message topic=%s partition=%" PRId32
				  " offset=%" PRId64 " crashes=%" PRId64
				  " action=dead_letter_as_crashed",
			    c->cfg->topic_events, in[i].partition, in[i].from, in[i].crashes);
		} else {
			pt->careful_to = in[i].to;
			log_warn("event=died_in_flight topic=%s partition=%" PRId32 " from=%" PRId64
				 " to=%" PRId64 " crashes=%" PRId64 " action=one_message_per_batch",
			    c->cfg->topic_events, in[i].partition, in[i].from, in[i].to,
			    in[i].crashes);
		}
	}
	ret = 0;
done:
	free(in);
	return ret;
}

/*
 * Records the range of each served partition the polled batch is about to
 * apply (consumer_inflight_check reads it after a death). Returns 0, or -1
 * on a Redis error (errstr).
 */
int
consumer_inflight_record(struct consumer *c, char *errstr, size_t errstr_size)
{
	size_t n = 0;

	if (c->cap_inflight < c->n_parts) {
		struct sink_inflight *ni = realloc(c->inflight, c->n_parts * sizeof(*ni));
		if (ni == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
		c->inflight = ni;
		c->cap_inflight = c->n_parts;
	}
	for (size_t i = 0; i < c->n_slots; i++) {
		const rd_kafka_message_t *rkm = c->slots[i].rkm;
		size_t k;

		if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR || !consumer_serves(c, rkm->partition))
			continue;
		for (k = 0; k < n && c->inflight[k].partition != rkm->partition; k++)
			;
		if (k == n) {
			c->inflight[n++] = (struct sink_inflight){
				.partition = rkm->partition, .from = rkm->offset, .to = rkm->offset
			};
			c->parts[rkm->partition].inflight_open = 2; /* this batch */
		} else if (rkm->offset > c->inflight[k].to)
			c->inflight[k].to = rkm->offset;
		else if (rkm->offset < c->inflight[k].from)
			c->inflight[k].from = rkm->offset;
	}
	/* The earlier batches of the other partitions finished: say so. */
	for (size_t i = 0; i < c->n_parts; i++) {
		if (c->parts[i].inflight_open == 1)
			c->inflight[n++] =
			    (struct sink_inflight){ .partition = (int32_t)i, .done = 1 };
		c->parts[i].inflight_open = c->parts[i].inflight_open == 2;
	}
	return sink_redis_inflight(c->sink, c->inflight, n, errstr, errstr_size);
}

/*
 * The failover check of newly claimed partitions (DESIGN.md "Delivery
 * guarantees", schemas/redis.md "Flushed-through markers"): for each
 * partition of l, the group's committed offset against the flushed-through
 * marker in Redis. A marker behind the commit means Redis lost writes whose
 * offsets were committed (a failover to a replica that had not received
 * them, a restore from an older snapshot): the partition's offset in l is set
 * to the marker, so the lost events are re-applied from Kafka (the per-user
 * markers skip what survived). No marker at all in a Redis where this is the
 * partition's first claim (no epoch stored before) while the group has
 * committed offsets: Redis lost everything, re-apply from the beginning. A
 * partition whose events were skipped or dropped since the last commit
 * (reseek: fenced, waiting for a lease, or a Redis reconnect that may have
 * lost acknowledged writes) starts at the committed offset. Every other
 * offset in l is set to RD_KAFKA_OFFSET_INVALID (keep the position).
 * Returns the number of rolled-back partitions, or -1 on a Redis error
 * (errstr).
 */
static int
consumer_failover_check(
    struct consumer *c, rd_kafka_topic_partition_list_t *l, char *errstr, size_t errstr_size)
{
	rd_kafka_resp_err_t kerr;
	int rolled = 0;

	for (int i = 0; i < l->cnt; i++)
		l->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
	if (l->cnt == 0)
		return 0;
	kerr = rd_kafka_committed(c->rk, l, CONSUMER_COMMITTED_TIMEOUT_MS);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		/* Without the committed offsets nothing can be compared; consuming goes on. */
		log_warn("event=failover_check_skipped reason=\"committed offsets: %s\"",
		    rd_kafka_err2str(kerr));
		for (int i = 0; i < l->cnt; i++)
			l->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
		return 0;
	}
	if (consumer_inflight_check(c, l, errstr, errstr_size) < 0)
		return -1;
	for (int i = 0; i < l->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &l->elems[i];
		int64_t committed = tp->err == RD_KAFKA_RESP_ERR_NO_ERROR ? tp->offset : -1;
		int64_t flushed;
		int first = consumer_owns(c, tp->partition) && c->parts[tp->partition].first;
		int reseek = consumer_owns(c, tp->partition) && c->parts[tp->partition].reseek;

		/* Skipped or dropped events: from the commit again (nothing committed: the start). */
		tp->offset = !reseek ? RD_KAFKA_OFFSET_INVALID
		    : committed >= 0 ? committed
				     : RD_KAFKA_OFFSET_BEGINNING;
		if (committed < 0)
			continue; /* nothing committed: auto.offset.reset decides */
		if (sink_redis_get_flushed(c->sink, tp->partition, &flushed, errstr, errstr_size) !=
		    0)
			return -1;
		if (flushed >= committed || (flushed < 0 && !first))
			continue; /* in step; or a marker never written (older interestd) */
		tp->offset = flushed >= 0 ? flushed : RD_KAFKA_OFFSET_BEGINNING;
		c->n.rollbacks++;
		c->n.rollback_offsets += (uint64_t)(committed - (flushed >= 0 ? flushed : 0));
		rolled++;
		if (flushed >= 0)
			log_warn("event=redis_rollback_detected topic=%s partition=%" PRId32
				 " committed=%" PRId64 " flushed=%" PRId64 " offsets=%" PRId64
				 " action=reapply_from_offset",
			    c->cfg->topic_events, tp->partition, committed, flushed,
			    committed - flushed);
		else
			log_warn("event=redis_rollback_detected topic=%s partition=%" PRId32
				 " committed=%" PRId64 " flushed=none first_claim=1 "
				 "action=reapply_from_beginning",
			    c->cfg->topic_events, tp->partition, committed);
	}
	return rolled;
}

/*
 * Stops serving partition p: a newer owner's epoch refused our write, our
 * flushed-through marker or our lease renewal. Its cached users are dropped
 * (Redis has the newer owner's states), nothing of it is committed, its
 * events are not applied; it is paused until Kafka confirms the ownership
 * again (a new assignment, or consumer_confirm_fenced), and then read again
 * from the committed offset.
 */
void
consumer_fence(struct consumer *c, int32_t p, const char *during, uint64_t newer)
{
	struct part *pt;
	size_t dropped;
	char newer_s[24] = "unknown"; /* a refused write does not say which epoch won */

	if (!consumer_owns(c, p) || c->parts[p].fenced)
		return;
	pt = &c->parts[p];
	pt->fenced = 1;
	pt->claimed = 0;
	pt->fresh = 0;
	pt->reseek = 1;
	pt->next_offset = -1;
	dropped = users_drop_partition(c->users, p);
	c->n.partitions_fenced++;
	if (newer > 0)
		snprintf(newer_s, sizeof(newer_s), "%" PRIu64, newer);
	log_error("event=partition_fenced topic=%s partition=%" PRId32 " epoch=%" PRIu64
		  " newer_epoch=%s during=%s users_dropped=%zu "
		  "action=stop_until_kafka_confirms_ownership",
	    c->cfg->topic_events, p, pt->epoch, newer_s, during, dropped);
	c->next_confirm_ms = clock_mono_ms();
	consumer_sync_pause(c);
}

/*
 * Claims every assigned partition not claimed yet (fresh ones may take a new
 * epoch; after a Redis reconnect the others re-claim their own) and, with
 * renew, renews the leases of the served ones, in one pipeline. Busy ones
 * (another instance's lease is live) stay unclaimed and paused until a later
 * call; a fenced answer fences. The newly claimed go into owned, run through
 * the failover check (offsets set where they must start again) and are marked
 * claimed. Returns 0, or -1 on a Redis error (errstr).
 */
int
consumer_claim(struct consumer *c, rd_kafka_topic_partition_list_t *owned, int renew, char *errstr,
    size_t errstr_size)
{
	size_t n = 0;
	int ret = -1;

	if (c->cap_claims < c->n_parts) {
		struct sink_claim *nc = realloc(c->claims, c->n_parts * sizeof(*nc));
		if (nc == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
		c->claims = nc;
		c->cap_claims = c->n_parts;
	}
	for (size_t i = 0; i < c->n_parts; i++) {
		struct part *pt = &c->parts[i];

		if (!pt->assigned || (pt->claimed && !renew) || (pt->fenced && !pt->fresh))
			continue;
		c->claims[n++] = (struct sink_claim){
			.partition = (int32_t)i, .fresh = pt->fresh, .epoch = pt->epoch
		};
	}
	if (n == 0)
		return 0;
	if (sink_redis_claim(c->sink, c->claims, n, errstr, errstr_size) != 0)
		return -1;
	for (size_t k = 0; k < n; k++) {
		const struct sink_claim *cl = &c->claims[k];
		struct part *pt = &c->parts[cl->partition];

		if (pt->claimed) { /* a renewal */
			if (cl->result == SINK_CLAIM_UNAVAILABLE)
				continue; /* the lease runs on; renewed at the next turn */
			if (cl->result != SINK_CLAIM_OWNED || cl->epoch != pt->epoch)
				consumer_fence(c, cl->partition, "lease_renewal", cl->stored);
			continue;
		}
		switch (cl->result) {
		case SINK_CLAIM_OWNED:
			log_info("event=partition_claimed topic=%s partition=%" PRId32
				 " epoch=%" PRIu64 " previous_epoch=%" PRIu64 " %s",
			    c->cfg->topic_events, cl->partition, cl->epoch, cl->stored,
			    cl->fresh ? "new_epoch=1" : "kept_epoch=1");
			pt->epoch = cl->epoch;
			pt->first = cl->stored == 0;
			pt->fresh_claim = cl->fresh;
			pt->fresh = 0;
			pt->waiting = 0;
			rd_kafka_topic_partition_list_add(
			    owned, c->cfg->topic_events, cl->partition);
			break;
		case SINK_CLAIM_BUSY:
			if (!pt->waiting)
				log_warn("event=partition_claim_waiting topic=%s partition=%" PRId32
					 " reason=\"another instance's lease is live\" "
					 "action=pause_and_retry lease_ms=%d",
				    c->cfg->topic_events, cl->partition, c->cfg->redis_lease_ms);
			pt->waiting = 1;
			break;
		case SINK_CLAIM_FENCED:
			consumer_fence(c, cl->partition, "reclaim", cl->stored);
			break;
		case SINK_CLAIM_UNAVAILABLE:
			if (!pt->waiting)
				log_warn("event=partition_claim_waiting topic=%s partition=%" PRId32
					 " reason=\"the Redis master of its keys is unreachable\" "
					 "action=pause_and_retry",
				    c->cfg->topic_events, cl->partition);
			pt->waiting = 1;
			break;
		}
	}
	if (consumer_failover_check(c, owned, errstr, errstr_size) < 0)
		goto done;
	for (int i = 0; i < owned->cnt; i++) {
		struct part *pt = &c->parts[owned->elems[i].partition];

		pt->claimed = 1;
		pt->fenced = 0;
		pt->reseek = 0;
		pt->last_read_ms = clock_mono_ms();
	}
	ret = 0;
done:
	consumer_sync_pause(c);
	return ret;
}

/*
 * consumer_claim outside a rebalance (Redis back, a lease free again, a
 * renewal): partitions that must start again elsewhere are sought there and
 * their cached users dropped.
 */
int
consumer_claim_pending(struct consumer *c, int renew, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
	int ret = -1;

	if (consumer_claim(c, l, renew, errstr, errstr_size) != 0)
		goto done;
	for (int i = 0; i < l->cnt; i++) {
		rd_kafka_topic_partition_t *tp = &l->elems[i];
		rd_kafka_topic_partition_list_t *one;
		rd_kafka_error_t *error;

		if (tp->offset == RD_KAFKA_OFFSET_INVALID)
			continue;
		one = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(one, tp->topic, tp->partition)->offset =
		    tp->offset;
		error = rd_kafka_seek_partitions(c->rk, one, CONSUMER_SEEK_TIMEOUT_MS);
		if (error != NULL) {
			log_error("event=failover_seek_failed partition=%" PRId32 " error=\"%s\"",
			    tp->partition, rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
		}
		rd_kafka_topic_partition_list_destroy(one);
		c->parts[tp->partition].next_offset = -1;
		users_drop_partition(c->users, tp->partition);
	}
	ret = 0;
done:
	rd_kafka_topic_partition_list_destroy(l);
	return ret;
}

/*
 * Asks Kafka whether the fenced partitions are still ours: the group's
 * committed offset of each is committed again, unchanged. The coordinator
 * accepts a commit only from a member of the current generation, and in
 * it a partition has one owner, so success means the assignment we hold is
 * current: the partition is claimed again with a new epoch (once no other
 * lease is live) and read from that offset. A refused commit means a
 * rebalance is coming, which assigns or revokes it. A partition without a
 * committed offset waits for that rebalance.
 */
void
consumer_confirm_fenced(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
	rd_kafka_topic_partition_list_t *ok = rd_kafka_topic_partition_list_new(4);
	rd_kafka_resp_err_t kerr;

	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].assigned && c->parts[i].fenced && !c->parts[i].fresh)
			rd_kafka_topic_partition_list_add(l, c->cfg->topic_events, (int32_t)i);
	if (l->cnt == 0)
		goto done;
	kerr = rd_kafka_committed(c->rk, l, CONSUMER_COMMITTED_TIMEOUT_MS);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("event=ownership_check_failed reason=\"committed offsets: %s\"",
		    rd_kafka_err2str(kerr));
		goto done;
	}
	for (int i = 0; i < l->cnt; i++)
		if (l->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && l->elems[i].offset >= 0)
			rd_kafka_topic_partition_list_add(
			    ok, l->elems[i].topic, l->elems[i].partition)
			    ->offset = l->elems[i].offset;
	if (ok->cnt == 0)
		goto done;
	kerr = rd_kafka_commit(c->rk, ok, 0);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("event=ownership_not_confirmed error=\"%s\" action=wait_for_rebalance",
		    rd_kafka_err2str(kerr));
		goto done;
	}
	for (int i = 0; i < ok->cnt; i++) {
		int32_t p = ok->elems[i].partition;

		if (ok->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR || !consumer_owns(c, p))
			continue;
		c->parts[p].fresh = 1;
		log_info("event=ownership_confirmed topic=%s partition=%" PRId32
			 " committed=%" PRId64 " action=claim_and_read_from_commit",
		    c->cfg->topic_events, p, ok->elems[i].offset);
	}
	if (consumer_claim_pending(c, 0, err, sizeof(err)) != 0)
		consumer_redis_down(c, "claim", err);
done:
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_topic_partition_list_destroy(ok);
}

/* Renews the leases of the served partitions and claims the waiting ones. */
void
consumer_renew(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];

	if (consumer_claim_pending(c, 1, err, sizeof(err)) != 0)
		consumer_redis_down(c, "lease", err);
}
