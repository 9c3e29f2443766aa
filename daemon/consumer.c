/*
 * The consumer's frame: construction and teardown of its clients and buffers,
 * librdkafka's client callbacks, and the loop (poll a batch, process it, then
 * the timed duties: flush and commit, leases, stall and fencing checks, retries,
 * snapshots, stats, /metrics) with the orderly shutdown. The concerns it calls
 * have a file each beside it, listed in consumer_int.h.
 */
#include "consumer.h"
#include "consumer_int.h"

#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"
#include "decode.h"
#include "dlq.h"
#include "hmac.h"
#include "items.h"
#include "log.h"
#include "metrics.h"
#include "modelfile.h"
#include "notify.h"
#include "online.h"
#include "sink_redis.h"
#include "snapshot.h"
#include "state.h"
#include "updater.h"
#include "users.h"
#include "userview.h"

#define CONSUMER_STATS_EVERY_MS   10000
#define CONSUMER_SNAPSHOT_SCAN_MS 1000

/* ---- client callbacks ------------------------------------------------------ */

/*
 * The broker refused our credentials (SASL) or the TLS handshake failed on
 * authentication: librdkafka retries forever, so this is the one thing the
 * operator must see. An error line naming protocol, mechanism and the
 * broker's reason once per distinct reason per CONSUMER_PROBLEM_LOG_EVERY_MS
 * (librdkafka's " (after N ms in state X...)" tail does not make a reason
 * distinct), and the STATUS line.
 */
static void
consumer_auth_failed(struct consumer *c, rd_kafka_t *rk, const char *reason)
{
	char mech[64] = "", proto[32] = "", status[CONSUMER_ERR_MAX];
	size_t mech_len = sizeof(mech), proto_len = sizeof(proto);
	const char *tail = strstr(reason, " (after ");
	int len = tail != NULL ? (int)(tail - reason) : (int)strlen(reason);
	uint64_t suppressed;

	c->kafka_auth_failures++;
	if (!log_throttle_pass(&c->auth_log, reason, (size_t)len, clock_mono_ms(),
		CONSUMER_PROBLEM_LOG_EVERY_MS, &suppressed))
		return;
	if (rd_kafka_conf_get(rd_kafka_conf(rk), "sasl.mechanisms", mech, &mech_len) !=
	    RD_KAFKA_CONF_OK)
		snprintf(mech, sizeof(mech), "unknown");
	if (rd_kafka_conf_get(rd_kafka_conf(rk), "security.protocol", proto, &proto_len) !=
	    RD_KAFKA_CONF_OK)
		snprintf(proto, sizeof(proto), "unknown");
	log_error("event=kafka_authentication_failed client=%s security_protocol=%s "
		  "sasl_mechanism=%s error=\"%.*s\" suppressed=%" PRIu64 " action=retry "
		  "hint=\"check kafka.sasl.username/password and the broker's credentials for "
		  "this mechanism\"",
	    rd_kafka_name(rk), proto, mech, len, reason, suppressed);
	snprintf(status, sizeof(status), "kafka authentication failed (%s, %s), retrying: %.*s",
	    proto, mech, len, reason);
	notify_status(c->notify, status);
}

static void
consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct consumer *c = opaque;
	char fatal[CONSUMER_ERR_MAX];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));

		log_error("event=kafka_fatal client=%s error=\"%s: %s\" action=shutdown",
		    rd_kafka_name(rk), rd_kafka_err2name(ferr), fatal);
		c->fatal = 1;
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
		consumer_auth_failed(c, rk, reason);
		return;
	}
	log_warn("event=kafka_error client=%s error=\"%s: %s\"", rd_kafka_name(rk),
	    rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void
consumer_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	struct consumer *c = opaque;

	(void)rk;
	if (rkm->_private != NULL && rkm->_private == (void *)c->dlq) {
		dlq_on_delivery(c->dlq, rkm);
	} else if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		c->n.snapshot_errors++;
		if (c->n.snapshot_errors == 1)
			log_warn("event=snapshot_delivery_failed error=\"%s\"",
			    rd_kafka_err2str(rkm->err));
	}
}

/* ---- construction ---------------------------------------------------------- */

/* The librdkafka conf of the events consumer or the producer, with our callbacks. */
static rd_kafka_conf_t *
consumer_kafka_conf(struct consumer *c, int producer, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf = config_kafka_conf(c->cfg,
	    producer ? CONFIG_KAFKA_DAEMON_PRODUCER : CONFIG_KAFKA_EVENTS_CONSUMER, errstr,
	    errstr_size);

	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_log_cb(conf, log_kafka_cb);
	rd_kafka_conf_set_opaque(conf, c);
	rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
	if (producer)
		rd_kafka_conf_set_dr_msg_cb(conf, consumer_dr_cb);
	else
		rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance_cb);
	return conf;
}

/* (Re)builds everything sized by the model: updater, userview, scratch, vector. */
int
consumer_model_objects(struct consumer *c, const struct model *m, struct updater **up,
    struct userview **uv, struct user_state **scratch, float **vec)
{
	*up =
	    updater_new(m, c->cap_slots > CONSUMER_REWARM_MAX ? c->cap_slots : CONSUMER_REWARM_MAX);
	*uv = userview_new(m, c->cap_flush, (size_t)c->cfg->redis_top_n, c->cfg->tiers_calibrate);
	if (*uv != NULL)
		userview_set_search(*uv, c->cfg->topn_search, (uint32_t)c->cfg->topn_probe_items);
	*scratch = state_new(model_hparams(m));
	*vec = malloc(model_dim(m) * sizeof(float));
	if (*up == NULL || *uv == NULL || *scratch == NULL || *vec == NULL) {
		updater_free(*up);
		userview_free(*uv);
		state_free(*scratch);
		free(*vec);
		return -1;
	}
	return 0;
}

/* Sends rk's log lines to its main queue (the consumer's: its poll queue). */
static void
consumer_log_queue(rd_kafka_t *rk)
{
	rd_kafka_resp_err_t err = rd_kafka_set_log_queue(rk, NULL);

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("event=kafka_log_queue_failed client=%s error=\"%s\"", rd_kafka_name(rk),
		    rd_kafka_err2str(err));
}

struct consumer *
consumer_new(struct config *cfg, struct model *m, struct decoder *dec,
    consumer_config_loader *loader, void *loader_opaque, char *errstr, size_t errstr_size)
{
	struct consumer *c = calloc(1, sizeof(*c));
	rd_kafka_conf_t *conf = NULL;
	char kerr[CONSUMER_ERR_MAX];

	if (c == NULL) {
		config_free(cfg);
		model_free(m);
		decoder_free(dec);
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	c->cfg = cfg;
	c->base = m;
	c->m = m;
	c->dec = dec;
	c->loader = loader;
	c->loader_opaque = loader_opaque;
	c->model_version = model_hparams(m)->model_version;
	c->cap_slots = (size_t)cfg->batch_max_events;
	c->cap_flush = (size_t)cfg->flush_max_users;
	metrics_histogram_init_latency(&c->batch_s);
	metrics_histogram_init_latency(&c->commit_s);
	c->model_loaded_ms = clock_wall_ms(); /* loaded by the caller just before */
	c->slots = calloc(c->cap_slots, sizeof(*c->slots));
	c->uev = calloc(c->cap_slots, sizeof(*c->uev));
	c->uev_entry = calloc(c->cap_slots, sizeof(*c->uev_entry));
	c->load_ids = calloc(c->cap_slots, sizeof(*c->load_ids));
	c->load_lens = calloc(c->cap_slots, sizeof(*c->load_lens));
	c->load_entries = calloc(c->cap_slots, sizeof(*c->load_entries));
	c->su = calloc(c->cap_flush, sizeof(*c->su));
	c->fe = calloc(c->cap_flush, sizeof(*c->fe));
	c->users = users_new(model_hparams(m));
	c->notify = notify_new();
	if (c->slots == NULL || c->uev == NULL || c->uev_entry == NULL || c->load_ids == NULL ||
	    c->load_lens == NULL || c->load_entries == NULL || c->su == NULL || c->fe == NULL ||
	    c->users == NULL || c->notify == NULL ||
	    consumer_model_objects(c, m, &c->up, &c->uv, &c->scratch, &c->vec) != 0 ||
	    consumer_online_new(c) != 0) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	c->snap = snapshot_new(errstr, errstr_size);
	if (c->snap == NULL)
		goto fail;
	consumer_set_snap_limit(c);
	if (cfg->ids_hmac_key != NULL &&
	    (c->hkey = hmac_key_new(
		 cfg->ids_hmac_key, strlen(cfg->ids_hmac_key), errstr, errstr_size)) == NULL)
		goto fail;

	c->sink = sink_redis_new(cfg, errstr, errstr_size);
	if (c->sink == NULL)
		goto fail;
	if (sink_redis_write_tier_names(c->sink, m, errstr, errstr_size) != 0)
		goto fail;

	if ((conf = consumer_kafka_conf(c, 1, errstr, errstr_size)) == NULL)
		goto fail;
	c->rkp = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
	if (c->rkp == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(errstr, errstr_size, "kafka producer: %s", kerr);
		goto fail;
	}
	consumer_log_queue(c->rkp);
	c->dlq = dlq_new(c->rkp, cfg->topic_dlq);
	if (c->dlq == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if (cfg->topic_items != NULL &&
	    (c->items = items_new(cfg, c->base, c->dlq, errstr, errstr_size)) == NULL)
		goto fail;
	if ((conf = consumer_kafka_conf(c, 0, errstr, errstr_size)) == NULL)
		goto fail;
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
	if (c->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(errstr, errstr_size, "kafka consumer: %s", kerr);
		goto fail;
	}
	rd_kafka_poll_set_consumer(c->rk);
	consumer_log_queue(c->rk);
	if ((c->commit_q = rd_kafka_queue_new(c->rk)) == NULL) {
		snprintf(errstr, errstr_size, "kafka consumer: out of memory");
		goto fail;
	}
	if (cfg->metrics_listen != NULL &&
	    (c->mx = metrics_new(cfg->metrics_listen, consumer_render, c, errstr, errstr_size)) ==
		NULL)
		goto fail;
	return c;
fail:
	consumer_free(c);
	return NULL;
}

void
consumer_free(struct consumer *c)
{
	if (c == NULL)
		return;
	metrics_free(c->mx);
	items_free(c->items);
	if (c->commit_q != NULL)
		rd_kafka_queue_destroy(c->commit_q);
	if (c->rk != NULL)
		rd_kafka_destroy(c->rk);
	if (c->rkp != NULL)
		rd_kafka_destroy(c->rkp);
	dlq_free(c->dlq);
	sink_redis_free(c->sink);
	users_free(c->users);
	updater_free(c->up);
	userview_free(c->uv);
	state_free(c->scratch);
	free(c->vec);
	snapshot_free(c->snap);
	notify_free(c->notify);
	decoder_free(c->dec);
	if (c->m != c->base)
		model_free(c->m);
	model_free(c->base);
	config_free(c->cfg);
	free(c->slots);
	free(c->uev);
	free(c->uev_entry);
	online_table_free(c->online);
	free(c->load_ids);
	free(c->load_lens);
	free(c->load_entries);
	free(c->su);
	free(c->fe);
	free(c->er);
	free(c->er_entries);
	free(c->mark_parts);
	free(c->mark_offs);
	free(c->mark_epochs);
	free(c->mark_fenced);
	free(c->claims);
	free(c->inflight);
	hmac_key_free(c->hkey);
	free(c->refused);
	free(c->unwritten);
	free(c->parts);
	free(c);
}

void
consumer_set_model_load_seconds(struct consumer *c, double load_s)
{
	c->model_load_s = load_s;
}

const struct consumer_counters *
consumer_counters(const struct consumer *c)
{
	return &c->n;
}

/* ---- the loop -------------------------------------------------------------- */

/* Polls up to batch.max_events messages: waits timeout_ms for the first only. */
static void
consumer_fill_batch(struct consumer *c, int timeout_ms)
{
	rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, timeout_ms);

	int careful = 0;

	for (size_t i = 0; i < c->n_parts; i++)
		careful |= consumer_serves(c, (int32_t)i) && c->parts[i].careful_to >= 0;
	while (rkm != NULL) {
		/* A rebalance inside the poll may have processed the batch: n_slots is current. */
		c->slots[c->n_slots++].rkm = rkm;
		if (c->n_slots == c->cap_slots || careful)
			break;
		rkm = rd_kafka_consumer_poll(c->rk, 0);
	}
	/* Everything fetched is in hand: the consumer has caught up (for now). */
	c->caught_up = rkm == NULL;
}

/* The orderly stop: flush, commit, leave the group, flush the producer. */
static void
consumer_shutdown(struct consumer *c)
{
	char err[CONSUMER_ERR_MAX];
	rd_kafka_resp_err_t kerr;
	int left;

	notify_stopping(c->notify);
	log_info("event=stopping fatal=%d dirty=%zu", c->fatal, users_dirty_count(c->users));
	consumer_process_batch(c);
	if (c->redis_down)
		consumer_redis_retry(c); /* one last attempt */
	if (!c->redis_down) {
		if (consumer_flush(c, err, sizeof(err)) == 0) {
			consumer_commit(c, -1, 0);
			consumer_snapshot_pending(c, -1);
		} else {
			log_error(
			    "event=shutdown_flush_failed error=\"%s\" unflushed_users=%zu "
			    "note=\"their events are re-applied from Kafka by the next owner\"",
			    err, users_dirty_count(c->users));
		}
	} else {
		log_error(
		    "event=shutdown_flush_skipped reason=redis_unavailable unflushed_users=%zu "
		    "note=\"their events are re-applied from Kafka by the next owner\"",
		    users_dirty_count(c->users));
	}
	/* Revokes (our callback flushes and commits, here a no-op), leaves the group. */
	kerr = rd_kafka_consumer_close(c->rk);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("event=consumer_close_failed error=\"%s\"", rd_kafka_err2str(kerr));
	rd_kafka_flush(c->rkp, c->cfg->shutdown_timeout_ms);
	left = rd_kafka_outq_len(c->rkp);
	if (left > 0)
		log_warn("event=producer_undelivered messages=%d timeout_ms=%d", left,
		    c->cfg->shutdown_timeout_ms);
	consumer_log_stats(c);
	log_info("event=stopped exit=%d", c->fatal ? 1 : 0);
}

int
consumer_run(struct consumer *c, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t kerr;
	int64_t now = clock_mono_ms();

	if (c->items != NULL) {
		/* Events naming live items must find them: read topic.items first. */
		notify_status(c->notify, "reading topic.items");
		items_catch_up(c->items, c->cfg->items_startup_timeout_ms);
		if (items_pending(c->items))
			consumer_apply_live_items(c);
	}
	rd_kafka_topic_partition_list_add(sub, c->cfg->topic_events, RD_KAFKA_PARTITION_UA);
	kerr = rd_kafka_subscribe(c->rk, sub);
	rd_kafka_topic_partition_list_destroy(sub);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("event=subscribe_failed topic=%s error=\"%s\"", c->cfg->topic_events,
		    rd_kafka_err2str(kerr));
		return 1;
	}
	log_info("event=started topic=%s group=%s model_version=%" PRIu64 " items=%" PRIu32
		 " batch_max_events=%zu flush_max_users=%zu kernel=%s topn_search=%s",
	    c->cfg->topic_events, c->cfg->group_id, c->model_version, model_n_items(c->m),
	    c->cap_slots, c->cap_flush, userview_kernel(c->uv),
	    c->cfg->topn_search ? "tiered" : "exact");
	if (c->mx != NULL)
		log_info("event=metrics_listening addr=%s", metrics_address(c->mx));
	notify_status(c->notify, "waiting for a partition assignment");
	c->next_flush_ms = now + c->cfg->flush_interval_ms;
	c->next_stats_ms = now + CONSUMER_STATS_EVERY_MS;
	c->next_snapscan_ms = now + CONSUMER_SNAPSHOT_SCAN_MS;
	c->next_renew_ms = now + c->cfg->redis_lease_ms / 3;
	c->next_confirm_ms = now + c->cfg->redis_lease_ms / 3;
	c->next_stall_ms = now + c->cfg->poll_stall_ms / 3;
	if (c->cfg->redis_wait_replicas == 0)
		log_warn("event=redis_replication_unchecked wait_replicas=0 risk=\"a failover to a "
			 "replica that missed acknowledged writes is repaired only from what Kafka "
			 "still retains after the last commit; set redis.wait_replicas >= 1 so a "
			 "commit waits until a replica has the writes\"");

	while (!*stop && !c->fatal) {
		int timeout = c->cfg->poll_timeout_ms;

		if (*reload) {
			*reload = 0;
			consumer_reload(c);
		}
		now = clock_mono_ms();
		if (c->redis_down && c->next_retry_ms - now < timeout)
			timeout = c->next_retry_ms > now ? (int)(c->next_retry_ms - now) : 0;
		consumer_fill_batch(c, timeout);
		consumer_process_batch(c);
		rd_kafka_poll(c->rkp, 0);
		rd_kafka_queue_poll_callback(c->commit_q, 0);

		now = clock_mono_ms();
		if (c->items != NULL) {
			items_poll(c->items);
			if (!c->redis_down && items_pending(c->items) && now >= c->next_items_ms) {
				consumer_apply_live_items(c);
				c->next_items_ms = now + c->cfg->items_apply_interval_ms;
			}
		}
		if (!c->ready && c->assigned_once) {
			/* Also with an empty assignment: an idle spare instance is healthy. */
			c->ready = 1;
			notify_ready(c->notify, "consuming");
		}
		if (!c->redis_down && now >= c->next_renew_ms) {
			consumer_renew(c);
			c->next_renew_ms = now + c->cfg->redis_lease_ms / 3;
		}
		if (now >= c->next_stall_ms) {
			consumer_check_stalls(c);
			c->next_stall_ms = now + c->cfg->poll_stall_ms / 3;
		}
		if (!c->redis_down && now >= c->next_confirm_ms) {
			consumer_confirm_fenced(c);
			c->next_confirm_ms = now + c->cfg->redis_lease_ms / 3;
		}
		if (c->dlq_down && !c->redis_down && now >= c->dlq_retry_ms)
			consumer_dlq_retry(c);
		if (c->redis_down) {
			if (now >= c->next_retry_ms)
				consumer_redis_retry(c);
		} else if (now >= c->next_flush_ms || users_dirty_count(c->users) >= c->cap_flush ||
		    (c->caught_up && c->cfg->flush_when_caught_up &&
			users_dirty_count(c->users) > 0)) {
			consumer_flush_commit(c);
			c->next_flush_ms = now + c->cfg->flush_interval_ms;
		}
		if (c->cfg->snapshot_max_interval_s > 0 && now >= c->next_snapscan_ms) {
			consumer_snapshot_scan(c, now);
			c->next_snapscan_ms = now + CONSUMER_SNAPSHOT_SCAN_MS;
		}
		if (now >= c->next_stats_ms) {
			consumer_log_stats(c);
#ifdef __GLIBC__
			/* Hand back what batches and flushes left free (glibc keeps it otherwise). */
			malloc_trim(0);
#endif
			c->next_stats_ms = now + CONSUMER_STATS_EVERY_MS;
		}
		notify_watchdog(c->notify, now);
		if (c->mx != NULL)
			metrics_serve(c->mx);
	}
	consumer_shutdown(c);
	return c->fatal ? 1 : 0;
}
