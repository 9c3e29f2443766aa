/*
 * Benchmark compute floor (make bench, docs/BENCH.md): interestd's own
 * decode (decoder_decode), user cache (users_upsert), batched apply
 * (updater_apply, one SGEMM per wave) and flush serialisation
 * (userview_fill_batch for the vectors and top-N, one SGEMM per 64 users,
 * then the write script's command of every flushed user, built by the sink
 * itself, sink_redis_format_user, and formatted into the Redis protocol) run
 * in-process over messages held in memory: no Kafka, no Redis in the timed
 * part. The messages are read from the topic first (untimed). Batching,
 * flushing and the Redis settings are the daemon's defaults (config_new):
 * batch.max_events, a flush when flush.max_users users are dirty or
 * flush.interval_ms passed, redis.top_n, redis.ttl_s, redis.top_format.
 *
 *   build/tools/bench-inproc --brokers H:P --topic T --events N --model M.imdl
 *       [--schema schemas/behaviour_event.avsc] [--reps 3] [--group G]
 *       [--set KEY=VALUE ...]   (configuration over the defaults, e.g. topn.search=tiered)
 * Prints one JSON line: events, eps (median), eps_runs, users, heap_bytes_per_user,
 * protocol_bytes_per_run (the Redis commands formatted in one run).
 */
#define _GNU_SOURCE /* mallinfo2 */
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"
#include "decode.h"
#include "modelfile.h"
#include "sink_redis.h"
#include "state.h"
#include "updater.h"
#include "users.h"
#include "userview.h"

#define IP_MAX_REPS 15
#define IP_MAX_SETS 16 /* --set KEY=VALUE: configuration keys over the daemon's defaults */

struct ip_msg {
	size_t off, len;
	int32_t partition;
	int64_t offset;
};

/* Reads want messages of topic into one buffer. Returns the count read. */
static size_t
ip_load(const char *brokers, const char *topic, const char *group, size_t want, char **buf_out,
    struct ip_msg *msgs)
{
	char err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_topic_partition_list_t *sub;
	size_t n = 0, cap = want * 80 + 4096, used = 0;
	char *buf = malloc(cap);
	double idle = clock_mono_s();

	if (buf == NULL ||
	    rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)) ||
	    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
	    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) ||
	    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err))) {
		fprintf(stderr, "bench-inproc: %s\n", err);
		rd_kafka_conf_destroy(conf);
		free(buf);
		return 0;
	}
	if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench-inproc: %s\n", err);
		free(buf);
		return 0;
	}
	rd_kafka_poll_set_consumer(rk);
	sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_subscribe(rk, sub);
	rd_kafka_topic_partition_list_destroy(sub);
	while (n < want && clock_mono_s() - idle < 60.0) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);

		if (rkm == NULL)
			continue;
		if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			if (used + rkm->len > cap) {
				char *nb = realloc(buf, cap * 2);

				if (nb == NULL) {
					rd_kafka_message_destroy(rkm);
					break;
				}
				buf = nb;
				cap *= 2;
			}
			memcpy(buf + used, rkm->payload, rkm->len);
			msgs[n] = (struct ip_msg){ used, rkm->len, rkm->partition, rkm->offset };
			used += rkm->len;
			n++;
			idle = clock_mono_s();
		}
		rd_kafka_message_destroy(rkm);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	*buf_out = buf;
	return n;
}

/* One timed pass over the messages; returns events/s, users cached in *n_users. */
static double
ip_run(const struct model *m, const struct config *cfg, struct sink_redis *sink,
    struct decoder *dec, const char *buf, const struct ip_msg *msgs, size_t n, size_t *n_users,
    size_t *heap_bytes, uint64_t *bytes)
{
	size_t batch = (size_t)cfg->batch_max_events, flush_users = (size_t)cfg->flush_max_users;
	struct users *users = users_new(model_hparams(m));
	struct updater *up = updater_new(m, batch);
	struct userview *uv = userview_new(m, flush_users, (uint32_t)cfg->redis_top_n, 0);

	if (uv != NULL)
		userview_set_search(uv, cfg->topn_search, (uint32_t)cfg->topn_probe_items);
	struct update_event *uev = malloc(batch * sizeof(*uev));
	struct sink_user *su = calloc(flush_users, sizeof(*su));
	double t0, t1, next_flush;
	size_t applied = 0, heap0;
	int bad = 0;
	char err[512];

	if (!users || !up || !uv || !uev || !su) {
		fprintf(stderr, "bench-inproc: out of memory\n");
		exit(1);
	}
	heap0 = mallinfo2().uordblks;
	t0 = clock_mono_s();
	next_flush = t0 + cfg->flush_interval_ms / 1000.0;
	for (size_t b = 0; b < n; b += batch) {
		size_t k = n - b < batch ? n - b : batch, n_uev = 0, n_dirty;
		double now;

		for (size_t i = b; i < b + k; i++) {
			struct event ev;
			struct user_entry *e;
			int32_t item;
			int created;

			if (decoder_decode(dec, buf + msgs[i].off, msgs[i].len, &ev, NULL, 0) !=
				DECODE_OK ||
			    ev.user_id_len == 0 ||
			    (item = model_item_lookup(m, ev.item_id, ev.item_id_len)) < 0) {
				bad++;
				continue;
			}
			e = users_upsert(users, ev.user_id, ev.user_id_len, msgs[i].partition,
			    &created);
			if (e == NULL) {
				fprintf(stderr, "bench-inproc: out of memory\n");
				exit(1);
			}
			e->loaded = 1; /* the daemon's Redis GET (a miss) is not part of the floor */
			{
				/* The daemon's duplicate check by event id (consumer_batch.c). */
				uint64_t eh = state_event_id_hash(ev.event_id, ev.event_id_len);

				if (state_event_known(e->us, eh)) {
					bad++;
					continue;
				}
				state_event_remember(e->us, eh);
			}
			uev[n_uev++] = (struct update_event){ e->us, (uint32_t)item,
				ev.type < MODEL_N_TYPES ? ev.type : MODEL_EV_VIEW, ev.ts_ms,
				msgs[i].partition, msgs[i].offset };
			users_mark_dirty(users, e);
		}
		updater_apply(up, uev, n_uev);
		applied += n_uev;
		now = clock_mono_s();
		if (users_dirty_count(users) < flush_users && now < next_flush && b + k < n)
			continue;
		next_flush = now + cfg->flush_interval_ms / 1000.0;
		struct user_entry *const *dirty = users_dirty(users, &n_dirty);
		int64_t now_ms = clock_wall_ms();

		for (size_t off = 0; off < n_dirty; off += flush_users) {
			size_t c = n_dirty - off < flush_users ? n_dirty - off : flush_users;

			for (size_t i = 0; i < c; i++) {
				struct user_entry *e = dirty[off + i];

				su[i].user_id = e->id;
				su[i].user_id_len = e->id_len;
				su[i].us = e->us;
				su[i].epoch = 1;
			}
			userview_fill_batch(uv, su, c);
			for (size_t i = 0; i < c; i++) {
				char *cmd;
				long long len = sink_redis_format_user(
				    sink, m, &su[i], now_ms, &cmd, err, sizeof(err));

				if (len < 0) {
					fprintf(stderr, "bench-inproc: %s\n", err);
					exit(1);
				}
				*bytes += (uint64_t)len;
				redisFreeCommand(cmd);
			}
		}
		users_clean_all(users);
	}
	t1 = clock_mono_s();
	*n_users = users_count(users);
	*heap_bytes = mallinfo2().uordblks - heap0;
	if (bad > 0)
		fprintf(stderr, "bench-inproc: %d messages not applicable\n", bad);
	users_free(users);
	updater_free(up);
	userview_free(uv);
	free(uev);
	free(su);
	return (double)applied / (t1 - t0);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	const char *brokers = NULL, *topic = NULL, *model_path = NULL, *group = "bench-inproc";
	const char *schema = "schemas/behaviour_event.avsc";
	size_t want = 0, n, n_users = 0, heap = 0;
	int reps = 3;
	char err[512], *buf = NULL;
	struct ip_msg *msgs;
	struct model *m;
	struct decoder *dec;
	struct config *cfg;
	struct sink_redis *sink;
	uint64_t bytes = 0;
	double eps[IP_MAX_REPS];
	const char *sets[IP_MAX_SETS];
	size_t n_sets = 0;

	openblas_set_num_threads(1);  /* as interestd's main */
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--brokers") == 0)
			brokers = argv[i + 1];
		else if (strcmp(argv[i], "--topic") == 0)
			topic = argv[i + 1];
		else if (strcmp(argv[i], "--group") == 0)
			group = argv[i + 1];
		else if (strcmp(argv[i], "--events") == 0)
			want = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--model") == 0)
			model_path = argv[i + 1];
		else if (strcmp(argv[i], "--schema") == 0)
			schema = argv[i + 1];
		else if (strcmp(argv[i], "--reps") == 0)
			reps = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--set") == 0 && n_sets < IP_MAX_SETS)
			sets[n_sets++] = argv[i + 1];
	}
	if (brokers == NULL || topic == NULL || model_path == NULL || want == 0 || reps < 1 ||
	    reps > IP_MAX_REPS) {
		fprintf(stderr, "usage: bench-inproc --brokers H:P --topic T --events N --model "
				"M.imdl [--schema S] [--reps 1..15] [--group G] [--set KEY=VALUE ...]\n");
		return 64;
	}
	if ((m = model_load(model_path, err, sizeof(err))) == NULL ||
	    (dec = decoder_new(schema, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench-inproc: %s\n", err);
		return 1;
	}
	/* The daemon's defaults, the keys of this topic. */
	if ((cfg = config_new()) == NULL ||
	    config_set(cfg, "topic.events", topic, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench-inproc: %s\n", cfg ? err : "out of memory");
		return 1;
	}
	for (size_t q = 0; q < n_sets; q++) {
		if (config_set_kv(cfg, sets[q], err, sizeof(err)) != 0) {
			fprintf(stderr, "bench-inproc: --set %s: %s\n", sets[q], err);
			return 64;
		}
	}
	if ((sink = sink_redis_new_unconnected(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench-inproc: %s\n", err);
		return 1;
	}
	if ((msgs = malloc(want * sizeof(*msgs))) == NULL)
		return 1;
	n = ip_load(brokers, topic, group, want, &buf, msgs);
	if (n < want) {
		fprintf(stderr, "bench-inproc: read %zu of %zu messages\n", n, want);
		return 1;
	}
	for (int r = 0; r < reps; r++)
		eps[r] = ip_run(m, cfg, sink, dec, buf, msgs, n, &n_users, &heap, &bytes);
	printf("{\"events\": %zu, \"users\": %zu, \"heap_bytes_per_user\": %.1f, \"eps_runs\": [",
	    n, n_users, n_users ? (double)heap / (double)n_users : 0.0);
	for (int r = 0; r < reps; r++)
		printf("%s%.1f", r ? ", " : "", eps[r]);
	qsort(eps, (size_t)reps, sizeof(double), cmp_double);
	printf("], \"eps\": %.1f, \"protocol_bytes_per_run\": %" PRIu64 "}\n", eps[reps / 2],
	    bytes / (uint64_t)reps);
	free(buf);
	free(msgs);
	sink_redis_free(sink);
	config_free(cfg);
	decoder_free(dec);
	model_free(m);
	return 0;
}
