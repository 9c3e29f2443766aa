/*
 * Fingerprints of the compiled-in schemas (schemas.h); the schema texts are
 * generated from the .avsc files of schemas/ into build/gen/schemas_avsc.c.
 */
#include "schemas.h"

#include "avsc.h"

int
schemas_fingerprint(const char *avsc, size_t len, uint8_t fp[SCHEMAS_FINGERPRINT_SIZE],
    char *errstr, size_t errstr_size)
{
	struct avsc *sc = avsc_parse(avsc, len, errstr, errstr_size);
	uint64_t crc;

	if (sc == NULL)
		return -1;
	crc = avsc_fingerprint(sc);
	avsc_free(sc);
	for (int i = 0; i < SCHEMAS_FINGERPRINT_SIZE; i++)
		fp[i] = (uint8_t)(crc >> (8 * i));
	return 0;
}
