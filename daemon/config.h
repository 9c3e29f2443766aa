/*
 * interestd configuration: one static table (config.c) lists every key with
 * its type, default, bounds, reloadable flag and help; parsing, validation,
 * --dump-config and the README table all derive from it. File format:
 * "key = value" lines, '#' comments (whole line), blank lines; unknown keys
 * are errors. Keys under "kafka." pass through verbatim to librdkafka.
 */
#ifndef DAEMON_CONFIG_H
#define DAEMON_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"

/* Exit status for a bad configuration (sysexits.h EX_CONFIG), as every tool's. */
#define CONFIG_EXIT_BAD CLI_EXIT_CONFIG

/* Which librdkafka client a kafka.* pass-through key goes to. */
enum config_kafka_scope {
	CONFIG_KAFKA_BOTH = 0, /* kafka.X: consumer and producer */
	CONFIG_KAFKA_CONSUMER, /* kafka.consumer.X: consumer only */
	CONFIG_KAFKA_PRODUCER  /* kafka.producer.X: producer (DLQ, snapshots) only */
};

/*
 * One kafka.* pass-through setting, in file order (setting the same key
 * again replaces the value in place). name is the librdkafka property with
 * the "kafka." / "kafka.consumer." / "kafka.producer." prefix removed, ready
 * for rd_kafka_conf_set(conf, name, value, ...): the consumer applies the
 * BOTH and CONSUMER entries in list order, the producer BOTH and PRODUCER.
 * Every entry was already accepted by rd_kafka_conf_set on a scratch conf at
 * load, so a failure on apply is not a config error. Defaults: one entry,
 * bootstrap.servers = localhost:9092.
 */
struct config_kafka {
	char *name;
	char *value;
	enum config_kafka_scope scope;
};

/* One registered writer schema: schema.writers entry "ID:PATH" or "PATH". */
struct config_writer {
	int32_t confluent_id; /* -1 when only the fingerprint is registered */
	char *path;
};

/* What to do with an event whose Kafka key is not its user_id (events.key_mismatch). */
enum config_key_mismatch {
	CONFIG_KEY_MISMATCH_DEAD_LETTER = 0, /* to topic.dlq, reason key_mismatch */
	CONFIG_KEY_MISMATCH_ACCEPT           /* applied to its user_id all the same */
};

enum config_top_format {
	CONFIG_TOP_JSON = 0, /* ui:{u}:top is one string, a JSON array */
	CONFIG_TOP_ZSET      /* ui:{u}:top is a sorted set */
};

/*
 * Typed values, filled from the table. Strings are owned by the config
 * (freed by config_free); NULL means "not set" for optional strings.
 * Units are in the names. See config.c's table for defaults and bounds, or
 * run `interestd --help-config`.
 */
struct config {
	/* Kafka */
	char *group_id;             /* group.id */
	char *topic_events;         /* topic.events */
	char *topic_snapshots;      /* topic.snapshots */
	char *topic_dlq;            /* topic.dlq */
	char *topic_items;          /* topic.items, NULL: no live items */
	struct config_kafka *kafka; /* kafka.* pass-through, [n_kafka] */
	size_t n_kafka;
	int poll_timeout_ms; /* poll.timeout_ms */

	/* Schemas and model */
	char *schema_reader;           /* schema.reader */
	struct config_writer *writers; /* schema.writers, [n_writers] */
	size_t n_writers;
	char *schema_plain_writer; /* schema.plain_writer, NULL: reader schema */
	char *model_path;          /* model.path */

	/* Redis */
	char *redis_host;          /* redis.host */
	int redis_port;            /* redis.port */
	char *redis_unix_socket;   /* redis.unix_socket, NULL: use host/port */
	int redis_cluster;         /* redis.cluster: host:port seeds a Redis Cluster */
	char *redis_user;          /* redis.user, NULL: legacy AUTH <password> */
	char *redis_password;      /* redis.password, or the first line of
	                                    redis.password_file; NULL: no AUTH */
	char *redis_password_file; /* redis.password_file */
	char *ids_hmac_key_file;   /* ids.hmac_key_file, NULL: user ids verbatim */
	char *ids_hmac_key;        /* its first line (secret), NULL when unset */
	char *redis_prefix;        /* redis.prefix */
	int redis_top_n;           /* redis.top_n */
	enum config_top_format redis_top_format; /* redis.top_format */
	int64_t redis_ttl_s;                     /* redis.ttl_s, 0: keys never expire */
	int redis_timeout_ms;                    /* redis.timeout_ms: connect and command */
	int redis_wait_replicas;                 /* redis.wait_replicas, 0: no WAIT */
	int redis_wait_timeout_ms;               /* redis.wait_timeout_ms */
	int redis_lease_ms;                      /* redis.lease_ms */
	int poll_stall_ms;                       /* poll.stall_ms */
	int poll_max_crashes;                    /* poll.max_crashes */

	/* Batching and flushing */
	int flush_interval_ms;    /* flush.interval_ms */
	int flush_when_caught_up; /* flush.when_caught_up */
	int flush_max_users;      /* flush.max_users */
	int batch_max_events;     /* batch.max_events */
	int cache_max_users;      /* cache.max_users */
	int tiers_calibrate;      /* tiers.calibrate (bool) */
	int topn_search;          /* topn.search: 0 exact, 1 tiered */
	int topn_probe_items;     /* topn.probe_items */

	/* Live catalog items */
	int items_apply_interval_ms;  /* items.apply_interval_ms */
	int items_startup_timeout_ms; /* items.startup_timeout_ms */

	/* Event time window (DLQ reason "timestamp") */
	int64_t events_max_age_s;    /* events.max_age_s, 0: no lower bound */
	int64_t events_max_future_s; /* events.max_future_s, 0: no upper bound */
	int events_key_mismatch;     /* events.key_mismatch: enum config_key_mismatch */

	/* Snapshots */
	int snapshot_every_events;   /* snapshot.every_events, 0: never by count */
	int snapshot_max_interval_s; /* snapshot.max_interval_s, 0: never by time */

	/* Operations */
	int log_level;           /* log.level: enum log_level (log.h) */
	char *metrics_listen;    /* metrics.listen "HOST:PORT", NULL: off */
	int shutdown_timeout_ms; /* shutdown.timeout_ms: producer flush deadline */
};

/* A config holding every default; NULL on ENOMEM. Free with config_free (NULL-safe). */
struct config *config_new(void);
void config_free(struct config *cfg);

/*
 * Reads path and applies every line on top of cfg's current values. All
 * errors are collected, one per line of errstr ("FILE:LINE: key 'x': <rule>"),
 * truncated to errstr_size with a final "... and N more errors" line; then
 * returns -1 (cfg may be partly updated: discard it). Returns 0 when the whole
 * file was valid. Also runs the cross-key checks of config_check.
 */
int config_load_file(struct config *cfg, const char *path, char *errstr, size_t errstr_size);
/* As config_load_file on a memory buffer; name is used in messages. */
int config_load_buffer(struct config *cfg, const char *name, const char *buf, size_t len,
    char *errstr, size_t errstr_size);

/*
 * Sets one key (command-line override "-o key=value"). Returns 0, or -1 with
 * "key 'x': <rule>" in errstr. Run config_check after the last override.
 */
int config_set(
    struct config *cfg, const char *key, const char *value, char *errstr, size_t errstr_size);
/* As config_set, for a "key=value" string (spaces around '=' allowed). */
int config_set_kv(struct config *cfg, const char *kv, char *errstr, size_t errstr_size);

/* interestd's Kafka clients, each configured by config_kafka_conf. */
enum config_kafka_client {
	CONFIG_KAFKA_EVENTS_CONSUMER, /* topic.events, group group.id */
	CONFIG_KAFKA_DAEMON_PRODUCER, /* dead letters and snapshots */
	CONFIG_KAFKA_ITEMS_CONSUMER,  /* topic.items, assign() only, never commits */
	CONFIG_KAFKA_CTL_PRODUCER     /* interestctl erase */
};

/*
 * A librdkafka configuration for one of interestd's clients, built in one
 * place: the client's defaults, then the kafka.* pass-through of its scope
 * (kafka.X for every client, kafka.consumer.X / kafka.producer.X for one
 * kind), then what the client's guarantees need, set last so that a
 * pass-through cannot undo it (no auto commit or offset store for the events
 * consumer, the items reader's fixed settings, log lines queued to our
 * polls). Callbacks are the caller's. NULL with "kafka[ (items consumer)]
 * NAME=VALUE: <librdkafka's reason>" in errstr.
 */
struct rd_kafka_conf_s *config_kafka_conf(
    const struct config *cfg, enum config_kafka_client client, char *errstr, size_t errstr_size);

/*
 * Cross-key checks (redis.password with redis.password_file, a topic used
 * twice, ...). Returns 0 or -1 with every problem in errstr, one per line.
 */
int config_check(const struct config *cfg, char *errstr, size_t errstr_size);

/*
 * Writes every key with its current value as a valid config file
 * ("key = value"), secrets shown as "********", kafka.* keys included.
 */
void config_dump(const struct config *cfg, FILE *fp);

/* Writes the Markdown table of keys (key, type, default, reload, help) for the README. */
void config_help_table(FILE *fp);

/*
 * Writes the same keys as an mdoc(7) tag list (.Bl ... .El), which the
 * Makefile splices into the interestd.conf(5) man page (man/interestd.conf.5).
 */
void config_help_mdoc(FILE *fp);

/*
 * Compares two configs (on reload). Writes the names of changed keys that
 * need a restart to take effect into names (comma-separated, truncated) and
 * returns how many there are; 0 when the new config can be swapped in fully.
 * kafka.* and group.id / topic.* count as needing a restart.
 */
int config_restart_keys(
    const struct config *old_cfg, const struct config *new_cfg, char *names, size_t names_size);

#endif
