/*
 * Per-user state (model/state.h): one allocation per user, tier weights
 * decayed exactly in continuous event time, the event ring, the consumed
 * Bloom filter, and the versioned binary codec laid out in schemas/state.md.
 */
#include "state.h"
#include "le.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "modelfile.h"

#define STATE_MAGIC         "IUS" /* then one version byte */
#define STATE_MAGIC_LEN     3
#define STATE_CODEC_VERSION 1
#define STATE_HEADER_SIZE   56
#define STATE_TIER_SIZE     12 /* u32 node, f32 short, f32 long */
#define STATE_RING_SIZE     17 /* u64 item_hash, i64 ts_ms, u8 type */
#define STATE_CRC_SIZE      4
#define SEEN_BITS           (STATE_SEEN_BYTES * 8)
#define SEEN_BIT_MASK       (SEEN_BITS - 1)
#define SEEN_SLICE_BITS     11 /* log2(SEEN_BITS): k = 3 slices of the mixed hash */
#define MS_PER_S            1000.0

_Static_assert((SEEN_BITS & (SEEN_BITS - 1)) == 0, "Bloom filter size must be a power of 2");
_Static_assert((1u << SEEN_SLICE_BITS) == SEEN_BITS, "slice width must match the filter");

static size_t
align_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* Offsets of the arrays inside one state allocation. */
struct state_layout {
	size_t ring, tiers, h, c, total;
};

static void
state_layout(uint32_t hidden, uint32_t max_tiers, uint32_t ring_len, struct state_layout *sl)
{
	sl->ring = align_up(sizeof(struct user_state), _Alignof(struct ring_event));
	sl->tiers =
	    align_up(sl->ring + ring_len * sizeof(struct ring_event), _Alignof(struct tier_weight));
	sl->h = align_up(sl->tiers + max_tiers * sizeof(struct tier_weight), _Alignof(float));
	sl->c = sl->h + hidden * sizeof(float);
	sl->total = sl->c + hidden * sizeof(float);
}

size_t
state_mem_size(const struct model_hparams *hp)
{
	struct state_layout sl;

	state_layout(hp->hidden, hp->max_tiers, hp->ring_len, &sl);
	return sl.total;
}

struct user_state *
state_new(const struct model_hparams *hp)
{
	struct state_layout sl;
	struct user_state *us;
	char *base;

	if (hp->max_tiers > UINT16_MAX || hp->ring_len > UINT16_MAX)
		return NULL;
	state_layout(hp->hidden, hp->max_tiers, hp->ring_len, &sl);
	base = calloc(1, sl.total);
	if (base == NULL)
		return NULL;
	us = (struct user_state *)(void *)base;
	us->hidden = hp->hidden;
	us->max_tiers = (uint16_t)hp->max_tiers;
	us->ring_len = (uint16_t)hp->ring_len;
	us->ring = (struct ring_event *)(void *)(base + sl.ring);
	us->tiers = (struct tier_weight *)(void *)(base + sl.tiers);
	us->h = (float *)(void *)(base + sl.h);
	us->c = (float *)(void *)(base + sl.c);
	state_reset(us);
	return us;
}

void
state_free(struct user_state *us)
{
	free(us);
}

void
state_reset(struct user_state *us)
{
	us->t_ref_ms = STATE_NO_TIME;
	us->last_offset = -1;
	us->last_partition = -1;
	us->events_applied = 0;
	us->model_version = 0;
	us->n_tiers = 0;
	us->ring_head = 0;
	us->ring_count = 0;
	memset(us->h, 0, us->hidden * sizeof(float));
	memset(us->c, 0, us->hidden * sizeof(float));
	memset(us->tiers, 0, us->max_tiers * sizeof(struct tier_weight));
	memset(us->ring, 0, us->ring_len * sizeof(struct ring_event));
	memset(us->seen, 0, sizeof(us->seen));
}

static struct tier_weight *
tier_find(const struct user_state *us, uint32_t node)
{
	for (uint16_t i = 0; i < us->n_tiers; i++)
		if (us->tiers[i].node == node)
			return &us->tiers[i];
	return NULL;
}

/*
 * Adds (ds, dl) to node's weights. Weights are clamped at 0 (a negative
 * a(type), e.g. DISLIKE, lowers interest but never below none), an entry
 * falling to 0 in both is dropped, and a new entry enters a full table only
 * by evicting a weaker long-term weight.
 */
static void
tier_add(struct user_state *us, uint32_t node, float ds, float dl)
{
	struct tier_weight *tw = tier_find(us, node);

	if (tw != NULL) {
		tw->w_short = fmaxf(tw->w_short + ds, 0.0f);
		tw->w_long = fmaxf(tw->w_long + dl, 0.0f);
		if (tw->w_short == 0.0f && tw->w_long == 0.0f)
			*tw = us->tiers[--us->n_tiers];
		return;
	}
	if (ds <= 0.0f && dl <= 0.0f)
		return;
	if (us->n_tiers < us->max_tiers) {
		tw = &us->tiers[us->n_tiers++];
	} else {
		tw = &us->tiers[0];
		for (uint16_t i = 1; i < us->n_tiers; i++)
			if (us->tiers[i].w_long < tw->w_long)
				tw = &us->tiers[i];
		if (!(fmaxf(dl, 0.0f) > tw->w_long))
			return;
	}
	tw->node = node;
	tw->w_short = fmaxf(ds, 0.0f);
	tw->w_long = fmaxf(dl, 0.0f);
}

/* 2^(-dt_ms / half_life), computed in double. */
static double
decay_factor(double dt_ms, float half_life_s)
{
	return exp2(-(dt_ms / MS_PER_S) / (double)half_life_s);
}

void
state_tiers_apply(
    struct user_state *us, const struct model *m, uint32_t item, uint8_t type, int64_t ts_ms)
{
	const struct model_hparams *hp = model_hparams(m);
	double f_short = 1.0, f_long = 1.0, a;

	if (hp == NULL || type >= MODEL_N_TYPES)
		return;
	a = (double)hp->type_weight[type];
	if (us->t_ref_ms == STATE_NO_TIME) {
		us->t_ref_ms = ts_ms;
	} else if (ts_ms >= us->t_ref_ms) {
		double dt_ms = (double)ts_ms - (double)us->t_ref_ms;

		if (dt_ms > 0) {
			double ds = decay_factor(dt_ms, hp->half_life_short_s);
			double dl = decay_factor(dt_ms, hp->half_life_long_s);

			for (uint16_t i = 0; i < us->n_tiers; i++) {
				us->tiers[i].w_short = (float)(us->tiers[i].w_short * ds);
				us->tiers[i].w_long = (float)(us->tiers[i].w_long * dl);
			}
		}
		us->t_ref_ms = ts_ms;
	} else {
		/* Older than what was applied: its contribution as of t_ref_ms. */
		double age_ms = (double)us->t_ref_ms - (double)ts_ms;

		f_short = decay_factor(age_ms, hp->half_life_short_s);
		f_long = decay_factor(age_ms, hp->half_life_long_s);
	}
	if (a == 0.0)
		return;
	tier_add(us, model_item_tier1(m, item), (float)(a * f_short), (float)(a * f_long));
	tier_add(us, model_item_tier2(m, item), (float)(a * f_short), (float)(a * f_long));
}

static float
tier_at(
    const struct user_state *us, uint32_t node, int64_t now_ms, float half_life_s, int long_term)
{
	const struct tier_weight *tw = tier_find(us, node);
	double w, dt_ms;

	if (tw == NULL)
		return 0.0f;
	w = long_term ? tw->w_long : tw->w_short;
	dt_ms = (double)now_ms - (double)us->t_ref_ms;
	if (dt_ms > 0)
		w *= decay_factor(dt_ms, half_life_s);
	return (float)w;
}

float
state_tier_short(const struct user_state *us, const struct model *m, uint32_t node, int64_t now_ms)
{
	const struct model_hparams *hp = model_hparams(m);

	return hp == NULL ? 0.0f : tier_at(us, node, now_ms, hp->half_life_short_s, 0);
}

float
state_tier_long(const struct user_state *us, const struct model *m, uint32_t node, int64_t now_ms)
{
	const struct model_hparams *hp = model_hparams(m);

	return hp == NULL ? 0.0f : tier_at(us, node, now_ms, hp->half_life_long_s, 1);
}

/*
 * Stores an event time in the ring's 56-bit field, clamped to its range
 * (the decoder refuses a stored time outside it, so this only bounds a
 * caller's nonsense).
 */
static void
ring_set_ts(struct ring_event *re, int64_t ts_ms)
{
	if (ts_ms > STATE_RING_TS_MAX)
		ts_ms = STATE_RING_TS_MAX;
	if (ts_ms < -STATE_RING_TS_MAX)
		ts_ms = -STATE_RING_TS_MAX;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion" /* in range: checked above */
	re->ts_ms = ts_ms;
#pragma GCC diagnostic pop
}

void
state_ring_push(struct user_state *us, uint64_t item_hash, int64_t ts_ms, uint8_t type)
{
	struct ring_event *re = &us->ring[us->ring_head];

	re->item_hash = item_hash;
	ring_set_ts(re, ts_ms);
	re->type = type;
	us->ring_head = (uint16_t)((us->ring_head + 1) % us->ring_len);
	if (us->ring_count < us->ring_len)
		us->ring_count++;
}

const struct ring_event *
state_ring_get(const struct user_state *us, uint16_t i)
{
	uint32_t slot =
	    ((uint32_t)us->ring_head + us->ring_len - us->ring_count + i) % us->ring_len;

	return &us->ring[slot];
}

/* The FNV hash's low bits are weak; a 64-bit finaliser spreads them first. */
static uint64_t
seen_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

void
state_seen_add(struct user_state *us, uint64_t item_hash)
{
	uint64_t x = seen_mix(item_hash);

	for (int k = 0; k < 3; k++, x >>= SEEN_SLICE_BITS) {
		uint32_t bit = (uint32_t)(x & SEEN_BIT_MASK);

		us->seen[bit >> 3] = (uint8_t)(us->seen[bit >> 3] | (1u << (bit & 7)));
	}
}

int
state_seen_has(const struct user_state *us, uint64_t item_hash)
{
	uint64_t x = seen_mix(item_hash);

	for (int k = 0; k < 3; k++, x >>= SEEN_SLICE_BITS) {
		uint32_t bit = (uint32_t)(x & SEEN_BIT_MASK);

		if (!(us->seen[bit >> 3] & (1u << (bit & 7))))
			return 0;
	}
	return 1;
}

/* Codec (schemas/state.md), little-endian by model/le.h. */

static size_t
encoded_size(uint32_t hidden, uint32_t n_tiers, uint32_t ring_count)
{
	return STATE_HEADER_SIZE + 2 * (size_t)hidden * sizeof(float) +
	    (size_t)n_tiers * STATE_TIER_SIZE + (size_t)ring_count * STATE_RING_SIZE +
	    STATE_SEEN_BYTES + STATE_CRC_SIZE;
}

size_t
state_encoded_size(const struct user_state *us)
{
	return encoded_size(us->hidden, us->n_tiers, us->ring_count);
}

size_t
state_encode(const struct user_state *us, uint8_t *buf, size_t size)
{
	size_t need = state_encoded_size(us);
	uint8_t *p = buf;

	if (size < need)
		return 0;
	memcpy(p, STATE_MAGIC, STATE_MAGIC_LEN);
	p[STATE_MAGIC_LEN] = STATE_CODEC_VERSION;
	p = le_put_u32(p + 4, us->hidden);
	p = le_put_u16(p, us->max_tiers);
	p = le_put_u16(p, us->ring_len);
	p = le_put_u16(p, us->n_tiers);
	p = le_put_u16(p, us->ring_count);
	p = le_put_u64(p, (uint64_t)us->t_ref_ms);
	p = le_put_u64(p, (uint64_t)us->last_offset);
	p = le_put_u32(p, (uint32_t)us->last_partition);
	p = le_put_u32(p, 0);
	p = le_put_u64(p, us->events_applied);
	p = le_put_u64(p, us->model_version);
	for (uint32_t i = 0; i < us->hidden; i++)
		p = le_put_f32(p, us->h[i]);
	for (uint32_t i = 0; i < us->hidden; i++)
		p = le_put_f32(p, us->c[i]);
	for (uint16_t i = 0; i < us->n_tiers; i++) {
		p = le_put_u32(p, us->tiers[i].node);
		p = le_put_f32(p, us->tiers[i].w_short);
		p = le_put_f32(p, us->tiers[i].w_long);
	}
	for (uint16_t i = 0; i < us->ring_count; i++) {
		const struct ring_event *re = state_ring_get(us, i);

		p = le_put_u64(p, re->item_hash);
		p = le_put_u64(p, (uint64_t)re->ts_ms);
		*p++ = re->type;
	}
	memcpy(p, us->seen, STATE_SEEN_BYTES);
	p += STATE_SEEN_BYTES;
	p = le_put_u32(p, container_crc32(0, buf, (size_t)(p - buf)));
	return (size_t)(p - buf);
}

/*
 * One pass over an encoded state: checks everything when apply is 0, copies
 * into us when apply is 1 (run only after a checking pass succeeded, so a
 * failed decode leaves us untouched).
 */
static int
decode_pass(struct user_state *us, const uint8_t *buf, size_t len, int apply, char *errstr,
    size_t errstr_size)
{
	const uint8_t *p;
	uint32_t hidden;
	uint16_t max_tiers, ring_len, n_tiers, ring_count, skip;
	size_t need;

	if (len < STATE_MAGIC_LEN + 1 || memcmp(buf, STATE_MAGIC, STATE_MAGIC_LEN) != 0) {
		snprintf(errstr, errstr_size, "state: bad magic");
		return -1;
	}
	if (buf[STATE_MAGIC_LEN] != STATE_CODEC_VERSION) {
		snprintf(errstr, errstr_size, "state: unknown version %u (supported: %u)",
		    buf[STATE_MAGIC_LEN], STATE_CODEC_VERSION);
		return -1;
	}
	if (len < STATE_HEADER_SIZE) {
		snprintf(errstr, errstr_size, "state: truncated: %zu bytes, header needs %d", len,
		    STATE_HEADER_SIZE);
		return -1;
	}
	hidden = le_get_u32(buf + 4);
	max_tiers = le_get_u16(buf + 8);
	ring_len = le_get_u16(buf + 10);
	n_tiers = le_get_u16(buf + 12);
	ring_count = le_get_u16(buf + 14);
	if (n_tiers > max_tiers || ring_count > ring_len) {
		snprintf(errstr, errstr_size,
		    "state: counts exceed sizes (n_tiers %u > max_tiers %u or ring_count %u > "
		    "ring_len %u)",
		    n_tiers, max_tiers, ring_count, ring_len);
		return -1;
	}
	need = encoded_size(hidden, n_tiers, ring_count);
	if (len != need) {
		snprintf(errstr, errstr_size, "state: %s: %zu bytes, its sizes say %zu",
		    len < need ? "truncated" : "trailing bytes", len, need);
		return -1;
	}
	if (container_crc32(0, buf, len - STATE_CRC_SIZE) !=
	    le_get_u32(buf + len - STATE_CRC_SIZE)) {
		snprintf(errstr, errstr_size, "state: bad checksum");
		return -1;
	}
	if (n_tiers > us->max_tiers) {
		snprintf(errstr, errstr_size,
		    "state: %u tier entries exceed the model's max_tiers %u", n_tiers,
		    us->max_tiers);
		return -1;
	}
	if (le_get_u32(buf + 36) != 0) {
		snprintf(errstr, errstr_size, "state: reserved field not zero");
		return -1;
	}
	int32_t part = (int32_t)le_get_u32(buf + 32);
	int64_t off = (int64_t)le_get_u64(buf + 24);
	if (part < -1 || off < -1) {
		snprintf(errstr, errstr_size, "state: bad marker (partition %d, offset %lld)", part,
		    (long long)off);
		return -1;
	}
	if (apply) {
		us->t_ref_ms = (int64_t)le_get_u64(buf + 16);
		us->last_offset = off;
		us->last_partition = part;
		us->events_applied = le_get_u64(buf + 40);
		us->model_version = le_get_u64(buf + 48);
		if (hidden != us->hidden) {
			/*
			 * Written under a model of another size: h and c mean nothing
			 * here. Everything else is kept; model_version 0 makes the
			 * caller re-warm h and c from the ring (model/state.h).
			 */
			memset(us->h, 0, us->hidden * sizeof(float));
			memset(us->c, 0, us->hidden * sizeof(float));
			us->model_version = 0;
		}
	}
	p = buf + STATE_HEADER_SIZE;
	for (uint32_t i = 0; i < 2 * hidden; i++, p += 4) {
		float f = le_get_f32(p);

		if (!isfinite(f)) {
			snprintf(errstr, errstr_size, "state: %s[%u] not finite",
			    i < hidden ? "h" : "c", i % hidden);
			return -1;
		}
		if (apply && hidden == us->hidden)
			(i < hidden ? us->h : us->c)[i % hidden] = f;
	}
	for (uint16_t i = 0; i < n_tiers; i++, p += STATE_TIER_SIZE) {
		uint32_t node = le_get_u32(p);
		float ws = le_get_f32(p + 4), wl = le_get_f32(p + 8);

		if (!isfinite(ws) || !isfinite(wl) || ws < 0.0f || wl < 0.0f) {
			snprintf(errstr, errstr_size, "state: tier entry %u: bad weight", i);
			return -1;
		}
		if (!apply) {
			for (uint16_t j = 0; j < i; j++) {
				if (le_get_u32(buf + STATE_HEADER_SIZE + 8 * (size_t)hidden +
					(size_t)j * STATE_TIER_SIZE) == node) {
					snprintf(
					    errstr, errstr_size, "state: tier node %u twice", node);
					return -1;
				}
			}
			continue;
		}
		us->tiers[i].node = node;
		us->tiers[i].w_short = ws;
		us->tiers[i].w_long = wl;
	}
	/* A model with a shorter ring keeps the newest events. */
	skip = ring_count > us->ring_len ? (uint16_t)(ring_count - us->ring_len) : 0;
	for (uint16_t i = 0; i < ring_count; i++, p += STATE_RING_SIZE) {
		int64_t ts_ms = (int64_t)le_get_u64(p + 8);

		if (p[16] >= MODEL_N_TYPES) {
			snprintf(errstr, errstr_size, "state: ring event %u: type %u out of range",
			    i, p[16]);
			return -1;
		}
		if (ts_ms > STATE_RING_TS_MAX || ts_ms < -STATE_RING_TS_MAX) {
			snprintf(errstr, errstr_size,
			    "state: ring event %u: ts %" PRId64 " out of range", i, ts_ms);
			return -1;
		}
		if (apply && i >= skip) {
			struct ring_event *re = &us->ring[i - skip];

			re->item_hash = le_get_u64(p);
			ring_set_ts(re, ts_ms);
			re->type = p[16];
		}
	}
	if (apply) {
		us->n_tiers = n_tiers;
		us->ring_count = (uint16_t)(ring_count - skip);
		us->ring_head = (uint16_t)(us->ring_count % us->ring_len);
		memcpy(us->seen, p, STATE_SEEN_BYTES);
	}
	return 0;
}

int
state_decode(
    struct user_state *us, const uint8_t *buf, size_t len, char *errstr, size_t errstr_size)
{
	if (decode_pass(us, buf, len, 0, errstr, errstr_size) != 0)
		return -1;
	return decode_pass(us, buf, len, 1, errstr, errstr_size);
}
