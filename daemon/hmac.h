/*
 * Pseudonymised user ids of ids.hmac_key_file (schemas/redis.md
 * "Pseudonymised user ids"): hex(HMAC-SHA256(key, user id)) cut to 32 hex
 * digits (128 bits). HMAC-SHA256 is libcrypto's (OpenSSL 3 EVP_MAC); a key
 * is prepared once and reused for every id without allocating.
 */
#ifndef DAEMON_HMAC_H
#define DAEMON_HMAC_H

#include <stddef.h>
#include <stdint.h>

#define HMAC_SHA256_LEN    32 /* MAC bytes */
#define HMAC_PSEUDONYM_LEN 32 /* hex digits of a pseudonymised id (the first 16 bytes) */

/* A prepared HMAC-SHA256 key (opaque). */
struct hmac_key;

/*
 * Prepares key (any length; RFC 2104 hashes one longer than a block). Returns
 * a key the caller frees with hmac_key_free(), or NULL with libcrypto's reason
 * in errstr.
 */
struct hmac_key *hmac_key_new(const void *key, size_t key_len, char *errstr, size_t errstr_size);
/* Frees a prepared key; libcrypto wipes the key material. NULL-safe. */
void hmac_key_free(struct hmac_key *k);

/* HMAC-SHA256(key, msg) into out. Returns 0, or -1 when libcrypto failed. */
int hmac_compute(struct hmac_key *k, const void *msg, size_t len, uint8_t out[HMAC_SHA256_LEN]);

/*
 * The pseudonym of a user id: the first HMAC_PSEUDONYM_LEN lower-case hex
 * digits of HMAC-SHA256(key, id), NUL-terminated in out. Returns 0, or -1
 * when libcrypto failed (out untouched).
 */
int hmac_pseudonym(
    struct hmac_key *k, const char *id, size_t id_len, char out[HMAC_PSEUDONYM_LEN + 1]);

/*
 * hmac_pseudonym for one id under a NUL-terminated key (interestctl's
 * look-ups). Returns 0, or -1 with the reason in errstr.
 */
int hmac_pseudonym_once(const char *key, const char *id, char out[HMAC_PSEUDONYM_LEN + 1],
    char *errstr, size_t errstr_size);

#endif
