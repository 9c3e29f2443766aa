/*
 * daemon/decode.c: events written by libavro-c (avro_value_write) with the
 * reader, an older (v0) and a newer (v2) writer schema in all three framings;
 * fastavro-written fixtures; every failure reason; fingerprints against
 * fastavro's; libavro-c's own resolver refusing what decode.c resolves. Run from the repository root (schemas/ relative).
 */
#include <avro.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avsc.h"
#include "decode.h"
#include "fixture.h"

#define READER_PATH "schemas/behaviour_event.avsc"
#define V0_PATH     "schemas/behaviour_event_v0.avsc"
#define V2_PATH     "schemas/behaviour_event_v2.avsc"
#define MSG_MAX     (128 * 1024)

/* CRC-64-AVRO fingerprints from fastavro 1.13.1 (fastavro.schema.fingerprint
 * of to_parsing_canonical_form), printed as its little-endian byte hex. */
#define FP_READER   "dab2782b62b5dbdb"
#define FP_V0       "6cd5f8c19e244004"
#define FP_V2       "7a087d3b9481e3e3"
#define FP_SNAPSHOT "d84f1460f243d5e5"
#define PCF_READER                                                                                 \
	"{\"name\":\"io.interestd.BehaviourEvent\",\"type\":\"record\",\"fields\":["               \
	"{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"},"  \
	"{\"name\":\"item_id\",\"type\":\"string\"},{\"name\":\"type\",\"type\":{\"name\":"        \
	"\"io.interestd.EventType\",\"type\":\"enum\",\"symbols\":[\"IMPRESSION\",\"VIEW\","       \
	"\"CLICK\",\"LIKE\",\"ADD_TO_CART\",\"PURCHASE\",\"SHARE\",\"DISLIKE\"]}},{\"name\":"      \
	"\"ts\",\"type\":\"long\"},{\"name\":\"dwell_ms\",\"type\":[\"null\",\"int\"]},{\"name\":" \
	"\"value\",\"type\":[\"null\",\"float\"]},{\"name\":\"context\",\"type\":[\"null\","       \
	"{\"type\":\"map\",\"values\":\"string\"}]}]}"

/* Messages written by fastavro 1.13.1 schemaless_writer (+ framing; Confluent
 * ids as registered in main(): reader 1, v0 2, v2 3) when this test was
 * written; the events are spelled out in check_fastavro(). */
#define FA_PLAIN_READER                                                                            \
	"0865762d31067534320469370af6a1abfef96202b81702000090400204087061676508686f6d650461620262" \
	"00"
#define FA_SO_READER                                                                               \
	"c301dab2782b62b5dbdb0865762d31067534320469370af6a1abfef96202b817020000904002040870616765" \
	"08686f6d65046162026200"
#define FA_CF3_V2 "00000000030675c3a90865762d32020473310e6974656d2d3939091000000004027804797a00"
#define FA_SO_V2                                                                                   \
	"c3017a087d3b9481e3e30675c3a90865762d32020473310e6974656d2d3939091000000004027804797a00"
#define FA_CF2_V0 "00000000020865762d3304753104693106a8e8c8e997070206"

/* One event to write; NULL/negative fields are written as null or left out. */
struct tev {
	const char *event_id;
	const char *user_id;
	const char *item_id;
	int type; /* writer enum index */
	int64_t ts;
	int32_t dwell; /* -1: null */
	int has_value;
	float value;
	const char *session; /* v2 only; NULL: null */
	int n_context;       /* map entries "k0".."kN" */
};

enum framing { PLAIN, SINGLE_OBJECT, CONFLUENT };

static char *
read_text(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *s = NULL;
	long n;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0 &&
	    (s = malloc((size_t)n + 1)) != NULL) {
		if (fread(s, 1, (size_t)n, fp) != (size_t)n) {
			free(s);
			s = NULL;
		} else {
			s[n] = '\0';
		}
	}
	fclose(fp);
	return s;
}

static size_t
unhex(const char *hex, uint8_t *out)
{
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return n;
}

static void
fp_hex(uint64_t fp, char *out)
{
	for (int i = 0; i < 8; i++)
		sprintf(out + 2 * i, "%02x", (unsigned)(fp >> (8 * i)) & 0xff);
}

static int
set_field(avro_value_t *rec, const char *name, avro_value_t *field)
{
	return avro_value_get_by_name(rec, name, field, NULL);
}

/* Sets a [null, T] union field: branch of null found by the schema. */
static int
set_optional(avro_value_t *rec, const char *name, int present, avro_value_t *out)
{
	avro_value_t field, branch;
	avro_schema_t us;
	int null_idx;

	if (set_field(rec, name, &field) != 0)
		return -1;
	us = avro_value_get_schema(&field);
	null_idx = avro_typeof(avro_schema_union_branch(us, 0)) == AVRO_NULL ? 0 : 1;
	if (avro_value_set_branch(&field, present ? 1 - null_idx : null_idx, &branch) != 0)
		return -1;
	if (!present)
		return avro_value_set_null(&branch);
	*out = branch;
	return 0;
}

/*
 * Writes ev with libavro-c using writer schema JSON text, framed; returns the
 * message length or 0 on failure. Fields the schema lacks are left out.
 */
static size_t
write_event(const char *schema_json, const struct tev *ev, enum framing fr, int32_t id,
    uint8_t *msg, size_t cap)
{
	avro_schema_t schema = NULL;
	avro_value_iface_t *iface = NULL;
	avro_value_t rec, f, b;
	avro_writer_t w = NULL;
	size_t hdr = 0, n = 0;
	int have_rec = 0;
	char errs[256];

	if (avro_schema_from_json_length(schema_json, strlen(schema_json), &schema) != 0) {
		printf("libavro-c: %s\n", avro_strerror());
		return 0;
	}
	if ((iface = avro_generic_class_from_schema(schema)) == NULL ||
	    avro_generic_value_new(iface, &rec) != 0)
		goto done;
	have_rec = 1;
	if (fr == SINGLE_OBJECT) {
		struct avsc *sc = avsc_parse(schema_json, strlen(schema_json), errs, sizeof(errs));
		uint64_t fp;
		if (sc == NULL)
			goto done;
		fp = avsc_fingerprint(sc);
		avsc_free(sc);
		msg[0] = 0xc3;
		msg[1] = 0x01;
		for (int i = 0; i < 8; i++)
			msg[2 + i] = (uint8_t)(fp >> (8 * i));
		hdr = 10;
	} else if (fr == CONFLUENT) {
		msg[0] = 0;
		msg[1] = (uint8_t)((uint32_t)id >> 24);
		msg[2] = (uint8_t)((uint32_t)id >> 16);
		msg[3] = (uint8_t)((uint32_t)id >> 8);
		msg[4] = (uint8_t)id;
		hdr = 5;
	}
	if (set_field(&rec, "event_id", &f) != 0 || avro_value_set_string(&f, ev->event_id) != 0 ||
	    set_field(&rec, "user_id", &f) != 0 || avro_value_set_string(&f, ev->user_id) != 0 ||
	    set_field(&rec, "item_id", &f) != 0 || avro_value_set_string(&f, ev->item_id) != 0 ||
	    set_field(&rec, "type", &f) != 0 || avro_value_set_enum(&f, ev->type) != 0 ||
	    set_field(&rec, "ts", &f) != 0 || avro_value_set_long(&f, ev->ts) != 0)
		goto done;
	if (set_field(&rec, "dwell_ms", &f) == 0 &&
	    (set_optional(&rec, "dwell_ms", ev->dwell >= 0, &b) != 0 ||
		(ev->dwell >= 0 && avro_value_set_int(&b, ev->dwell) != 0)))
		goto done;
	if (set_field(&rec, "value", &f) == 0) {
		avro_schema_t us = avro_value_get_schema(&f);
		int is_int = avro_typeof(avro_schema_union_branch(us, 1)) == AVRO_INT32;
		if (set_optional(&rec, "value", ev->has_value, &b) != 0)
			goto done;
		if (ev->has_value &&
		    (is_int ? avro_value_set_int(&b, (int32_t)ev->value)
			    : avro_value_set_float(&b, ev->value)) != 0)
			goto done;
	}
	if (set_field(&rec, "session_id", &f) == 0 &&
	    (set_optional(&rec, "session_id", ev->session != NULL, &b) != 0 ||
		(ev->session != NULL && avro_value_set_string(&b, ev->session) != 0)))
		goto done;
	if (set_field(&rec, "context", &f) == 0) {
		if (set_optional(&rec, "context", ev->n_context > 0, &b) != 0)
			goto done;
		for (int i = 0; i < ev->n_context; i++) {
			avro_value_t e;
			char key[16];
			snprintf(key, sizeof(key), "k%d", i);
			if (avro_value_add(&b, key, &e, NULL, NULL) != 0 ||
			    avro_value_set_string(&e, "some-context-value") != 0)
				goto done;
		}
	}
	if (set_field(&rec, "tags", &f) == 0) {
		avro_value_t e;
		if (avro_value_append(&f, &e, NULL) != 0 || avro_value_set_string(&e, "tag") != 0)
			goto done;
	}
	w = avro_writer_memory((char *)msg + hdr, (int64_t)(cap - hdr));
	if (avro_value_write(w, &rec) != 0) {
		printf("libavro-c write: %s\n", avro_strerror());
		goto done;
	}
	n = hdr + (size_t)avro_writer_tell(w);
done:
	if (n == 0)
		printf("write_event failed: %s\n", avro_strerror());
	if (w != NULL)
		avro_writer_free(w);
	if (have_rec)
		avro_value_decref(&rec);
	if (iface != NULL)
		avro_value_iface_decref(iface);
	avro_schema_decref(schema);
	return n;
}

static int
str_is(const char *s, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(s, want, len) == 0;
}

static const struct tev base_event = {
	.event_id = "ev-0001",
	.user_id = "user-42",
	.item_id = "item-7",
	.type = 5 /* PURCHASE */,
	.ts = 1700000000123LL,
	.dwell = 1500,
	.has_value = 1,
	.value = 4.5f,
	.session = "sess-9",
	.n_context = 3,
};

/* Writes, decodes and checks every field for one writer/framing. */
static int
roundtrip(struct decoder *dec, const char *schema, const char *label, const struct tev *in,
    enum framing fr, int32_t id, int want_type, int32_t want_dwell, int want_has_value,
    float want_value)
{
	static const char *fr_names[] = { "plain", "single-object", "confluent" };
	uint8_t msg[4096];
	struct event ev;
	char detail[256] = "";
	enum decode_err err;
	size_t n;
	int fails = 0;

	n = write_event(schema, in, fr, id, msg, sizeof(msg));
	CHECK(n > 0, "%s %s: libavro-c wrote %zu bytes", label, fr_names[fr], n);
	if (n == 0)
		return fails;
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK, "%s %s: decodes (%s %s)", label, fr_names[fr], decode_err_name(err),
	    detail);
	if (err != DECODE_OK)
		return fails;
	CHECK(str_is(ev.event_id, ev.event_id_len, in->event_id) &&
		str_is(ev.user_id, ev.user_id_len, in->user_id) &&
		str_is(ev.item_id, ev.item_id_len, in->item_id),
	    "%s %s: event_id/user_id/item_id", label, fr_names[fr]);
	CHECK(ev.type == want_type, "%s %s: type %d (want %d)", label, fr_names[fr], ev.type,
	    want_type);
	CHECK(ev.ts_ms == in->ts, "%s %s: ts %lld", label, fr_names[fr], (long long)ev.ts_ms);
	CHECK(ev.dwell_ms == want_dwell, "%s %s: dwell_ms %d (want %d)", label, fr_names[fr],
	    ev.dwell_ms, want_dwell);
	CHECK(ev.has_value == want_has_value && (!want_has_value || ev.value == want_value),
	    "%s %s: value %d/%g (want %d/%g)", label, fr_names[fr], ev.has_value, (double)ev.value,
	    want_has_value, (double)want_value);
	return fails;
}

static int
check_fingerprints(const char *reader, const char *v0, const char *v2)
{
	const char *texts[] = { reader, v0, v2 };
	const char *want[] = { FP_READER, FP_V0, FP_V2 };
	char errs[256], hex[17];
	char *snap = read_text("schemas/interest_snapshot.avsc");
	int fails = 0;

	for (int i = 0; i < 3; i++) {
		struct avsc *sc = avsc_parse(texts[i], strlen(texts[i]), errs, sizeof(errs));
		CHECK(sc != NULL, "schema %d parses (%s)", i, sc ? "" : errs);
		if (sc == NULL)
			continue;
		fp_hex(avsc_fingerprint(sc), hex);
		CHECK(strcmp(hex, want[i]) == 0, "fingerprint %s matches fastavro's %s", hex,
		    want[i]);
		if (i == 0)
			CHECK(strcmp(avsc_canonical(sc), PCF_READER) == 0,
			    "reader canonical form matches fastavro's");
		avsc_free(sc);
	}
	if (snap != NULL) {
		/* Nested named records, arrays: a different shape of canonical form. */
		struct avsc *sc = avsc_parse(snap, strlen(snap), errs, sizeof(errs));
		CHECK(sc != NULL, "interest_snapshot.avsc parses");
		if (sc != NULL) {
			fp_hex(avsc_fingerprint(sc), hex);
			CHECK(strcmp(hex, FP_SNAPSHOT) == 0, "snapshot fingerprint %s", hex);
			avsc_free(sc);
		}
		free(snap);
	}
	fp_hex(avsc_crc64("", 0), hex);
	CHECK(avsc_crc64("", 0) == AVSC_CRC64_EMPTY, "CRC-64-AVRO of nothing is EMPTY");
	return fails;
}

static int
check_fastavro(struct decoder *dec)
{
	uint8_t msg[512];
	struct event ev;
	char detail[256] = "";
	enum decode_err err;
	size_t n;
	int fails = 0;

	n = unhex(FA_PLAIN_READER, msg);
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK && str_is(ev.event_id, ev.event_id_len, "ev-1") &&
		str_is(ev.user_id, ev.user_id_len, "u42") &&
		str_is(ev.item_id, ev.item_id_len, "i7") && ev.type == 5 &&
		ev.ts_ms == 1700000000123LL && ev.dwell_ms == 1500 && ev.has_value &&
		ev.value == 4.5f,
	    "fastavro plain reader event (%s)", detail);
	n = unhex(FA_SO_READER, msg);
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK && ev.type == 5 && ev.dwell_ms == 1500 && ev.value == 4.5f,
	    "fastavro single-object reader event (%s)", detail);
	for (int k = 0; k < 2; k++) {
		n = unhex(k == 0 ? FA_CF3_V2 : FA_SO_V2, msg);
		err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
		CHECK(err == DECODE_OK && str_is(ev.event_id, ev.event_id_len, "ev-2") &&
			str_is(ev.user_id, ev.user_id_len, "u\xc3\xa9") &&
			str_is(ev.item_id, ev.item_id_len, "item-99") && ev.type == 1 /* VIEW */ &&
			ev.ts_ms == -5 && ev.dwell_ms == -1 && !ev.has_value,
		    "fastavro v2 %s: BOOKMARK -> VIEW, nulls, tags skipped (%s)",
		    k == 0 ? "confluent" : "single-object", detail);
	}
	n = unhex(FA_CF2_V0, msg);
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK && str_is(ev.event_id, ev.event_id_len, "ev-3") && ev.type == 3 &&
		ev.ts_ms == 123456789012LL && ev.dwell_ms == -1 && ev.has_value && ev.value == 3.0f,
	    "fastavro v0 confluent: int value promoted, dwell_ms default (%s)", detail);
	return fails;
}

/* Every prefix of a valid message: TRUNCATED or MALFORMED, never OK. */
static int
check_truncations(struct decoder *dec, const uint8_t *msg, size_t n, const char *label)
{
	struct event ev;
	size_t bad = 0;
	int fails = 0;
	uint8_t *copy = malloc(n);

	for (size_t len = 1; len < n && copy != NULL; len++) {
		enum decode_err err;
		/* A heap copy of exactly len bytes: ASan catches any overread. */
		memcpy(copy, msg, len);
		err = decoder_decode(dec, copy, len, &ev, NULL, 0);
		if (err != DECODE_TRUNCATED && err != DECODE_MALFORMED) {
			printf("  %s cut at %zu: %s\n", label, len, decode_err_name(err));
			bad++;
		}
	}
	free(copy);
	CHECK(bad == 0, "%s: all %zu truncations are truncated/malformed", label, n - 1);
	return fails;
}

static int
check_errors(struct decoder *dec, const char *reader, const char *v2)
{
	uint8_t msg[MSG_MAX], bad[MSG_MAX];
	struct event ev;
	char detail[256];
	struct tev t = base_event;
	enum decode_err err;
	size_t n;
	int fails = 0;
	char big[DECODE_MAX_STRING_BYTES + 2];

	/* Truncations in all framings and writers. */
	n = write_event(reader, &t, PLAIN, 0, msg, sizeof(msg));
	fails += check_truncations(dec, msg, n, "plain reader");
	n = write_event(reader, &t, SINGLE_OBJECT, 0, msg, sizeof(msg));
	fails += check_truncations(dec, msg, n, "single-object reader");
	n = write_event(v2, &t, CONFLUENT, 3, msg, sizeof(msg));
	fails += check_truncations(dec, msg, n, "confluent v2");

	/* Trailing garbage. */
	n = write_event(reader, &t, PLAIN, 0, msg, sizeof(msg));
	msg[n] = 0;
	err = decoder_decode(dec, msg, n + 1, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_MALFORMED, "trailing byte: %s (%s)", decode_err_name(err), detail);

	/* Framing errors. */
	err = decoder_decode(dec, msg, 0, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_BAD_MAGIC, "empty message: %s", decode_err_name(err));
	n = write_event(reader, &t, SINGLE_OBJECT, 0, msg, sizeof(msg));
	msg[1] = 0x02;
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_BAD_MAGIC, "C3 02: %s (%s)", decode_err_name(err), detail);
	msg[1] = 0x01;
	msg[5] ^= 0x40;
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_UNKNOWN_FINGERPRINT, "changed fingerprint: %s (%s)",
	    decode_err_name(err), detail);
	n = write_event(reader, &t, CONFLUENT, 77, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_UNKNOWN_SCHEMA_ID && strstr(detail, "77") != NULL,
	    "unknown schema id: %s (%s)", decode_err_name(err), detail);

	/* Missing user / item. */
	t = base_event;
	t.user_id = "";
	n = write_event(reader, &t, PLAIN, 0, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_MISSING_USER && strstr(detail, "user_id") != NULL,
	    "empty user_id: %s (%s)", decode_err_name(err), detail);
	t = base_event;
	t.item_id = "";
	n = write_event(v2, &t, CONFLUENT, 3, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_MISSING_USER && strstr(detail, "item_id") != NULL,
	    "empty item_id: %s (%s)", decode_err_name(err), detail);
	/* An empty event_id in a plain message starts with 00: Confluent framing. */
	t = base_event;
	t.event_id = "";
	n = write_event(reader, &t, SINGLE_OBJECT, 0, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_MALFORMED, "empty event_id: %s (%s)", decode_err_name(err), detail);

	/* Oversize string, oversize message, too many map entries. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	t = base_event;
	t.item_id = big;
	n = write_event(reader, &t, PLAIN, 0, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_TOO_LARGE, "item_id of %zu bytes: %s (%s)", sizeof(big) - 1,
	    decode_err_name(err), detail);
	big[DECODE_MAX_STRING_BYTES] = '\0';
	n = write_event(reader, &t, PLAIN, 0, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK && ev.item_id_len == DECODE_MAX_STRING_BYTES,
	    "item_id of exactly the limit decodes: %s", decode_err_name(err));
	memset(bad, 0, sizeof(bad));
	memcpy(bad, msg, n);
	err = decoder_decode(dec, bad, DECODE_MAX_MESSAGE_BYTES + 1, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_TOO_LARGE, "message over 64 KiB: %s", decode_err_name(err));
	t = base_event;
	t.n_context = DECODE_MAX_MAP_ENTRIES + 1;
	n = write_event(reader, &t, PLAIN, 0, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_TOO_LARGE, "%d context entries: %s (%s)", t.n_context,
	    decode_err_name(err), detail);
	t.n_context = DECODE_MAX_MAP_ENTRIES;
	n = write_event(reader, &t, PLAIN, 0, msg, sizeof(msg));
	err = decoder_decode(dec, msg, n, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK, "%d context entries decode: %s", t.n_context, decode_err_name(err));

	/* Hand-made bodies: event_id length byte, then the rest. */
	{
		/* "e1","u1","i1", enum 9 (out of range). */
		static const uint8_t enum_bad[] = { 4, 'e', '1', 4, 'u', '1', 4, 'i', '1', 18, 2, 0,
			0, 0 };
		/* ... enum 1, ts 1, dwell union index 2 (bad). */
		static const uint8_t union_bad[] = { 4, 'e', '1', 4, 'u', '1', 4, 'i', '1', 2, 2, 4,
			0, 0 };
		/* ... ts as an 11-byte varint. */
		static const uint8_t varint_bad[] = { 4, 'e', '1', 4, 'u', '1', 4, 'i', '1', 2,
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0 };
		/* ... user_id length -1. */
		static const uint8_t len_bad[] = { 4, 'e', '1', 1, 'u', '1' };
		/* ... dwell_ms int beyond 32 bits. */
		static const uint8_t int_bad[] = { 4, 'e', '1', 4, 'u', '1', 4, 'i', '1', 2, 2, 2,
			0x80, 0x80, 0x80, 0x80, 0x40, 0, 0 };
		/* ... a valid one, to prove the others fail only where intended. */
		static const uint8_t good[] = { 4, 'e', '1', 4, 'u', '1', 4, 'i', '1', 2, 2, 2, 6,
			0, 0 };
		struct {
			const uint8_t *b;
			size_t n;
			enum decode_err want;
			const char *what;
		} c[] = {
			{ enum_bad, sizeof(enum_bad), DECODE_MALFORMED, "enum index 9" },
			{ union_bad, sizeof(union_bad), DECODE_MALFORMED, "union index 2" },
			{ varint_bad, sizeof(varint_bad), DECODE_MALFORMED, "11-byte varint" },
			{ len_bad, sizeof(len_bad), DECODE_MALFORMED, "negative length" },
			{ int_bad, sizeof(int_bad), DECODE_MALFORMED, "int over 32 bits" },
			{ good, sizeof(good), DECODE_OK, "hand-made valid body" },
		};
		for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
			err = decoder_decode(dec, c[i].b, c[i].n, &ev, detail, sizeof(detail));
			CHECK(err == c[i].want, "%s: %s (%s)", c[i].what, decode_err_name(err),
			    err == DECODE_OK ? "" : detail);
		}
		CHECK(ev.dwell_ms == 3 && ev.type == 1 && ev.ts_ms == 1,
		    "hand-made valid body fields");
	}
	return fails;
}

/* A hand-written writer exercising the resolution rules libavro-c can't
 * write for us here: bytes->string, a writer union for a plain reader string,
 * int->long, a plain int into the reader's [null,int], long->float, an enum
 * with an unknown symbol, and a skipped record of boolean/fixed/double/map of
 * arrays (negative block count with a byte size). */
static int
check_resolution(struct decoder *dec)
{
	static const char w1[] =
	    "{\"type\":\"record\",\"name\":\"x.BehaviourEvent\",\"fields\":["
	    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"bytes\"},"
	    "{\"name\":\"item_id\",\"type\":[\"null\",\"string\"]},"
	    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\","
	    "\"symbols\":[\"CLICK\",\"NEW_THING\"]}},{\"name\":\"ts\",\"type\":\"int\"},"
	    "{\"name\":\"dwell_ms\",\"type\":\"int\"},{\"name\":\"value\",\"type\":\"long\"},"
	    "{\"name\":\"extra\",\"type\":{\"type\":\"record\",\"name\":\"X\",\"fields\":["
	    "{\"name\":\"b\",\"type\":\"boolean\"},{\"name\":\"f\",\"type\":{\"type\":\"fixed\","
	    "\"name\":\"F\",\"size\":3}},{\"name\":\"d\",\"type\":\"double\"},{\"name\":\"m\","
	    "\"type\":{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":\"long\"}}}]}}]}";
	static const char w_double[] =
	    "{\"type\":\"record\",\"name\":\"BehaviourEvent\",\"fields\":["
	    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"string\"}"
	    ","
	    "{\"name\":\"item_id\",\"type\":\"string\"},{\"name\":\"ts\",\"type\":\"long\"},"
	    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":["
	    "\"VIEW\"]}},"
	    "{\"name\":\"value\",\"type\":\"double\"}]}";
	uint8_t msg[] = { 0, 0, 0, 0, 10, 4, 'e', '1', 4, 'u', '1', 2, 4, 'i', '1', 0 /* CLICK */,
		0xc8, 0x01, 0x0e, 0x06, 1, 'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 'k', 3, 4,
		2, 4, 0, 0 };
	struct event ev;
	char errs[256] = "", detail[256] = "";
	enum decode_err err;
	int fails = 0;

	CHECK(decoder_add_writer(dec, w1, 10, errs, sizeof(errs)) == 0,
	    "hand-written writer registers as id 10 (%s)", errs);
	CHECK(decoder_add_writer(dec, w_double, 11, errs, sizeof(errs)) != 0,
	    "writer with value double refused (no double->float): %s", errs);
	err = decoder_decode(dec, msg, sizeof(msg), &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK && str_is(ev.user_id, ev.user_id_len, "u1") &&
		str_is(ev.item_id, ev.item_id_len, "i1") && ev.type == 2 && ev.ts_ms == 100 &&
		ev.dwell_ms == 7 && ev.has_value && ev.value == 3.0f,
	    "bytes->string, union->string, int->long, int->[null,int], long->float, skip (%s %s)",
	    decode_err_name(err), detail);
	msg[15] = 2; /* NEW_THING */
	err = decoder_decode(dec, msg, sizeof(msg), &ev, detail, sizeof(detail));
	CHECK(err == DECODE_OK && ev.type == 1, "unknown writer symbol -> reader default VIEW");
	msg[20] = 2; /* boolean 2 */
	err = decoder_decode(dec, msg, sizeof(msg), &ev, detail, sizeof(detail));
	CHECK(err == DECODE_MALFORMED, "boolean byte 2 in a skipped field: %s (%s)",
	    decode_err_name(err), detail);
	msg[20] = 1;
	msg[11] = 0; /* item_id null: a branch the reader's string can't hold */
	err = decoder_decode(dec, msg, sizeof(msg) - 3, &ev, detail, sizeof(detail));
	CHECK(err == DECODE_MALFORMED, "writer null for reader string: %s (%s)",
	    decode_err_name(err), detail);
	{
		/* A recursive writer-only field: skipped, nesting bounded. */
		static const char w_tree[] =
		    "{\"type\":\"record\",\"name\":\"BehaviourEvent\",\"fields\":["
		    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":"
		    "\"string\"},"
		    "{\"name\":\"item_id\",\"type\":\"string\"},{\"name\":\"type\",\"type\":{"
		    "\"type\":"
		    "\"enum\",\"name\":\"EventType\",\"symbols\":[\"LIKE\"]}},{\"name\":\"ts\","
		    "\"type\":\"long\"},"
		    "{\"name\":\"tree\",\"type\":{\"type\":\"record\",\"name\":\"Node\",\"fields\":"
		    "["
		    "{\"name\":\"left\",\"type\":[\"null\",\"Node\"]},{\"name\":\"right\",\"type\":"
		    "[\"null\",\"Node\"]}]}}]}";
		uint8_t tree[128] = { 0, 0, 0, 0, 12, 4, 'e', '1', 4, 'u', '1', 4, 'i', '1', 0, 2,
			2, 0, 0, 0 };
		errs[0] = detail[0] = '\0';
		CHECK(decoder_add_writer(dec, w_tree, 12, errs, sizeof(errs)) == 0,
		    "recursive writer registers (%s)", errs);
		err = decoder_decode(dec, tree, 20, &ev, detail, sizeof(detail));
		CHECK(err == DECODE_OK && ev.type == 3 && ev.dwell_ms == -1 && !ev.has_value,
		    "recursive writer field skipped: %s (%s)", decode_err_name(err), detail);
		memset(tree + 16, 2, 100);
		err = decoder_decode(dec, tree, sizeof(tree), &ev, detail, sizeof(detail));
		CHECK(err == DECODE_TOO_LARGE, "100-deep recursion: %s (%s)", decode_err_name(err),
		    detail);
	}
	return fails;
}

static int
check_registration(const char *reader, const char *v0)
{
	char errs[256];
	struct decoder *dec = decoder_new(READER_PATH, errs, sizeof(errs));
	int fails = 0;
	/* Reader field "ts" has no default: a writer without it can't resolve. */
	static const char no_ts[] =
	    "{\"type\":\"record\",\"name\":\"BehaviourEvent\","
	    "\"fields\":[{\"name\":\"event_id\",\"type\":\"string\"},"
	    "{\"name\":\"user_id\",\"type\":\"string\"},{\"name\":\"item_id\",\"type\":\"string\"},"
	    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":["
	    "\"VIEW\"]}}]}";
	static const char ts_string[] =
	    "{\"type\":\"record\",\"name\":\"BehaviourEvent\","
	    "\"fields\":[{\"name\":\"event_id\",\"type\":\"string\"},"
	    "{\"name\":\"user_id\",\"type\":\"string\"},{\"name\":\"item_id\",\"type\":\"string\"},"
	    "{\"name\":\"type\",\"type\":{\"type\":\"enum\",\"name\":\"EventType\",\"symbols\":["
	    "\"VIEW\"]}},"
	    "{\"name\":\"ts\",\"type\":\"string\"}]}";

	CHECK(dec != NULL, "decoder_new");
	if (dec == NULL)
		return fails;
	CHECK(decoder_add_writer(dec, no_ts, 5, errs, sizeof(errs)) != 0 &&
		strstr(errs, "ts") != NULL,
	    "writer lacking ts (no reader default) refused: %s", errs);
	CHECK(decoder_add_writer(dec, ts_string, 5, errs, sizeof(errs)) != 0,
	    "writer with ts as string refused: %s", errs);
	CHECK(decoder_add_writer(dec, "{\"type\":", 5, errs, sizeof(errs)) != 0,
	    "bad JSON refused: %s", errs);
	CHECK(decoder_add_writer(dec, v0, 5, errs, sizeof(errs)) == 0, "v0 as id 5");
	CHECK(decoder_add_writer(dec, v0, 5, errs, sizeof(errs)) == 0, "v0 as id 5 again");
	CHECK(decoder_add_writer(dec, reader, 5, errs, sizeof(errs)) != 0,
	    "id 5 for another schema refused: %s", errs);
	CHECK(decoder_new("schemas/no-such.avsc", errs, sizeof(errs)) == NULL,
	    "missing reader file: %s", errs);
	decoder_free(dec);
	return fails;
}

/*
 * Why the daemon resolves schemas itself (README "Dependencies"): libavro-c
 * 1.11's resolver refuses a writer that lacks a reader field even when the
 * reader gives that field a default, as the reader does for dwell_ms and
 * context. Avro's rules fill such a field from the default, and the v0
 * round-trips in main() show decode.c doing so; libavro-c stays a test oracle.
 */
static int
check_libavro_resolver(const char *reader, const char *v0, const char *v2)
{
	avro_schema_t rs = NULL, w0 = NULL, w2 = NULL;
	avro_value_iface_t *iface;
	int fails = 0;

	CHECK(avro_schema_from_json_length(reader, strlen(reader), &rs) == 0 &&
		avro_schema_from_json_length(v0, strlen(v0), &w0) == 0 &&
		avro_schema_from_json_length(v2, strlen(v2), &w2) == 0,
	    "libavro-c parses the reader, v0 and v2");
	if (rs == NULL || w0 == NULL || w2 == NULL)
		goto done;
	iface = avro_resolved_writer_new(w0, rs);
	CHECK(iface == NULL && strstr(avro_strerror(), "dwell_ms") != NULL,
	    "libavro-c's resolver refuses v0 -> reader, whose dwell_ms has a default: %s",
	    iface == NULL ? avro_strerror() : "accepted");
	if (iface != NULL)
		avro_value_iface_decref(iface);
	/* The contrast: v2 has every reader field, so libavro-c resolves it. */
	iface = avro_resolved_writer_new(w2, rs);
	CHECK(iface != NULL, "libavro-c's resolver accepts v2 -> reader (no reader field missing)");
	if (iface != NULL)
		avro_value_iface_decref(iface);
done:
	if (rs != NULL)
		avro_schema_decref(rs);
	if (w0 != NULL)
		avro_schema_decref(w0);
	if (w2 != NULL)
		avro_schema_decref(w2);
	return fails;
}

int
main(void)
{
	char *reader = read_text(READER_PATH), *v0 = read_text(V0_PATH), *v2 = read_text(V2_PATH);
	struct decoder *dec = NULL, *dec_v0plain = NULL;
	char errs[256] = "";
	struct tev t;
	int fails = 0;

	CHECK(reader && v0 && v2, "schema files readable (run from the repository root)");
	if (!reader || !v0 || !v2)
		goto done;
	CHECK(strcmp(decode_err_name(DECODE_TRUNCATED), "truncated") == 0 &&
		strcmp(decode_err_name(DECODE_BAD_MAGIC), "bad_magic") == 0 &&
		strcmp(decode_err_name(DECODE_UNKNOWN_FINGERPRINT), "unknown_fingerprint") == 0 &&
		strcmp(decode_err_name(DECODE_UNKNOWN_SCHEMA_ID), "unknown_schema_id") == 0 &&
		strcmp(decode_err_name(DECODE_MALFORMED), "malformed") == 0 &&
		strcmp(decode_err_name(DECODE_TOO_LARGE), "too_large") == 0 &&
		strcmp(decode_err_name(DECODE_MISSING_USER), "missing_user") == 0,
	    "decode_err_name stable names");
	fails += check_fingerprints(reader, v0, v2);

	dec = decoder_new(READER_PATH, errs, sizeof(errs));
	CHECK(dec != NULL, "decoder_new(%s) %s", READER_PATH, dec ? "" : errs);
	if (dec == NULL)
		goto done;
	CHECK(
	    decoder_add_writer(dec, reader, 1, errs, sizeof(errs)) == 0, "register reader as id 1");
	CHECK(decoder_add_writer(dec, v0, 2, errs, sizeof(errs)) == 0, "register v0 as id 2 (%s)",
	    errs);
	CHECK(decoder_add_writer(dec, v2, 3, errs, sizeof(errs)) == 0, "register v2 as id 3 (%s)",
	    errs);

	/* Reader schema as writer, all framings; every field. */
	t = base_event;
	for (int fr = PLAIN; fr <= CONFLUENT; fr++)
		fails +=
		    roundtrip(dec, reader, "reader", &t, (enum framing)fr, 1, 5, 1500, 1, 4.5f);
	t.dwell = -1;
	t.has_value = 0;
	t.n_context = 0;
	t.type = 0;
	t.ts = -1;
	fails += roundtrip(dec, reader, "reader nulls", &t, SINGLE_OBJECT, 1, 0, -1, 0, 0.0f);

	/* v2: extra session_id/tags fields, reordered, enum symbol BOOKMARK -> VIEW. */
	t = base_event;
	for (int fr = SINGLE_OBJECT; fr <= CONFLUENT; fr++)
		fails += roundtrip(dec, v2, "v2", &t, (enum framing)fr, 3, 5, 1500, 1, 4.5f);
	t.type = 8; /* BOOKMARK */
	t.session = NULL;
	for (int fr = SINGLE_OBJECT; fr <= CONFLUENT; fr++)
		fails +=
		    roundtrip(dec, v2, "v2 BOOKMARK", &t, (enum framing)fr, 3, 1, 1500, 1, 4.5f);

	/* v0: no dwell_ms/context (reader defaults), value int -> float. */
	t = base_event;
	t.value = 3.0f;
	for (int fr = SINGLE_OBJECT; fr <= CONFLUENT; fr++)
		fails += roundtrip(dec, v0, "v0", &t, (enum framing)fr, 2, 5, -1, 1, 3.0f);

	/* v0 as the plain writer. */
	dec_v0plain = decoder_new(READER_PATH, errs, sizeof(errs));
	CHECK(dec_v0plain != NULL &&
		decoder_set_plain_writer(dec_v0plain, v0, errs, sizeof(errs)) == 0,
	    "v0 as the plain writer");
	if (dec_v0plain != NULL)
		fails += roundtrip(dec_v0plain, v0, "v0", &t, PLAIN, 0, 5, -1, 1, 3.0f);
	/* The reader's own fingerprint is registered by decoder_new. */
	if (dec_v0plain != NULL)
		fails += roundtrip(dec_v0plain, reader, "reader (implicit)", &base_event,
		    SINGLE_OBJECT, 0, 5, 1500, 1, 4.5f);

	fails += check_fastavro(dec);
	fails += check_errors(dec, reader, v2);
	fails += check_resolution(dec);
	fails += check_registration(reader, v0);
	fails += check_libavro_resolver(reader, v0, v2);
done:
	decoder_free(dec);
	decoder_free(dec_v0plain);
	free(reader);
	free(v0);
	free(v2);
	printf("%s: %d failed\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
