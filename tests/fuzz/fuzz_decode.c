/*
 * libFuzzer target for daemon/decode.c: a decoder with the reader schema and
 * the v0 and v2 test writers registered (single-object fingerprints, Confluent
 * ids 1 reader, 2 v0, 3 v2) decodes arbitrary bytes. Build and run:
 * scripts/fuzz-build-decode. Schemas come from SCHEMA_DIR (default
 * "schemas", i.e. run from the repository root).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

#ifndef SCHEMA_DIR
#define SCHEMA_DIR "schemas"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
fuzz_read(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *s;
	size_t n;

	if (fp == NULL)
		return NULL;
	s = calloc(1, 1 << 20);
	n = s != NULL ? fread(s, 1, (1 << 20) - 1, fp) : 0;
	fclose(fp);
	if (s != NULL)
		s[n] = '\0';
	return s;
}

static struct decoder *
fuzz_decoder(void)
{
	static const char *const writers[] = {
		SCHEMA_DIR "/behaviour_event.avsc",
		SCHEMA_DIR "/behaviour_event_v0.avsc",
		SCHEMA_DIR "/behaviour_event_v2.avsc",
	};
	char errs[256];
	struct decoder *dec = decoder_new(writers[0], errs, sizeof(errs));

	if (dec == NULL) {
		fprintf(stderr, "fuzz_decode: %s\n", errs);
		abort();
	}
	for (int i = 0; i < 3; i++) {
		char *json = fuzz_read(writers[i]);
		if (json == NULL || decoder_add_writer(dec, json, i + 1, errs, sizeof(errs)) != 0) {
			fprintf(stderr, "fuzz_decode: %s: %s\n", writers[i], json ? errs : "unreadable");
			abort();
		}
		free(json);
	}
	return dec;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Built once per process; the harness's only state. */
	static struct decoder *dec;
	struct event ev;
	char detail[128];
	enum decode_err err;

	if (dec == NULL)
		dec = fuzz_decoder();
	err = decoder_decode(dec, data, size, &ev, detail, sizeof(detail));
	if (err == DECODE_OK) {
		/* Touch every string byte: ASan checks they lie inside the input. */
		volatile uint8_t sink = 0;
		for (size_t i = 0; i < ev.event_id_len; i++)
			sink ^= (uint8_t)ev.event_id[i];
		for (size_t i = 0; i < ev.user_id_len; i++)
			sink ^= (uint8_t)ev.user_id[i];
		for (size_t i = 0; i < ev.item_id_len; i++)
			sink ^= (uint8_t)ev.item_id[i];
		if (ev.user_id_len == 0 || ev.item_id_len == 0 || ev.event_id_len == 0 ||
		    ev.type > 7)
			abort();      /* the decoder promised otherwise */
		(void)sink;
	} else if (strcmp(decode_err_name(err), "unknown") == 0) {
		abort();
	}
	return 0;
}
