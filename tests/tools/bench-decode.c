/*
 * Decoder micro-benchmark: ns per event for a typical BehaviourEvent (ids,
 * PURCHASE, ts, dwell, value, a 2-entry context) in plain, single-object and
 * Confluent (v2 writer, resolved) framing, and libavro-c's generic
 * avro_value_read of the same plain body for comparison. Run from the
 * repository root:  build/tools/bench-decode [iterations]
 */
#include <avro.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"

#define BENCH_DEFAULT_ITERS 2000000L
#define READER_PATH "schemas/behaviour_event.avsc"
#define V2_PATH "schemas/behaviour_event_v2.avsc"

/* Written by fastavro (see tests/unit/decode.c): the reader event "ev-1". */
#define PLAIN_HEX "0865762d31067534320469370af6a1abfef96202b81702000090400204087061676508686f6d65046162026200"
#define SO_HEX "c301dab2782b62b5dbdb" PLAIN_HEX
/* v2 writer, Confluent id 3: reordered, session_id, BOOKMARK, tags. */
#define CF_V2_HEX "00000000030675c3a90865762d32020473310e6974656d2d3939091000000004027804797a00"

static size_t
bench_unhex(const char *hex, uint8_t *out)
{
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return 0;
		out[i] = (uint8_t)v;
	}
	return n;
}

static double
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static char *
bench_read(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *s = calloc(1, 1 << 16);
	size_t n;

	if (fp == NULL || s == NULL) {
		if (fp != NULL)
			fclose(fp);
		free(s);
		return NULL;
	}
	n = fread(s, 1, (1 << 16) - 1, fp);
	s[n] = '\0';
	fclose(fp);
	return s;
}

/* Decodes msg iters times; returns ns per event, or -1 on a decode error. */
static double
bench_decoder(struct decoder *dec, const uint8_t *msg, size_t len, long iters)
{
	struct event ev;
	int64_t sum = 0;
	double t0;

	t0 = bench_now_ns();
	for (long i = 0; i < iters; i++) {
		if (decoder_decode(dec, msg, len, &ev, NULL, 0) != DECODE_OK)
			return -1.0;
		sum += ev.ts_ms + (int64_t)ev.user_id_len;
	}
	if (sum == 42)
		printf(" ");          /* keeps the loop from being optimised away */
	return (bench_now_ns() - t0) / (double)iters;
}

/* libavro-c's generic decode of the plain body, value reused per call. */
static double
bench_libavro(const char *reader_json, const uint8_t *msg, size_t len, long iters)
{
	avro_schema_t schema;
	avro_value_iface_t *iface;
	avro_value_t val;
	avro_reader_t rd;
	double t0, ns = -1.0;

	if (avro_schema_from_json_length(reader_json, strlen(reader_json), &schema) != 0)
		return -1.0;
	iface = avro_generic_class_from_schema(schema);
	avro_generic_value_new(iface, &val);
	rd = avro_reader_memory((const char *)msg, (int64_t)len);
	t0 = bench_now_ns();
	for (long i = 0; i < iters; i++) {
		avro_reader_memory_set_source(rd, (const char *)msg, (int64_t)len);
		avro_value_reset(&val);
		if (avro_value_read(rd, &val) != 0)
			goto done;
	}
	ns = (bench_now_ns() - t0) / (double)iters;
done:
	avro_reader_free(rd);
	avro_value_decref(&val);
	avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	return ns;
}

int
main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : BENCH_DEFAULT_ITERS;
	uint8_t plain[256], so[256], cf[256];
	size_t n_plain = bench_unhex(PLAIN_HEX, plain), n_so = bench_unhex(SO_HEX, so),
	    n_cf = bench_unhex(CF_V2_HEX, cf);
	char errs[256];
	char *reader = bench_read(READER_PATH), *v2 = bench_read(V2_PATH);
	struct decoder *dec;
	double ns_plain, ns_so, ns_cf, ns_avro;
	int rc = 1;

	if (iters <= 0 || reader == NULL || v2 == NULL) {
		fprintf(stderr, "bench-decode: run from the repository root; iterations > 0\n");
		goto done;
	}
	if ((dec = decoder_new(READER_PATH, errs, sizeof(errs))) == NULL ||
	    decoder_add_writer(dec, v2, 3, errs, sizeof(errs)) != 0) {
		fprintf(stderr, "bench-decode: %s\n", errs);
		decoder_free(dec);
		goto done;
	}
	ns_plain = bench_decoder(dec, plain, n_plain, iters);
	ns_so = bench_decoder(dec, so, n_so, iters);
	ns_cf = bench_decoder(dec, cf, n_cf, iters);
	ns_avro = bench_libavro(reader, plain, n_plain, iters / 4 > 0 ? iters / 4 : 1);
	decoder_free(dec);
	if (ns_plain < 0 || ns_so < 0 || ns_cf < 0) {
		fprintf(stderr, "bench-decode: a benchmark message failed to decode\n");
		goto done;
	}
	printf("decode plain (%zu B):              %7.1f ns/event\n", n_plain, ns_plain);
	printf("decode single-object (%zu B):      %7.1f ns/event\n", n_so, ns_so);
	printf("decode confluent v2 resolved (%zu B): %7.1f ns/event\n", n_cf, ns_cf);
	printf("libavro-c avro_value_read plain:    %7.1f ns/event\n", ns_avro);
	rc = 0;
done:
	free(reader);
	free(v2);
	return rc;
}
