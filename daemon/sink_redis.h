/*
 * Redis sink: writes each flushed user's keys (layout: schemas/redis.md) in
 * one Lua script per user that checks the applied-offset marker and the
 * partition owner epoch in the same atomic step; pipelined; optional WAIT for
 * replicas. Also loads user states, erases users, keeps the flushed-through
 * markers, claims partition epochs and writes the tier names. One
 * connection, not thread-safe.
 */
#ifndef DAEMON_SINK_REDIS_H
#define DAEMON_SINK_REDIS_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct metrics_histogram;
struct model;
struct user_state;
struct redisContext;

/* Per-user outcome of sink_redis_flush. */
enum sink_result {
	SINK_WRITTEN = 0,    /* all keys written, TTLs set */
	SINK_REFUSED_STALE,  /* stored marker (same partition) at/after ours: nothing written */
	SINK_REFUSED_FENCED, /* partition epoch in Redis newer than ours: nothing written */
	SINK_REFUSED_ERASED, /* the user was erased by a tombstone of the same partition
	                                 at/after our marker: nothing written */
	SINK_UNAVAILABLE     /* cluster: the master of its slot (or of its partition's
	                        epoch key) is lost: maybe written, maybe not; write it again */
};

/* Stable lower-case name ("written", "stale", "fenced", "erased", "unavailable"). */
const char *sink_result_name(enum sink_result r);

/*
 * One user to write. Everything is borrowed for the duration of the call.
 * The marker written is (us->last_partition, us->last_offset); the state blob
 * is state_encode(us); tier weights are us->tiers as of us->t_ref_ms;
 * model_version and events_applied come from us. Fill vec/top with
 * userview_fill (daemon/userview.h) so the daemon and the offline replay
 * agree.
 */
struct sink_user {
	const char *user_id;
	size_t user_id_len;
	const struct user_state *us;
	uint64_t epoch;            /* caller's owner epoch for us->last_partition
	                                 (sink_redis_claim); 0 skips fencing */
	const float *vec;          /* [model_dim] interest vector */
	const uint32_t *top_items; /* [n_top] model item indices, best first */
	const float *top_scores;   /* [n_top] */
	size_t n_top;
	enum sink_result result; /* out: set for every user when flush returns 0 */
};

struct sink_redis;

/* The script pipelines the sink times (sink_redis_latency). */
enum sink_op {
	SINK_OP_FLUSH = 0,    /* sink_redis_flush: user writes, WAIT included */
	SINK_OP_ERASE,        /* sink_redis_erase */
	SINK_OP_MARK_FLUSHED, /* sink_redis_mark_flushed */
	SINK_OP_CLAIM,        /* sink_redis_claim and sink_redis_release */
	SINK_OP_COUNT
};

/* Stable lower-case name ("flush", "erase", "mark_flushed", "claim"), a metrics label. */
const char *sink_op_name(enum sink_op op);

/*
 * Seconds each successful pipeline of op took, from the first command
 * written to the last reply read (WAIT included when redis.wait_replicas >
 * 0). Borrowed, valid until sink_redis_free; read it from the thread that
 * uses the sink.
 */
const struct metrics_histogram *sink_redis_latency(const struct sink_redis *sink, enum sink_op op);

/*
 * 1 when the last call that failed met a NOPERM reply: Redis refused a
 * command or a key to redis.user (its ACL), a permission problem rather than
 * an outage; errstr of that call names the command or the keys. 0 otherwise.
 * Reset by the next call.
 */
int sink_redis_permission_denied(const struct sink_redis *sink);

/*
 * Cluster mode: how often a master was lost so far (a count that only grows;
 * 0 on one node), and whether every slot has a master that answers now (1;
 * always 1 on one node).
 */
uint64_t sink_redis_masters_lost(const struct sink_redis *sink);
int sink_redis_cluster_whole(struct sink_redis *sink);

/* Why the last command without a reply had none (its master lost; cluster mode). */
const char *sink_redis_unavailable_error(const struct sink_redis *sink);

/* Redis Cluster redirects followed since start (redis.cluster; both 0 on one node). */
void sink_redis_redirects(const struct sink_redis *sink, uint64_t *moved, uint64_t *ask);

/*
 * Connects to Redis as cfg says (unix socket or host:port, redis.timeout_ms
 * for connect and each command), authenticates (AUTH user password with
 * redis.user, else AUTH password, when a password is set) and loads the
 * write script. Copies what it needs from cfg. NULL with the reason in errstr
 * ("redis 127.0.0.1:6379: connection refused", "redis AUTH: WRONGPASS ...").
 * Free with sink_redis_free (NULL-safe).
 */
struct sink_redis *sink_redis_new(const struct config *cfg, char *errstr, size_t errstr_size);
/*
 * A sink with the configuration's keys and settings and no connection (until
 * sink_redis_reconnect; the scripts' SHA1s are a placeholder until then): for
 * sink_redis_format_user in the benchmark.
 */
struct sink_redis *sink_redis_new_unconnected(
    const struct config *cfg, char *errstr, size_t errstr_size);
void sink_redis_free(struct sink_redis *sink);

/*
 * Drops the connection (if any) and connects, authenticates and loads the
 * script again. Returns 0, or -1 (errstr); the caller retries with backoff.
 */
int sink_redis_reconnect(struct sink_redis *sink, char *errstr, size_t errstr_size);

/*
 * Fills users[first..first + n) (vector, top-N: the fields sink_redis_flush
 * writes) just before they are appended, into storage that stays valid for
 * the rest of the flush; see sink_redis_flush.
 */
typedef void sink_prepare_fn(void *opaque, struct sink_user *users, size_t first, size_t n);

/*
 * Writes users[0..n) (each user at most once per call: the caller merges)
 * with one pipelined EVALSHA per user, then reads every reply; when
 * redis.wait_replicas > 0, then sends WAIT and requires that many replicas.
 * m gives item ids and tier labels. Returns 0 when every script ran (each
 * users[i].result says written / stale / fenced), or -1 on a connection
 * error, a timeout, an error reply or too few replicas (errstr): the flush
 * may have been partly applied; the caller calls sink_redis_reconnect, backs
 * off and repeats the whole flush, which the markers make idempotent. Reuses
 * internal buffers: no per-user heap allocation once they have grown.
 * prepare (may be NULL: users already filled) is called for every 64
 * users before they are appended, after the users before them were sent:
 * Redis runs their scripts on its own core while prepare computes the next
 * ones. A repeat after NOSCRIPT does not call it again.
 */
int sink_redis_flush(struct sink_redis *sink, const struct model *m, struct sink_user *users,
    size_t n, sink_prepare_fn *prepare, void *opaque, char *errstr, size_t errstr_size);

/*
 * The write script's command for one user exactly as sink_redis_flush sends
 * it (schemas/redis.md "Write script"), formatted in the Redis protocol into
 * *cmd (free with hiredis's redisFreeCommand): for the benchmark's compute
 * floor, which measures the daemon's own work without a socket. Returns the
 * command's length, or -1 (errstr).
 */
long long sink_redis_format_user(struct sink_redis *sink, const struct model *m,
    const struct sink_user *su, int64_t now_ms, char **cmd, char *errstr, size_t errstr_size);

/*
 * Called by sink_redis_load_states once per requested user, in order: blob is
 * the stored ui:{u}:state (borrowed for the call), or NULL with len 0 when the
 * user has no stored state.
 */
typedef void sink_state_cb(void *opaque, size_t i, const uint8_t *blob, size_t len);

/*
 * sink_redis_load_users without the erasure markers (a state too large to
 * read is reported as absent). Returns 0, or -1 on a connection error /
 * error reply (errstr; cb may have been called for a prefix of the users).
 */
int sink_redis_load_states(struct sink_redis *sink, const char *const *ids, const size_t *id_lens,
    size_t n, sink_state_cb *cb, void *opaque, char *errstr, size_t errstr_size);

/* A user's erasure marker, <prefix>{u}:erased (schemas/redis.md "Erasure"). */
struct sink_erased {
	int32_t partition; /* the tombstone's partition and offset */
	int64_t offset;
	int64_t ts_ms; /* the tombstone's Kafka timestamp (ms) */
};

/*
 * Called by sink_redis_load_users once per requested user, in order: blob is
 * the stored ui:{u}:state (borrowed for the call); NULL with len 0 when the
 * user has no stored state; NULL with len > 0 when the stored state is longer
 * than the sink reads (256 KiB: not passed on, len > 256 KiB). erased
 * is the user's erasure marker, NULL when the user was never erased.
 */
typedef void sink_user_cb(
    void *opaque, size_t i, const uint8_t *blob, size_t len, const struct sink_erased *erased);

/*
 * Pipelined read of the state (GETRANGE, at most 256 KiB + 1 bytes) and the
 * erasure marker of ids[0..n), calling cb for each; in a cluster not for a
 * user whose master cannot be reached (the caller must not apply its
 * events now). Returns 0, or -1 on a connection error / error reply
 * (errstr; cb may have been called for a prefix of the users).
 */
int sink_redis_load_users(struct sink_redis *sink, const char *const *ids, const size_t *id_lens,
    size_t n, sink_user_cb *cb, void *opaque, char *errstr, size_t errstr_size);

/* One erasure to apply (sink_redis_erase). Strings borrowed for the call. */
struct sink_erase {
	const char *user_id;
	size_t user_id_len;
	int32_t partition; /* the tombstone's partition and offset */
	int64_t offset;
	int64_t ts_ms;  /* its Kafka timestamp: older events stay out */
	uint64_t epoch; /* owner epoch of partition; 0 skips fencing */
	int result;     /* out: 0 erased, 1 kept (state newer than the
	                                 tombstone; marker recorded), 2 fenced */
};

/*
 * Erases er[0..n): per user one pipelined script deletes vec, top, tiers,
 * meta and state and records <prefix>{u}:erased = (partition, offset, ts,
 * erased_at), persistent, which the write script then checks. WAIT as in
 * sink_redis_flush. Returns 0 (each er[i].result set) or -1 (errstr; the
 * caller reconnects and repeats: idempotent).
 */
int sink_redis_erase(
    struct sink_redis *sink, struct sink_erase *er, size_t n, char *errstr, size_t errstr_size);

/*
 * Raises the flushed-through marker <prefix>flushed:<group>:<topic>:<p> of
 * each partitions[i] to next_offsets[i] (never lowers it): every event below
 * that offset is in Redis. Call after the flush whose writes it covers and
 * before committing those offsets: the replication stream is ordered, so a
 * replica holding the marker holds the writes. Fenced like a write: with
 * epochs[i] > 0 and a newer epoch in Redis nothing is raised and fenced[i]
 * is set to 1 (else 0). In a cluster, one marker per master
 * (schemas/redis.md "Redis Cluster"); fenced[i] = -1 when a master of the
 * map could not be reached (the partition must not be committed now). WAIT
 * as in sink_redis_flush. Returns 0 or -1 (errstr).
 */
int sink_redis_mark_flushed(struct sink_redis *sink, const int32_t *partitions,
    const int64_t *next_offsets, const uint64_t *epochs, int *fenced, size_t n, char *errstr,
    size_t errstr_size);

/*
 * The flushed-through marker of partition into *next_offset, -1 when absent
 * (in a cluster the lowest of the masters' markers; a master that cannot be
 * reached is skipped).
 * Returns 0 or -1 (errstr; also for a value that is not a non-negative integer).
 */
int sink_redis_get_flushed(struct sink_redis *sink, int32_t partition, int64_t *next_offset,
    char *errstr, size_t errstr_size);

/* Outcome of a partition claim (sink_redis_claim). */
enum sink_claim_result {
	SINK_CLAIM_OWNED = 0,  /* the lease is ours, epoch set */
	SINK_CLAIM_BUSY,       /* another instance's lease is live: try again later */
	SINK_CLAIM_FENCED,     /* a re-claim found a newer owner's epoch: we lost it */
	SINK_CLAIM_UNAVAILABLE /* cluster: the master of the partition's keys is lost */
};

/* One partition to claim or renew. */
struct sink_claim {
	int32_t partition;
	int fresh;       /* 1: Kafka has just assigned it (a new epoch); 0: keep ours */
	uint64_t epoch;  /* in: ours (0 none); out: the epoch to tag writes with */
	uint64_t stored; /* out: the epoch Redis held before the call */
	enum sink_claim_result result; /* out */
};

/*
 * Claims or renews ownership of partitions of topic.events (schemas/redis.md
 * "Partition ownership"): a lease <prefix>lease:<topic>:<p> that expires
 * after redis.lease_ms unless renewed, and the owner epoch
 * <prefix>epoch:<topic>:<p> that only grows. A fresh claim takes a new epoch
 * unless another instance's lease is live (busy); a renewal (fresh = 0)
 * keeps the caller's epoch and is fenced when Redis holds a newer one.
 * Pass the epoch as sink_user.epoch and to sink_redis_mark_flushed so an
 * instance that lost the partition is refused. One pipeline. Returns 0
 * (every cl[i] filled) or -1 (errstr).
 */
int sink_redis_claim(
    struct sink_redis *sink, struct sink_claim *cl, size_t n, char *errstr, size_t errstr_size);

/* Deletes the leases of partitions[0..n) this instance holds (on revoke). 0 or -1. */
int sink_redis_release(
    struct sink_redis *sink, const int32_t *partitions, size_t n, char *errstr, size_t errstr_size);

/*
 * The in-flight record of a partition (schemas/redis.md "Poison messages").
 * check = 0: records [from, to] as the range about to be applied, or with
 * done = 1 marks the last one finished. check = 1, at a claim: the range
 * left in flight by an owner that died (not done, to >= committed) into
 * from/to; a single offset's death count (it becomes the suspect, or stays
 * it) raised and returned in crashes; from = -1 when nothing was in flight.
 */
struct sink_inflight {
	int32_t partition;
	int check;
	int done;          /* record: the last range of this partition finished */
	int64_t committed; /* check: the group's committed offset, -1 none */
	int64_t from, to;  /* record: in; check: out */
	int64_t crashes;   /* check: out */
};

/* One pipeline of in-flight records or checks. Returns 0 or -1 (errstr). */
int sink_redis_inflight(
    struct sink_redis *sink, struct sink_inflight *in, size_t n, char *errstr, size_t errstr_size);

/* This instance's lease owner id (host:pid:random), for logs. */
const char *sink_redis_owner(const struct sink_redis *sink);

/*
 * Replaces <prefix>tiers (hash node label -> name) with m's tier names, in
 * one MULTI/EXEC; call once per model load. Returns 0 or -1 (errstr).
 */
int sink_redis_write_tier_names(
    struct sink_redis *sink, const struct model *m, char *errstr, size_t errstr_size);

/*
 * A connected, authenticated hiredis context as cfg says (the connection
 * logic sink_redis_new uses; interestctl reads with it) that serves key:
 * with redis.cluster, the master of key's slot (NULL: the seed node).
 * NULL with errstr. Caller frees with redisFree.
 */
struct redisContext *sink_redis_connect(
    const struct config *cfg, const char *key, char *errstr, size_t errstr_size);

/*
 * Formats the wire value of a tier entry, "<short> <long>" with %.6g each,
 * into buf; returns its length. Shared by the sink, interestctl and replay.
 */
size_t sink_redis_tier_value(float w_short, float w_long, char *buf, size_t size);

/*
 * The ui:{u}:top JSON text of a top-N list (exactly what sink_redis_flush
 * writes with redis.top_format = json): a NUL-terminated malloc'd string,
 * length in *len; caller frees. NULL on ENOMEM.
 */
char *sink_redis_top_json(
    const struct model *m, const uint32_t *items, const float *scores, size_t n, size_t *len);

/* One [item_id, score] pair of a top JSON text; score is NAN for null. */
typedef void (*sink_redis_top_fn)(void *arg, const char *id, size_t id_len, double score);

/*
 * Reads a ui:{u}:top JSON text (schemas/redis.md, as sink_redis_top_json
 * writes it, any JSON escapes allowed) of len bytes with Jansson and calls fn
 * for each pair, best first. Returns 0, or -1 with the reason in errstr when
 * the text is not JSON (fn not called) or an element is not a pair (fn was
 * called for the pairs before it). The id passed to fn lives until fn returns.
 */
int sink_redis_top_parse(const char *text, size_t len, sink_redis_top_fn fn, void *arg,
    char *errstr, size_t errstr_size);

#endif
