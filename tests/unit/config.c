/*
 * Unit tests of daemon/config.c: defaults, every error kind naming
 * file:line:key, collected errors, kafka.* pass-through, secret files,
 * overrides, dumps and reload checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			printf("ok   ");                                                           \
		} else {                                                                           \
			printf("FAIL ");                                                           \
			failures++;                                                                \
		}                                                                                  \
		printf(__VA_ARGS__);                                                               \
		printf("  (%s:%d)\n", __FILE__, __LINE__);                                         \
	} while (0)

/* Loads text into a fresh config; returns the config or NULL, errors in err. */
static struct config *
load(const char *text, char *err, size_t err_size)
{
	struct config *cfg = config_new();

	if (cfg == NULL) {
		printf("FAIL config_new\n");
		exit(1);
	}
	if (config_load_buffer(cfg, "t.conf", text, strlen(text), err, err_size) < 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void
test_defaults(void)
{
	struct config *cfg = config_new();
	char err[1024];

	CHECK(cfg != NULL, "config_new");
	CHECK(strcmp(cfg->group_id, "interestd") == 0, "default group.id");
	CHECK(strcmp(cfg->topic_events, "behaviour-events") == 0, "default topic.events");
	CHECK(strcmp(cfg->topic_snapshots, "interest-snapshots") == 0, "default topic.snapshots");
	CHECK(strcmp(cfg->topic_dlq, "interest-dlq") == 0, "default topic.dlq");
	CHECK(strcmp(cfg->redis_prefix, "ui:") == 0, "default redis.prefix");
	CHECK(cfg->redis_port == 6379 && cfg->redis_top_n == 50, "default redis.port/top_n");
	CHECK(cfg->redis_ttl_s == 30 * 86400, "default redis.ttl_s = 30 days");
	CHECK(cfg->redis_top_format == CONFIG_TOP_JSON, "default top_format json");
	CHECK(cfg->redis_password == NULL && cfg->redis_unix_socket == NULL,
	    "optional strings unset");
	CHECK(cfg->n_writers == 0 && cfg->tiers_calibrate == 0, "no writers, calibrate off");
	CHECK(cfg->topn_search == 0 && cfg->topn_probe_items == 4096,
	    "exact top-N search by default (tiered probe_items 4096)");
	CHECK(cfg->n_kafka == 1 && strcmp(cfg->kafka[0].name, "bootstrap.servers") == 0 &&
		cfg->kafka[0].scope == CONFIG_KAFKA_BOTH,
	    "default bootstrap.servers pass-through");
	CHECK(cfg->events_max_age_s > 30LL * 365 * 86400, "max_age accepts 1997 datasets");
	CHECK(cfg->events_key_mismatch == CONFIG_KEY_MISMATCH_DEAD_LETTER,
	    "a key that is not the user id is dead-lettered by default");
	CHECK(config_check(cfg, err, sizeof(err)) == 0, "defaults pass config_check");
	config_free(cfg);
}

static void
test_valid_file(void)
{
	char err[2048];
	struct config *cfg = load("# comment\n"
				  "\n"
				  "  group.id = g1  \n"
				  "redis.port=7000\r\n"
				  "redis.top_format = zset\n"
				  "tiers.calibrate = yes\n"
				  "redis.ttl_s = 0\n"
				  "redis.prefix = \"x:\"\n"
				  "schema.writers = 7:/a/b.avsc, /c.avsc ,12:/d:e.avsc\n"
				  "kafka.bootstrap.servers = h1:9092,h2:9092\n"
				  "kafka.consumer.fetch.max.bytes = 1048576\n"
				  "kafka.producer.linger.ms = 5\n"
				  "kafka.client.id = me\n"
				  "log.level = debug\n"
				  "events.key_mismatch = accept\n"
				  "topn.search = tiered\n"
				  "topn.probe_items = 20000\n"
				  "metrics.listen = 127.0.0.1:9100", /* no final newline */
	    err, sizeof(err));

	CHECK(cfg != NULL, "valid file loads (%s)", cfg ? "" : err);
	if (cfg == NULL)
		return;
	CHECK(strcmp(cfg->group_id, "g1") == 0, "value trimmed");
	CHECK(cfg->redis_port == 7000, "CRLF line");
	CHECK(cfg->redis_top_format == CONFIG_TOP_ZSET, "enum");
	CHECK(cfg->tiers_calibrate == 1, "bool yes");
	CHECK(cfg->redis_ttl_s == 0, "ttl 0");
	CHECK(strcmp(cfg->redis_prefix, "x:") == 0, "quotes removed");
	CHECK(cfg->log_level == 3, "log.level debug");
	CHECK(cfg->events_key_mismatch == CONFIG_KEY_MISMATCH_ACCEPT, "events.key_mismatch accept");
	CHECK(cfg->topn_search == 1 && cfg->topn_probe_items == 20000, "topn.search tiered");
	CHECK(cfg->metrics_listen && strcmp(cfg->metrics_listen, "127.0.0.1:9100") == 0,
	    "last line without newline");
	CHECK(cfg->n_writers == 3, "3 writers");
	if (cfg->n_writers == 3) {
		CHECK(cfg->writers[0].confluent_id == 7 &&
			strcmp(cfg->writers[0].path, "/a/b.avsc") == 0,
		    "writer id:path");
		CHECK(cfg->writers[1].confluent_id == -1 &&
			strcmp(cfg->writers[1].path, "/c.avsc") == 0,
		    "writer path only");
		CHECK(cfg->writers[2].confluent_id == 12 &&
			strcmp(cfg->writers[2].path, "/d:e.avsc") == 0,
		    "writer path with colon");
	}
	CHECK(cfg->n_kafka == 4, "4 kafka entries (bootstrap replaced in place)");
	if (cfg->n_kafka == 4) {
		CHECK(strcmp(cfg->kafka[0].name, "bootstrap.servers") == 0 &&
			strcmp(cfg->kafka[0].value, "h1:9092,h2:9092") == 0,
		    "bootstrap replaced");
		CHECK(strcmp(cfg->kafka[1].name, "fetch.max.bytes") == 0 &&
			cfg->kafka[1].scope == CONFIG_KAFKA_CONSUMER,
		    "consumer-scoped key");
		CHECK(strcmp(cfg->kafka[2].name, "linger.ms") == 0 &&
			cfg->kafka[2].scope == CONFIG_KAFKA_PRODUCER,
		    "producer-scoped key");
		CHECK(strcmp(cfg->kafka[3].name, "client.id") == 0 &&
			cfg->kafka[3].scope == CONFIG_KAFKA_BOTH,
		    "both-scoped key");
	}
	config_free(cfg);
}

static void
test_errors(void)
{
	char err[4096];
	struct config *cfg =
	    load("redis.port = 70000\n"         /* 1: out of range */
		 "redis.port = 0\n"             /* 2: set twice (and out of range, reported once) */
		 "bogus.key = 1\n"              /* 3: unknown */
		 "redis.top_n = ten\n"          /* 4: not an integer */
		 "tiers.calibrate = maybe\n"    /* 5: not a bool */
		 "redis.top_format = xml\n"     /* 6: enum */
		 "group.id =\n"                 /* 7: empty */
		 "just words\n"                 /* 8: no '=' */
		 "kafka.no.such.property = 1\n" /* 9: librdkafka rejects */
		 "kafka.group.id = x\n"         /* 10: use group.id */
		 "redis.prefix = ui{:\n"        /* 11: braces */
		 "schema.writers = x:1:/a, ,\n" /* 12: empty entry */
		 "= 5\n"                        /* 13: missing key */
		 "metrics.listen = nope\n"      /* 14: HOST:PORT */
		 "events.key_mismatch = drop\n", /* 15: enum */
		err, sizeof(err));

	CHECK(cfg == NULL, "bad file fails");
	printf("---- collected errors:\n%s\n----\n", err);
	CHECK(strstr(err, "t.conf:1: key 'redis.port': 70000 is out of range [1, 65535]") != NULL,
	    "bounds error names file:line:key");
	CHECK(strstr(err, "t.conf:2: key 'redis.port': already set on line 1") != NULL,
	    "duplicate key");
	CHECK(strstr(err, "t.conf:3: key 'bogus.key': unknown key") != NULL, "unknown key");
	CHECK(
	    strstr(err, "t.conf:4: key 'redis.top_n': 'ten' is not an integer") != NULL, "not int");
	CHECK(strstr(err, "t.conf:5: key 'tiers.calibrate': 'maybe' is not a boolean") != NULL,
	    "bool");
	CHECK(
	    strstr(err, "t.conf:6: key 'redis.top_format': 'xml' is not one of json, zset") != NULL,
	    "enum");
	CHECK(strstr(err, "t.conf:7: key 'group.id': must not be empty") != NULL, "empty string");
	CHECK(strstr(err, "t.conf:8: expected 'key = value'") != NULL, "syntax");
	CHECK(strstr(err, "t.conf:9: key 'kafka.no.such.property': librdkafka: ") != NULL,
	    "kafka property rejected by librdkafka");
	CHECK(strstr(err, "t.conf:10: key 'kafka.group.id'") != NULL, "kafka.group.id refused");
	CHECK(
	    strstr(err, "t.conf:11: key 'redis.prefix': must not contain") != NULL, "prefix check");
	CHECK(strstr(err, "t.conf:12: key 'schema.writers': empty entry") != NULL, "writers");
	CHECK(strstr(err, "t.conf:13: missing key") != NULL, "missing key");
	CHECK(strstr(err, "t.conf:14: key 'metrics.listen'") != NULL, "listen check");
	CHECK(strstr(err,
		  "t.conf:15: key 'events.key_mismatch': 'drop' is not one of dead_letter, "
		  "accept") != NULL,
	    "events.key_mismatch names its values");
	{
		int lines = 1;
		for (const char *p = err; *p; p++)
			lines += *p == '\n';
		CHECK(lines == 15, "all 15 errors collected, one per line (got %d)", lines);
	}
}

static void
test_truncation(void)
{
	char err[200];
	char text[4096] = "";

	for (int i = 0; i < 50; i++)
		strcat(text, "nope = 1\n");
	CHECK(load(text, err, sizeof(err)) == NULL, "50 errors fail");
	CHECK(strncmp(err, "t.conf:1: key 'nope': unknown key", 33) == 0, "first error kept");
	CHECK(strstr(err, "more errors") != NULL && strlen(err) < sizeof(err),
	    "overflow summarised: %s", err);
}

static void
test_cross_checks(void)
{
	char err[1024];

	CHECK(load("topic.dlq = behaviour-events\n", err, sizeof(err)) == NULL &&
		strstr(err, "t.conf: key 'topic.events': must differ") != NULL,
	    "topic reuse: %s", err);
	CHECK(load("redis.user = bob\n", err, sizeof(err)) == NULL &&
		strstr(err, "key 'redis.user': needs redis.password") != NULL,
	    "user without password");
}

static void
test_secret_file(void)
{
	char path[] = "/tmp/interestd-secret-XXXXXX";
	char text[256], err[1024];
	struct config *cfg;
	FILE *fp;
	int fd = mkstemp(path);

	if (fd < 0) {
		CHECK(0, "mkstemp");
		return;
	}
	fp = fdopen(fd, "w");
	fputs("s3cret\nsecond line ignored\n", fp);
	fclose(fp);
	snprintf(text, sizeof(text), "redis.password_file = %s\nredis.user = app\n", path);

	chmod(path, 0640);
	CHECK(load(text, err, sizeof(err)) == NULL &&
		strstr(err, "t.conf:1: key 'redis.password_file':") &&
		strstr(err, "group/world accessible (mode 0640)"),
	    "group-readable secret refused: %s", err);
	chmod(path, 0604);
	CHECK(load(text, err, sizeof(err)) == NULL, "world-readable secret refused");
	chmod(path, 0600);
	cfg = load(text, err, sizeof(err));
	CHECK(cfg != NULL && cfg->redis_password && strcmp(cfg->redis_password, "s3cret") == 0,
	    "0600 secret read, first line only");
	if (cfg != NULL) {
		char *buf = NULL;
		size_t len = 0;
		FILE *mem = open_memstream(&buf, &len);
		config_dump(cfg, mem);
		fclose(mem);
		CHECK(strstr(buf, "s3cret") == NULL, "dump does not reveal the file's secret");
		CHECK(strstr(buf, "redis.password_file = /tmp/interestd-secret-") != NULL,
		    "dump shows path");
		free(buf);
		config_free(cfg);
	}
	snprintf(text, sizeof(text), "redis.password_file = %s\nredis.password = x\n", path);
	CHECK(load(text, err, sizeof(err)) == NULL && strstr(err, "set only one"),
	    "password and password_file conflict: %s", err);
	CHECK(load("redis.password_file = /nonexistent/pw\n", err, sizeof(err)) == NULL &&
		strstr(err, "cannot open '/nonexistent/pw'"),
	    "missing secret file");
	unlink(path);
}

static void
test_overrides_and_dump(void)
{
	struct config *cfg = config_new(), *cfg2;
	char err[1024], names[256];
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;

	CHECK(
	    config_set(cfg, "redis.port", "6380", err, sizeof(err)) == 0 && cfg->redis_port == 6380,
	    "config_set int");
	CHECK(
	    config_set_kv(cfg, "redis.password = hunter2", err, sizeof(err)) == 0, "config_set_kv");
	CHECK(config_set_kv(cfg, "kafka.sasl.password=pw123", err, sizeof(err)) == 0,
	    "kafka secret override");
	CHECK(config_set(cfg, "redis.port", "x", err, sizeof(err)) < 0 &&
		strcmp(err, "key 'redis.port': 'x' is not an integer") == 0,
	    "override error: %s", err);
	CHECK(cfg->redis_port == 6380, "failed override keeps the old value");
	CHECK(config_set(cfg, "nope", "1", err, sizeof(err)) < 0 &&
		strcmp(err, "key 'nope': unknown key") == 0,
	    "unknown override key");
	CHECK(config_set_kv(cfg, "novalue", err, sizeof(err)) < 0, "kv without '='");

	mem = open_memstream(&buf, &len);
	config_dump(cfg, mem);
	fclose(mem);
	CHECK(strstr(buf, "redis.port = 6380\n") != NULL, "dump has override");
	CHECK(strstr(buf, "hunter2") == NULL && strstr(buf, "redis.password = ********") != NULL,
	    "redis password masked");
	CHECK(strstr(buf, "pw123") == NULL && strstr(buf, "kafka.sasl.password = ********") != NULL,
	    "kafka secret masked");
	CHECK(strstr(buf, "events.max_age_s = ") != NULL && strstr(buf, "log.level = info") != NULL,
	    "dump lists every key");

	/* The dump (secrets masked) is itself a valid config file. */
	cfg2 = config_new();
	CHECK(config_load_buffer(cfg2, "dump", buf, len, err, sizeof(err)) == 0, "dump reloads: %s",
	    err);
	CHECK(cfg2->redis_port == 6380, "reloaded dump has the override");
	CHECK(config_restart_keys(cfg, cfg2, names, sizeof(names)) >= 1 &&
		strstr(names, "redis.password") && strstr(names, "kafka.*"),
	    "masked secrets differ from the originals: %s", names);
	free(buf);

	config_free(cfg2);
	cfg2 = config_new();
	config_set(cfg2, "redis.port", "6380", err, sizeof(err));
	config_set(cfg2, "redis.password", "hunter2", err, sizeof(err));
	config_set(cfg2, "kafka.sasl.password", "pw123", err, sizeof(err));
	config_set(cfg2, "log.level", "debug", err, sizeof(err));
	config_set(cfg2, "flush.interval_ms", "50", err, sizeof(err));
	CHECK(config_restart_keys(cfg, cfg2, names, sizeof(names)) == 0,
	    "reloadable changes need no restart (%s)", names);
	config_set(cfg2, "redis.host", "10.0.0.1", err, sizeof(err));
	config_set(cfg2, "kafka.client.id", "x", err, sizeof(err));
	CHECK(config_restart_keys(cfg, cfg2, names, sizeof(names)) == 2 &&
		strcmp(names, "redis.host,kafka.*") == 0,
	    "restart keys named: %s", names);
	config_free(cfg2);
	config_free(cfg);
}

/* What a help writer prints, as a string the caller frees; NULL if out of memory. */
static char *
help_text(void (*help)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);

	if (mem == NULL)
		return NULL;
	help(mem);
	fclose(mem);
	return buf;
}

static void
test_help_table(void)
{
	char *buf = help_text(config_help_table);

	CHECK(buf != NULL, "Markdown table printed");
	if (buf == NULL)
		return;
	CHECK(strncmp(buf, "| key | type | default | reload | description |\n", 47) == 0,
	    "table header");
	CHECK(strstr(buf, "| `redis.port` | integer 1..65535 | `6379` | restart |") != NULL,
	    "port row");
	CHECK(strstr(buf, "`json` \\| `zset`") != NULL, "enum row escapes '|'");
	free(buf);
}

/* The interestd.conf(5) key list: one .It per key, text that mandoc reads as text. */
static void
test_help_mdoc(void)
{
	char *buf = help_text(config_help_mdoc);
	size_t len = buf != NULL ? strlen(buf) : 0;
	int closed;

	CHECK(buf != NULL, "mdoc list printed");
	if (buf == NULL)
		return;
	closed = len > 4 && strcmp(buf + len - 4, ".El\n") == 0;
	CHECK(strncmp(buf, ".Bl -tag -width Ds\n", 19) == 0, "list opens");
	CHECK(closed, "list closes");
	CHECK(strstr(buf,
		  "\n.It Cm redis.port\nRedis TCP port.\n"
		  "Type: integer 1..65535; default: \\(oq6379\\(cq; needs a restart.\n") != NULL,
	    "port entry");
	CHECK(strstr(buf, "\\(oqjson\\(cq | \\(oqzset\\(cq") != NULL, "enum names quoted");
	CHECK(strstr(buf, "\n.It Cm kafka. Ns Ar property\n") != NULL, "kafka.* entry");
	CHECK(strchr(buf, '`') == NULL, "no Markdown code spans left");
	/* Every line ends in '\n' once the list is closed. */
	for (const char *line = buf; closed && *line != '\0'; line = strchr(line, '\n') + 1) {
		CHECK(*line != ' ' && *line != '\'' && *line != '\n', "no blank or control line");
		CHECK(*line != '.' || strncmp(line, ".It Cm ", 7) == 0 ||
			strncmp(line, ".Bl ", 4) == 0 || strncmp(line, ".El\n", 4) == 0,
		    "only .Bl, .It and .El requests");
	}
	free(buf);
}

static void
test_load_file(void)
{
	char path[] = "/tmp/interestd-conf-XXXXXX";
	char err[512];
	struct config *cfg = config_new();
	int fd = mkstemp(path);
	FILE *fp = fdopen(fd, "w");

	fputs("redis.top_n = 7\n", fp);
	fclose(fp);
	CHECK(config_load_file(cfg, path, err, sizeof(err)) == 0 && cfg->redis_top_n == 7,
	    "config_load_file");
	unlink(path);
	CHECK(config_load_file(cfg, path, err, sizeof(err)) < 0 && strstr(err, "cannot open"),
	    "missing file: %s", err);
	config_free(cfg);
}

/* The value of k in conf, or "" when unset. */
static const char *
conf_get(rd_kafka_conf_t *conf, const char *k)
{
	static char v[256];
	size_t n = sizeof(v);

	if (rd_kafka_conf_get(conf, k, v, &n) != RD_KAFKA_CONF_OK)
		v[0] = '\0';
	return v;
}

/* config_kafka_conf: defaults, the pass-through by scope, the fixed settings last. */
static void
test_kafka_conf(void)
{
	char err[512];
	struct config *cfg = load("group.id = g7\n"
				  "kafka.bootstrap.servers = 127.0.0.1:1\n"
				  "kafka.consumer.enable.auto.commit = true\n"
				  "kafka.consumer.auto.offset.reset = latest\n"
				  "kafka.producer.linger.ms = 50\n"
				  "kafka.client.id = mine\n",
	    err, sizeof(err));
	rd_kafka_conf_t *ev, *pr, *it, *ctl;

	CHECK(cfg != NULL, "kafka config loads (%s)", cfg ? "" : err);
	if (cfg == NULL)
		return;
	ev = config_kafka_conf(cfg, CONFIG_KAFKA_EVENTS_CONSUMER, err, sizeof(err));
	pr = config_kafka_conf(cfg, CONFIG_KAFKA_DAEMON_PRODUCER, err, sizeof(err));
	it = config_kafka_conf(cfg, CONFIG_KAFKA_ITEMS_CONSUMER, err, sizeof(err));
	ctl = config_kafka_conf(cfg, CONFIG_KAFKA_CTL_PRODUCER, err, sizeof(err));
	CHECK(ev && pr && it && ctl, "every client's conf builds (%s)", err);
	if (ev && pr && it && ctl) {
		CHECK(strcmp(conf_get(ev, "enable.auto.commit"), "false") == 0,
		    "a pass-through cannot turn auto commit on for the events consumer");
		/* librdkafka reads latest / earliest back as largest / smallest */
		CHECK(strcmp(conf_get(ev, "auto.offset.reset"), "largest") == 0 &&
			strcmp(conf_get(ev, "group.id"), "g7") == 0 &&
			strcmp(conf_get(ev, "client.id"), "mine") == 0,
		    "the events consumer takes kafka.X and kafka.consumer.X over its defaults");
		CHECK(strcmp(conf_get(ev, "partition.assignment.strategy"), "cooperative-sticky") ==
			0,
		    "the events consumer's default assignment strategy");
		CHECK(strcmp(conf_get(pr, "linger.ms"), "50") == 0 &&
			strcmp(conf_get(ev, "linger.ms"), "50") != 0,
		    "kafka.producer.X reaches the producer only");
		CHECK(strcmp(conf_get(pr, "enable.idempotence"), "true") == 0 &&
			strcmp(conf_get(pr, "bootstrap.servers"), "127.0.0.1:1") == 0,
		    "the producer: idempotent, the brokers of kafka.X");
		CHECK(strcmp(conf_get(it, "client.id"), "interestd-items") == 0 &&
			strcmp(conf_get(it, "group.id"), "g7.items-unused") == 0 &&
			strcmp(conf_get(it, "auto.offset.reset"), "smallest") == 0,
		    "the items reader's fixed settings win over the pass-through");
		CHECK(strcmp(conf_get(ctl, "linger.ms"), "50") == 0 &&
			strcmp(conf_get(ctl, "enable.idempotence"), "false") == 0,
		    "interestctl's producer: the pass-through, no daemon defaults");
	}
	if (ev)
		rd_kafka_conf_destroy(ev);
	if (pr)
		rd_kafka_conf_destroy(pr);
	if (it)
		rd_kafka_conf_destroy(it);
	if (ctl)
		rd_kafka_conf_destroy(ctl);
	config_free(cfg);
}

int
main(void)
{
	test_defaults();
	test_valid_file();
	test_errors();
	test_truncation();
	test_cross_checks();
	test_secret_file();
	test_overrides_and_dump();
	test_help_table();
	test_help_mdoc();
	test_load_file();
	test_kafka_conf();
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
