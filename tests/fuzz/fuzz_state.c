/*
 * libFuzzer target for the user-state codec (model/state.c, layout
 * schemas/state.md): state_decode() into a state sized by fixed
 * hyper-parameters (H 16, max_tiers 16, ring_len 8) takes any bytes and
 * succeeds or fails with a reason, leaving the state untouched on failure.
 * A blob that decoded is re-encoded and decoded again into a second state:
 * both states and both encodings must be equal, and a version-2 blob written
 * with the same sizes (and no more event ids than a state keeps) must
 * re-encode to exactly its own bytes; a version-1 blob re-encodes as
 * version 2.
 *
 * Input: one flag byte, then the blob. Flag bit 0 set: the trailing CRC is
 * recomputed first, so mutations reach the checks behind the checksum.
 * Build and run: scripts/fuzz. Seeds: tests/fuzz/corpus/state/ (written by
 * scripts/fuzz --seeds).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "modelfile.h"
#include "state.h"

#define FUZZ_FLAG_FIXUP 0x01u
#define FUZZ_HIDDEN     16
#define FUZZ_MAX_TIERS  16
#define FUZZ_RING_LEN   8
#define FUZZ_CRC_SIZE   4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_hparams(struct model_hparams *hp)
{
	memset(hp, 0, sizeof(*hp));
	hp->hidden = FUZZ_HIDDEN;
	hp->type_dim = 4;
	hp->n_types = MODEL_N_TYPES;
	hp->ring_len = FUZZ_RING_LEN;
	hp->half_life_short_s = 3600.0f;
	hp->half_life_long_s = 30.0f * 86400.0f;
	hp->max_tiers = FUZZ_MAX_TIERS;
}

/* Field-by-field (bitwise for floats) equality of two states of the same sizes. */
static int
fuzz_state_equal(const struct user_state *a, const struct user_state *b)
{
	if (a->t_ref_ms != b->t_ref_ms || a->last_offset != b->last_offset ||
	    a->last_partition != b->last_partition || a->hidden != b->hidden ||
	    a->events_applied != b->events_applied || a->model_version != b->model_version ||
	    a->n_tiers != b->n_tiers || a->ring_count != b->ring_count)
		return 0;
	if (memcmp(a->h, b->h, a->hidden * sizeof(float)) != 0 ||
	    memcmp(a->c, b->c, a->hidden * sizeof(float)) != 0 || a->n_seen != b->n_seen ||
	    (a->n_seen > 0 && memcmp(a->seen, b->seen, a->n_seen * sizeof(uint32_t)) != 0) ||
	    a->n_event_ids != b->n_event_ids || a->event_ids_head != b->event_ids_head ||
	    memcmp(a->event_ids, b->event_ids, a->n_event_ids * sizeof(uint64_t)) != 0)
		return 0;
	for (uint32_t i = 1; i < a->n_seen; i++)
		if (a->seen[i] <= a->seen[i - 1])
			return 0;
	for (uint16_t i = 0; i < a->n_tiers; i++)
		if (a->tiers[i].node != b->tiers[i].node ||
		    memcmp(&a->tiers[i].w_short, &b->tiers[i].w_short, sizeof(float)) != 0 ||
		    memcmp(&a->tiers[i].w_long, &b->tiers[i].w_long, sizeof(float)) != 0)
			return 0;
	for (uint16_t i = 0; i < a->ring_count; i++) {
		const struct ring_event *x = state_ring_get(a, i), *y = state_ring_get(b, i);

		if (x->item_hash != y->item_hash || x->ts_ms != y->ts_ms || x->type != y->type)
			return 0;
	}
	return 1;
}

static uint32_t
fuzz_rd_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint16_t
fuzz_rd_u16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_hparams hp;
	struct user_state *us = NULL, *again = NULL, *before = NULL;
	uint8_t *blob = NULL, *enc = NULL, *enc2 = NULL;
	size_t len, n, n2;
	char err[256];

	if (size < 1)
		return 0;
	len = size - 1;
	blob = malloc(len + 1);
	fuzz_hparams(&hp);
	us = state_new(&hp);
	again = state_new(&hp);
	before = state_new(&hp);
	if (blob == NULL || us == NULL || again == NULL || before == NULL)
		goto done;
	memcpy(blob, data + 1, len);
	if ((data[0] & FUZZ_FLAG_FIXUP) && len >= FUZZ_CRC_SIZE) {
		uint32_t crc = container_crc32(0, blob, len - FUZZ_CRC_SIZE);
		memcpy(blob + len - FUZZ_CRC_SIZE, &crc, FUZZ_CRC_SIZE);
	}
	/* Distinct non-zero contents, to see that a failed decode leaves them alone. */
	us->t_ref_ms = before->t_ref_ms = 12345;
	us->last_offset = before->last_offset = 77;
	us->last_partition = before->last_partition = 3;
	state_ring_push(us, 0xfeedu, 1000, 2);
	state_ring_push(before, 0xfeedu, 1000, 2);
	err[0] = '\0';
	if (state_decode(us, blob, len, err, sizeof(err)) != 0) {
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort(); /* a failure always says why */
		if (!fuzz_state_equal(us, before) || us->ring_head != before->ring_head) {
			fprintf(stderr, "fuzz_state: failed decode (%s) changed the state\n", err);
			abort();
		}
		goto done;
	}
	if (us->n_tiers > us->max_tiers || us->ring_count > us->ring_len ||
	    (us->ring_len > 0 && us->ring_head >= us->ring_len))
		abort();
	n = state_encoded_size(us);
	enc = malloc(n);
	enc2 = malloc(n);
	if (enc == NULL || enc2 == NULL)
		goto done;
	if (state_encode(us, enc, n) != n || state_encode(us, enc, n - 1) != 0)
		abort();
	if (state_decode(again, enc, n, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_state: re-encoded state does not decode: %s\n", err);
		abort();
	}
	if (!fuzz_state_equal(us, again)) {
		fprintf(stderr, "fuzz_state: decode(encode(decode(x))) != decode(x)\n");
		abort();
	}
	n2 = state_encode(again, enc2, n);
	if (n2 != n || memcmp(enc, enc2, n) != 0) {
		fprintf(stderr, "fuzz_state: encoding is not stable\n");
		abort();
	}
	/* Version 2, same sizes as ours, ring and ids fit: the codec is the identity on bytes. */
	if (blob[3] == 2 && fuzz_rd_u32(blob + 4) == FUZZ_HIDDEN &&
	    fuzz_rd_u16(blob + 8) == FUZZ_MAX_TIERS && fuzz_rd_u16(blob + 10) == FUZZ_RING_LEN &&
	    fuzz_rd_u16(blob + 60) <= STATE_EVENT_IDS && (len != n || memcmp(blob, enc, n) != 0)) {
		fprintf(stderr, "fuzz_state: blob of our sizes re-encodes differently\n");
		abort();
	}
done:
	free(enc2);
	free(enc);
	state_free(before);
	state_free(again);
	state_free(us);
	free(blob);
	return 0;
}
