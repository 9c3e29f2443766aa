/*
 * The consumer loop (DESIGN.md "Delivery guarantees"): poll a batch, decode,
 * dead-letter bad input, load unseen users' states, skip events at or below
 * a user's marker, apply the rest in one updater call, flush dirty users to
 * Redis, and commit offsets only once every write and dead letter before
 * them is acknowledged. Also rebalances (epoch fencing, flush before give
 * up), Redis outages (pause, back off, resume), snapshots, SIGHUP model
 * reload and orderly shutdown; erase requests (tombstones), pseudonymised ids
 * (ids.hmac_key_file) and the failover check that re-applies what Redis lost
 * (flushed-through markers, schemas/redis.md).
 */
#ifndef DAEMON_CONSUMER_H
#define DAEMON_CONSUMER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct decoder;
struct model;

/* Everything the loop counts; rendered every ~10 s in one log line. */
struct consumer_counters {
	uint64_t consumed;            /* messages polled (errors excluded) */
	uint64_t applied;             /* events applied to a user state */
	uint64_t duplicates;          /* skipped: at or below the user's marker */
	uint64_t duplicates_event_id; /* skipped: the user's state had taken its event id */
	uint64_t dlq_total;
	uint64_t dlq_by_decode[16]; /* by enum decode_err */
	uint64_t dlq_unknown_item;
	uint64_t dlq_bad_timestamp;
	uint64_t dlq_crashed; /* poison messages: in flight at poll.max_crashes deaths */
	uint64_t dlq_key_mismatch;
	uint64_t flushes; /* successful flushes with at least one user */
	uint64_t users_flushed;
	uint64_t flush_failures;
	uint64_t refused_stale;
	uint64_t refused_fenced;
	uint64_t commits;
	uint64_t commit_failures;
	uint64_t users_loaded;        /* states read from Redis */
	uint64_t state_decode_errors; /* stored states that could not be read (fresh start) */
	uint64_t rewarmed;            /* users re-warmed after a model swap */
	uint64_t snapshots;
	uint64_t snapshot_errors;
	uint64_t rewinds; /* batches given back (Redis down while loading) */
	uint64_t consumer_errors;
	uint64_t reloads;
	uint64_t reload_failures;
	uint64_t states_oversized;   /* stored states too large to read (fresh start) */
	uint64_t rollbacks;          /* partitions whose flushed marker was behind the commit */
	uint64_t rollback_offsets;   /* offsets re-read because of them */
	uint64_t erasures;           /* erase requests (tombstones) applied */
	uint64_t erased_skipped;     /* events kept out by a user's erasure */
	uint64_t refused_erased;     /* user writes refused: the user was erased in Redis */
	uint64_t partitions_fenced;  /* partitions stopped: a newer owner's epoch refused us */
	uint64_t partitions_stalled; /* served partitions with lag found unread for poll.stall_ms */
	uint64_t dlq_failures;       /* dead letters not delivered or not enqueued (retried) */
};

/*
 * Builds a new config for a reload (file and overrides as at start-up).
 * Returns it (caller frees with config_free) or NULL with errstr.
 */
typedef struct config *consumer_config_loader(void *opaque, char *errstr, size_t errstr_size);

struct consumer;

/*
 * Creates the consumer, the producer (dead letters, snapshots) and the Redis
 * sink, subscribes to topic.events. Takes ownership of cfg, m and dec (they
 * are freed by consumer_free, also on failure). loader (may be NULL) is
 * called on SIGHUP. NULL with the reason in errstr.
 */
struct consumer *consumer_new(struct config *cfg, struct model *m, struct decoder *dec,
    consumer_config_loader *loader, void *loader_opaque, char *errstr, size_t errstr_size);

/*
 * Runs until *stop is set (SIGTERM/SIGINT) or a fatal client error;
 * *reload set means SIGHUP (the loop clears it). On stop: finishes the
 * batch, flushes, commits, closes the consumer and flushes the producer
 * within shutdown.timeout_ms. Returns the process exit status: 0 after an
 * orderly stop, 1 after a fatal error.
 */
int consumer_run(struct consumer *c, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

/*
 * The time the start-up model load took (interestd.c loads the model before
 * the consumer exists), reported as interestd_model_load_seconds until a
 * SIGHUP load replaces it.
 */
void consumer_set_model_load_seconds(struct consumer *c, double load_s);

/* The counters (valid until consumer_free). */
const struct consumer_counters *consumer_counters(const struct consumer *c);

/* Destroys the clients and frees everything; NULL-safe. */
void consumer_free(struct consumer *c);

#endif
