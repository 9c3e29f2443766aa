/*
 * Benchmark compute floor (make bench, docs/BENCH.md): interestd's own
 * decode (decoder_decode), user cache (users_upsert), batched apply
 * (updater_apply, one SGEMM per wave) and flush serialisation
 * (userview_fill_batch for the vectors and top-N, one SGEMM per 64 users,
 * then the sink's EVALSHA argument list: keys, vector bytes, state_encode,
 * top-N JSON, tier values, formatted into the Redis protocol by hiredis as
 * sink_redis_flush does) run in-process over
 * messages held in memory: no Kafka, no Redis in the timed part. The
 * messages are read from the topic first (untimed). Batching and flushing
 * follow the daemon's defaults: batch.max_events 10000, a flush when
 * flush.max_users 4096 users are dirty or flush.interval_ms 200 passed.
 *
 *   build/tools/bench-inproc --brokers H:P --topic T --events N --model M.imdl
 *       [--schema schemas/behaviour_event.avsc] [--reps 3] [--group G]
 * Prints one JSON line: events, eps (median), eps_runs, users, heap_bytes_per_user.
 */
#define _GNU_SOURCE /* mallinfo2 */
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include "decode.h"
#include "modelfile.h"
#include "sink_redis.h"
#include "state.h"
#include "updater.h"
#include "users.h"
#include "userview.h"

#define IP_BATCH 10000        /* batch.max_events default */
#define IP_FLUSH_USERS 4096   /* flush.max_users default */
#define IP_FLUSH_MS 200       /* flush.interval_ms default */
#define IP_TOP_N 50           /* redis.top_n default */
#define IP_TTL_S 2592000      /* redis.ttl_s default */
#define IP_KEY_MAX 320
#define IP_NUM_MAX 32
#define IP_MAX_REPS 15
#define IP_FIXED_ARGS 23      /* EVALSHA sha nkeys, 6 keys, 13 fixed args (sink_redis.c) */

struct ip_msg {
	size_t off, len;
	int32_t partition;
	int64_t offset;
};

/* Serialisation scratch, sized once. */
struct ip_ser {
	const char **argv;
	size_t *argvlen;
	char (*keys)[IP_KEY_MAX];
	char (*nums)[IP_NUM_MAX];
	char (*labels)[IP_NUM_MAX];
	char (*tvals)[48];
	uint8_t *vec;
	uint8_t *state;
	size_t state_cap;
	uint64_t bytes; /* protocol bytes produced */
};

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
	double idle = mono_s();

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
	while (n < want && mono_s() - idle < 60.0) {
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
			idle = mono_s();
		}
		rd_kafka_message_destroy(rkm);
	}
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	*buf_out = buf;
	return n;
}

static const char *
ip_num(struct ip_ser *s, size_t *argc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static const char *
ip_num(struct ip_ser *s, size_t *argc, const char *fmt, ...)
{
	va_list ap;
	char *p = s->nums[*argc];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(p, IP_NUM_MAX, fmt, ap);
	va_end(ap);
	s->argv[*argc] = p;
	s->argvlen[*argc] = (size_t)n;
	(*argc)++;
	return p;
}

/*
 * The EVALSHA of one user as sink_redis.c's append_user builds it, formatted
 * into the Redis protocol (then dropped: no socket). Returns 0 or -1.
 */
static int
ip_serialise(struct ip_ser *s, const struct model *m, const struct sink_user *su,
    const char *topic, int64_t now_ms)
{
	static const char *const suffix[5] = { "vec", "top", "tiers", "meta", "state" };
	const struct user_state *us = su->us;
	uint32_t dim = model_dim(m);
	size_t argc = 0, state_len, top_len;
	char *top, *cmd;
	long long len;

	s->argv[argc] = "EVALSHA";
	s->argvlen[argc++] = 7;
	s->argv[argc] = "0123456789012345678901234567890123456789";
	s->argvlen[argc++] = 40;
	s->argv[argc] = "6";
	s->argvlen[argc++] = 1;
	for (int k = 0; k < 5; k++) {
		int n = snprintf(s->keys[k], IP_KEY_MAX, "ui:{%.*s}:%s", (int)su->user_id_len,
		    su->user_id, suffix[k]);
		s->argv[argc] = s->keys[k];
		s->argvlen[argc++] = (size_t)n;
	}
	ip_num(s, &argc, "ui:epoch:%s:%" PRId32, topic, us->last_partition);
	ip_num(s, &argc, "%" PRId32, us->last_partition);
	ip_num(s, &argc, "%" PRId64, us->last_offset);
	ip_num(s, &argc, "%" PRIu64, su->epoch);
	ip_num(s, &argc, "%d", IP_TTL_S);
	for (uint32_t i = 0; i < dim; i++) {
		uint32_t bits;

		memcpy(&bits, &su->vec[i], 4);
		s->vec[4 * i] = (uint8_t)bits;
		s->vec[4 * i + 1] = (uint8_t)(bits >> 8);
		s->vec[4 * i + 2] = (uint8_t)(bits >> 16);
		s->vec[4 * i + 3] = (uint8_t)(bits >> 24);
	}
	s->argv[argc] = (const char *)s->vec;
	s->argvlen[argc++] = (size_t)dim * 4;
	state_len = state_encoded_size(us);
	if (state_len > s->state_cap || state_encode(us, s->state, s->state_cap) == 0)
		return -1;
	s->argv[argc] = (const char *)s->state;
	s->argvlen[argc++] = state_len;
	ip_num(s, &argc, "%" PRId64, now_ms);
	ip_num(s, &argc, "%" PRIu64, us->model_version);
	ip_num(s, &argc, "%" PRIu64, us->events_applied);
	ip_num(s, &argc, "%" PRId64, us->t_ref_ms == STATE_NO_TIME ? (int64_t)0 : us->t_ref_ms);
	s->argv[argc] = "json";
	s->argvlen[argc++] = 4;
	top = sink_redis_top_json(m, su->top_items, su->top_scores, su->n_top, &top_len);
	if (top == NULL)
		return -1;
	s->argv[argc] = top;
	s->argvlen[argc++] = top_len;
	ip_num(s, &argc, "%u", (unsigned)us->n_tiers);
	for (uint16_t i = 0; i < us->n_tiers; i++) {
		const struct tier_weight *tw = &us->tiers[i];

		s->argvlen[argc] = model_node_label(m, tw->node, s->labels[i], IP_NUM_MAX);
		s->argv[argc++] = s->labels[i];
		s->argvlen[argc] = sink_redis_tier_value(tw->w_short, tw->w_long, s->tvals[i], 48);
		s->argv[argc++] = s->tvals[i];
	}
	len = redisFormatCommandArgv(&cmd, (int)argc, s->argv, s->argvlen);
	free(top);
	if (len < 0)
		return -1;
	s->bytes += (uint64_t)len;
	redisFreeCommand(cmd);
	return 0;
}

/* One timed pass over the messages; returns events/s, users cached in *n_users. */
static double
ip_run(const struct model *m, struct decoder *dec, const char *topic, const char *buf,
    const struct ip_msg *msgs, size_t n, size_t *n_users, size_t *heap_bytes)
{
	struct users *users = users_new(model_hparams(m));
	struct updater *up = updater_new(m, IP_BATCH);
	struct userview *uv = userview_new(m, IP_FLUSH_USERS, IP_TOP_N, 0);
	struct update_event *uev = malloc(IP_BATCH * sizeof(*uev));
	struct sink_user *su = calloc(IP_FLUSH_USERS, sizeof(*su));
	uint32_t max_tiers = model_hparams(m)->max_tiers;
	struct ip_ser s = { 0 };
	double t0, t1, next_flush;
	size_t applied = 0, heap0;
	int bad = 0;

	s.argv = malloc((IP_FIXED_ARGS + 2 * max_tiers) * sizeof(*s.argv));
	s.argvlen = malloc((IP_FIXED_ARGS + 2 * max_tiers) * sizeof(*s.argvlen));
	s.keys = malloc(5 * sizeof(*s.keys));
	s.nums = malloc((IP_FIXED_ARGS + 2 * max_tiers) * sizeof(*s.nums));
	s.labels = malloc(max_tiers * sizeof(*s.labels));
	s.tvals = malloc(max_tiers * sizeof(*s.tvals));
	s.vec = malloc((size_t)model_dim(m) * 4);
	s.state_cap = 1 << 18; /* the largest state blob is 149 KiB (schemas/redis.md) */
	s.state = malloc(s.state_cap);
	if (!users || !up || !uv || !uev || !su || !s.argv || !s.argvlen || !s.keys || !s.nums ||
	    !s.labels || !s.tvals || !s.vec || !s.state) {
		fprintf(stderr, "bench-inproc: out of memory\n");
		exit(1);
	}
	heap0 = mallinfo2().uordblks;
	t0 = mono_s();
	next_flush = t0 + IP_FLUSH_MS / 1000.0;
	for (size_t b = 0; b < n; b += IP_BATCH) {
		size_t k = n - b < IP_BATCH ? n - b : IP_BATCH, n_uev = 0, n_dirty;
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
				/* The daemon's duplicate check by event id (consumer.c). */
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
		now = mono_s();
		if (users_dirty_count(users) < IP_FLUSH_USERS && now < next_flush && b + k < n)
			continue;
		next_flush = now + IP_FLUSH_MS / 1000.0;
		struct user_entry *const *dirty = users_dirty(users, &n_dirty);
		int64_t now_ms = wall_ms();

		for (size_t off = 0; off < n_dirty; off += IP_FLUSH_USERS) {
			size_t c = n_dirty - off < IP_FLUSH_USERS ? n_dirty - off : IP_FLUSH_USERS;

			for (size_t i = 0; i < c; i++) {
				struct user_entry *e = dirty[off + i];

				su[i].user_id = e->id;
				su[i].user_id_len = e->id_len;
				su[i].us = e->us;
				su[i].epoch = 1;
			}
			userview_fill_batch(uv, su, c);
			for (size_t i = 0; i < c; i++) {
				if (ip_serialise(&s, m, &su[i], topic, now_ms) != 0) {
					fprintf(stderr, "bench-inproc: serialisation failed\n");
					exit(1);
				}
			}
		}
		users_clean_all(users);
	}
	t1 = mono_s();
	*n_users = users_count(users);
	*heap_bytes = mallinfo2().uordblks - heap0;
	if (bad > 0)
		fprintf(stderr, "bench-inproc: %d messages not applicable\n", bad);
	users_free(users);
	updater_free(up);
	userview_free(uv);
	free(uev);
	free(su);
	free(s.argv);
	free(s.argvlen);
	free(s.keys);
	free(s.nums);
	free(s.labels);
	free(s.tvals);
	free(s.vec);
	free(s.state);
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
	double eps[IP_MAX_REPS];

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
	}
	if (brokers == NULL || topic == NULL || model_path == NULL || want == 0 || reps < 1 ||
	    reps > IP_MAX_REPS) {
		fprintf(stderr, "usage: bench-inproc --brokers H:P --topic T --events N --model "
				"M.imdl [--schema S] [--reps 1..15] [--group G]\n");
		return 64;
	}
	if ((m = model_load(model_path, err, sizeof(err))) == NULL ||
	    (dec = decoder_new(schema, err, sizeof(err))) == NULL) {
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
		eps[r] = ip_run(m, dec, topic, buf, msgs, n, &n_users, &heap);
	printf("{\"events\": %zu, \"users\": %zu, \"heap_bytes_per_user\": %.1f, \"eps_runs\": [",
	    n, n_users, n_users ? (double)heap / (double)n_users : 0.0);
	for (int r = 0; r < reps; r++)
		printf("%s%.1f", r ? ", " : "", eps[r]);
	qsort(eps, (size_t)reps, sizeof(double), cmp_double);
	printf("], \"eps\": %.1f}\n", eps[reps / 2]);
	free(buf);
	free(msgs);
	decoder_free(dec);
	model_free(m);
	return 0;
}
