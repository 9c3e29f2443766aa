/*
 * Hand-written Avro binary encoder for the one InterestSnapshot schema
 * (zig-zag varints, length-prefixed strings, one block per array), checked
 * against libavro-c by tests/unit/snapshot.c.
 */
#include "snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binary.h"
#include "modelfile.h"
#include "schemas.h"
#include "state.h"

#define SNAPSHOT_INITIAL_CAP 4096
#define SNAPSHOT_LABEL_MAX   32 /* model_node_label needs >= 16 */
#define SNAPSHOT_ERR_MAX     256

struct snapshot {
	uint8_t head[SNAPSHOT_HEADER_SIZE]; /* C3 01 + the schema's fingerprint */
	uint8_t *buf;
	size_t len, cap;
	int oom; /* a write did not fit and growing failed */
};

struct snapshot *
snapshot_new(char *errstr, size_t errstr_size)
{
	struct snapshot *sn = calloc(1, sizeof(*sn));
	char err[SNAPSHOT_ERR_MAX];

	if (sn == NULL || (sn->buf = malloc(SNAPSHOT_INITIAL_CAP)) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	sn->cap = SNAPSHOT_INITIAL_CAP;
	sn->head[0] = 0xc3;
	sn->head[1] = 0x01;
	if (schemas_fingerprint(schemas_interest_snapshot_avsc, schemas_interest_snapshot_avsc_len,
		sn->head + 2, err, sizeof(err)) != 0) {
		snprintf(errstr, errstr_size, "InterestSnapshot schema: %s", err); /* our bug */
		goto fail;
	}
	return sn;
fail:
	snapshot_free(sn);
	return NULL;
}

void
snapshot_free(struct snapshot *sn)
{
	if (sn == NULL)
		return;
	free(sn->buf);
	free(sn);
}

/* Makes room for n more bytes; sets oom and returns -1 when it cannot. */
static int
snapshot_reserve(struct snapshot *sn, size_t n)
{
	size_t ncap = sn->cap;
	uint8_t *nb;

	if (sn->oom)
		return -1;
	if (sn->len + n <= sn->cap)
		return 0;
	while (ncap < sn->len + n)
		ncap *= 2;
	nb = realloc(sn->buf, ncap);
	if (nb == NULL) {
		sn->oom = 1;
		return -1;
	}
	sn->buf = nb;
	sn->cap = ncap;
	return 0;
}

static void
snapshot_put_bytes(struct snapshot *sn, const void *p, size_t n)
{
	if (snapshot_reserve(sn, n) != 0)
		return;
	memcpy(sn->buf + sn->len, p, n);
	sn->len += n;
}

static void
snapshot_put_long(struct snapshot *sn, int64_t v)
{
	if (snapshot_reserve(sn, AVRO_LONG_MAX_BYTES) != 0)
		return;
	sn->len += avro_put_long(sn->buf + sn->len, v);
}

static void
snapshot_put_string(struct snapshot *sn, const char *s, size_t n)
{
	snapshot_put_long(sn, (int64_t)n);
	snapshot_put_bytes(sn, s, n);
}

static void
snapshot_put_float(struct snapshot *sn, float f)
{
	uint32_t u;
	uint8_t b[4];

	memcpy(&u, &f, 4);
	b[0] = (uint8_t)u;
	b[1] = (uint8_t)(u >> 8);
	b[2] = (uint8_t)(u >> 16);
	b[3] = (uint8_t)(u >> 24);
	snapshot_put_bytes(sn, b, 4);
}

int
snapshot_encode(struct snapshot *sn, const struct model *m, const char *user_id, size_t user_id_len,
    const struct user_state *us, uint32_t n_events, const float *vec, const uint8_t **out,
    size_t *out_len)
{
	uint32_t dim = model_dim(m), n_nodes = model_n_nodes(m);
	uint16_t first;
	int64_t n_known = 0, n_tiers = 0;

	sn->len = 0;
	sn->oom = 0;
	snapshot_put_bytes(sn, sn->head, sizeof(sn->head));
	snapshot_put_string(sn, user_id, user_id_len);
	snapshot_put_long(sn, (int64_t)us->model_version);
	snapshot_put_long(sn, us->t_ref_ms == STATE_NO_TIME ? 0 : us->t_ref_ms);

	/* events: the newest n_events of the ring whose item the model knows. */
	if (n_events > us->ring_count)
		n_events = us->ring_count;
	first = (uint16_t)(us->ring_count - n_events);
	for (uint16_t i = first; i < us->ring_count; i++)
		n_known += model_item_lookup_hash(m, state_ring_get(us, i)->item_hash) >= 0;
	if (n_known > 0) {
		snapshot_put_long(sn, n_known);
		for (uint16_t i = first; i < us->ring_count; i++) {
			const struct ring_event *re = state_ring_get(us, i);
			int32_t item = model_item_lookup_hash(m, re->item_hash);
			const char *id;
			size_t id_len;

			if (item < 0)
				continue;
			id = model_item_id(m, (uint32_t)item, &id_len);
			snapshot_put_string(sn, id, id_len);
			snapshot_put_long(sn, re->type < MODEL_N_TYPES ? re->type : MODEL_EV_VIEW);
			snapshot_put_long(sn, re->ts_ms);
		}
	}
	snapshot_put_long(sn, 0);

	/* tiers: every stored node with its wire label. */
	for (uint16_t i = 0; i < us->n_tiers; i++)
		n_tiers += us->tiers[i].node < n_nodes;
	if (n_tiers > 0) {
		snapshot_put_long(sn, n_tiers);
		for (uint16_t i = 0; i < us->n_tiers; i++) {
			char label[SNAPSHOT_LABEL_MAX];
			size_t ll;

			if (us->tiers[i].node >= n_nodes)
				continue;
			ll = model_node_label(m, us->tiers[i].node, label, sizeof(label));
			snapshot_put_string(sn, label, ll);
			snapshot_put_float(sn, us->tiers[i].w_short);
			snapshot_put_float(sn, us->tiers[i].w_long);
		}
	}
	snapshot_put_long(sn, 0);

	/* vector */
	if (dim > 0) {
		snapshot_put_long(sn, dim);
		for (uint32_t i = 0; i < dim; i++)
			snapshot_put_float(sn, vec[i]);
	}
	snapshot_put_long(sn, 0);

	if (sn->oom)
		return -1;
	*out = sn->buf;
	*out_len = sn->len;
	return 0;
}
