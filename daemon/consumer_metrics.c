/*
 * What the consumer reports: the /metrics page (Prometheus text: counters,
 * per-partition lag and committed offsets, timing histograms, model and
 * live-item figures) and the periodic stats log line.
 */
#include "consumer_int.h"

#include <inttypes.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "decode.h"
#include "dlq.h"
#include "items.h"
#include "log.h"
#include "metrics.h"
#include "modelfile.h"
#include "online.h"
#include "sink_redis.h"
#include "users.h"

/* The assigned partitions of topic.events as a list (caller destroys). */
static rd_kafka_topic_partition_list_t *
consumer_assigned_list(const struct consumer *c)
{
	rd_kafka_topic_partition_list_t *l =
	    rd_kafka_topic_partition_list_new((int)c->n_assigned + 1);

	for (size_t i = 0; i < c->n_parts; i++)
		if (c->parts[i].assigned)
			rd_kafka_topic_partition_list_add(l, c->cfg->topic_events, (int32_t)i);
	return l;
}

/*
 * While the partitions are paused for Redis nothing is fetched, so
 * librdkafka's cached high watermark stands still: /metrics asks the broker
 * (200 ms at most per partition), so that the lag grows during the outage.
 */
static void
consumer_query_watermarks(struct consumer *c)
{
	for (size_t i = 0; i < c->n_parts; i++) {
		int64_t lo, hi;

		if (c->parts[i].assigned &&
		    rd_kafka_query_watermark_offsets(c->rk, c->cfg->topic_events, (int32_t)i, &lo,
			&hi, 200) == RD_KAFKA_RESP_ERR_NO_ERROR)
			c->parts[i].hwm = hi;
	}
}

/*
 * Appends one sample to buf at *o, never past size; head != 0 writes the
 * metric's HELP and TYPE lines first (once per metric name).
 */
static void
consumer_metric(char *buf, size_t size, size_t *o, const char *name, const char *type,
    const char *help, const char *labels, uint64_t v, int head)
{
	int n;

	if (*o >= size)
		return;
	if (head)
		n = snprintf(buf + *o, size - *o, "# HELP %s %s\n# TYPE %s %s\n%s%s %" PRIu64 "\n",
		    name, help, name, type, name, labels != NULL ? labels : "", v);
	else
		n = snprintf(buf + *o, size - *o, "%s%s %" PRIu64 "\n", name,
		    labels != NULL ? labels : "", v);
	if (n > 0 && (size_t)n < size - *o)
		*o += (size_t)n;
	else
		*o = size; /* truncated: stop at the last whole line */
}

/*
 * Lag and committed offset of every owned partition. Lag = the high
 * watermark librdkafka has cached (updated by each fetch response, so while
 * partitions are paused it is the one seen last) minus the next offset this
 * instance will process (rewound batches count as not processed); a
 * partition with neither known yet is left out.
 */
static void
consumer_render_lag(struct consumer *c, char *buf, size_t size, size_t *o)
{
	const char *topic = c->cfg->topic_events;
	rd_kafka_topic_partition_list_t *l = consumer_assigned_list(c);

	rd_kafka_position(c->rk, l); /* errors: the offsets stay invalid */
	if (c->redis_down)
		consumer_query_watermarks(c);
	metrics_family(buf, size, o, "interestd_consumer_lag", "gauge",
	    "Messages of an owned partition not processed yet: high watermark minus position.");
	for (int i = 0; i < l->cnt; i++) {
		int32_t p = l->elems[i].partition;
		int64_t lo, hi, pos = c->parts[p].next_offset;

		if (l->elems[i].offset >= 0 && (pos < 0 || l->elems[i].offset < pos))
			pos = l->elems[i].offset;
		if (rd_kafka_get_watermark_offsets(c->rk, topic, p, &lo, &hi) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR)
			hi = -1;
		if (c->parts[p].hwm > hi)
			hi = c->parts[p].hwm; /* asked of the broker during a Redis outage */
		if (hi < 0 || pos < 0)
			continue;
		metrics_printf(buf, size, o,
		    "interestd_consumer_lag{topic=\"%s\",partition=\"%" PRId32 "\"} %" PRId64 "\n",
		    topic, p, hi > pos ? hi - pos : 0);
	}
	{
		size_t stalled = 0;
		for (size_t i = 0; i < c->n_parts; i++)
			stalled += c->parts[i].assigned && c->parts[i].stalled;
		metrics_family(buf, size, o, "interestd_partitions_stalled", "gauge",
		    "Served partitions with lag that were not read for poll.stall_ms (now).");
		metrics_printf(buf, size, o, "interestd_partitions_stalled %zu\n", stalled);
	}
	metrics_family(buf, size, o, "interestd_consumer_committed_offset", "gauge",
	    "Offset this instance last committed for an owned partition (the next to read).");
	for (int i = 0; i < l->cnt; i++) {
		int32_t p = l->elems[i].partition;

		if (c->parts[p].committed >= 0)
			metrics_printf(buf, size, o,
			    "interestd_consumer_committed_offset{topic=\"%s\",partition=\"%" PRId32
			    "\"} %" PRId64 "\n",
			    topic, p, c->parts[p].committed);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

/* Everything after the counters: lag, timings, model, operator problems. */
static void
consumer_render_more(struct consumer *c, char *buf, size_t size, size_t *o)
{
	char lab[32];
	uint64_t moved, ask;

	consumer_render_lag(c, buf, size, o);
	if (c->online != NULL)
		online_table_render(c->online, buf, size, o);
	metrics_family(buf, size, o, "interestd_batch_seconds", "histogram",
	    "Processing time of one polled batch: decode, dead letters, state loads, apply.");
	metrics_histogram_render(&c->batch_s, "interestd_batch_seconds", NULL, buf, size, o);
	metrics_family(buf, size, o, "interestd_redis_pipeline_seconds", "histogram",
	    "Round trip of one successful Redis script pipeline (WAIT included), by op.");
	for (int op = 0; op < SINK_OP_COUNT; op++) {
		snprintf(lab, sizeof(lab), "op=\"%s\"", sink_op_name((enum sink_op)op));
		metrics_histogram_render(sink_redis_latency(c->sink, (enum sink_op)op),
		    "interestd_redis_pipeline_seconds", lab, buf, size, o);
	}
	metrics_family(buf, size, o, "interestd_commit_seconds", "histogram",
	    "Round trip of one successful offset commit.");
	metrics_histogram_render(&c->commit_s, "interestd_commit_seconds", NULL, buf, size, o);
	if (c->model_load_s > 0) {
		metrics_family(buf, size, o, "interestd_model_load_seconds", "gauge",
		    "Time the last successful model load (start-up or SIGHUP) took.");
		metrics_printf(
		    buf, size, o, "interestd_model_load_seconds %.6f\n", c->model_load_s);
	}
	metrics_family(buf, size, o, "interestd_model_loaded_timestamp_seconds", "gauge",
	    "Unix time the serving model was taken into service.");
	metrics_printf(buf, size, o, "interestd_model_loaded_timestamp_seconds %.3f\n",
	    (double)c->model_loaded_ms / 1000.0);
	metrics_family(buf, size, o, "interestd_kafka_auth_failures_total", "counter",
	    "Kafka authentication failures reported by librdkafka (retried).");
	metrics_printf(buf, size, o, "interestd_kafka_auth_failures_total %" PRIu64 "\n",
	    c->kafka_auth_failures);
	metrics_family(buf, size, o, "interestd_redis_permission_denied_total", "counter",
	    "Redis calls refused to redis.user by its ACL (NOPERM; retried).");
	metrics_printf(buf, size, o, "interestd_redis_permission_denied_total %" PRIu64 "\n",
	    c->redis_denials);
	sink_redis_redirects(c->sink, &moved, &ask);
	metrics_family(buf, size, o, "interestd_redis_redirects_total", "counter",
	    "Redis Cluster redirects followed (slots moving): MOVED, ASK; 0 on one node.");
	metrics_printf(buf, size, o,
	    "interestd_redis_redirects_total{kind=\"moved\"} %" PRIu64 "\n"
	    "interestd_redis_redirects_total{kind=\"ask\"} %" PRIu64 "\n",
	    moved, ask);
}

size_t
consumer_render(void *opaque, char *buf, size_t size)
{
	static const char *const decode_reasons[] = { "truncated", "bad_magic",
		"unknown_fingerprint", "unknown_schema_id", "malformed", "too_large",
		"missing_user" };
	struct consumer *c = opaque;
	const struct consumer_counters *n = &c->n;
	char lab[64];
	size_t o = 0;

#define COUNTER(name, help, v)                                                                     \
	consumer_metric(buf, size, &o, "interestd_" name, "counter", help, NULL, v, 1)
#define GAUGE(name, help, v)                                                                       \
	consumer_metric(buf, size, &o, "interestd_" name, "gauge", help, NULL, v, 1)
	COUNTER("events_consumed_total", "Messages polled from topic.events.", n->consumed);
	COUNTER("events_applied_total", "Events applied to a user state.", n->applied);
	consumer_metric(buf, size, &o, "interestd_events_duplicate_total", "counter",
	    "Events skipped as already applied: at or below the user's marker (marker), or an "
	    "event id the user's state had taken (event_id).",
	    "{reason=\"marker\"}", n->duplicates, 1);
	consumer_metric(buf, size, &o, "interestd_events_duplicate_total", "counter", "",
	    "{reason=\"event_id\"}", n->duplicates_event_id, 0);
	for (int i = 0; i < 7; i++) {
		snprintf(lab, sizeof(lab), "{reason=\"%s\"}", decode_reasons[i]);
		consumer_metric(buf, size, &o, "interestd_dead_letters_total", "counter",
		    "Messages sent to topic.dlq, by reason.", lab, n->dlq_by_decode[i + 1], i == 0);
	}
	consumer_metric(buf, size, &o, "interestd_dead_letters_total", "counter", "",
	    "{reason=\"unknown_item\"}", n->dlq_unknown_item, 0);
	consumer_metric(buf, size, &o, "interestd_dead_letters_total", "counter", "",
	    "{reason=\"bad_timestamp\"}", n->dlq_bad_timestamp, 0);
	consumer_metric(buf, size, &o, "interestd_dead_letters_total", "counter", "",
	    "{reason=\"crashed\"}", n->dlq_crashed, 0);
	consumer_metric(buf, size, &o, "interestd_dead_letters_total", "counter", "",
	    "{reason=\"key_mismatch\"}", n->dlq_key_mismatch, 0);
	COUNTER("flushes_total", "Redis flushes that wrote at least one user.", n->flushes);
	COUNTER("users_flushed_total", "User writes acknowledged by Redis.", n->users_flushed);
	COUNTER("flush_failures_total", "Redis flushes that failed (retried).", n->flush_failures);
	COUNTER("writes_refused_stale_total", "User writes refused: Redis had a newer marker.",
	    n->refused_stale);
	COUNTER("writes_refused_fenced_total", "User writes refused: partition owned elsewhere.",
	    n->refused_fenced);
	COUNTER("dead_letter_failures_total",
	    "Dead letters not delivered or not enqueued: the partitions paused and read them "
	    "again.",
	    n->dlq_failures);
	COUNTER("partitions_stalled_total",
	    "Times a served partition with lag went poll.stall_ms without being read.",
	    n->partitions_stalled);
	COUNTER("partitions_fenced_total",
	    "Partitions this instance stopped serving: a newer owner's epoch refused a write, a "
	    "flushed-through marker or a lease renewal.",
	    n->partitions_fenced);
	COUNTER("writes_refused_erased_total",
	    "User writes refused: the user was erased at or after these events.",
	    n->refused_erased);
	COUNTER("erasures_total", "Erase requests (tombstones) applied.", n->erasures);
	COUNTER("events_erased_skipped_total", "Events kept out by the user's erasure.",
	    n->erased_skipped);
	COUNTER("redis_rollbacks_total",
	    "Partitions whose flushed-through marker in Redis was behind the committed offset.",
	    n->rollbacks);
	COUNTER("redis_rollback_offsets_total",
	    "Offsets re-read from Kafka because Redis lost committed writes.", n->rollback_offsets);
	COUNTER("states_oversized_total", "Stored states too large to read (fresh start).",
	    n->states_oversized);
	COUNTER("commits_total", "Offset commits.", n->commits);
	COUNTER(
	    "commit_failures_total", "Offset commits that failed (retried).", n->commit_failures);
	COUNTER("users_loaded_total", "User states read from Redis.", n->users_loaded);
	COUNTER("state_decode_errors_total", "Stored states that could not be read.",
	    n->state_decode_errors);
	COUNTER("users_rewarmed_total", "Users re-warmed after a model swap.", n->rewarmed);
	COUNTER("snapshots_total", "Snapshots produced.", n->snapshots);
	COUNTER(
	    "snapshot_errors_total", "Snapshots that could not be produced.", n->snapshot_errors);
	COUNTER("batches_rewound_total", "Batches given back to Kafka (Redis down while loading).",
	    n->rewinds);
	COUNTER("model_reloads_total", "SIGHUP reloads attempted.", n->reloads);
	COUNTER("model_reload_failures_total", "SIGHUP reloads refused.", n->reload_failures);
	GAUGE("users_cached", "User states in memory.", users_count(c->users));
	GAUGE("users_dirty", "Users with applied events not yet in Redis.",
	    users_dirty_count(c->users));
	GAUGE("partitions_owned", "Partitions of topic.events assigned to this instance.",
	    c->n_assigned);
	GAUGE("redis_up", "1 while Redis accepts writes, 0 while partitions are paused for it.",
	    !c->redis_down);
	GAUGE("model_version", "HPAR model_version of the model serving.", c->model_version);
	GAUGE("dead_letters_in_flight", "Dead letters not yet acknowledged by Kafka.",
	    dlq_in_flight(c->dlq));
	GAUGE("model_items", "Items of the serving model (model file plus live items).",
	    model_n_items(c->m));
	if (c->items != NULL) {
		const struct items_counters *ic = items_counters(c->items);

		COUNTER("live_items_added_total",
		    "Item updates from topic.items taken into the live catalog.", ic->added);
		COUNTER("live_items_withdrawn_total", "Live items withdrawn by a tombstone.",
		    ic->withdrawn);
		COUNTER("live_items_known_total",
		    "Item updates and tombstones of model-file items (ignored).", ic->known);
		for (int i = 0; i < ITEMS_N_REFUSALS; i++) {
			snprintf(lab, sizeof(lab), "{reason=\"%s\"}",
			    items_refusal_name((enum items_refusal)i));
			consumer_metric(buf, size, &o, "interestd_live_items_refused_total",
			    "counter", "Item updates dead-lettered (bad_item_update:<reason>).",
			    lab, ic->refused[i], i == 0);
		}
		COUNTER("live_items_stale_total",
		    "Live items left out of a model: placed against another catalog.", ic->stale);
		GAUGE("live_items", "Live items received from topic.items.", items_live(c->items));
	}
#undef COUNTER
#undef GAUGE
	consumer_render_more(c, buf, size, &o);
	return metrics_text_end(buf, size, o);
}

void
consumer_log_stats(struct consumer *c)
{
	const struct consumer_counters *n = &c->n;

	log_info("event=stats consumed=%" PRIu64 " applied=%" PRIu64 " duplicates=%" PRIu64
		 " duplicates_event_id=%" PRIu64 " dlq=%" PRIu64 " dlq_truncated=%" PRIu64
		 " dlq_bad_magic=%" PRIu64 " dlq_unknown_fingerprint=%" PRIu64
		 " dlq_unknown_schema_id=%" PRIu64 " dlq_malformed=%" PRIu64
		 " dlq_too_large=%" PRIu64 " dlq_missing_user=%" PRIu64 " dlq_unknown_item=%" PRIu64
		 " dlq_bad_timestamp=%" PRIu64 " dlq_key_mismatch=%" PRIu64 " flushes=%" PRIu64
		 " users_flushed=%" PRIu64 " flush_failures=%" PRIu64 " refused_stale=%" PRIu64
		 " refused_fenced=%" PRIu64 " commits=%" PRIu64 " snapshots=%" PRIu64
		 " rewarmed=%" PRIu64 " erasures=%" PRIu64 " erased_skipped=%" PRIu64
		 " refused_erased=%" PRIu64 " rollbacks=%" PRIu64 " rollback_offsets=%" PRIu64
		 " states_oversized=%" PRIu64 " users_cached=%zu dirty=%zu owned=%zu redis_down=%d",
	    n->consumed, n->applied, n->duplicates, n->duplicates_event_id, n->dlq_total,
	    n->dlq_by_decode[DECODE_TRUNCATED], n->dlq_by_decode[DECODE_BAD_MAGIC],
	    n->dlq_by_decode[DECODE_UNKNOWN_FINGERPRINT],
	    n->dlq_by_decode[DECODE_UNKNOWN_SCHEMA_ID], n->dlq_by_decode[DECODE_MALFORMED],
	    n->dlq_by_decode[DECODE_TOO_LARGE], n->dlq_by_decode[DECODE_MISSING_USER],
	    n->dlq_unknown_item, n->dlq_bad_timestamp, n->dlq_key_mismatch, n->flushes,
	    n->users_flushed, n->flush_failures, n->refused_stale, n->refused_fenced, n->commits,
	    n->snapshots, n->rewarmed, n->erasures, n->erased_skipped, n->refused_erased,
	    n->rollbacks, n->rollback_offsets, n->states_oversized, users_count(c->users),
	    users_dirty_count(c->users), c->n_assigned, c->redis_down);
}
