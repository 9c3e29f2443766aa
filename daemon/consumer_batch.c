/*
 * One polled batch: classify each message (decode, dead-letter reasons,
 * tombstones, pseudonymised ids), load unseen users' states, then in order
 * dead-letter, skip duplicates and erased users' events, erase, re-warm and
 * apply the rest in updater chunks.
 */
#include "consumer_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"
#include "decode.h"
#include "dlq.h"
#include "hmac.h"
#include "log.h"
#include "metrics.h"
#include "modelfile.h"
#include "sink_redis.h"
#include "state.h"
#include "updater.h"
#include "users.h"

#define CONSUMER_DLQ_BLOCK_MS 5000 /* producer queue full: wait this long per letter */

static void
consumer_load_cb(
    void *opaque, size_t i, const uint8_t *blob, size_t len, const struct sink_erased *erased)
{
	struct consumer *c = opaque;
	struct user_entry *e = c->load_entries[i];
	char err[CONSUMER_ERR_MAX];
	int rc;

	if (erased != NULL) {
		e->erased = 1;
		e->erased_partition = erased->partition;
		e->erased_offset = erased->offset;
		e->erased_ts_ms = erased->ts_ms;
	}
	if (blob == NULL && len > 0) {
		/* Longer than any valid state: not read (bounded reply), start fresh. */
		if (c->n.states_oversized++ == 0)
			log_warn(
			    "event=state_oversized user=%s bytes_at_least=%zu action=fresh_state",
			    e->id, len);
		state_reset(e->us);
	} else if (blob != NULL) {
		rc = state_decode(e->us, blob, len, err, sizeof(err));
		if (rc == STATE_DECODE_NOMEM) {
			e->loaded = 0; /* not replaced by a fresh state: the batch is given back */
			return;
		}
		if (rc == 0) {
			c->n.users_loaded++;
		} else {
			/* Unreadable (older format, other sizes): start fresh, count it. */
			if (c->n.state_decode_errors++ == 0)
				log_warn("event=state_unreadable user=%s error=\"%s\" "
					 "action=fresh_state",
				    e->id, err);
			state_reset(e->us);
		}
	} else {
		state_reset(e->us);
	}
	e->loaded = 1;
	e->since_snapshot = 0;
	e->snapshot_mono_ms = clock_mono_ms();
}

/*
 * Re-warms a user whose h/c came from another model: replays the ring's
 * events (items found by hash) through the current model on a scratch
 * state and takes its h and c. Tier weights, ring and marker stay.
 */
static void
consumer_rewarm(struct consumer *c, struct user_state *us)
{
	size_t n = 0;
	const struct model_hparams *hp = model_hparams(c->m);

	memset(us->h, 0, us->hidden * sizeof(float));
	memset(us->c, 0, us->hidden * sizeof(float));
	if (us->events_applied > 0 && us->ring_count > 0) {
		state_reset(c->scratch);
		for (uint16_t i = 0;
		     i < us->ring_count && n < CONSUMER_REWARM_MAX && n < c->cap_slots; i++) {
			const struct ring_event *re = state_ring_get(us, i);
			int32_t item = model_item_lookup_hash(c->m, re->item_hash);

			if (item < 0)
				continue;
			c->rw_ev[n++] = (struct update_event){ c->scratch, (uint32_t)item, re->type,
				re->ts_ms, -1, -1 };
		}
		if (n > 0 && updater_apply(c->up, c->rw_ev, n) == 0 && us->hidden == hp->hidden) {
			memcpy(us->h, c->scratch->h, us->hidden * sizeof(float));
			memcpy(us->c, c->scratch->c, us->hidden * sizeof(float));
		}
		c->n.rewarmed++;
	}
	us->model_version = c->model_version;
}

/*
 * An erase request for e (the tombstone at partition/offset, Kafka time
 * ts_ms): the cached state starts over with the tombstone as its marker,
 * the gate keeps older events out, pending snapshot events are dropped, a
 * tombstone goes to topic.snapshots (compaction removes the user's
 * snapshots), and the keys are deleted in Redis at the next flush.
 */
static void
consumer_erase(
    struct consumer *c, struct user_entry *e, int32_t partition, int64_t offset, int64_t ts_ms)
{
	rd_kafka_resp_err_t err;

	state_reset(e->us);
	e->us->last_partition = partition;
	e->us->last_offset = offset;
	e->us->model_version = c->model_version;
	e->erased = 1;
	e->erased_partition = partition;
	e->erased_offset = offset;
	e->erased_ts_ms = ts_ms;
	e->erase_pending = 1;
	e->since_snapshot = 0;
	e->n_top = 0; /* its top-N is deleted: nothing to measure against */
	users_mark_dirty(c->users, e);
	c->n.erasures++;
	err = rd_kafka_producev(c->rkp, RD_KAFKA_V_TOPIC(c->cfg->topic_snapshots),
	    RD_KAFKA_V_KEY(e->id, e->id_len), RD_KAFKA_V_VALUE(NULL, 0),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		c->n.snapshot_errors++;
		log_warn("event=snapshot_tombstone_failed user=%s error=\"%s\"", e->id,
		    rd_kafka_err2str(err));
	}
}

/* Applies the pending chunk of good events, then measures them against the previous top-N. */
static void
consumer_apply_chunk(struct consumer *c)
{
	if (c->n_uev == 0)
		return;
	if (updater_apply(c->up, c->uev, c->n_uev) == 0)
		consumer_online_measure(c);
	c->n.applied += c->n_uev;
	c->n_uev = 0;
}

/* Seeks every partition of the batch back to its first message (nothing was applied). */
static void
consumer_rewind(struct consumer *c)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	rd_kafka_error_t *error;

	for (size_t i = 0; i < c->n_slots; i++) {
		const rd_kafka_message_t *rkm = c->slots[i].rkm;

		if (c->slots[i].skip == 1)
			continue; /* not ours; skip == 2 (out of memory) is given back too */
		if (rd_kafka_topic_partition_list_find(l, c->cfg->topic_events, rkm->partition) ==
		    NULL)
			rd_kafka_topic_partition_list_add(l, c->cfg->topic_events, rkm->partition)
			    ->offset = rkm->offset;
	}
	if (l->cnt > 0) {
		error = rd_kafka_seek_partitions(c->rk, l, CONSUMER_SEEK_TIMEOUT_MS);
		if (error != NULL) {
			log_warn("event=rewind_failed error=\"%s\"", rd_kafka_error_string(error));
			rd_kafka_error_destroy(error);
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
	c->n.rewinds++;
}

static void
consumer_destroy_batch(struct consumer *c)
{
	for (size_t i = 0; i < c->n_slots; i++)
		rd_kafka_message_destroy(c->slots[i].rkm);
	c->n_slots = 0;
}

/*
 * The user id as it is used from here on (cache, Redis keys, snapshots,
 * logs): the id itself, or its pseudonym with ids.hmac_key_file (in
 * c->pseudo, valid until the next call). NULL when libcrypto failed.
 */
static const char *
consumer_user_id(struct consumer *c, const char *id, size_t len, size_t *out_len)
{
	if (c->hkey == NULL) {
		*out_len = len;
		return id;
	}
	if (hmac_pseudonym(c->hkey, id, len, c->pseudo) != 0)
		return NULL;
	*out_len = HMAC_PSEUDONYM_LEN;
	return c->pseudo;
}

/* Finds or creates the slot's user, queues it for loading when unseen. */
static void
consumer_queue_user(struct consumer *c, struct slot *s, const void *raw_id, size_t raw_len)
{
	size_t id_len;
	const char *id = consumer_user_id(c, raw_id, raw_len, &id_len);
	int created;

	s->e = id != NULL ? users_upsert(c->users, id, id_len, s->rkm->partition, &created) : NULL;
	if (s->e == NULL) {
		/* Out of memory, or libcrypto failed: give the batch back, lose no event. */
		s->skip = 2;
		return;
	}
	s->e->touched = c->batch_seq;
	if (s->e->loaded == 0) {
		s->e->loaded = 2; /* queued */
		c->load_entries[c->n_load] = s->e;
		c->load_ids[c->n_load] = s->e->id;
		c->load_lens[c->n_load] = s->e->id_len;
		c->n_load++;
	}
}

/*
 * A tombstone: 0 when it is an erase request (s->erase, s->ts_ms = its Kafka
 * timestamp, or the wall clock when it has none), -1 when it goes to the
 * dead-letter topic (no key, or a key longer than a user id may be).
 */
static int
consumer_classify_tombstone(struct slot *s)
{
	const rd_kafka_message_t *rkm = s->rkm;
	rd_kafka_timestamp_type_t tstype;
	int64_t ts;

	if (rkm->key == NULL || rkm->key_len == 0) {
		s->derr = DECODE_MISSING_USER;
		s->reason = DLQ_REASON_MISSING_USER;
		snprintf(s->detail, sizeof(s->detail), "tombstone without a key");
		return -1;
	}
	if (rkm->key_len > DECODE_MAX_STRING_BYTES) {
		s->derr = DECODE_TOO_LARGE;
		s->reason = decode_err_name(DECODE_TOO_LARGE);
		snprintf(s->detail, sizeof(s->detail), "tombstone key of %zu bytes (max %d)",
		    rkm->key_len, DECODE_MAX_STRING_BYTES);
		return -1;
	}
	ts = rd_kafka_message_timestamp(rkm, &tstype);
	s->erase = 1;
	s->ts_ms = ts >= 0 ? ts : clock_wall_ms();
	return 0;
}

#ifdef INTERESTD_TEST_HOOKS
/*
 * Test-only builds (build/tools/interestd-crashhook): INTERESTD_TEST_CRASH_AT =
 * "P:O" aborts the daemon when it reads offset O of partition P, a poison
 * message for the tests.
 */
static void
consumer_test_crash(const rd_kafka_message_t *rkm)
{
	const char *at = getenv("INTERESTD_TEST_CRASH_AT");
	long p, o;

	if (at != NULL && sscanf(at, "%ld:%ld", &p, &o) == 2 && p == rkm->partition &&
	    o == rkm->offset) {
		log_error("event=test_crash partition=%ld offset=%ld", p, o);
		abort();
	}
}
#endif

/* Phase 1: decode and classify one message; queues unseen users for loading. */
static void
consumer_classify(struct consumer *c, struct slot *s, int64_t now_wall)
{
	const rd_kafka_message_t *rkm = s->rkm;
	const struct config *cfg = c->cfg;
	struct event ev;
	int32_t item;

	s->e = NULL;
	s->reason = NULL;
	s->skip = 0;
	s->erase = 0;
	s->detail[0] = '\0';
	if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		s->skip = 1;
		if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			/* Logged at counts 1, 2, 4, 8...: a persistent error must not flood. */
			c->n.consumer_errors++;
			if ((c->n.consumer_errors & (c->n.consumer_errors - 1)) == 0)
				log_warn("event=consumer_error count=%" PRIu64 " error=\"%s\"",
				    c->n.consumer_errors, rd_kafka_message_errstr(rkm));
		}
		return;
	}
	if (!consumer_serves(c, rkm->partition) ||
	    strcmp(rd_kafka_topic_name(rkm->rkt), cfg->topic_events) != 0) {
		/* Fetched before its pause took hold: read again once the partition is served. */
		if (consumer_owns(c, rkm->partition))
			c->parts[rkm->partition].reseek = 1;
		s->skip = 1;
		return;
	}
	c->parts[rkm->partition].last_read_ms = c->batch_mono_ms;
	c->parts[rkm->partition].stalled = 0;
	if (rkm->offset == c->parts[rkm->partition].poison) {
		/* Never decoded or applied: it stopped the daemon poll.max_crashes times. */
		c->n.consumed++;
		s->reason = DLQ_REASON_CRASHED;
		snprintf(s->detail, sizeof(s->detail),
		    "in flight at %" PRId64 " deaths of the daemon; never applied",
		    c->parts[rkm->partition].poison_crashes);
		c->parts[rkm->partition].poison = -1;
		return;
	}
#ifdef INTERESTD_TEST_HOOKS
	consumer_test_crash(rkm);
#endif
	c->n.consumed++;
	if (rkm->payload == NULL) {
		/* A tombstone (null value) keyed by a user id: erase the user. */
		if (consumer_classify_tombstone(s) == 0)
			consumer_queue_user(c, s, rkm->key, rkm->key_len);
		return;
	}
	s->derr = decoder_decode(c->dec, rkm->payload, rkm->len, &ev, s->detail, sizeof(s->detail));
	if (s->derr != DECODE_OK) {
		s->reason = decode_err_name(s->derr);
		return;
	}
	if (ev.user_id_len == 0) {
		s->derr = DECODE_MISSING_USER; /* counted with the decoder's own */
		s->reason = DLQ_REASON_MISSING_USER;
		snprintf(s->detail, sizeof(s->detail), "empty user_id");
		return;
	}
	/*
	 * The key must be the user id, or the event sits on a partition that
	 * does not own its user. Raw bytes are compared: a key is pseudonymised
	 * exactly as a user id is (ids.hmac_key_file), so equal ids mean equal
	 * pseudonyms. The detail names sizes only, never an id.
	 */
	if (cfg->events_key_mismatch == CONFIG_KEY_MISMATCH_DEAD_LETTER &&
	    (rkm->key == NULL || rkm->key_len != ev.user_id_len ||
		memcmp(rkm->key, ev.user_id, ev.user_id_len) != 0)) {
		s->reason = DLQ_REASON_KEY_MISMATCH;
		snprintf(s->detail, sizeof(s->detail),
		    "key (%zu bytes) is not the user_id (%zu bytes)", rkm->key_len, ev.user_id_len);
		return;
	}
	if ((cfg->events_max_age_s > 0 && ev.ts_ms < now_wall - cfg->events_max_age_s * 1000) ||
	    (cfg->events_max_future_s > 0 &&
		ev.ts_ms > now_wall + cfg->events_max_future_s * 1000)) {
		s->reason = DLQ_REASON_BAD_TIMESTAMP;
		snprintf(
		    s->detail, sizeof(s->detail), "ts %" PRId64 " outside the window", ev.ts_ms);
		return;
	}
	item = model_item_lookup(c->m, ev.item_id, ev.item_id_len);
	if (item < 0) {
		s->reason = DLQ_REASON_UNKNOWN_ITEM;
		snprintf(s->detail, sizeof(s->detail), "item %.*s not in the catalog",
		    (int)(ev.item_id_len < 100 ? ev.item_id_len : 100), ev.item_id);
		return;
	}
	s->item = (uint32_t)item;
	s->type = ev.type < MODEL_N_TYPES ? ev.type : MODEL_EV_VIEW;
	s->ts_ms = ev.ts_ms;
	s->event_hash = state_event_id_hash(ev.event_id, ev.event_id_len);
	consumer_queue_user(c, s, ev.user_id, ev.user_id_len);
}

/*
 * Redis Cluster: users whose state could not be read (their master lost; the
 * load left them queued) cannot have their events applied. The partitions of
 * those events step back: none of their messages in this batch is applied,
 * they are unclaimed and paused, and the next claim (every third of the
 * lease) reads them again from the commit; the other partitions go on.
 */
static void
consumer_step_back_unread(struct consumer *c)
{
	int any = 0;

	for (size_t i = 0; i < c->n_slots; i++) {
		const struct slot *s = &c->slots[i];

		if (!s->skip && s->e != NULL && s->e->loaded == 2 &&
		    consumer_owns(c, s->rkm->partition)) {
			c->parts[s->rkm->partition].step_back = 1;
			any = 1;
		}
	}
	if (!any)
		return;
	for (size_t i = 0; i < c->n_load; i++)
		if (c->load_entries[i]->loaded == 2)
			c->load_entries[i]->loaded = 0; /* read again when next met */
	for (size_t i = 0; i < c->n_slots; i++) {
		struct slot *s = &c->slots[i];

		if (s->rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
		    consumer_owns(c, s->rkm->partition) && c->parts[s->rkm->partition].step_back)
			s->skip = 1;
	}
	for (size_t p = 0; p < c->n_parts; p++) {
		struct part *pt = &c->parts[p];

		if (!pt->step_back)
			continue;
		pt->step_back = 0;
		pt->claimed = 0;
		pt->reseek = 1;
		consumer_slots_lost(c, "load");
		log_warn("event=partition_stepped_back topic=%s partition=%zu "
			 "reason=\"a user's state is on an unreachable Redis master\" error=\"%s\" "
			 "action=pause_and_read_again_from_commit",
		    c->cfg->topic_events, p, sink_redis_unavailable_error(c->sink));
	}
	consumer_sync_pause(c);
}

/*
 * Processes the polled batch: classify, load unseen users (on a Redis error
 * rewind the batch and pause), then in order dead-letter, skip duplicates or
 * queue events, applying in chunks (a chunk closes when a user is due for a
 * snapshot, so the ring still holds its events). Destroys the messages.
 */
void
consumer_process_batch(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];
	int64_t now_wall = clock_wall_ms(), now_mono = clock_mono_ms();
	double t0 = clock_mono_s();
	int oom = 0;

	if (c->n_slots == 0 || c->in_batch)
		return;
	c->in_batch = 1;
	c->n_load = 0;
	c->batch_seq++;
	c->batch_mono_ms = now_mono;
	/* Before anything of the batch can kill us: its ranges, for the next owner to see. */
	if (!c->redis_down && consumer_inflight_record(c, err, sizeof(err)) != 0) {
		consumer_redis_down(c, "inflight", err);
		consumer_rewind(c);
		consumer_destroy_batch(c);
		c->in_batch = 0;
		return;
	}
	for (size_t i = 0; i < c->n_slots; i++) {
		consumer_classify(c, &c->slots[i], now_wall);
		oom |= c->slots[i].skip == 2;
	}
	if (c->n_load > 0 && !oom) {
		if (c->redis_down) {
			snprintf(err, sizeof(err), "redis marked unavailable");
			oom = 1;
		} else if (sink_redis_load_users(c->sink, c->load_ids, c->load_lens, c->n_load,
			       consumer_load_cb, c, err, sizeof(err)) != 0) {
			consumer_redis_down(c, "load", err);
			oom = 1;
		}
		for (size_t i = 0; i < c->n_load && !oom; i++)
			oom = c->load_entries[i]->loaded == 0; /* out of memory for its state */
		if (!oom)
			consumer_step_back_unread(c);
	}
	if (oom) {
		/* Nothing has had an effect yet: give the whole batch back. */
		for (size_t i = 0; i < c->n_load; i++)
			if (c->load_entries[i]->loaded == 2)
				c->load_entries[i]->loaded = 0;
		if (!c->redis_down) {
			log_error("event=batch_rewound reason=out_of_memory");
			consumer_redis_down(c, "memory", "out of memory");
		}
		consumer_rewind(c);
		consumer_destroy_batch(c);
		c->in_batch = 0;
		return;
	}
	for (size_t i = 0; i < c->n_slots; i++) {
		struct slot *s = &c->slots[i];
		const rd_kafka_message_t *rkm = s->rkm;
		struct user_entry *e = s->e;
		rd_kafka_resp_err_t kerr;

		if (s->skip)
			continue;
		if (s->reason != NULL) {
			kerr = dlq_send(c->dlq, rkm, s->reason, s->detail, CONSUMER_DLQ_BLOCK_MS);
			if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
				/* Not enqueued: nothing past it counts; read again after a pause. */
				c->n.dlq_failures++;
				consumer_dlq_down(c, rd_kafka_err2str(kerr));
				break;
			}
			c->n.dlq_total++;
			if (strcmp(s->reason, DLQ_REASON_UNKNOWN_ITEM) == 0)
				c->n.dlq_unknown_item++;
			else if (strcmp(s->reason, DLQ_REASON_BAD_TIMESTAMP) == 0)
				c->n.dlq_bad_timestamp++;
			else if (strcmp(s->reason, DLQ_REASON_CRASHED) == 0)
				c->n.dlq_crashed++;
			else if (strcmp(s->reason, DLQ_REASON_KEY_MISMATCH) == 0)
				c->n.dlq_key_mismatch++;
			else if ((unsigned)s->derr < 16)
				c->n.dlq_by_decode[s->derr]++;
		} else if ((e->us->last_partition == rkm->partition &&
			       rkm->offset <= e->us->last_offset) ||
		    (s->erase && e->erased && e->erased_partition == rkm->partition &&
			rkm->offset <= e->erased_offset)) {
			c->n.duplicates++;
		} else if (s->erase) {
			consumer_apply_chunk(c); /* the user's queued events go first */
			consumer_erase(c, e, rkm->partition, rkm->offset, s->ts_ms);
		} else if (e->erased &&
		    ((e->erased_partition == rkm->partition && rkm->offset <= e->erased_offset) ||
			s->ts_ms <= e->erased_ts_ms)) {
			c->n.erased_skipped++;
		} else if (state_event_known(e->us, s->event_hash)) {
			c->n.duplicates_event_id++; /* taken before, at another offset */
		} else {
			/* Remembered now, so a copy later in this batch is caught too. */
			state_event_remember(e->us, s->event_hash);
			if (e->us->model_version != c->model_version) {
				consumer_apply_chunk(c); /* the ring must hold this user's events */
				consumer_rewarm(c, e->us);
			}
			c->uev_entry[c->n_uev] = e;
			c->uev[c->n_uev++] = (struct update_event){ e->us, s->item, s->type,
				s->ts_ms, rkm->partition, rkm->offset };
			users_mark_dirty(c->users, e);
			if (e->since_snapshot++ == 0)
				e->snapshot_mono_ms = now_mono;
			if (e->since_snapshot >= c->snap_limit) {
				consumer_apply_chunk(c);
				consumer_snapshot(c, e);
			}
		}
		c->parts[rkm->partition].next_offset = rkm->offset + 1;
	}
	/*
	 * After a dead letter that could not be enqueued the rest of the batch is
	 * left unprocessed: nothing is committed until consumer_dlq_retry reads
	 * it again from the commit.
	 */
	consumer_apply_chunk(c);
	consumer_destroy_batch(c);
	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].careful_to >= 0 &&
		    c->parts[i].next_offset > c->parts[i].careful_to) {
			log_info("event=past_in_flight_range partition=%zu offset=%" PRId64
				 " action=full_batches",
			    i, c->parts[i].careful_to);
			c->parts[i].careful_to = -1;
		}
	rd_kafka_poll(c->rkp, 0);
	c->in_batch = 0;
	metrics_histogram_observe(&c->batch_s, clock_mono_s() - t0);
}
