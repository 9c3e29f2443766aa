/*
 * User-id pseudonyms on libcrypto's HMAC-SHA256 (EVP_MAC "HMAC" with digest
 * SHA256). Test vectors of RFC 4231 in tests/unit/hmac.c.
 */
#include "hmac.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct hmac_key {
	/* Keyed once; EVP_MAC_init with a NULL key starts the next message with the same key. */
	EVP_MAC_CTX *ctx;
};

/* "what: libcrypto's first queued error" into errstr; empties libcrypto's queue. */
static void
hmac_errstr(const char *what, char *errstr, size_t errstr_size)
{
	unsigned long e = ERR_get_error();
	char why[256] = "no reason given";

	if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	snprintf(errstr, errstr_size, "%s: %s", what, why);
	ERR_clear_error();
}

struct hmac_key *
hmac_key_new(const void *key, size_t key_len, char *errstr, size_t errstr_size)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	struct hmac_key *k;
	EVP_MAC *mac;

	if ((k = calloc(1, sizeof(*k))) == NULL) {
		snprintf(errstr, errstr_size, "HMAC key: out of memory");
		return NULL;
	}
	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) {
		hmac_errstr("HMAC key: libcrypto has no HMAC", errstr, errstr_size);
		goto fail;
	}
	k->ctx = EVP_MAC_CTX_new(mac);
	EVP_MAC_free(mac); /* the context holds its own reference */
	if (k->ctx == NULL) {
		hmac_errstr("HMAC key: EVP_MAC_CTX_new", errstr, errstr_size);
		goto fail;
	}
	/* A non-NULL pointer even for an empty key: NULL would mean "keep the key". */
	if (EVP_MAC_init(k->ctx, key_len > 0 ? key : (const void *)"", key_len, params) != 1) {
		hmac_errstr("HMAC key: EVP_MAC_init (SHA256)", errstr, errstr_size);
		goto fail;
	}
	return k;
fail:
	hmac_key_free(k);
	return NULL;
}

void
hmac_key_free(struct hmac_key *k)
{
	if (k == NULL)
		return;
	EVP_MAC_CTX_free(k->ctx);
	free(k);
}

int
hmac_compute(struct hmac_key *k, const void *msg, size_t len, uint8_t out[HMAC_SHA256_LEN])
{
	size_t n = 0;

	if (EVP_MAC_init(k->ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(k->ctx, msg, len) != 1 ||
	    EVP_MAC_final(k->ctx, out, &n, HMAC_SHA256_LEN) != 1 || n != HMAC_SHA256_LEN) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int
hmac_pseudonym(struct hmac_key *k, const char *id, size_t id_len, char out[HMAC_PSEUDONYM_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t mac[HMAC_SHA256_LEN];

	if (hmac_compute(k, id, id_len, mac) != 0)
		return -1;
	for (size_t i = 0; i < HMAC_PSEUDONYM_LEN / 2; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[HMAC_PSEUDONYM_LEN] = '\0';
	return 0;
}

int
hmac_pseudonym_once(const char *key, const char *id, char out[HMAC_PSEUDONYM_LEN + 1], char *errstr,
    size_t errstr_size)
{
	struct hmac_key *k = hmac_key_new(key, strlen(key), errstr, errstr_size);
	int rc;

	if (k == NULL)
		return -1;
	rc = hmac_pseudonym(k, id, strlen(id), out);
	if (rc != 0)
		snprintf(errstr, errstr_size, "HMAC-SHA256 of the user id failed in libcrypto");
	hmac_key_free(k);
	return rc;
}
