/*
 * interestd configuration: the key table (config_keys[]) and everything that
 * derives from it: defaults, the "key = value" parser with collected errors,
 * overrides, cross-key checks, --dump-config and the README table.
 */
#include "config.h"
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define CONFIG_FILE_MAX_BYTES        (1024 * 1024) /* a config file larger than this is an error */
#define CONFIG_SECRET_MAX_BYTES      4096          /* redis.password_file, ids.hmac_key_file */
#define CONFIG_HMAC_KEY_MIN_BYTES    16            /* ids.hmac_key_file: 128 bits at least */
#define CONFIG_MASK                  "********"
#define CONFIG_KAFKA_PREFIX          "kafka."
#define CONFIG_KAFKA_CONSUMER_PREFIX "kafka.consumer."
#define CONFIG_KAFKA_PRODUCER_PREFIX "kafka.producer."
#define CONFIG_ERR_MAX               512  /* one error message */
#define CONFIG_VALUE_MAX             4096 /* a formatted value (dump, compare) */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum cfg_type {
	CFG_STRING,     /* char *; empty is an error unless CFG_OPTIONAL (then NULL) */
	CFG_INT,        /* int within [min, max] */
	CFG_INT64,      /* int64_t within [min, max] */
	CFG_BOOL,       /* int 0/1: true/false, yes/no, on/off, 1/0 */
	CFG_ENUM,       /* int: index into names[] */
	CFG_WRITERS,    /* schema.writers list */
	CFG_SECRET_FILE /* path of a file holding a secret; read on set */
};

#define CFG_RELOAD   0x1 /* a new value takes effect on SIGHUP */
#define CFG_SECRET   0x2 /* masked in dumps */
#define CFG_OPTIONAL 0x4 /* strings: empty means unset (NULL) */

struct cfg_key;
/* Extra rule for a string value: 0, or -1 with the rule broken in err. */
typedef int cfg_check_fn(const char *value, char *err, size_t err_size);

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t off;               /* offsetof(struct config, field) */
	const char *def;          /* default, parsed like a file value */
	int64_t min, max;         /* CFG_INT / CFG_INT64 */
	const char *const *names; /* CFG_ENUM, NULL-terminated */
	cfg_check_fn *check;      /* CFG_STRING extra rule, or NULL */
	unsigned flags;
	const char *help;
};

static const char *const cfg_top_formats[] = { "json", "zset", NULL };
static const char *const cfg_log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const cfg_key_mismatch[] = { "dead_letter", "accept", NULL };
static const char *const cfg_topn_searches[] = { "exact", "tiered", NULL };

static cfg_check_fn check_prefix, check_listen;

#define OFF(f) offsetof(struct config, f)
#define YEAR_S INT64_C(31557600) /* 365.25 days */

/*
 * Every key interestd knows, in README order. To add one: a field in struct
 * config, a line here; parsing, dumps, docs and reload checks follow.
 */
static const struct cfg_key config_keys[] = {
	/* Kafka (plus kafka.* pass-through, not listed here) */
	{ "group.id", CFG_STRING, OFF(group_id), "interestd", 0, 0, NULL, NULL, 0,
	    "Kafka consumer group of all interestd instances" },
	{ "topic.events", CFG_STRING, OFF(topic_events), "behaviour-events", 0, 0, NULL, NULL, 0,
	    "input topic of BehaviourEvent messages" },
	{ "topic.snapshots", CFG_STRING, OFF(topic_snapshots), "interest-snapshots", 0, 0, NULL,
	    NULL, 0, "output topic of InterestSnapshot messages (retraining feed)" },
	{ "topic.dlq", CFG_STRING, OFF(topic_dlq), "interest-dlq", 0, 0, NULL, NULL, 0,
	    "dead-letter topic for events that cannot be applied" },
	{ "topic.items", CFG_STRING, OFF(topic_items), "interest-items", 0, 0, NULL, NULL,
	    CFG_OPTIONAL,
	    "compacted topic of live catalog items (ItemUpdate, schemas/items.md); empty: no live "
	    "items" },
	{ "poll.timeout_ms", CFG_INT, OFF(poll_timeout_ms), "100", 1, 5000, NULL, NULL, CFG_RELOAD,
	    "longest wait in one consumer poll; bounds signal and flush latency" },

	/* Schemas and model */
	{ "poll.max_crashes", CFG_INT, OFF(poll_max_crashes), "3", 1, 1000, NULL, NULL, 0,
	    "a message in flight each time the daemon died this many times is dead-lettered as "
	    "`crashed` instead of applied (schemas/redis.md \"Poison messages\")" },
	{ "poll.stall_ms", CFG_INT, OFF(poll_stall_ms), "30000", 1000, 3600000, NULL, NULL, 0,
	    "a served partition with lag that has not been read for this long is logged at error "
	    "(event=partition_stalled), counted in interestd_partitions_stalled, resumed and "
	    "sought to its position" },
	{ "schema.reader", CFG_STRING, OFF(schema_reader),
	    "/usr/share/interestd/behaviour_event.avsc", 0, 0, NULL, NULL, 0,
	    "reader schema (.avsc) events are decoded into" },
	{ "schema.writers", CFG_WRITERS, OFF(writers), "", 0, 0, NULL, NULL, CFG_OPTIONAL,
	    "comma list of writer schemas 'ID:PATH' (Confluent id and fingerprint) or 'PATH' "
	    "(single-object fingerprint only); the reader schema's fingerprint is always "
	    "accepted" },
	{ "schema.plain_writer", CFG_STRING, OFF(schema_plain_writer), "", 0, 0, NULL, NULL,
	    CFG_OPTIONAL, "writer schema of unframed messages; empty: the reader schema" },
	{ "model.path", CFG_STRING, OFF(model_path), "/var/lib/interestd/model.imdl", 0, 0, NULL,
	    NULL, CFG_RELOAD, "model file (schemas/modelfile.md); SIGHUP reloads it" },

	/* Redis */
	{ "redis.host", CFG_STRING, OFF(redis_host), "127.0.0.1", 0, 0, NULL, NULL, 0,
	    "Redis host (ignored with redis.unix_socket)" },
	{ "redis.port", CFG_INT, OFF(redis_port), "6379", 1, 65535, NULL, NULL, 0,
	    "Redis TCP port" },
	{ "redis.unix_socket", CFG_STRING, OFF(redis_unix_socket), "", 0, 0, NULL, NULL,
	    CFG_OPTIONAL, "Redis unix socket path; empty: TCP" },
	{ "redis.cluster", CFG_BOOL, OFF(redis_cluster), "false", 0, 0, NULL, NULL, 0,
	    "redis.host:redis.port is a seed node of a Redis Cluster: each user's writes go to its "
	    "slot's master (schemas/redis.md \"Redis Cluster\"); needs TCP, not "
	    "redis.unix_socket" },
	{ "redis.user", CFG_STRING, OFF(redis_user), "", 0, 0, NULL, NULL, CFG_OPTIONAL,
	    "Redis 6 ACL user (AUTH user password); empty: AUTH password" },
	{ "redis.password", CFG_STRING, OFF(redis_password), "", 0, 0, NULL, NULL,
	    CFG_OPTIONAL | CFG_SECRET, "Redis password; prefer redis.password_file" },
	{ "redis.password_file", CFG_SECRET_FILE, OFF(redis_password_file), "", 0, 0, NULL, NULL,
	    CFG_OPTIONAL,
	    "file whose first line is the Redis password; must not be group/world readable" },
	{ "redis.prefix", CFG_STRING, OFF(redis_prefix), "ui:", 0, 0, NULL, check_prefix, 0,
	    "prefix of every key (schemas/redis.md)" },
	{ "redis.top_n", CFG_INT, OFF(redis_top_n), "50", 1, 1000, NULL, NULL, CFG_RELOAD,
	    "items in each user's top-N list" },
	{ "redis.top_format", CFG_ENUM, OFF(redis_top_format), "json", 0, 0, cfg_top_formats, NULL,
	    0, "ui:{u}:top as one JSON string or as a sorted set" },
	{ "redis.ttl_s", CFG_INT64, OFF(redis_ttl_s), "2592000", 0, 100 * YEAR_S, NULL, NULL, 0,
	    "expiry of an inactive user's keys in seconds; 0: never" },
	{ "redis.timeout_ms", CFG_INT, OFF(redis_timeout_ms), "2000", 1, 600000, NULL, NULL, 0,
	    "Redis connect and command timeout" },
	{ "redis.wait_replicas", CFG_INT, OFF(redis_wait_replicas), "0", 0, 64, NULL, NULL, 0,
	    "replicas that must acknowledge each flush (WAIT) before offsets are committed; 0: no "
	    "WAIT" },
	{ "redis.wait_timeout_ms", CFG_INT, OFF(redis_wait_timeout_ms), "1000", 1, 600000, NULL,
	    NULL, 0, "WAIT timeout; fewer replicas by then fails the flush" },
	{ "redis.lease_ms", CFG_INT, OFF(redis_lease_ms), "10000", 1000, 600000, NULL, NULL, 0,
	    "partition ownership lease in Redis (schemas/redis.md), renewed every third of it; a "
	    "frozen owner's partitions pass to the new Kafka owner at most this long after its "
	    "last renewal; keep it below the consumer's session.timeout.ms" },

	/* User ids */
	{ "ids.hmac_key_file", CFG_SECRET_FILE, OFF(ids_hmac_key_file), "", 0, 0, NULL, NULL,
	    CFG_OPTIONAL,
	    "file whose first line (at least 16 bytes) is an HMAC key: user ids become "
	    "hex(HMAC-SHA256(key, id))[0:32] before Redis, snapshots and logs (schemas/redis.md); "
	    "must not be group/world readable" },

	/* Batching and flushing */
	{ "flush.interval_ms", CFG_INT, OFF(flush_interval_ms), "200", 1, 60000, NULL, NULL,
	    CFG_RELOAD, "longest time an applied event waits before its user is written to Redis" },
	{ "flush.when_caught_up", CFG_BOOL, OFF(flush_when_caught_up), "true", 0, 0, NULL, NULL,
	    CFG_RELOAD,
	    "also flush as soon as a poll has drained everything fetched (below full load: "
	    "latency of one batch, not flush.interval_ms); behind, flushes wait for "
	    "flush.interval_ms or flush.max_users" },
	{ "flush.max_users", CFG_INT, OFF(flush_max_users), "4096", 1, 1048576, NULL, NULL, 0,
	    "a flush starts early once this many users are dirty" },
	{ "batch.max_events", CFG_INT, OFF(batch_max_events), "10000", 1, 1000000, NULL, NULL, 0,
	    "events applied per batch (one LSTM wave set)" },
	{ "cache.max_users", CFG_INT, OFF(cache_max_users), "1000000", 1000, 100000000, NULL, NULL,
	    CFG_RELOAD,
	    "user states kept in memory; beyond it the least recently seen clean users are dropped "
	    "(reloaded from Redis on their next event)" },
	{ "tiers.calibrate", CFG_BOOL, OFF(tiers_calibrate), "false", 0, 0, NULL, NULL, CFG_RELOAD,
	    "spread the top-N across the user's tier-1 interests by weight" },
	{ "topn.search", CFG_ENUM, OFF(topn_search), "exact", 0, 0, cfg_topn_searches, NULL,
	    CFG_RELOAD,
	    "exact: every item scored (the reference); tiered: only the cells of the tier tree "
	    "(bias bands of a tier-2 node) whose score estimate ranks first for the user, until "
	    "they "
	    "hold topn.probe_items items (recall against exact: docs/BENCH.md)" },
	{ "topn.probe_items", CFG_INT, OFF(topn_probe_items), "4096", 16, 65536, NULL, NULL,
	    CFG_RELOAD,
	    "tiered: items the cells scored for one user hold at least (and at least redis.top_n "
	    "plus the user's consumed items); a cell whose bound is below the user's current N-th "
	    "score is skipped" },

	/* Live catalog items (topic.items) */
	{ "items.apply_interval_ms", CFG_INT, OFF(items_apply_interval_ms), "1000", 1, 600000, NULL,
	    NULL, CFG_RELOAD,
	    "live items received are swapped into the serving model at most this often" },
	{ "items.startup_timeout_ms", CFG_INT, OFF(items_startup_timeout_ms), "10000", 0, 600000,
	    NULL, NULL, 0,
	    "at start-up, longest wait for topic.items to be read up to its end before events are "
	    "consumed (then a warning, and the rest arrives live)" },

	/* Event time window */
	{ "events.max_age_s", CFG_INT64, OFF(events_max_age_s), "1577880000", 0, 1000 * YEAR_S,
	    NULL, NULL, CFG_RELOAD,
	    "events older than this (vs. the wall clock) go to the DLQ; 0: no limit. Default 50 "
	    "years: "
	    "rejects epoch-0 and seconds-as-milliseconds timestamps, accepts replayed datasets" },
	{ "events.max_future_s", CFG_INT64, OFF(events_max_future_s), "86400", 0, 1000 * YEAR_S,
	    NULL, NULL, CFG_RELOAD,
	    "events further ahead of the wall clock go to the DLQ; 0: no limit" },
	{ "events.key_mismatch", CFG_ENUM, OFF(events_key_mismatch), "dead_letter", 0, 0,
	    cfg_key_mismatch, NULL, CFG_RELOAD,
	    "an event whose Kafka key is not its user_id (it may sit on another user's partition): "
	    "dead_letter (reason key_mismatch) or accept (applied to its user_id)" },

	/* Snapshots */
	{ "snapshot.every_events", CFG_INT, OFF(snapshot_every_events), "50", 0, 1000000, NULL,
	    NULL, CFG_RELOAD,
	    "emit a user's snapshot after this many of its events; 0: not by count" },
	{ "snapshot.max_interval_s", CFG_INT, OFF(snapshot_max_interval_s), "3600", 0, 30 * 86400,
	    NULL, NULL, CFG_RELOAD,
	    "emit a snapshot of a user with pending events at least this often; 0: not by time" },

	/* Operations */
	{ "log.level", CFG_ENUM, OFF(log_level), "info", 0, 0, cfg_log_levels, NULL, CFG_RELOAD,
	    "error, warn, info or debug" },
	{ "metrics.listen", CFG_STRING, OFF(metrics_listen), "", 0, 0, NULL, check_listen,
	    CFG_OPTIONAL, "HOST:PORT of the Prometheus /metrics endpoint; empty: off" },
	{ "metrics.online", CFG_BOOL, OFF(metrics_online), "false", 0, 0, NULL, NULL, 0,
	    "online metrics of the serving model (README \"Online metrics\"): keep each cached "
	    "user's last written top-N (4 bytes an item) and measure the next event against it; "
	    "off by default: the list takes the bench past its 2,048 bytes a user" },
	{ "shutdown.timeout_ms", CFG_INT, OFF(shutdown_timeout_ms), "10000", 0, 600000, NULL, NULL,
	    CFG_RELOAD, "deadline for flushing the snapshot/DLQ producer on shutdown" },
};

#define CONFIG_N_KEYS ARRAY_LEN(config_keys)

/* The public struct plus what only this file needs; pub comes first. */
struct config_impl {
	struct config pub;
	int password_direct; /* redis.password was set (not from the file) */
	size_t kafka_cap;
	unsigned set_line[CONFIG_N_KEYS]; /* during a load: line that set the key, or 0 */
};

/* Collected errors: lines in the caller's buffer, the overflow counted. */
struct errbuf {
	char *buf;
	size_t size, len;
	unsigned n, dropped;
};

#define ERRBUF_TRAILER 48 /* room kept for "... and N more errors" */

static void
errbuf_init(struct errbuf *eb, char *buf, size_t size)
{
	eb->buf = buf;
	eb->size = size;
	eb->len = 0;
	eb->n = 0;
	eb->dropped = 0;
	if (size > 0)
		buf[0] = '\0';
}

static void errbuf_add(struct errbuf *eb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
errbuf_add(struct errbuf *eb, const char *fmt, ...)
{
	char line[CONFIG_ERR_MAX];
	va_list ap;
	size_t need;
	int n;

	eb->n++;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	need = strlen(line) + (eb->len > 0 ? 1 : 0);
	if (eb->dropped > 0 || eb->size <= ERRBUF_TRAILER ||
	    eb->len + need + 1 > eb->size - ERRBUF_TRAILER) {
		/* Tiny buffers still get the first message, truncated. */
		if (eb->len == 0 && eb->size > 0 && eb->dropped == 0) {
			snprintf(eb->buf, eb->size, "%s", line);
			eb->len = strlen(eb->buf);
			return;
		}
		eb->dropped++;
		return;
	}
	snprintf(eb->buf + eb->len, eb->size - eb->len, "%s%s", eb->len > 0 ? "\n" : "", line);
	eb->len += need;
}

/* Appends the overflow trailer; returns 0 when no error was added. */
static int
errbuf_finish(struct errbuf *eb)
{
	if (eb->dropped > 0 && eb->size > eb->len + 1)
		snprintf(
		    eb->buf + eb->len, eb->size - eb->len, "\n... and %u more errors", eb->dropped);
	return eb->n > 0 ? -1 : 0;
}

static struct config_impl *
impl_of(struct config *cfg)
{
	return (struct config_impl *)(void *)cfg;
}

static const struct config_impl *
cimpl_of(const struct config *cfg)
{
	return (const struct config_impl *)(const void *)cfg;
}

static const struct cfg_key *
key_find(const char *name)
{
	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static void *
field_ptr(struct config *cfg, const struct cfg_key *k)
{
	return (char *)cfg + k->off;
}

static const void *
cfield_ptr(const struct config *cfg, const struct cfg_key *k)
{
	return (const char *)cfg + k->off;
}

/* --- value checks ------------------------------------------------------ */

static int
check_prefix(const char *value, char *err, size_t err_size)
{
	if (strpbrk(value, "{} \t") != NULL) {
		snprintf(err, err_size,
		    "must not contain '{', '}' or blanks (keys use {user} hash tags)");
		return -1;
	}
	return 0;
}

static int
check_listen(const char *value, char *err, size_t err_size)
{
	const char *colon = strrchr(value, ':');
	char *end;
	long port;

	if (colon == NULL || colon == value) {
		snprintf(err, err_size, "'%s' is not HOST:PORT", value);
		return -1;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65535) {
		snprintf(err, err_size, "'%s' is not HOST:PORT (port 0..65535)", value);
		return -1;
	}
	return 0;
}

/* --- typed setters -------------------------------------------------- */

static int
parse_int64(const char *value, int64_t min, int64_t max, int64_t *out, char *err, size_t err_size)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(value, &end, 10);
	if (end == value || *end != '\0') {
		snprintf(err, err_size, "'%s' is not an integer", value);
		return -1;
	}
	if (errno == ERANGE || v < min || v > max) {
		snprintf(err, err_size, "%s is out of range [%lld, %lld]", value, (long long)min,
		    (long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_bool(const char *value, int *out, char *err, size_t err_size)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcmp(value, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(value, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	snprintf(err, err_size, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", value);
	return -1;
}

static int
parse_enum(const char *value, const char *const *names, int *out, char *err, size_t err_size)
{
	char list[256] = "";
	size_t len = 0;

	for (int i = 0; names[i] != NULL; i++) {
		if (strcmp(value, names[i]) == 0) {
			*out = i;
			return 0;
		}
		len += (size_t)snprintf(
		    list + len, sizeof(list) - len, "%s%s", i > 0 ? ", " : "", names[i]);
		if (len >= sizeof(list))
			len = sizeof(list) - 1;
	}
	snprintf(err, err_size, "'%s' is not one of %s", value, list);
	return -1;
}

static void
writers_clear(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_writers; i++)
		free(cfg->writers[i].path);
	free(cfg->writers);
	cfg->writers = NULL;
	cfg->n_writers = 0;
}

/* Trims blanks at both ends in place; returns the start. */
static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int
parse_writers(struct config *cfg, const char *value, char *err, size_t err_size)
{
	struct config_writer *w = NULL;
	size_t n = 0, cap = 0;
	char *copy, *save = NULL, *tok;
	int ret = -1;

	copy = strdup(value);
	if (copy == NULL) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		char *entry = trim(tok), *path = entry, *colon;
		int64_t id = -1;

		if (*entry == '\0') {
			snprintf(err, err_size, "empty entry in the list");
			goto fail;
		}
		colon = strchr(entry, ':');
		if (colon != NULL && colon > entry &&
		    strspn(entry, "0123456789") == (size_t)(colon - entry)) {
			*colon = '\0';
			if (parse_int64(entry, 0, INT32_MAX, &id, err, err_size) < 0)
				goto fail;
			path = trim(colon + 1);
			if (*path == '\0') {
				snprintf(
				    err, err_size, "schema id %lld has no path", (long long)id);
				goto fail;
			}
		}
		for (size_t i = 0; i < n; i++) {
			if (id >= 0 && w[i].confluent_id == id) {
				snprintf(
				    err, err_size, "schema id %lld listed twice", (long long)id);
				goto fail;
			}
		}
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 4;
			struct config_writer *nw = realloc(w, ncap * sizeof(*w));
			if (nw == NULL) {
				snprintf(err, err_size, "out of memory");
				goto fail;
			}
			w = nw;
			cap = ncap;
		}
		w[n].confluent_id = (int32_t)id;
		w[n].path = strdup(path);
		if (w[n].path == NULL) {
			snprintf(err, err_size, "out of memory");
			goto fail;
		}
		n++;
	}
	writers_clear(cfg);
	cfg->writers = w;
	cfg->n_writers = n;
	w = NULL;
	n = 0;
	ret = 0;
fail:
	for (size_t i = 0; i < n; i++)
		free(w[i].path);
	free(w);
	free(copy);
	return ret;
}

/* memset that the compiler may not drop (explicit_bzero is not POSIX). */
static void
wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n-- > 0)
		*v++ = 0;
}

/*
 * Reads the first line of a secret file after checking that neither group
 * nor others may read it. Returns a malloc'd string or NULL (err).
 */
static char *
read_secret_file(const char *path, char *err, size_t err_size)
{
	char buf[CONFIG_SECRET_MAX_BYTES + 1];
	struct stat st;
	char *secret = NULL;
	ssize_t got;
	size_t len = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block us */
	if (fd < 0) {
		snprintf(err, err_size, "cannot open '%s': %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, err_size, "cannot stat '%s': %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_size, "'%s' is not a regular file", path);
		goto done;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		snprintf(err, err_size, "'%s' is group/world accessible (mode %04o): chmod 600 it",
		    path, (unsigned)(st.st_mode & 07777));
		goto done;
	}
	while (len < sizeof(buf) - 1) {
		got = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(err, err_size, "cannot read '%s': %s", path, strerror(errno));
			goto done;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		snprintf(err, err_size, "'%s' holds no secret on its first line", path);
		goto done;
	}
	if (strlen(buf) >= CONFIG_SECRET_MAX_BYTES) {
		snprintf(err, err_size, "'%s': secret longer than %d bytes", path,
		    CONFIG_SECRET_MAX_BYTES - 1);
		goto done;
	}
	secret = strdup(buf);
	if (secret == NULL)
		snprintf(err, err_size, "out of memory");
done:
	wipe(buf, sizeof(buf));
	close(fd);
	return secret;
}

/* Frees a secret after wiping it. */
static void
free_secret(char *s)
{
	if (s != NULL)
		wipe(s, strlen(s));
	free(s);
}

/* Sets one table key from its text; err gets the rule broken. */
static int
key_set(
    struct config_impl *ci, const struct cfg_key *k, const char *value, char *err, size_t err_size)
{
	struct config *cfg = &ci->pub;
	void *p = field_ptr(cfg, k);
	int64_t v64;
	int vi;

	switch (k->type) {
	case CFG_STRING: {
		char **sp = p;
		char *copy = NULL;

		if (*value == '\0' && !(k->flags & CFG_OPTIONAL)) {
			snprintf(err, err_size, "must not be empty");
			return -1;
		}
		if (*value != '\0' && k->check != NULL && k->check(value, err, err_size) < 0)
			return -1;
		if (*value != '\0' && (copy = strdup(value)) == NULL) {
			snprintf(err, err_size, "out of memory");
			return -1;
		}
		if (k->flags & CFG_SECRET)
			free_secret(*sp);
		else
			free(*sp);
		*sp = copy;
		if (p == (void *)&cfg->redis_password)
			ci->password_direct = copy != NULL;
		return 0;
	}
	case CFG_INT:
		if (parse_int64(value, k->min, k->max, &v64, err, err_size) < 0)
			return -1;
		*(int *)p = (int)v64;
		return 0;
	case CFG_INT64:
		if (parse_int64(value, k->min, k->max, &v64, err, err_size) < 0)
			return -1;
		*(int64_t *)p = v64;
		return 0;
	case CFG_BOOL:
		if (parse_bool(value, &vi, err, err_size) < 0)
			return -1;
		*(int *)p = vi;
		return 0;
	case CFG_ENUM:
		if (parse_enum(value, k->names, &vi, err, err_size) < 0)
			return -1;
		*(int *)p = vi;
		return 0;
	case CFG_WRITERS:
		return parse_writers(cfg, value, err, err_size);
	case CFG_SECRET_FILE: {
		char **sp = p;
		char *path = NULL, *secret = NULL;

		if (*value != '\0') {
			secret = read_secret_file(value, err, err_size);
			if (secret == NULL)
				return -1;
			path = strdup(value);
			if (path == NULL) {
				free_secret(secret);
				snprintf(err, err_size, "out of memory");
				return -1;
			}
		}
		if (p == (void *)&cfg->ids_hmac_key_file) {
			if (secret != NULL && strlen(secret) < CONFIG_HMAC_KEY_MIN_BYTES) {
				snprintf(err, err_size, "'%s': key shorter than %d bytes", value,
				    CONFIG_HMAC_KEY_MIN_BYTES);
				free_secret(secret);
				free(path);
				return -1;
			}
			free(*sp);
			*sp = path;
			free_secret(cfg->ids_hmac_key);
			cfg->ids_hmac_key = secret;
			return 0;
		}
		free(*sp);
		*sp = path;
		/* The file's secret replaces any earlier one unless set directly (config_check). */
		if (!ci->password_direct) {
			free_secret(cfg->redis_password);
			cfg->redis_password = secret;
		} else {
			free_secret(secret);
		}
		return 0;
	}
	}
	snprintf(err, err_size, "internal: bad key type");
	return -1;
}

/* Sets a kafka.* pass-through key after librdkafka accepted it. */
static int
kafka_set(struct config_impl *ci, const char *key, const char *value, char *err, size_t err_size)
{
	struct config *cfg = &ci->pub;
	enum config_kafka_scope scope = CONFIG_KAFKA_BOTH;
	const char *name;
	char rkerr[256];
	rd_kafka_conf_t *conf;
	rd_kafka_conf_res_t res;
	char *nname, *nvalue;

	if (strncmp(key, CONFIG_KAFKA_CONSUMER_PREFIX, strlen(CONFIG_KAFKA_CONSUMER_PREFIX)) == 0) {
		scope = CONFIG_KAFKA_CONSUMER;
		name = key + strlen(CONFIG_KAFKA_CONSUMER_PREFIX);
	} else if (strncmp(key, CONFIG_KAFKA_PRODUCER_PREFIX,
		       strlen(CONFIG_KAFKA_PRODUCER_PREFIX)) == 0) {
		scope = CONFIG_KAFKA_PRODUCER;
		name = key + strlen(CONFIG_KAFKA_PRODUCER_PREFIX);
	} else {
		name = key + strlen(CONFIG_KAFKA_PREFIX);
	}
	if (*name == '\0') {
		snprintf(err, err_size, "no librdkafka property after the prefix");
		return -1;
	}
	if (strcmp(name, "group.id") == 0) {
		snprintf(err, err_size, "set the consumer group with 'group.id', not under kafka.");
		return -1;
	}
	conf = rd_kafka_conf_new();
	if (conf == NULL) {
		snprintf(err, err_size, "out of memory");
		return -1;
	}
	rkerr[0] = '\0';
	res = rd_kafka_conf_set(conf, name, value, rkerr, sizeof(rkerr));
	rd_kafka_conf_destroy(conf);
	if (res != RD_KAFKA_CONF_OK) {
		snprintf(err, err_size, "librdkafka: %s", rkerr);
		return -1;
	}
	for (size_t i = 0; i < cfg->n_kafka; i++) {
		if (cfg->kafka[i].scope == scope && strcmp(cfg->kafka[i].name, name) == 0) {
			if ((nvalue = strdup(value)) == NULL)
				goto nomem;
			free(cfg->kafka[i].value);
			cfg->kafka[i].value = nvalue;
			return 0;
		}
	}
	if (cfg->n_kafka == ci->kafka_cap) {
		size_t ncap = ci->kafka_cap ? 2 * ci->kafka_cap : 8;
		struct config_kafka *nk = realloc(cfg->kafka, ncap * sizeof(*nk));
		if (nk == NULL)
			goto nomem;
		cfg->kafka = nk;
		ci->kafka_cap = ncap;
	}
	nname = strdup(name);
	nvalue = strdup(value);
	if (nname == NULL || nvalue == NULL) {
		free(nname);
		free(nvalue);
		goto nomem;
	}
	cfg->kafka[cfg->n_kafka].name = nname;
	cfg->kafka[cfg->n_kafka].value = nvalue;
	cfg->kafka[cfg->n_kafka].scope = scope;
	cfg->n_kafka++;
	return 0;
nomem:
	snprintf(err, err_size, "out of memory");
	return -1;
}

static int
is_kafka_key(const char *key)
{
	return strncmp(key, CONFIG_KAFKA_PREFIX, strlen(CONFIG_KAFKA_PREFIX)) == 0;
}

/* --- public API ------------------------------------------------------ */

struct config *
config_new(void)
{
	struct config_impl *ci;
	char err[CONFIG_ERR_MAX];

	ci = calloc(1, sizeof(*ci));
	if (ci == NULL)
		return NULL;
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		if (key_set(ci, &config_keys[i], config_keys[i].def, err, sizeof(err)) < 0) {
			/* Only ENOMEM can get here: the defaults are tested. */
			config_free(&ci->pub);
			return NULL;
		}
	}
	if (kafka_set(ci, "kafka.bootstrap.servers", "localhost:9092", err, sizeof(err)) < 0) {
		config_free(&ci->pub);
		return NULL;
	}
	return &ci->pub;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct cfg_key *k = &config_keys[i];
		if (k->type == CFG_STRING || k->type == CFG_SECRET_FILE) {
			char **sp = field_ptr(cfg, k);
			if (k->flags & CFG_SECRET)
				free_secret(*sp);
			else
				free(*sp);
		}
	}
	free_secret(cfg->ids_hmac_key);
	writers_clear(cfg);
	for (size_t i = 0; i < cfg->n_kafka; i++) {
		free(cfg->kafka[i].name);
		free_secret(cfg->kafka[i].value); /* may hold sasl.password */
	}
	free(cfg->kafka);
	free(impl_of(cfg));
}

/* Sets key (table or kafka.*); err gets "<rule>" without the key. */
static int
set_any(struct config_impl *ci, const char *key, const char *value, char *err, size_t err_size)
{
	const struct cfg_key *k;

	if (is_kafka_key(key))
		return kafka_set(ci, key, value, err, err_size);
	k = key_find(key);
	if (k == NULL) {
		snprintf(err, err_size, "unknown key");
		return -1;
	}
	return key_set(ci, k, value, err, err_size);
}

int
config_set(struct config *cfg, const char *key, const char *value, char *errstr, size_t errstr_size)
{
	char err[CONFIG_ERR_MAX];

	if (set_any(impl_of(cfg), key, value, err, sizeof(err)) < 0) {
		snprintf(errstr, errstr_size, "key '%s': %s", key, err);
		return -1;
	}
	return 0;
}

/* Removes one pair of matching double quotes around a value, in place. */
static char *
unquote(char *v)
{
	size_t len = strlen(v);

	if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
		v[len - 1] = '\0';
		return v + 1;
	}
	return v;
}

int
config_set_kv(struct config *cfg, const char *kv, char *errstr, size_t errstr_size)
{
	char *copy, *eq, *key, *value;
	int ret;

	copy = strdup(kv);
	if (copy == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	eq = strchr(copy, '=');
	if (eq == NULL) {
		snprintf(errstr, errstr_size, "'%s': expected key=value", kv);
		free(copy);
		return -1;
	}
	*eq = '\0';
	key = trim(copy);
	value = unquote(trim(eq + 1));
	ret = config_set(cfg, key, value, errstr, errstr_size);
	free(copy);
	return ret;
}

/* Cross-key rules; each problem is added to eb with the given location prefix. */
static void
check_all(const struct config *cfg, const char *where, struct errbuf *eb)
{
	const struct config_impl *ci = cimpl_of(cfg);

	if (ci->password_direct && cfg->redis_password_file != NULL)
		errbuf_add(
		    eb, "%skeys 'redis.password' and 'redis.password_file': set only one", where);
	if (cfg->redis_user != NULL && cfg->redis_password == NULL)
		errbuf_add(
		    eb, "%skey 'redis.user': needs redis.password or redis.password_file", where);
	if (strcmp(cfg->topic_events, cfg->topic_dlq) == 0 ||
	    strcmp(cfg->topic_events, cfg->topic_snapshots) == 0)
		errbuf_add(eb,
		    "%skey 'topic.events': must differ from topic.dlq and topic.snapshots", where);
	if (strcmp(cfg->topic_dlq, cfg->topic_snapshots) == 0)
		errbuf_add(eb, "%skey 'topic.dlq': must differ from topic.snapshots", where);
	if (cfg->topic_items != NULL &&
	    (strcmp(cfg->topic_items, cfg->topic_events) == 0 ||
		strcmp(cfg->topic_items, cfg->topic_dlq) == 0 ||
		strcmp(cfg->topic_items, cfg->topic_snapshots) == 0))
		errbuf_add(eb,
		    "%skey 'topic.items': must differ from topic.events, topic.dlq and "
		    "topic.snapshots",
		    where);
}

int
config_check(const struct config *cfg, char *errstr, size_t errstr_size)
{
	struct errbuf eb;

	errbuf_init(&eb, errstr, errstr_size);
	check_all(cfg, "", &eb);
	return errbuf_finish(&eb);
}

int
config_load_buffer(struct config *cfg, const char *name, const char *buf, size_t len, char *errstr,
    size_t errstr_size)
{
	struct config_impl *ci = impl_of(cfg);
	struct errbuf eb;
	char err[CONFIG_ERR_MAX];
	char *line = NULL;
	size_t line_cap = 0, pos = 0;
	unsigned lineno = 0;
	char where[CONFIG_ERR_MAX];

	errbuf_init(&eb, errstr, errstr_size);
	memset(ci->set_line, 0, sizeof(ci->set_line));
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t llen = nl != NULL ? (size_t)(nl - (buf + pos)) : len - pos;
		char *s, *eq, *key, *value;
		const struct cfg_key *k;

		lineno++;
		if (llen + 1 > line_cap) {
			char *nline = realloc(line, llen + 1);
			if (nline == NULL) {
				errbuf_add(&eb, "%s:%u: out of memory", name, lineno);
				break;
			}
			line = nline;
			line_cap = llen + 1;
		}
		memcpy(line, buf + pos, llen);
		line[llen] = '\0';
		pos += llen + (nl != NULL ? 1 : 0);
		if (memchr(line, '\0', llen) != NULL) {
			errbuf_add(&eb, "%s:%u: line contains a NUL byte", name, lineno);
			continue;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL) {
			errbuf_add(&eb, "%s:%u: expected 'key = value'", name, lineno);
			continue;
		}
		*eq = '\0';
		key = trim(s);
		value = unquote(trim(eq + 1));
		if (*key == '\0') {
			errbuf_add(&eb, "%s:%u: missing key before '='", name, lineno);
			continue;
		}
		k = is_kafka_key(key) ? NULL : key_find(key);
		if (k != NULL) {
			unsigned *seen = &ci->set_line[k - config_keys];
			if (*seen != 0) {
				errbuf_add(&eb, "%s:%u: key '%s': already set on line %u", name,
				    lineno, key, *seen);
				continue;
			}
			*seen = lineno;
		}
		if (set_any(ci, key, value, err, sizeof(err)) < 0)
			errbuf_add(&eb, "%s:%u: key '%s': %s", name, lineno, key, err);
	}
	free(line);
	snprintf(where, sizeof(where), "%s: ", name);
	if (eb.n == 0)
		check_all(cfg, where, &eb);
	return errbuf_finish(&eb);
}

int
config_load_file(struct config *cfg, const char *path, char *errstr, size_t errstr_size)
{
	size_t len;
	char *buf = file_read_all(path, CONFIG_FILE_MAX_BYTES, &len, errstr, errstr_size);
	int ret;

	if (buf == NULL)
		return -1;
	ret = config_load_buffer(cfg, path, buf, len, errstr, errstr_size);
	free(buf);
	return ret;
}

/* Formats key's current value as file text into buf (secrets masked when mask). */
static void
key_format(const struct config *cfg, const struct cfg_key *k, int mask, char *buf, size_t size)
{
	const void *p = cfield_ptr(cfg, k);
	size_t len = 0;

	buf[0] = '\0';
	switch (k->type) {
	case CFG_STRING:
	case CFG_SECRET_FILE: {
		const char *s = *(char *const *)p;
		if (p == (const void *)&cfg->redis_password && !cimpl_of(cfg)->password_direct)
			s = NULL; /* came from redis.password_file */
		if (s != NULL)
			snprintf(
			    buf, size, "%s", (mask && (k->flags & CFG_SECRET)) ? CONFIG_MASK : s);
		break;
	}
	case CFG_INT:
		snprintf(buf, size, "%d", *(const int *)p);
		break;
	case CFG_INT64:
		snprintf(buf, size, "%lld", (long long)*(const int64_t *)p);
		break;
	case CFG_BOOL:
		snprintf(buf, size, "%s", *(const int *)p ? "true" : "false");
		break;
	case CFG_ENUM:
		snprintf(buf, size, "%s", k->names[*(const int *)p]);
		break;
	case CFG_WRITERS:
		for (size_t i = 0; i < cfg->n_writers && len < size; i++) {
			const struct config_writer *w = &cfg->writers[i];
			int n;
			if (w->confluent_id >= 0)
				n = snprintf(buf + len, size - len, "%s%d:%s", i ? "," : "",
				    (int)w->confluent_id, w->path);
			else
				n = snprintf(buf + len, size - len, "%s%s", i ? "," : "", w->path);
			len += n > 0 ? (size_t)n : 0;
		}
		break;
	}
}

/* kafka.* property names that carry secrets: masked in dumps. */
static int
kafka_is_secret(const char *name)
{
	return strstr(name, "password") != NULL || strstr(name, "secret") != NULL ||
	    strstr(name, "sasl.oauthbearer.config") != NULL || strstr(name, "key.pem") != NULL;
}

static const char *
kafka_prefix(enum config_kafka_scope scope)
{
	switch (scope) {
	case CONFIG_KAFKA_CONSUMER:
		return CONFIG_KAFKA_CONSUMER_PREFIX;
	case CONFIG_KAFKA_PRODUCER:
		return CONFIG_KAFKA_PRODUCER_PREFIX;
	case CONFIG_KAFKA_BOTH:
		break;
	}
	return CONFIG_KAFKA_PREFIX;
}

void
config_dump(const struct config *cfg, FILE *fp)
{
	char val[CONFIG_VALUE_MAX];

	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		key_format(cfg, &config_keys[i], 1, val, sizeof(val));
		fprintf(fp, "%s = %s\n", config_keys[i].name, val);
	}
	for (size_t i = 0; i < cfg->n_kafka; i++) {
		const struct config_kafka *kk = &cfg->kafka[i];
		fprintf(fp, "%s%s = %s\n", kafka_prefix(kk->scope), kk->name,
		    kafka_is_secret(kk->name) ? CONFIG_MASK : kk->value);
	}
}

/* Writes s with '|' escaped for a Markdown table cell. */
static void
md_cell(FILE *fp, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '|')
			fputc('\\', fp);
		fputc(*s, fp);
	}
}

/*
 * Writes s as mdoc(7) text: backslashes escaped, `code` spans quoted, a line
 * never starting with a control character, and a new line after each
 * sentence (mandoc -T lint asks for one sentence per line).
 */
static void
mdoc_text(FILE *fp, const char *s)
{
	int bol = 1, code = 0;

	for (; *s != '\0'; s++) {
		if (bol && (*s == '.' || *s == '\''))
			fputs("\\&", fp);
		bol = 0;
		if (*s == '\\') {
			fputs("\\e", fp);
		} else if (*s == '`') {
			fputs(code ? "\\(cq" : "\\(oq", fp);
			code = !code;
		} else if (*s == '.' && s[1] == ' ') {
			fputs(".\n", fp);
			while (s[1] == ' ')
				s++;
			bol = 1;
		} else {
			fputc(*s, fp);
		}
	}
}

/* The type column of a key; lq and rq wrap each enum name, sep joins them. */
static void
help_type(FILE *fp, const struct cfg_key *k, const char *lq, const char *rq, const char *sep)
{
	switch (k->type) {
	case CFG_STRING:
		fprintf(fp, "string%s", (k->flags & CFG_OPTIONAL) ? " (optional)" : "");
		break;
	case CFG_SECRET_FILE:
		fprintf(fp, "path (optional)");
		break;
	case CFG_INT:
	case CFG_INT64:
		fprintf(fp, "integer %lld..%lld", (long long)k->min, (long long)k->max);
		break;
	case CFG_BOOL:
		fprintf(fp, "bool");
		break;
	case CFG_ENUM:
		for (int j = 0; k->names[j] != NULL; j++)
			fprintf(fp, "%s%s%s%s", j ? sep : "", lq, k->names[j], rq);
		break;
	case CFG_WRITERS:
		fprintf(fp, "list (optional)");
		break;
	}
}

/* What the kafka.* pass-through row says, in both formats. */
#define HELP_KAFKA_DEFAULT "kafka.bootstrap.servers = localhost:9092"
#define HELP_KAFKA                                                                                 \
	"passed to librdkafka (consumer and producer) without the `kafka.` prefix; "               \
	"`kafka.consumer.*` / `kafka.producer.*` go to one client only"

void
config_help_table(FILE *fp)
{
	fprintf(fp, "| key | type | default | reload | description |\n");
	fprintf(fp, "|---|---|---|---|---|\n");
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct cfg_key *k = &config_keys[i];

		fprintf(fp, "| `%s` | ", k->name);
		help_type(fp, k, "`", "`", " \\| ");
		fprintf(fp, " | %s%s%s | %s | ", *k->def ? "`" : "", k->def, *k->def ? "`" : "",
		    (k->flags & CFG_RELOAD) ? "yes" : "restart");
		md_cell(fp, k->help);
		fprintf(fp, " |\n");
	}
	fprintf(
	    fp, "| `kafka.*` | string | `" HELP_KAFKA_DEFAULT "` | restart | " HELP_KAFKA " |\n");
}

void
config_help_mdoc(FILE *fp)
{
	fprintf(fp, ".Bl -tag -width Ds\n");
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct cfg_key *k = &config_keys[i];

		fprintf(fp, ".It Cm %s\n", k->name);
		mdoc_text(fp, k->help);
		fprintf(fp, "%s\nType: ", k->help[strlen(k->help) - 1] == '.' ? "" : ".");
		help_type(fp, k, "\\(oq", "\\(cq", " | ");
		fprintf(fp, "; default: ");
		if (*k->def != '\0') {
			fprintf(fp, "\\(oq");
			mdoc_text(fp, k->def);
			fprintf(fp, "\\(cq");
		} else {
			fprintf(fp, "none");
		}
		fprintf(fp, "; %s.\n",
		    (k->flags & CFG_RELOAD) ? "applied on reload" : "needs a restart");
	}
	fprintf(fp, ".It Cm kafka. Ns Ar property\n");
	mdoc_text(fp, HELP_KAFKA);
	fprintf(
	    fp, ".\nType: string; default: \\(oq" HELP_KAFKA_DEFAULT "\\(cq; needs a restart.\n");
	fprintf(fp, ".El\n");
}

/* Appends name to the comma list in names; counts it. */
static void
names_add(char *names, size_t size, size_t *len, int *count, const char *name)
{
	int n;

	(*count)++;
	if (*len >= size)
		return;
	n = snprintf(names + *len, size - *len, "%s%s", *len ? "," : "", name);
	*len += n > 0 ? (size_t)n : 0;
	if (*len >= size)
		*len = size;
}

static int
kafka_equal(const struct config *a, const struct config *b)
{
	if (a->n_kafka != b->n_kafka)
		return 0;
	for (size_t i = 0; i < a->n_kafka; i++) {
		if (a->kafka[i].scope != b->kafka[i].scope ||
		    strcmp(a->kafka[i].name, b->kafka[i].name) != 0 ||
		    strcmp(a->kafka[i].value, b->kafka[i].value) != 0)
			return 0;
	}
	return 1;
}

int
config_restart_keys(
    const struct config *old_cfg, const struct config *new_cfg, char *names, size_t names_size)
{
	char va[CONFIG_VALUE_MAX], vb[CONFIG_VALUE_MAX];
	size_t len = 0;
	int count = 0;

	if (names_size > 0)
		names[0] = '\0';
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct cfg_key *k = &config_keys[i];

		if (k->flags & CFG_RELOAD)
			continue;
		key_format(old_cfg, k, 0, va, sizeof(va));
		key_format(new_cfg, k, 0, vb, sizeof(vb));
		/* A password read from a file compares through the file's content. */
		if (k->off == OFF(redis_password_file) && old_cfg->redis_password != NULL &&
		    new_cfg->redis_password != NULL &&
		    strcmp(old_cfg->redis_password, new_cfg->redis_password) != 0)
			va[0] = '\1';
		if (k->off == OFF(ids_hmac_key_file) && old_cfg->ids_hmac_key != NULL &&
		    new_cfg->ids_hmac_key != NULL &&
		    strcmp(old_cfg->ids_hmac_key, new_cfg->ids_hmac_key) != 0)
			va[0] = '\1';
		if (strcmp(va, vb) != 0)
			names_add(names, names_size, &len, &count, k->name);
	}
	if (!kafka_equal(old_cfg, new_cfg))
		names_add(names, names_size, &len, &count, "kafka.*");
	return count;
}

static int
config_kafka_set(rd_kafka_conf_t *conf, const char *who, const char *k, const char *v, char *errstr,
    size_t errstr_size)
{
	char e[256];

	if (rd_kafka_conf_set(conf, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		snprintf(errstr, errstr_size, "%s %s=%s: %s", who, k, v, e);
		return -1;
	}
	return 0;
}

rd_kafka_conf_t *
config_kafka_conf(
    const struct config *cfg, enum config_kafka_client client, char *errstr, size_t errstr_size)
{
	/* Before the pass-through: an operator may change these. */
	static const char *const events_defaults[][2] = {
		{ "enable.auto.commit", "false" },
		{ "enable.auto.offset.store", "false" },
		{ "partition.assignment.strategy", "cooperative-sticky" },
		{ "auto.offset.reset", "earliest" },
		{ "client.id", "interestd" },
		/*
		 * Prefetch at most 4 MiB (librdkafka: 64 MiB): ~40k events, four
		 * batches ahead of the loop, at a sixteenth of the resident memory.
		 * A far broker may want more (kafka.consumer.queued.max.messages.kbytes).
		 */
		{ "queued.max.messages.kbytes", "4096" },
	};
	static const char *const producer_defaults[][2] = {
		{ "enable.idempotence", "true" },
		{ "linger.ms", "5" },
		{ "client.id", "interestd-producer" },
	};
	/* After it: the delivery guarantees and the readers' own needs. */
	static const char *const events_fixed[][2] = {
		{ "enable.auto.commit", "false" }, { "enable.auto.offset.store", "false" },
		{ "log.queue", "true" }, /* served by our polls: log_kafka_cb */
	};
	static const char *const producer_fixed[][2] = { { "log.queue", "true" } };
	static const char *const items_fixed[][2] = {
		{ "client.id", "interestd-items" },
		{ "enable.auto.commit", "false" },
		{ "enable.auto.offset.store", "false" },
		{ "enable.partition.eof", "true" },
		{ "auto.offset.reset", "earliest" },
		{ "log.queue", "true" },
	};
	const char *const(*defaults)[2] = NULL, *const(*fixed)[2] = NULL;
	size_t n_defaults = 0, n_fixed = 0;
	int consumer =
	    client == CONFIG_KAFKA_EVENTS_CONSUMER || client == CONFIG_KAFKA_ITEMS_CONSUMER;
	const char *who =
	    client == CONFIG_KAFKA_ITEMS_CONSUMER ? "kafka (items consumer)" : "kafka";
	char group[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

#define CONFIG_KAFKA_LIST(v, a) ((v) = (a), n_##v = sizeof(a) / sizeof((a)[0]))
	switch (client) {
	case CONFIG_KAFKA_EVENTS_CONSUMER:
		CONFIG_KAFKA_LIST(defaults, events_defaults);
		CONFIG_KAFKA_LIST(fixed, events_fixed);
		break;
	case CONFIG_KAFKA_DAEMON_PRODUCER:
		CONFIG_KAFKA_LIST(defaults, producer_defaults);
		CONFIG_KAFKA_LIST(fixed, producer_fixed);
		break;
	case CONFIG_KAFKA_ITEMS_CONSUMER:
		CONFIG_KAFKA_LIST(fixed, items_fixed);
		break;
	case CONFIG_KAFKA_CTL_PRODUCER:
		break;
	}
#undef CONFIG_KAFKA_LIST
	if (conf == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", who);
		return NULL;
	}
	for (size_t i = 0; i < n_defaults; i++)
		if (config_kafka_set(
			conf, who, defaults[i][0], defaults[i][1], errstr, errstr_size) != 0)
			goto fail;
	if (client == CONFIG_KAFKA_EVENTS_CONSUMER &&
	    config_kafka_set(conf, who, "group.id", cfg->group_id, errstr, errstr_size) != 0)
		goto fail;
	for (size_t i = 0; i < cfg->n_kafka; i++) {
		const struct config_kafka *kv = &cfg->kafka[i];

		if (kv->scope == (consumer ? CONFIG_KAFKA_PRODUCER : CONFIG_KAFKA_CONSUMER))
			continue;
		if (config_kafka_set(conf, who, kv->name, kv->value, errstr, errstr_size) != 0)
			goto fail;
	}
	for (size_t i = 0; i < n_fixed; i++)
		if (config_kafka_set(conf, who, fixed[i][0], fixed[i][1], errstr, errstr_size) != 0)
			goto fail;
	/*
	 * librdkafka wants a group.id for its consumer API; the items reader
	 * uses assign() only and never commits, so it is never sent.
	 */
	if (client == CONFIG_KAFKA_ITEMS_CONSUMER) {
		snprintf(group, sizeof(group), "%s.items-unused", cfg->group_id);
		if (config_kafka_set(conf, who, "group.id", group, errstr, errstr_size) != 0)
			goto fail;
	}
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}
