/*
 * Benchmark load generator (make bench, docs/BENCH.md): produces Avro
 * BehaviourEvent messages (plain Avro binary in the reader schema, keyed by
 * user id) for U users over the items of a model file, flat out or at a
 * fixed rate. Item popularity is Zipf-like inside each tier-1 node and across
 * nodes; each user has a few favourite tier-1 nodes that drift (one is
 * replaced now and then). ts is the wall clock at production. Users whose
 * index is a multiple of --probe-every are "probe" users (id prefix q instead
 * of u): their events are logged (user, per-user sequence, ts) for the
 * latency measurement.
 *
 *   build/tools/bench-gen --brokers H:P --topic T --model M.imdl [--users U]
 *       [--events N] [--rate EPS] [--seconds S] [--seed N]
 *       [--probe-every K --probe-log FILE]
 * Prints one JSON line: events, seconds, eps.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "binary.h"
#include "clock.h"
#include "modelfile.h"

#define GEN_FAVS 3             /* favourite tier-1 nodes per user */
#define GEN_FAV_SHARE 0.85     /* events from a favourite node */
#define GEN_DRIFT_EVERY 40     /* on average one favourite replaced per this many events */
#define GEN_ZIPF_S 1.0         /* item popularity exponent inside a node */
#define GEN_NODE_ZIPF_S 0.8    /* node popularity exponent */
#define GEN_MSG_MAX 512
#define GEN_ID_MAX 32
#define GEN_POLL_EVERY 1000

struct gen_user {
	uint16_t fav[GEN_FAVS];
	uint32_t seq; /* events produced for this user */
};

struct gen {
	const struct model *m;
	uint32_t n_items, n_tier1;
	uint32_t **node_items; /* per tier-1 node: its items in a random popularity order */
	uint32_t *node_n;
	double **node_cdf;     /* per node: Zipf CDF over node_items */
	double *tier_cdf;      /* Zipf CDF over a random order of tier-1 nodes */
	uint32_t *tier_order;
	struct gen_user *users;
	uint32_t n_users;
	uint64_t rng;
};

static volatile sig_atomic_t gen_stop;

static void
gen_on_signal(int sig)
{
	(void)sig;
	gen_stop = 1;
}

/* splitmix64 */
static uint64_t
gen_next(struct gen *g)
{
	uint64_t z = (g->rng += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double
gen_unit(struct gen *g)
{
	return (double)(gen_next(g) >> 11) * (1.0 / 9007199254740992.0);
}

static uint32_t
gen_below(struct gen *g, uint32_t n)
{
	return (uint32_t)(gen_unit(g) * n) % n;
}

/* Index of the first CDF entry >= u. */
static uint32_t
gen_pick(const double *cdf, uint32_t n, double u)
{
	uint32_t lo = 0, hi = n - 1;

	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;

		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static double *
gen_zipf_cdf(uint32_t n, double s)
{
	double *cdf = malloc((n ? n : 1) * sizeof(double)), sum = 0.0;

	if (cdf == NULL)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		cdf[i] = (sum += 1.0 / pow((double)(i + 1), s));
	for (uint32_t i = 0; i < n; i++)
		cdf[i] /= sum;
	return cdf;
}

static void
gen_shuffle(struct gen *g, uint32_t *a, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = gen_below(g, i), t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}

static uint16_t
gen_random_tier(struct gen *g)
{
	return (uint16_t)g->tier_order[gen_pick(g->tier_cdf, g->n_tier1, gen_unit(g))];
}

static int
gen_init(struct gen *g, const struct model *m, uint32_t n_users, uint64_t seed)
{
	memset(g, 0, sizeof(*g));
	g->m = m;
	g->rng = seed;
	g->n_items = model_n_items(m);
	g->n_tier1 = model_n_tier1(m);
	g->n_users = n_users;
	g->node_items = calloc(g->n_tier1, sizeof(*g->node_items));
	g->node_n = calloc(g->n_tier1, sizeof(*g->node_n));
	g->node_cdf = calloc(g->n_tier1, sizeof(*g->node_cdf));
	g->tier_order = malloc(g->n_tier1 * sizeof(uint32_t));
	g->tier_cdf = gen_zipf_cdf(g->n_tier1, GEN_NODE_ZIPF_S);
	g->users = calloc(n_users, sizeof(*g->users));
	if (!g->node_items || !g->node_n || !g->node_cdf || !g->tier_order || !g->tier_cdf ||
	    !g->users)
		return -1;
	for (uint32_t i = 0; i < g->n_items; i++)
		g->node_n[model_item_tier1(m, i)]++;
	for (uint32_t j = 0; j < g->n_tier1; j++) {
		g->node_items[j] = malloc((g->node_n[j] ? g->node_n[j] : 1) * sizeof(uint32_t));
		g->node_cdf[j] = gen_zipf_cdf(g->node_n[j], GEN_ZIPF_S);
		if (g->node_items[j] == NULL || g->node_cdf[j] == NULL)
			return -1;
		g->node_n[j] = 0;
		g->tier_order[j] = j;
	}
	for (uint32_t i = 0; i < g->n_items; i++) {
		uint32_t j = model_item_tier1(m, i);

		g->node_items[j][g->node_n[j]++] = i;
	}
	for (uint32_t j = 0; j < g->n_tier1; j++)
		gen_shuffle(g, g->node_items[j], g->node_n[j]);
	gen_shuffle(g, g->tier_order, g->n_tier1);
	for (uint32_t u = 0; u < n_users; u++)
		for (int k = 0; k < GEN_FAVS; k++)
			g->users[u].fav[k] = gen_random_tier(g);
	return 0;
}

static void
gen_fini(struct gen *g)
{
	for (uint32_t j = 0; g->node_items && j < g->n_tier1; j++)
		free(g->node_items[j]);
	for (uint32_t j = 0; g->node_cdf && j < g->n_tier1; j++)
		free(g->node_cdf[j]);
	free(g->node_items);
	free(g->node_cdf);
	free(g->node_n);
	free(g->tier_order);
	free(g->tier_cdf);
	free(g->users);
}

/* One event of a random user: item and type. */
static void
gen_event(struct gen *g, uint32_t *user, uint32_t *item, uint8_t *type)
{
	struct gen_user *gu;
	uint32_t node;
	double u;

	*user = gen_below(g, g->n_users);
	gu = &g->users[*user];
	if (gen_below(g, GEN_DRIFT_EVERY) == 0)
		gu->fav[gen_below(g, GEN_FAVS)] = gen_random_tier(g);
	if (gen_unit(g) < GEN_FAV_SHARE)
		node = gu->fav[gen_below(g, GEN_FAVS)]; /* later favourites as likely */
	else
		node = gen_random_tier(g);
	if (g->node_n[node] == 0)
		node = gen_random_tier(g);
	while (g->node_n[node] == 0)
		node = (node + 1) % g->n_tier1;
	*item = g->node_items[node][gen_pick(g->node_cdf[node], g->node_n[node], gen_unit(g))];
	u = gen_unit(g);
	*type = u < 0.08 ? MODEL_EV_IMPRESSION
	    : u < 0.68	 ? MODEL_EV_VIEW
	    : u < 0.88	 ? MODEL_EV_CLICK
	    : u < 0.93	 ? MODEL_EV_LIKE
	    : u < 0.97	 ? MODEL_EV_ADD_TO_CART
	    : u < 0.99	 ? MODEL_EV_PURCHASE
			 : MODEL_EV_SHARE;
}

static size_t
avro_string(uint8_t *p, const char *s, size_t len)
{
	size_t n = avro_put_long(p, (int64_t)len);

	memcpy(p + n, s, len);
	return n + len;
}

/* BehaviourEvent in the reader schema's field order (schemas/behaviour_event.avsc). */
static size_t
gen_encode(uint8_t *p, const char *eid, size_t eid_len, const char *uid, size_t uid_len,
    const char *iid, size_t iid_len, uint8_t type, int64_t ts_ms, int32_t dwell_ms)
{
	size_t n = 0;

	n += avro_string(p + n, eid, eid_len);
	n += avro_string(p + n, uid, uid_len);
	n += avro_string(p + n, iid, iid_len);
	n += avro_put_long(p + n, type);
	n += avro_put_long(p + n, ts_ms);
	if (dwell_ms >= 0) {
		n += avro_put_long(p + n, 1);
		n += avro_put_long(p + n, dwell_ms);
	} else {
		n += avro_put_long(p + n, 0);
	}
	n += avro_put_long(p + n, 0); /* value: null */
	n += avro_put_long(p + n, 0); /* context: null */
	return n;
}

static void
gen_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	uint64_t *failed = opaque;

	(void)rk;
	if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR && (*failed)++ == 0)
		fprintf(stderr, "bench-gen: delivery failed: %s\n", rd_kafka_err2str(rkm->err));
}

static int
gen_conf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[256];

	if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "bench-gen: %s=%s: %s\n", k, v, err);
		return -1;
	}
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench-gen --brokers H:P --topic T --model M.imdl [--users U] "
			"[--events N] [--rate EPS] [--seconds S] [--seed N] [--probe-every K "
			"--probe-log FILE]\n");
}

int
main(int argc, char **argv)
{
	const char *brokers = NULL, *topic = NULL, *model_path = NULL, *probe_path = NULL;
	uint32_t n_users = 100000, probe_every = 0;
	uint64_t n_events = 2000000, seed = 42, produced = 0, failed = 0;
	double rate = 0.0, seconds = 0.0;
	char err[512];
	struct gen g;
	struct model *m = NULL;
	rd_kafka_t *rk = NULL;
	rd_kafka_conf_t *conf;
	FILE *probe = NULL;
	uint8_t msg[GEN_MSG_MAX];
	char uid[GEN_ID_MAX], eid[GEN_ID_MAX];
	double t0, t;
	int ret = 1;

	memset(&g, 0, sizeof(g));
	for (int i = 1; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL) {
			usage();
			return 64;
		}
		i++;
		if (strcmp(k, "--brokers") == 0)
			brokers = v;
		else if (strcmp(k, "--topic") == 0)
			topic = v;
		else if (strcmp(k, "--model") == 0)
			model_path = v;
		else if (strcmp(k, "--users") == 0)
			n_users = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(k, "--events") == 0)
			n_events = strtoull(v, NULL, 10);
		else if (strcmp(k, "--rate") == 0)
			rate = strtod(v, NULL);
		else if (strcmp(k, "--seconds") == 0)
			seconds = strtod(v, NULL);
		else if (strcmp(k, "--seed") == 0)
			seed = strtoull(v, NULL, 10);
		else if (strcmp(k, "--probe-every") == 0)
			probe_every = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(k, "--probe-log") == 0)
			probe_path = v;
		else {
			usage();
			return 64;
		}
	}
	if (brokers == NULL || topic == NULL || model_path == NULL || n_users == 0) {
		usage();
		return 64;
	}
	signal(SIGINT, gen_on_signal);
	signal(SIGTERM, gen_on_signal);
	if ((m = model_load(model_path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench-gen: %s\n", err);
		return 1;
	}
	if (gen_init(&g, m, n_users, seed) != 0) {
		fprintf(stderr, "bench-gen: out of memory\n");
		goto done;
	}
	if (probe_path != NULL && (probe = fopen(probe_path, "w")) == NULL) {
		fprintf(stderr, "bench-gen: %s: %s\n", probe_path, strerror(errno));
		goto done;
	}
	conf = rd_kafka_conf_new();
	if (gen_conf(conf, "bootstrap.servers", brokers) || gen_conf(conf, "acks", "1") ||
	    gen_conf(conf, "linger.ms", rate > 0 ? "5" : "50") ||
	    gen_conf(conf, "batch.num.messages", "10000") ||
	    gen_conf(conf, "queue.buffering.max.messages", "1000000") ||
	    gen_conf(conf, "client.id", "bench-gen")) {
		rd_kafka_conf_destroy(conf);
		goto done;
	}
	rd_kafka_conf_set_opaque(conf, &failed);
	rd_kafka_conf_set_dr_msg_cb(conf, gen_dr_cb);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench-gen: %s\n", err);
		rd_kafka_conf_destroy(conf);
		goto done;
	}
	t0 = clock_mono_s();
	while (produced < n_events && !gen_stop) {
		uint32_t user, item;
		uint8_t type;
		size_t iid_len, len;
		const char *iid;
		int uid_len, eid_len;
		int64_t ts;
		rd_kafka_resp_err_t kerr;

		if (rate > 0) {
			/* Paced: never ahead of rate * elapsed; sleep in ~1 ms steps. */
			t = clock_mono_s() - t0;
			if (seconds > 0 && t >= seconds)
				break;
			if ((double)produced >= rate * t) {
				struct timespec ns = { 0, 500000 };

				rd_kafka_poll(rk, 0);
				nanosleep(&ns, NULL);
				continue;
			}
		}
		gen_event(&g, &user, &item, &type);
		uid_len = snprintf(uid, sizeof(uid), "%c%07" PRIu32,
		    probe_every && user % probe_every == 0 ? 'q' : 'u', user);
		eid_len = snprintf(eid, sizeof(eid), "e%" PRIu64 "-%" PRIu64, seed, produced);
		iid = model_item_id(m, item, &iid_len);
		ts = clock_wall_ms();
		len = gen_encode(msg, eid, (size_t)eid_len, uid, (size_t)uid_len, iid, iid_len, type,
		    ts, type == MODEL_EV_VIEW ? (int32_t)(1000 + gen_below(&g, 60000)) : -1);
		for (;;) {
			kerr = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
			    RD_KAFKA_V_KEY(uid, (size_t)uid_len), RD_KAFKA_V_VALUE(msg, len),
			    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
			if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			rd_kafka_poll(rk, 10);
		}
		if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "bench-gen: produce: %s\n", rd_kafka_err2str(kerr));
			goto done;
		}
		g.users[user].seq++;
		if (probe != NULL && probe_every && user % probe_every == 0)
			fprintf(probe, "%s %" PRIu32 " %" PRId64 "\n", uid, g.users[user].seq, ts);
		if (++produced % GEN_POLL_EVERY == 0)
			rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 60000);
	t = clock_mono_s() - t0;
	if (rd_kafka_outq_len(rk) > 0 || failed > 0) {
		fprintf(stderr, "bench-gen: %d undelivered, %" PRIu64 " failed\n",
		    rd_kafka_outq_len(rk), failed);
		goto done;
	}
	printf("{\"events\": %" PRIu64 ", \"seconds\": %.3f, \"eps\": %.1f}\n", produced, t,
	    t > 0 ? (double)produced / t : 0.0);
	ret = 0;
done:
	if (probe != NULL && fclose(probe) != 0)
		ret = 1;
	if (rk != NULL)
		rd_kafka_destroy(rk);
	gen_fini(&g);
	model_free(m);
	return ret;
}
