/*
 * avro/binary.h: the one zig-zag varint reader and writer (event decoder,
 * items reader, snapshot writer): round trips at the edges, and the inputs
 * it must refuse (cut short; a tenth byte carrying more than bit 63, which
 * the items reader's own copy used to accept).
 */
#include <stdint.h>
#include <stdio.h>

#include "binary.h"
#include "fixture.h"

int
main(void)
{
	int fails = 0;
	static const int64_t vals[] = { 0, -1, 1, 63, -64, 64, 300, -300, INT32_MAX, INT32_MIN,
		INT64_MAX, INT64_MIN };
	uint8_t buf[AVRO_LONG_MAX_BYTES];
	const uint8_t zero[1] = { 0 }, one_neg[1] = { 1 }, big[2] = { 0xac, 0x02 };
	uint8_t too_long[AVRO_LONG_MAX_BYTES] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0x02 };
	const uint8_t *p;
	int64_t v = 0;
	int ok = 1;

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		size_t n = avro_put_long(buf, vals[i]);

		p = buf;
		ok &= n <= AVRO_LONG_MAX_BYTES && avro_read_long(&p, buf + n, &v) == AVRO_READ_OK &&
		    v == vals[i] && p == buf + n;
	}
	CHECK(ok, "round trips from INT64_MIN to INT64_MAX, at most 10 bytes each");
	p = zero;
	CHECK(avro_read_long(&p, zero + 1, &v) == AVRO_READ_OK && v == 0, "0x00 is 0");
	p = one_neg;
	CHECK(avro_read_long(&p, one_neg + 1, &v) == AVRO_READ_OK && v == -1, "0x01 is -1");
	p = big;
	CHECK(avro_read_long(&p, big + 2, &v) == AVRO_READ_OK && v == 150,
	    "0xac 0x02 is 150 (the specification's example)");
	p = big;
	CHECK(avro_read_long(&p, big + 1, &v) == AVRO_READ_TRUNCATED, "cut short: truncated");
	p = too_long;
	CHECK(avro_read_long(&p, too_long + sizeof(too_long), &v) == AVRO_READ_MALFORMED,
	    "a tenth byte of 0x02 (bit 64) is refused");
	too_long[9] = 0x81;
	p = too_long;
	CHECK(avro_read_long(&p, too_long + sizeof(too_long), &v) == AVRO_READ_MALFORMED,
	    "an eleventh byte announced is refused");
	too_long[9] = 0x01;
	p = too_long;
	CHECK(avro_read_long(&p, too_long + sizeof(too_long), &v) == AVRO_READ_OK && v == INT64_MIN,
	    "nine 0xff and 0x01 is INT64_MIN");
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
