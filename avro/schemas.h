/*
 * The Avro schemas whose bytes the daemon fixes: InterestSnapshot, which it
 * writes, and ItemUpdate, the one writer schema it accepts. They are
 * schemas/interest_snapshot.avsc and schemas/item_update.avsc compiled in
 * (the Makefile generates build/gen/schemas_avsc.c with scripts/embed), so
 * the files are the only copy and an installed daemon needs neither of them.
 */
#ifndef DAEMON_SCHEMAS_H
#define DAEMON_SCHEMAS_H

#include <stddef.h>
#include <stdint.h>

#define SCHEMAS_FINGERPRINT_SIZE 8 /* bytes 2..9 of an Avro single-object header */

/* The files' bytes, NUL-terminated; _len is the file size (the NUL not counted). */
extern const char schemas_interest_snapshot_avsc[];
extern const size_t schemas_interest_snapshot_avsc_len;
extern const char schemas_item_update_avsc[];
extern const size_t schemas_item_update_avsc_len;

/*
 * Fills fp with the CRC-64-AVRO fingerprint of the Parsing Canonical Form of
 * the schema text avsc[len], little-endian as the single-object header
 * carries it. Returns 0, or -1 with the parser's reason in errstr.
 */
int schemas_fingerprint(const char *avsc, size_t len, uint8_t fp[SCHEMAS_FINGERPRINT_SIZE],
    char *errstr, size_t errstr_size);

#endif
