/*
 * SHA-256 per FIPS 180-4 (section 6.2) and HMAC per RFC 2104, for user-id
 * pseudonyms. Written from the specifications; test vectors of RFC 4231 in
 * tests/unit/hmac.c.
 */
#include "hmac.h"

#include <string.h>

/* FIPS 180-4 4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
/* clang-format off */
static const uint32_t hmac_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* FIPS 180-4 5.3.3: initial hash value. */
static const uint32_t hmac_h0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};
/* clang-format on */

static uint32_t
rotr(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

/* FIPS 180-4 6.2.2: one 64-byte block into the state. */
static void
hmac_block(uint32_t h[8], const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, hh;

	for (int t = 0; t < 16; t++)
		w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
		    (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
	for (int t = 16; t < 64; t++) {
		uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
		uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);

		w[t] = w[t - 16] + s0 + w[t - 7] + s1;
	}
	a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (int t = 0; t < 64; t++) {
		uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
		    hmac_k[t] + w[t];
		uint32_t t2 =
		    (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));

		hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
	}
	h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void
hmac_sha256_init(struct hmac_sha256 *s)
{
	memcpy(s->h, hmac_h0, sizeof(s->h));
	s->total_len = 0;
	s->buf_len = 0;
}

void
hmac_sha256_update(struct hmac_sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	s->total_len += len;
	if (s->buf_len > 0) {
		size_t take = HMAC_BLOCK_LEN - s->buf_len < len ? HMAC_BLOCK_LEN - s->buf_len : len;

		memcpy(s->buf + s->buf_len, p, take);
		s->buf_len += take;
		p += take;
		len -= take;
		if (s->buf_len < HMAC_BLOCK_LEN)
			return;
		hmac_block(s->h, s->buf);
		s->buf_len = 0;
	}
	for (; len >= HMAC_BLOCK_LEN; p += HMAC_BLOCK_LEN, len -= HMAC_BLOCK_LEN)
		hmac_block(s->h, p);
	if (len > 0) {
		memcpy(s->buf, p, len);
		s->buf_len = len;
	}
}

void
hmac_sha256_final(struct hmac_sha256 *s, uint8_t out[HMAC_SHA256_LEN])
{
	uint64_t bits = s->total_len * 8;

	/* FIPS 180-4 5.1.1: 0x80, zeros to 56 mod 64, the length in bits big-endian. */
	s->buf[s->buf_len++] = 0x80;
	if (s->buf_len > HMAC_BLOCK_LEN - 8) {
		memset(s->buf + s->buf_len, 0, HMAC_BLOCK_LEN - s->buf_len);
		hmac_block(s->h, s->buf);
		s->buf_len = 0;
	}
	memset(s->buf + s->buf_len, 0, HMAC_BLOCK_LEN - 8 - s->buf_len);
	for (int i = 0; i < 8; i++)
		s->buf[HMAC_BLOCK_LEN - 1 - i] = (uint8_t)(bits >> (8 * i));
	hmac_block(s->h, s->buf);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

void
hmac_sha256_digest(const void *data, size_t len, uint8_t out[HMAC_SHA256_LEN])
{
	struct hmac_sha256 s;

	hmac_sha256_init(&s);
	hmac_sha256_update(&s, data, len);
	hmac_sha256_final(&s, out);
}

void
hmac_key_init(struct hmac_key *k, const void *key, size_t key_len)
{
	uint8_t k0[HMAC_BLOCK_LEN], pad[HMAC_BLOCK_LEN];
	volatile uint8_t *wipe;

	/* RFC 2104 section 2: a key longer than a block is replaced by its hash; zero-padded. */
	memset(k0, 0, sizeof(k0));
	if (key_len > HMAC_BLOCK_LEN)
		hmac_sha256_digest(key, key_len, k0);
	else if (key_len > 0)
		memcpy(k0, key, key_len);
	for (int i = 0; i < HMAC_BLOCK_LEN; i++)
		pad[i] = k0[i] ^ 0x36;
	hmac_sha256_init(&k->inner);
	hmac_sha256_update(&k->inner, pad, sizeof(pad));
	for (int i = 0; i < HMAC_BLOCK_LEN; i++)
		pad[i] = k0[i] ^ 0x5c;
	hmac_sha256_init(&k->outer);
	hmac_sha256_update(&k->outer, pad, sizeof(pad));
	wipe = k0;
	for (size_t i = 0; i < sizeof(k0); i++)
		wipe[i] = 0;
	wipe = pad;
	for (size_t i = 0; i < sizeof(pad); i++)
		wipe[i] = 0;
}

void
hmac_key_wipe(struct hmac_key *k)
{
	volatile uint8_t *p = (volatile uint8_t *)k;

	for (size_t i = 0; i < sizeof(*k); i++)
		p[i] = 0;
}

void
hmac_compute(const struct hmac_key *k, const void *msg, size_t len, uint8_t out[HMAC_SHA256_LEN])
{
	struct hmac_sha256 s = k->inner;
	uint8_t inner[HMAC_SHA256_LEN];

	hmac_sha256_update(&s, msg, len);
	hmac_sha256_final(&s, inner);
	s = k->outer;
	hmac_sha256_update(&s, inner, sizeof(inner));
	hmac_sha256_final(&s, out);
}

size_t
hmac_pseudonym(
    const struct hmac_key *k, const char *id, size_t id_len, char out[HMAC_PSEUDONYM_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t mac[HMAC_SHA256_LEN];

	hmac_compute(k, id, id_len, mac);
	for (size_t i = 0; i < HMAC_PSEUDONYM_LEN / 2; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[HMAC_PSEUDONYM_LEN] = '\0';
	return HMAC_PSEUDONYM_LEN;
}
