/*
 * avro/schemas.c and the generated build/gen/schemas_avsc.c: each compiled-in
 * schema is its file in schemas/ byte for byte, and its fingerprint is the one
 * on the wire since before the schemas were compiled in (fastavro 1.13.1's
 * CRC-64-AVRO of the Parsing Canonical Form, little-endian byte hex). Run from
 * the repository root (schemas/ relative).
 */
#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "schemas.h"

struct embedded {
	const char *path;
	const char *text;
	size_t len;
	uint8_t want_fp[SCHEMAS_FINGERPRINT_SIZE];
};

/* 1 if the file at path holds exactly text[len]. */
static int
same_as_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "rb");
	size_t i = 0;
	int ch, same = f != NULL;

	while (same && (ch = getc(f)) != EOF)
		same = i < len && (char)ch == text[i++];
	if (f != NULL)
		fclose(f);
	return same && i == len;
}

int
main(void)
{
	const struct embedded schemas[] = {
		{ "schemas/interest_snapshot.avsc", schemas_interest_snapshot_avsc,
		    schemas_interest_snapshot_avsc_len,
		    { 0xd8, 0x4f, 0x14, 0x60, 0xf2, 0x43, 0xd5, 0xe5 } },
		{ "schemas/item_update.avsc", schemas_item_update_avsc,
		    schemas_item_update_avsc_len,
		    { 0x4b, 0x4d, 0x4e, 0x77, 0x5b, 0xb9, 0x6b, 0xd1 } },
	};
	uint8_t fp[SCHEMAS_FINGERPRINT_SIZE];
	char err[256] = "";
	int fails = 0;

	for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++) {
		const struct embedded *e = &schemas[i];

		CHECK(e->len > 0 && e->text[e->len] == '\0' && strlen(e->text) == e->len,
		    "%s: %zu bytes, NUL-terminated", e->path, e->len);
		CHECK(same_as_file(e->path, e->text, e->len), "%s: compiled in as it is", e->path);
		err[0] = '\0';
		CHECK(schemas_fingerprint(e->text, e->len, fp, err, sizeof(err)) == 0,
		    "%s parses (%s)", e->path, err[0] ? err : "ok");
		CHECK(memcmp(fp, e->want_fp, sizeof(fp)) == 0,
		    "%s: the fingerprint on the wire (fastavro's)", e->path);
	}
	CHECK(schemas_fingerprint("{\"type\":\"recrd\"}", 16, fp, err, sizeof(err)) == -1 &&
		err[0] != '\0',
	    "a schema that does not parse: -1 (%s)", err);
	printf("%s\n", fails ? "FAILED" : "all passed");
	return fails != 0;
}
