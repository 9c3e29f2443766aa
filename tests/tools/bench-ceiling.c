/*
 * Benchmark ceiling (make bench, docs/BENCH.md): a plain librdkafka consumer
 * (fresh group, earliest offsets) reading a topic with the batch API
 * (rd_kafka_consume_batch_queue) and doing nothing else but count messages
 * and bytes. Events/s from the first message to the N-th.
 *
 *   build/tools/bench-ceiling --brokers H:P --topic T --group G --events N
 * Prints one JSON line: events, bytes, seconds, eps.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define CEIL_BATCH 10000
#define CEIL_IDLE_TIMEOUT_S 60.0

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
ceil_conf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
	char err[256];

	if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "bench-ceiling: %s=%s: %s\n", k, v, err);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *brokers = NULL, *topic = NULL, *group = "bench-ceiling";
	uint64_t want = 0, got = 0, bytes = 0;
	rd_kafka_t *rk;
	rd_kafka_conf_t *conf;
	rd_kafka_queue_t *q;
	rd_kafka_topic_partition_list_t *sub;
	rd_kafka_message_t **msgs;
	char err[512];
	double t0 = 0.0, t1 = 0.0, idle_since = mono_s();

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--brokers") == 0)
			brokers = argv[i + 1];
		else if (strcmp(argv[i], "--topic") == 0)
			topic = argv[i + 1];
		else if (strcmp(argv[i], "--group") == 0)
			group = argv[i + 1];
		else if (strcmp(argv[i], "--events") == 0)
			want = strtoull(argv[i + 1], NULL, 10);
	}
	if (brokers == NULL || topic == NULL || want == 0) {
		fprintf(stderr,
		    "usage: bench-ceiling --brokers H:P --topic T --events N [--group G]\n");
		return 64;
	}
	msgs = malloc(CEIL_BATCH * sizeof(*msgs));
	conf = rd_kafka_conf_new();
	if (msgs == NULL || ceil_conf(conf, "bootstrap.servers", brokers) ||
	    ceil_conf(conf, "group.id", group) || ceil_conf(conf, "auto.offset.reset", "earliest") ||
	    ceil_conf(conf, "enable.auto.commit", "false") ||
	    ceil_conf(conf, "client.id", "bench-ceiling")) {
		rd_kafka_conf_destroy(conf);
		free(msgs);
		return 1;
	}
	if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench-ceiling: %s\n", err);
		rd_kafka_conf_destroy(conf);
		free(msgs);
		return 1;
	}
	rd_kafka_poll_set_consumer(rk);
	sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_subscribe(rk, sub);
	rd_kafka_topic_partition_list_destroy(sub);
	q = rd_kafka_queue_get_consumer(rk);
	while (got < want && mono_s() - idle_since < CEIL_IDLE_TIMEOUT_S) {
		ssize_t n = rd_kafka_consume_batch_queue(q, 100, msgs, CEIL_BATCH);

		for (ssize_t i = 0; i < n; i++) {
			if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
				if (got == 0)
					t0 = mono_s();
				got++;
				bytes += msgs[i]->len;
			}
			rd_kafka_message_destroy(msgs[i]);
		}
		if (n > 0)
			idle_since = mono_s();
	}
	t1 = mono_s();
	rd_kafka_queue_destroy(q);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	free(msgs);
	if (got < want) {
		fprintf(stderr, "bench-ceiling: only %" PRIu64 " of %" PRIu64 " messages\n", got, want);
		return 1;
	}
	printf("{\"events\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"seconds\": %.3f, \"eps\": %.1f}\n",
	    got, bytes, t1 - t0, t1 > t0 ? (double)got / (t1 - t0) : 0.0);
	return 0;
}
