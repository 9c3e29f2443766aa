/*
 * daemon/snapshot.c: the hand encoder's bytes decoded by libavro-c with
 * schemas/interest_snapshot.avsc (every field, arrays empty and full, the
 * newest-n ring window), and the single-object header (fingerprint equal to
 * fastavro's CRC-64-AVRO of the Parsing Canonical Form).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <avro.h>

#include "fixture.h"
#include "modelfile.h"
#include "snapshot.h"
#include "state.h"

#define SCHEMA_PATH "schemas/interest_snapshot.avsc"
/* fastavro.schema.fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO") */
static const uint8_t want_fp[8] = { 0xd8, 0x4f, 0x14, 0x60, 0xf2, 0x43, 0xd5, 0xe5 };

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (f == NULL)
		return NULL;
	buf = calloc(1, 1 << 16);
	n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
	fclose(f);
	if (buf != NULL)
		buf[n] = '\0';
	return buf;
}

static int
get_field(avro_value_t *rec, const char *name, avro_value_t *out)
{
	return avro_value_get_by_name(rec, name, out, NULL);
}

/* Decodes body with libavro-c and checks it against us/vec; returns failures. */
static int
check_decoded(avro_schema_t schema, const uint8_t *buf, size_t len, const struct model *m,
    const char *user, const struct user_state *us, uint32_t n_events, const float *vec)
{
	avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
	avro_value_t rec, f, el, x;
	avro_reader_t rd;
	const char *s;
	size_t sl, n;
	int64_t l;
	int fails = 0, ok;
	int32_t e;
	float fl;

	avro_generic_value_new(iface, &rec);
	rd = avro_reader_memory(
	    (const char *)buf + SNAPSHOT_HEADER_SIZE, (int64_t)(len - SNAPSHOT_HEADER_SIZE));
	CHECK(avro_value_read(rd, &rec) == 0, "libavro-c reads the record (%s)", avro_strerror());
	{
		/* libavro-c re-encodes the value it read: same bytes, nothing left over. */
		size_t body = len - SNAPSHOT_HEADER_SIZE, sz = 0;
		char *again = malloc(body + 16);
		avro_writer_t wr = avro_writer_memory(again, (int64_t)body + 16);

		CHECK(avro_value_sizeof(&rec, &sz) == 0 && sz == body, "libavro-c size %zu == %zu",
		    sz, body);
		CHECK(avro_value_write(wr, &rec) == 0 && (size_t)avro_writer_tell(wr) == body &&
			memcmp(again, buf + SNAPSHOT_HEADER_SIZE, body) == 0,
		    "libavro-c re-encoding is byte-identical");
		avro_writer_free(wr);
		free(again);
	}

	get_field(&rec, "user_id", &f);
	avro_value_get_string(&f, &s, &sl);
	CHECK(sl == strlen(user) + 1 && strcmp(s, user) == 0, "user_id %s", s);
	get_field(&rec, "model_version", &f);
	avro_value_get_long(&f, &l);
	CHECK((uint64_t)l == us->model_version, "model_version %lld", (long long)l);
	get_field(&rec, "ts", &f);
	avro_value_get_long(&f, &l);
	CHECK(l == us->t_ref_ms, "ts %lld", (long long)l);

	get_field(&rec, "events", &f);
	avro_value_get_size(&f, &n);
	CHECK(n == n_events, "events: %zu (want %u)", n, n_events);
	ok = 1;
	for (size_t i = 0; i < n; i++) {
		const struct ring_event *re =
		    state_ring_get(us, (uint16_t)(us->ring_count - n + i));
		size_t idl;
		const char *id =
		    model_item_id(m, (uint32_t)model_item_lookup_hash(m, re->item_hash), &idl);

		avro_value_get_by_index(&f, i, &el, NULL);
		get_field(&el, "item_id", &x);
		avro_value_get_string(&x, &s, &sl);
		ok &= sl == idl + 1 && memcmp(s, id, idl) == 0;
		get_field(&el, "type", &x);
		avro_value_get_enum(&x, &e);
		ok &= e == re->type;
		get_field(&el, "ts", &x);
		avro_value_get_long(&x, &l);
		ok &= l == re->ts_ms;
	}
	CHECK(ok, "events are the newest %zu ring events, oldest first, ids/types/ts equal", n);

	get_field(&rec, "tiers", &f);
	avro_value_get_size(&f, &n);
	CHECK(n == us->n_tiers, "tiers: %zu", n);
	ok = 1;
	for (size_t i = 0; i < n; i++) {
		char label[32];

		model_node_label(m, us->tiers[i].node, label, sizeof(label));
		avro_value_get_by_index(&f, i, &el, NULL);
		get_field(&el, "node", &x);
		avro_value_get_string(&x, &s, &sl);
		ok &= strcmp(s, label) == 0;
		get_field(&el, "short", &x);
		avro_value_get_float(&x, &fl);
		ok &= fl == us->tiers[i].w_short;
		get_field(&el, "long", &x);
		avro_value_get_float(&x, &fl);
		ok &= fl == us->tiers[i].w_long;
	}
	CHECK(ok, "tier labels and weights equal");

	get_field(&rec, "vector", &f);
	avro_value_get_size(&f, &n);
	CHECK(n == model_dim(m), "vector has dim %zu", n);
	ok = 1;
	for (size_t i = 0; i < n; i++) {
		avro_value_get_by_index(&f, i, &el, NULL);
		avro_value_get_float(&el, &fl);
		ok &= fl == vec[i];
	}
	CHECK(ok, "vector floats equal bit for bit");

	avro_reader_free(rd);
	avro_value_decref(&rec);
	avro_value_iface_decref(iface);
	return fails;
}

int
main(void)
{
	struct fixture_cat fc = { 64, 12, 4, 3, 11 };
	char dir[] = "/tmp/snapshot-test.XXXXXX", cpath[128], mpath[128], err[512];
	struct model *m;
	struct user_state *us;
	struct snapshot *sn;
	avro_schema_t schema;
	char *json;
	const uint8_t *buf;
	size_t len;
	float vec[12];
	int fails = 0;

	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(cpath, sizeof(cpath), "%s/c.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/m.imdl", dir);
	m = fixture_model(cpath, mpath, &fc, 8, err, sizeof(err));
	unlink(cpath);
	unlink(mpath);
	rmdir(dir);
	CHECK(m != NULL, "fixture model (%s)", m ? "ok" : err);
	json = slurp(SCHEMA_PATH);
	CHECK(json != NULL, "read %s", SCHEMA_PATH);
	if (m == NULL || json == NULL)
		return 1;
	CHECK(avro_schema_from_json_length(json, strlen(json), &schema) == 0,
	    "libavro-c parses schema");

	sn = snapshot_new(err, sizeof(err));
	CHECK(sn != NULL, "snapshot_new (%s)", sn ? "ok" : err);
	us = state_new(model_hparams(m));
	CHECK(us != NULL, "state_new");
	if (sn == NULL || us == NULL)
		return 1;

	/* An empty state: all arrays empty except the vector. */
	for (uint32_t i = 0; i < 12; i++)
		vec[i] = 0.25f * (float)i - 1.0f;
	us->model_version = 77;
	us->t_ref_ms = 0;
	CHECK(snapshot_encode(sn, m, "u-empty", 7, us, 5, vec, &buf, &len) == 0,
	    "encode empty state");
	CHECK(len > SNAPSHOT_HEADER_SIZE && buf[0] == 0xc3 && buf[1] == 0x01 &&
		memcmp(buf + 2, want_fp, 8) == 0,
	    "single-object header (fingerprint as fastavro's)");
	fails += check_decoded(schema, buf, len, m, "u-empty", us, 0, vec);

	/* A state with 12 events (ring of 8 keeps the newest 8), tiers applied. */
	for (int i = 0; i < 12; i++) {
		uint32_t item = (uint32_t)(i * 5) % 64;
		size_t idl;
		const char *id = model_item_id(m, item, &idl);
		int64_t ts = 1700000000000LL + i * 60000LL;

		state_tiers_apply(us, m, item, (uint8_t)(i % MODEL_N_TYPES), ts);
		state_ring_push(us, model_id_hash(id, idl), ts, (uint8_t)(i % MODEL_N_TYPES));
	}
	us->model_version = 1700000000;
	CHECK(us->n_tiers > 0 && us->ring_count == 8, "state has %u tiers, %u ring events",
	    us->n_tiers, us->ring_count);
	CHECK(snapshot_encode(sn, m, "user-42", 7, us, 3, vec, &buf, &len) == 0, "encode 3 events");
	fails += check_decoded(schema, buf, len, m, "user-42", us, 3, vec);
	CHECK(snapshot_encode(sn, m, "user-42", 7, us, 100, vec, &buf, &len) == 0,
	    "encode with n_events beyond the ring");
	fails += check_decoded(schema, buf, len, m, "user-42", us, 8, vec);

	avro_schema_decref(schema);
	free(json);
	state_free(us);
	snapshot_free(sn);
	model_free(m);
	printf("%s\n", fails ? "FAILED" : "all passed");
	return fails != 0;
}
