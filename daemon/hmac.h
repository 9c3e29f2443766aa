/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), self-contained, for the
 * pseudonymised user ids of ids.hmac_key_file (schemas/redis.md
 * "Pseudonymised user ids"): hex(HMAC-SHA256(key, user id)) cut to 32 hex
 * digits (128 bits). No allocation; a key context is reused for every id.
 */
#ifndef DAEMON_HMAC_H
#define DAEMON_HMAC_H

#include <stddef.h>
#include <stdint.h>

#define HMAC_SHA256_LEN    32 /* digest bytes */
#define HMAC_BLOCK_LEN     64 /* SHA-256 block bytes */
#define HMAC_PSEUDONYM_LEN 32 /* hex digits of a pseudonymised id (the first 16 bytes) */

/* A running SHA-256. */
struct hmac_sha256 {
	uint32_t h[8];
	uint64_t total_len; /* bytes absorbed */
	uint8_t buf[HMAC_BLOCK_LEN];
	size_t buf_len;
};

/* A key made ready: SHA-256 states after absorbing key^ipad and key^opad. */
struct hmac_key {
	struct hmac_sha256 inner, outer;
};

/* SHA-256 of a message in pieces: init, update (any number), final. */
void hmac_sha256_init(struct hmac_sha256 *s);
void hmac_sha256_update(struct hmac_sha256 *s, const void *data, size_t len);
void hmac_sha256_final(struct hmac_sha256 *s, uint8_t out[HMAC_SHA256_LEN]);

/* SHA-256 of data[0..len) into out. */
void hmac_sha256_digest(const void *data, size_t len, uint8_t out[HMAC_SHA256_LEN]);

/* Prepares key (any length; longer than a block is hashed first, RFC 2104). */
void hmac_key_init(struct hmac_key *k, const void *key, size_t key_len);
/* Wipes a prepared key. */
void hmac_key_wipe(struct hmac_key *k);

/* HMAC-SHA256(key, msg) into out. */
void hmac_compute(
    const struct hmac_key *k, const void *msg, size_t len, uint8_t out[HMAC_SHA256_LEN]);

/*
 * The pseudonym of a user id: the first HMAC_PSEUDONYM_LEN lower-case hex
 * digits of HMAC-SHA256(key, id), NUL-terminated in out. Returns
 * HMAC_PSEUDONYM_LEN.
 */
size_t hmac_pseudonym(
    const struct hmac_key *k, const char *id, size_t id_len, char out[HMAC_PSEUDONYM_LEN + 1]);

#endif
