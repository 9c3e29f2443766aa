/*
 * Avro's binary encoding of long and int (zig-zag varints, Avro
 * specification "Binary Encoding"), read and written in one place for the
 * event decoder, the items reader and the snapshot writer.
 */
#ifndef INTERESTD_AVRO_BINARY_H
#define INTERESTD_AVRO_BINARY_H

#include <stddef.h>
#include <stdint.h>

/* The longest encoding of a long: 10 bytes, the tenth carrying only bit 63. */
#define AVRO_LONG_MAX_BYTES 10

enum avro_read {
	AVRO_READ_OK = 0,
	AVRO_READ_TRUNCATED = -1, /* the input ends inside the varint */
	AVRO_READ_MALFORMED = -2  /* more than 64 bits, or more than 10 bytes */
};

/* Reads a zig-zag varint long at *p (not past end) into *out; *p moves past it. */
static inline enum avro_read
avro_read_long(const uint8_t **p, const uint8_t *end, int64_t *out)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 7 * AVRO_LONG_MAX_BYTES; shift += 7) {
		uint8_t b;

		if (*p >= end)
			return AVRO_READ_TRUNCATED;
		b = *(*p)++;
		if (shift == 63 && b > 1)
			return AVRO_READ_MALFORMED;
		v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
			return AVRO_READ_OK;
		}
	}
	return AVRO_READ_MALFORMED;
}

/* Writes v as a zig-zag varint to out (room for AVRO_LONG_MAX_BYTES); returns its length. */
static inline size_t
avro_put_long(uint8_t *out, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 0;

	while (z >= 0x80) {
		out[n++] = (uint8_t)(z | 0x80);
		z >>= 7;
	}
	out[n++] = (uint8_t)z;
	return n;
}

#endif
