/*
 * daemon/hmac.c (libcrypto underneath): HMAC-SHA256 against the test cases
 * 1-7 of RFC 4231 (case 5 truncated to 128 bits, as the RFC gives it) and the
 * empty key; one prepared key reused for several messages gives each its own
 * MAC; the pseudonym is the MAC's first 16 bytes in hex.
 */
#include <stdio.h>
#include <string.h>

#include "hmac.h"

static int failures;

static void
check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failures++;
}

static void
to_hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* Bytes of a hex string into out; returns the count. */
static size_t
from_hex(const char *hex, uint8_t *out)
{
	size_t n = strlen(hex) / 2;

	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return n;
}

/* key and data as hex; want as hex, compared over its length (case 5 is truncated). */
static void
check_hmac(const char *key_hex, const char *data_hex, const char *want, const char *what)
{
	uint8_t key[256], data[256], mac[HMAC_SHA256_LEN];
	char hex[2 * HMAC_SHA256_LEN + 1], err[256];
	size_t klen = from_hex(key_hex, key), dlen = from_hex(data_hex, data);
	struct hmac_key *k = hmac_key_new(key, klen, err, sizeof(err));

	if (k == NULL) {
		printf("hmac_key_new: %s\n", err);
		check(0, what);
		return;
	}
	if (hmac_compute(k, data, dlen, mac) != 0)
		memset(mac, 0, sizeof(mac));
	to_hex(mac, sizeof(mac), hex);
	check(strncmp(hex, want, strlen(want)) == 0, what);
	hmac_key_free(k);
}

/* The hex of an ASCII string (RFC 4231 gives data as text for some cases). */
static const char *
ascii_hex(const char *s, char *buf)
{
	to_hex((const uint8_t *)s, strlen(s), buf);
	return buf;
}

int
main(void)
{
	static char buf[1024], buf2[1024];
	uint8_t mac[HMAC_SHA256_LEN], again[HMAC_SHA256_LEN];
	char ps[HMAC_PSEUDONYM_LEN + 1], ps2[HMAC_PSEUDONYM_LEN + 1], err[256];
	char key131[2 * 131 + 1];
	struct hmac_key *k;
	int ok;

	/* RFC 4231 section 4. */
	check_hmac("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", ascii_hex("Hi There", buf),
	    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", "RFC 4231 case 1");
	check_hmac(ascii_hex("Jefe", buf2), ascii_hex("what do ya want for nothing?", buf),
	    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "RFC 4231 case 2");
	check_hmac("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
	    "dddddddddddddd",
	    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", "RFC 4231 case 3");
	check_hmac("0102030405060708090a0b0c0d0e0f10111213141516171819",
	    "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
	    "cdcdcdcdcdcdcd",
	    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", "RFC 4231 case 4");
	check_hmac("0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c",
	    ascii_hex("Test With Truncation", buf), "a3b6167473100ee06e0c796c2955552b",
	    "RFC 4231 case 5 (truncated to 128 bits)");
	memset(key131, 'a', 2 * 131);
	key131[2 * 131] = '\0';
	check_hmac(key131, ascii_hex("Test Using Larger Than Block-Size Key - Hash Key First", buf),
	    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
	    "RFC 4231 case 6 (131-byte key)");
	check_hmac(key131,
	    ascii_hex("This is a test using a larger than block-size key and a larger than "
		      "block-size data. The key needs to be hashed before being used by the "
		      "HMAC algorithm.",
		buf),
	    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
	    "RFC 4231 case 7 (131-byte key, long data)");

	/* An empty key is zero-padded like any short one (Python's hmac gives the same). */
	check_hmac("", "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
	    "empty key, empty message");

	/* The pseudonym: the first 32 hex digits of the MAC (RFC 4231 case 2). */
	k = hmac_key_new("Jefe", 4, err, sizeof(err));
	if (k == NULL) {
		printf("hmac_key_new: %s\n", err);
		return 1;
	}
	check(hmac_pseudonym(k, "what do ya want for nothing?", 28, ps) == 0 &&
		strcmp(ps, "5bdcc146bf60754e6a042426089575c7") == 0,
	    "pseudonym = first 32 hex digits of HMAC-SHA256");

	/* One prepared key serves many ids: each MAC starts afresh from the key. */
	ok = hmac_compute(k, "u1", 2, mac) == 0 && hmac_compute(k, "u2", 2, again) == 0 &&
	    memcmp(mac, again, sizeof(mac)) != 0 && hmac_compute(k, "u1", 2, again) == 0 &&
	    memcmp(mac, again, sizeof(mac)) == 0;
	check(ok, "a reused key: u1, u2, u1 again gives u1's MAC again");
	check(hmac_pseudonym(k, "what do ya want for nothing?", 28, ps) == 0 &&
		strcmp(ps, "5bdcc146bf60754e6a042426089575c7") == 0,
	    "the RFC 4231 case 2 pseudonym after other ids under the same key");
	hmac_key_free(k);
	hmac_key_free(NULL);

	check(hmac_pseudonym_once("Jefe", "what do ya want for nothing?", ps2, err, sizeof(err)) ==
		    0 &&
		strcmp(ps2, "5bdcc146bf60754e6a042426089575c7") == 0,
	    "hmac_pseudonym_once gives the same pseudonym");
	return failures ? 1 : 0;
}
