/*
 * BehaviourEvent decoding (schemas/behaviour_event.avsc) from the three wire
 * framings, detected per message: Avro single-object encoding (C3 01 + CRC-64-AVRO
 * fingerprint), Confluent framing (00 + big-endian schema id) and plain Avro
 * binary in the configured writer schema. Writer schemas are resolved against
 * the reader schema by Avro's rules, including reader fields with a default
 * that the writer lacks.
 */
#ifndef DAEMON_DECODE_H
#define DAEMON_DECODE_H

#include <stddef.h>
#include <stdint.h>

/* Limits on what a message may claim; over them: DECODE_TOO_LARGE. */
#define DECODE_MAX_MESSAGE_BYTES (64 * 1024) /* whole message, framing included */
#define DECODE_MAX_STRING_BYTES  4096        /* one string or bytes value */
#define DECODE_MAX_MAP_ENTRIES   64          /* map entries in one message */
#define DECODE_MAX_ARRAY_ITEMS   1024        /* array items in one message */

/* Why a message could not be decoded; also the dead-letter reason header. */
enum decode_err {
	DECODE_OK = 0,
	DECODE_TRUNCATED,           /* ran out of bytes */
	DECODE_BAD_MAGIC,           /* empty message, or C3 not followed by 01 */
	DECODE_UNKNOWN_FINGERPRINT, /* single-object fingerprint not registered */
	DECODE_UNKNOWN_SCHEMA_ID,   /* Confluent schema id not mapped */
	DECODE_MALFORMED,           /* Avro body invalid (bad enum index, union branch, length,
	                                 trailing bytes, empty event_id...) */
	DECODE_TOO_LARGE,           /* message/string/map/array over the limits above,
	                                 or skipped values nested over 32 deep */
	DECODE_MISSING_USER,        /* user_id or item_id empty; the detail names which */
};

/* Stable lower-case reason name ("truncated", "unknown_fingerprint", ...). */
const char *decode_err_name(enum decode_err err);

/*
 * A decoded event. Strings are not NUL-terminated: they point into the
 * message buffer passed to decoder_decode() (valid while that buffer is), or
 * into the decoder for reader defaults (valid until decoder_free()).
 */
struct event {
	const char *event_id;
	size_t event_id_len;
	const char *user_id;
	size_t user_id_len;
	const char *item_id;
	size_t item_id_len;
	uint8_t type; /* enum model_event_type; unknown writer symbols map to the default */
	int64_t ts_ms;
	int32_t dwell_ms; /* -1 when null (or negative on the wire) */
	int has_value;
	float value; /* as sent: may be NaN or infinite */
};

struct decoder;

/*
 * A decoder reading into the reader schema at reader_path (JSON .avsc). Plain
 * (unframed) messages are read with the reader schema as the writer schema
 * unless decoder_set_plain_writer() says otherwise; the reader schema's own
 * fingerprint is accepted in single-object framing. NULL on error (errstr).
 */
struct decoder *decoder_new(const char *reader_path, char *errstr, size_t errstr_size);
void decoder_free(struct decoder *dec);

/*
 * Registers a writer schema (NUL-terminated JSON text): its CRC-64-AVRO
 * fingerprint of the Parsing Canonical Form is accepted in single-object
 * framing, and when confluent_id >= 0 that id is accepted in Confluent
 * framing. Registering the same schema again only adds the id. Returns 0 or
 * -1 (errstr: unparsable schema, not resolvable to the reader schema, or the
 * id already taken by another schema).
 */
int decoder_add_writer(struct decoder *dec, const char *schema_json, int32_t confluent_id,
    char *errstr, size_t errstr_size);
int decoder_set_plain_writer(
    struct decoder *dec, const char *schema_json, char *errstr, size_t errstr_size);

/*
 * Decodes one message. On failure returns the reason and writes a short
 * human detail into detail (may be NULL). Allocates nothing per call.
 */
enum decode_err decoder_decode(struct decoder *dec, const void *buf, size_t len, struct event *ev,
    char *detail, size_t detail_size);

#endif
