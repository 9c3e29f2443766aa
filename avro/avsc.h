/*
 * Avro schema (.avsc JSON) parsing for the decoder: the JSON read by Jansson,
 * the schema tree including what libavro-c 1.11 drops (field defaults, enum
 * defaults), the Parsing Canonical Form and its CRC-64-AVRO fingerprint
 * (Avro specification, "Schema Resolution" and "Schema Fingerprints").
 */
#ifndef INTERESTD_AVRO_AVSC_H
#define INTERESTD_AVRO_AVSC_H

#include <stddef.h>
#include <stdint.h>

/* CRC-64-AVRO of nothing: the initial value of every fingerprint. */
#define AVSC_CRC64_EMPTY UINT64_C(0xc15d213aa4d7a795)

enum avsc_type {
	AVSC_NULL = 0,
	AVSC_BOOLEAN,
	AVSC_INT,
	AVSC_LONG,
	AVSC_FLOAT,
	AVSC_DOUBLE,
	AVSC_BYTES,
	AVSC_STRING,
	AVSC_RECORD,
	AVSC_ENUM,
	AVSC_ARRAY,
	AVSC_MAP,
	AVSC_UNION,
	AVSC_FIXED
};

/* Jansson's JSON value (<jansson.h>), the form field defaults are kept in. */
struct json_t;

struct avsc_field {
	const char *name;
	struct avsc_node *type;
	const struct json_t *def; /* the "default", NULL when none; owned by the schema */
};

/*
 * One schema node. Named types (record, enum, fixed) are shared: a later
 * reference by name points at the same node, so a recursive record's tree
 * has cycles.
 */
struct avsc_node {
	enum avsc_type type;
	const char *fullname;        /* record/enum/fixed, else NULL */
	const char *name;            /* unqualified part of fullname */
	size_t n;                    /* fields, symbols or union branches */
	struct avsc_field *fields;   /* record */
	const char **symbols;        /* enum */
	int enum_default;            /* enum: index of "default", -1 when none */
	struct avsc_node **branches; /* union */
	struct avsc_node *items;     /* array items / map values */
	int64_t size;                /* fixed */
};

struct avsc;

/*
 * Parses schema JSON text of len bytes. Returns a schema the caller frees with
 * avsc_free(), or NULL with the reason in errstr (bad JSON, unknown type or
 * name, duplicate name or field, invalid union, bad enum default...).
 */
struct avsc *avsc_parse(const char *json, size_t len, char *errstr, size_t errstr_size);
void avsc_free(struct avsc *sc);

/* The top-level node; owned by sc. */
const struct avsc_node *avsc_root(const struct avsc *sc);

/* Parsing Canonical Form, NUL-terminated; owned by sc. */
const char *avsc_canonical(const struct avsc *sc);

/* CRC-64-AVRO (Rabin) fingerprint of the Parsing Canonical Form. */
uint64_t avsc_fingerprint(const struct avsc *sc);

/* The Avro name of a type ("long", "record", ...). */
const char *avsc_type_name(enum avsc_type t);

/* CRC-64-AVRO of len bytes. */
uint64_t avsc_crc64(const void *buf, size_t len);

#endif
