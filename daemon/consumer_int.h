/*
 * The consumer's private header, shared by daemon/consumer*.c only (the
 * public interface is consumer.h): the consumer and partition structs, the
 * constants more than one of those files uses, and the functions they share.
 * One file per concern:
 *   consumer.c         construction, client callbacks, the loop, shutdown
 *   consumer_batch.c   a polled batch: classify, load users, apply
 *   consumer_commit.c  commits, the dead-letter outage, rebalances, pause state
 *   consumer_own.c     claims, leases, fencing, failover check, in-flight records
 *   consumer_redis.c   the flush to Redis and the Redis outage mode
 *   consumer_snap.c    snapshots for retraining
 *   consumer_reload.c  SIGHUP reload and live items (model swaps)
 *   consumer_metrics.c /metrics and the stats line
 *   consumer_online.c  online metrics: each user's written top-N, the next event measured
 * All of them keep one order, which is why they share one struct: an offset
 * is committed only after every write and dead letter before it is
 * acknowledged, and a revoked partition is flushed and committed first.
 */
#ifndef DAEMON_CONSUMER_INT_H
#define DAEMON_CONSUMER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "consumer.h"
#include "decode.h"
#include "hmac.h"
#include "log.h"
#include "metrics.h"
#include "updater.h"

#define CONSUMER_ERR_MAX              512
#define CONSUMER_DETAIL_MAX           160 /* dead-letter detail header */
#define CONSUMER_BACKOFF_MIN_MS       100 /* Redis retry backoff: 100 ms .. 5 s */
#define CONSUMER_BACKOFF_MAX_MS       5000
#define CONSUMER_SEEK_TIMEOUT_MS      5000
#define CONSUMER_REWARM_MAX           64    /* ring_len's upper bound (schemas/modelfile.md) */
#define CONSUMER_PROBLEM_LOG_EVERY_MS 60000 /* auth / ACL errors: one line per reason this often */

/* One partition of topic.events as this instance sees it. */
struct part {
	int assigned;
	int claimed; /* holds the lease (epoch) in Redis: its events are applied */
	int fresh;   /* Kafka assigned or confirmed it since the last claim: a claim may take a
	                new epoch (sink_redis_claim) */
	int fenced;  /* a newer owner's epoch refused our write, marker or renewal: nothing of it
	                is applied or committed until Kafka confirms the ownership again */
	int waiting; /* a claim found another instance's live lease (logged once) */
	int reseek;  /* events were skipped or dropped: the next claim seeks to the commit */
	int fence_pending;  /* a write of this flush was refused as fenced */
	int stalled;        /* lag but nothing read for poll.stall_ms (consumer_check_stalls) */
	int paused;         /* our last pause (1) or resume (0) call for it */
	int pause_unknown;  /* new assignment: the next sync states it either way */
	int64_t hwm;        /* high watermark asked of the broker while paused for Redis; -1 */
	int64_t careful_to; /* an owner died in flight up to here: one message per batch; -1 */
	int64_t poison;     /* offset dead-lettered as `crashed` when read; -1 none */
	int64_t poison_crashes;
	int fresh_claim;      /* the last claim was fresh (Kafka's assignment): look for a death */
	int inflight_open;    /* its last in-flight record is not marked done yet */
	int64_t last_read_ms; /* monotonic: last message of it processed, or served since */
	int first;     /* the last claim was the partition's first ever (no epoch stored before) */
	int unwritten; /* Redis Cluster: a user or a marker of it met a lost master in this
	                  flush: nothing of it is committed until all are written */
	int step_back; /* Redis Cluster: a user of this batch could not be read (scratch) */
	uint64_t epoch;
	int64_t next_offset; /* after the last processed message; -1 none */
	int64_t committed;   /* last committed offset; -1 none */
};

#define PART_NEW(assigned_)                                                                        \
	((struct part){ .assigned = (assigned_),                                                   \
	    .next_offset = -1,                                                                     \
	    .committed = -1,                                                                       \
	    .pause_unknown = 1,                                                                    \
	    .hwm = -1,                                                                             \
	    .careful_to = -1,                                                                      \
	    .poison = -1 })

/* One polled message of the batch and what phase 1 decided about it. */
struct slot {
	rd_kafka_message_t *rkm;
	struct user_entry *e; /* NULL: not an applicable event */
	const char *reason;   /* dead-letter reason, NULL if none */
	int skip;             /* not ours to process (error, revoked partition) */
	int erase;            /* a tombstone: erase request for the key's user */
	uint32_t item;
	uint8_t type;
	int64_t ts_ms;
	uint64_t event_hash; /* state_event_id_hash of the event id */
	enum decode_err derr;
	char detail[CONSUMER_DETAIL_MAX];
};

struct consumer {
	struct config *cfg;
	consumer_config_loader *loader;
	void *loader_opaque;

	struct model *base; /* the model file */
	struct model *m;    /* serving: base, or base + live items (model_extend) */
	uint64_t model_version;
	struct updater *up;
	struct userview *uv;
	struct user_state *scratch; /* re-warm replays run on this */
	struct decoder *dec;
	struct sink_redis *sink;
	struct users *users;
	struct dlq *dlq;
	struct snapshot *snap;
	struct notify *notify;
	struct metrics *mx;          /* NULL: metrics.listen unset */
	struct online_table *online; /* NULL: metrics.online off */
	int online_row;              /* its row of model_version; -1: lists not kept (ENOMEM) */
	struct items *items;         /* live catalog items (topic.items); NULL: off */
	int64_t next_items_ms;       /* earliest next swap of live items */
	rd_kafka_t *rk;              /* consumer */
	rd_kafka_queue_t *commit_q;  /* results of asynchronous commits */
	double commit_issued_s;      /* when the last asynchronous commit was sent */
	rd_kafka_t *rkp;             /* producer: dead letters and snapshots */

	struct part *parts;
	size_t n_parts;
	size_t n_assigned;

	/* The batch: preallocated to batch.max_events. */
	struct slot *slots;
	size_t n_slots, cap_slots;
	struct update_event *uev;
	struct user_entry **uev_entry; /* the entry of each uev[i] (online metrics) */
	size_t n_uev;
	struct update_event rw_ev[CONSUMER_REWARM_MAX];
	const char **load_ids;
	size_t *load_lens;
	struct user_entry **load_entries;
	size_t n_load;

	/* Flush buffers: flush.max_users slots. */
	struct sink_user *su;
	struct user_entry **fe; /* the entry of each su[i] */
	struct sink_erase *er;  /* pending erasures of a flush, grown on demand */
	struct user_entry **er_entries;
	size_t cap_er;
	int32_t *mark_parts; /* flushed-through markers of a commit, [n_parts] */
	int64_t *mark_offs;
	uint64_t *mark_epochs;
	int *mark_fenced;
	size_t cap_mark;
	struct sink_inflight *inflight; /* in-flight records of a batch, [n_parts] */
	size_t cap_inflight;
	struct sink_claim *claims; /* claims and lease renewals, [n_parts] */
	size_t cap_claims;
	int64_t next_renew_ms; /* next lease renewal (every third of redis.lease_ms) */
	int64_t next_stall_ms; /* next consumer_check_stalls */
	int dlq_down;          /* a dead letter failed: paused until consumer_dlq_retry */
	int64_t dlq_retry_ms, dlq_backoff_ms;
	uint64_t dlq_failed_seen; /* dlq_failed() already handled */
	int64_t batch_mono_ms;    /* when the batch being processed was polled */
	int64_t next_confirm_ms;  /* next ownership check of fenced partitions */

	/* ids.hmac_key_file: user ids are replaced by pseudonyms before use */
	struct hmac_key *hkey; /* NULL: user ids verbatim */
	char pseudo[HMAC_PSEUDONYM_LEN + 1];
	size_t cap_flush;
	struct user_entry **refused;
	size_t n_refused, cap_refused;
	struct user_entry **unwritten; /* Redis Cluster: users of a lost master, kept dirty */
	size_t n_unwritten, cap_unwritten;
	int slots_lost; /* Redis Cluster: a master was lost; look for lost writes once all are
	                   written again (consumer_slots_back) */
	uint64_t masters_lost_seen; /* sink_redis_masters_lost when last looked at */
	float *vec;                 /* [dim] for snapshots */

	uint32_t snap_limit; /* snapshot after this many events; UINT32_MAX: never by count */
	int tier_names_pending;

	/* Redis outage */
	int redis_down;
	int paused;
	int64_t backoff_ms;
	int64_t next_retry_ms;
	int64_t down_since_ms;

	uint64_t batch_seq; /* batches processed: the cache's recency clock */
	int64_t next_flush_ms;
	int caught_up; /* the last poll drained what librdkafka had fetched */
	int64_t next_stats_ms;
	int64_t next_snapscan_ms;
	int ready;
	int assigned_once; /* the first rebalance has been served */
	int fatal;
	int in_batch; /* process_batch running (re-entrancy guard) */
	struct consumer_counters n;

	/* For /metrics and the operator's error lines. */
	struct metrics_histogram batch_s;  /* consumer_process_batch of a polled batch */
	struct metrics_histogram commit_s; /* successful rd_kafka_commit calls */
	double model_load_s;               /* the last timed model load; 0: none yet */
	int64_t model_loaded_ms;           /* wall clock when the serving model was taken */
	uint64_t kafka_auth_failures;
	uint64_t redis_denials;
	struct log_throttle auth_log;   /* Kafka authentication failures */
	struct log_throttle denied_log; /* Redis NOPERM */
};

/*
 * Ownership of partition p, asked for every message: inline, as cheap as
 * when they were static in one file.
 */

/* Assigned to this instance by Kafka. */
static inline int
consumer_owns(const struct consumer *c, int32_t p)
{
	return p >= 0 && (size_t)p < c->n_parts && c->parts[p].assigned;
}

/* Assigned, claimed and not fenced: its events are applied, written and committed. */
static inline int
consumer_serves(const struct consumer *c, int32_t p)
{
	return consumer_owns(c, p) && c->parts[p].claimed && !c->parts[p].fenced;
}

/* The epoch to tag a write of partition p with (0: not ours, unfenced). */
static inline uint64_t
consumer_epoch(const struct consumer *c, int32_t p)
{
	return consumer_serves(c, p) ? c->parts[p].epoch : 0;
}

/* ---- consumer.c ---- */

/* Builds the objects sized by model m (updater, userview, scratch state, vector); 0 or -1. */
int consumer_model_objects(struct consumer *c, const struct model *m, struct updater **up,
    struct userview **uv, struct user_state **scratch, float **vec);

/* ---- consumer_batch.c ---- */

/* Processes the polled batch (c->slots) and destroys its messages. */
void consumer_process_batch(struct consumer *c);

/* ---- consumer_commit.c ---- */

/* Pause or resume every assigned partition as the daemon can serve it now. */
void consumer_sync_pause(struct consumer *c);
/* Repairs served partitions with lag that were not read for poll.stall_ms. */
void consumer_check_stalls(struct consumer *c);
/* A dead letter was not delivered or enqueued: pause every partition, retry later. */
void consumer_dlq_down(struct consumer *c, const char *why);
/* After the dead-letter backoff: read every served partition again from its commit. */
void consumer_dlq_retry(struct consumer *c);
/* Commits the processed offsets (all partitions, or only `only` >= 0); 0 or -1. */
int consumer_commit(struct consumer *c, int32_t only, int async);
/* Flush (outage mode on a Redis error), bound the cache, commit asynchronously; 0 or -1. */
int consumer_flush_commit(struct consumer *c);
/* rd_kafka rebalance_cb of the events consumer (opaque: the consumer). */
void consumer_rebalance_cb(
    rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *l, void *opaque);

/* ---- consumer_own.c ---- */

/* Records in Redis the offsets of each served partition the batch will apply; 0 or -1. */
int consumer_inflight_record(struct consumer *c, char *errstr, size_t errstr_size);
/* Stops serving partition p: a newer owner's epoch refused us during `during`. */
void consumer_fence(struct consumer *c, int32_t p, const char *during, uint64_t newer);
/* Claims the assigned unclaimed partitions (renew: renews leases too); new ones into owned. */
int consumer_claim(struct consumer *c, rd_kafka_topic_partition_list_t *owned, int renew,
    char *errstr, size_t errstr_size);
/* consumer_claim outside a rebalance: seeks where a partition must start again; 0 or -1. */
int consumer_claim_pending(struct consumer *c, int renew, char *errstr, size_t errstr_size);
/* Asks Kafka whether the fenced partitions are still ours; claims them again if so. */
void consumer_confirm_fenced(struct consumer *c);
/* Renews the leases of the served partitions and claims the waiting ones. */
void consumer_renew(struct consumer *c);

/* ---- consumer_redis.c ---- */

/* Redis failed during `what`: pause every partition, retry after a backoff. */
void consumer_redis_down(struct consumer *c, const char *what, const char *err);
/*
 * Redis Cluster: a master was found lost (during: the operation that met it);
 * logged once until consumer_slots_back.
 */
void consumer_slots_lost(struct consumer *c, const char *during);

/*
 * Redis Cluster: after a flush and commit that met no lost master, following
 * ones that did (c->slots_lost): a promoted replica may lack acknowledged
 * writes, so every served partition re-claims, runs the failover check and
 * reads again from its commit, as after a reconnect.
 */
void consumer_slots_back(struct consumer *c);
/* Writes every dirty user to Redis; 0, or -1 on a Redis error (errstr; all stay dirty). */
int consumer_flush(struct consumer *c, char *errstr, size_t errstr_size);
/* After the backoff: reconnect, re-claim, flush, resume, commit (or back off again). */
void consumer_redis_retry(struct consumer *c);

/* ---- consumer_snap.c ---- */

/* Sends e's snapshot if it has pending events (counted in snapshots / snapshot_errors). */
void consumer_snapshot(struct consumer *c, struct user_entry *e);
/* The snapshot of every cached user whose oldest pending event is snapshot.max_interval_s old. */
void consumer_snapshot_scan(struct consumer *c, int64_t now);
/* Pending snapshots of partition's users (-1: every user) go out before they are given up. */
void consumer_snapshot_pending(struct consumer *c, int32_t partition);
/* snap_limit from the config and the serving model's ring length. */
void consumer_set_snap_limit(struct consumer *c);

/* ---- consumer_reload.c ---- */

/* Swaps in the model file plus the current live items; retried later on failure. */
void consumer_apply_live_items(struct consumer *c);
/* SIGHUP: reloadable config keys and the model, swapped in; the old one kept on failure. */
void consumer_reload(struct consumer *c);

/* ---- consumer_online.c ---- */

/* Starts the online metrics when metrics.online is on; 0, or -1 on ENOMEM. */
int consumer_online_new(struct consumer *c);
/* Keeps the top-N of su, just acknowledged written, as e's previous list. */
void consumer_online_keep(struct consumer *c, struct user_entry *e, const struct sink_user *su);
/* Measures the events of the chunk updater_apply just applied (c->uev[0..n_uev)). */
void consumer_online_measure(struct consumer *c);
/*
 * After a model swap to c->m (old: the model swapped out, still valid): the
 * row of the new model_version; every kept list is forgotten when the new
 * catalog does not start with the old one's items (indices changed).
 */
void consumer_online_swapped(struct consumer *c, const struct model *old);

/* ---- consumer_metrics.c ---- */

/* metrics_render_fn of /metrics: the page into buf (metrics.h). */
size_t consumer_render(void *opaque, char *buf, size_t size);
/* The counters as one log line (every CONSUMER_STATS_EVERY_MS and at stop). */
void consumer_log_stats(struct consumer *c);

#endif
