/*
 * Per-user state (model/state.h): one allocation per user (and one for its
 * consumed set), tier weights decayed exactly in continuous event time, the
 * event ring, the consumed items as sorted fingerprints, the remembered event
 * ids, and the versioned binary codec laid out in schemas/state.md.
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
#define STATE_CODEC_VERSION 2  /* written; version 1 is still read */
#define STATE_V1_HEADER     56 /* version 1: then h, c, tiers, ring, Bloom filter */
#define STATE_V1_FILTER     256
#define STATE_HEADER_SIZE   64 /* version 2: the version-1 header + n_seen, n_event_ids */
#define STATE_TIER_SIZE     12 /* u32 node, f32 short, f32 long */
#define STATE_RING_SIZE     17 /* u64 item_hash, i64 ts_ms, u8 type */
#define STATE_ID_SIZE       8  /* u64 event-id hash */
#define STATE_SEEN_SIZE     4  /* u32 fingerprint */
#define STATE_CRC_SIZE      4
#define SEEN_STEP           4 /* the consumed set grows by max(SEEN_STEP, 1/8) of itself */
#define MS_PER_S            1000.0

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

size_t
state_mem_used(const struct user_state *us)
{
	struct state_layout sl;

	state_layout(us->hidden, us->max_tiers, us->ring_len, &sl);
	return sl.total + (size_t)us->seen_cap * sizeof(uint32_t);
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
	if (us == NULL)
		return;
	free(us->seen);
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
	free(us->seen);
	us->seen = NULL;
	us->n_seen = 0;
	us->seen_cap = 0;
	memset(us->event_ids, 0, sizeof(us->event_ids));
	us->n_event_ids = 0;
	us->event_ids_head = 0;
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

/* ---- consumed items -------------------------------------------------------- */

/*
 * An item's fingerprint: the top 32 bits of its hash after the MurmurHash3
 * 64-bit finaliser (the FNV hash's bits are uneven; the finaliser spreads
 * them).
 */
static uint32_t
seen_fingerprint(uint64_t item_hash)
{
	uint64_t h = item_hash;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (uint32_t)(h >> 32);
}

/* Index of the first fingerprint >= fp in the sorted set. */
static uint32_t
seen_lower(const uint32_t *seen, uint32_t n, uint32_t fp)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (seen[mid] < fp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The allocation for n fingerprints: n rounded up to SEEN_STEP, at most STATE_SEEN_MAX. */
static uint32_t
seen_cap_for(uint32_t n)
{
	uint32_t cap = (n + SEEN_STEP - 1) / SEEN_STEP * SEEN_STEP;

	return cap < STATE_SEEN_MAX ? cap : STATE_SEEN_MAX;
}

int
state_seen_add(struct user_state *us, uint64_t item_hash)
{
	uint32_t fp = seen_fingerprint(item_hash);
	uint32_t at = seen_lower(us->seen, us->n_seen, fp);

	if (at < us->n_seen && us->seen[at] == fp)
		return 1;
	if (us->n_seen == STATE_SEEN_MAX) {
		/* Full: the new item takes the place of one its fingerprint picks. */
		uint32_t out = fp % STATE_SEEN_MAX;

		memmove(us->seen + out, us->seen + out + 1,
		    (size_t)(us->n_seen - out - 1) * sizeof(uint32_t));
		us->n_seen--;
		if (at > out)
			at--;
	} else if (us->n_seen == us->seen_cap) {
		/* Grown by an eighth (at least SEEN_STEP): little slack, few reallocations. */
		uint32_t grow = us->seen_cap / 8 > SEEN_STEP ? us->seen_cap / 8 : SEEN_STEP;
		uint32_t cap =
		    us->seen_cap + grow < STATE_SEEN_MAX ? us->seen_cap + grow : STATE_SEEN_MAX;
		uint32_t *p = realloc(us->seen, (size_t)cap * sizeof(uint32_t));

		if (p == NULL)
			return -1;
		us->seen = p;
		us->seen_cap = cap;
	}
	memmove(us->seen + at + 1, us->seen + at, (size_t)(us->n_seen - at) * sizeof(uint32_t));
	us->seen[at] = fp;
	us->n_seen++;
	return 0;
}

int
state_seen_has(const struct user_state *us, uint64_t item_hash)
{
	uint32_t fp = seen_fingerprint(item_hash);
	uint32_t at = seen_lower(us->seen, us->n_seen, fp);

	return at < us->n_seen && us->seen[at] == fp;
}

int
state_seen_copy(struct user_state *dst, const struct user_state *src)
{
	if (dst->seen_cap < src->n_seen) {
		uint32_t cap = seen_cap_for(src->n_seen);
		uint32_t *p = malloc((size_t)cap * sizeof(uint32_t));

		if (p == NULL)
			return -1;
		free(dst->seen);
		dst->seen = p;
		dst->seen_cap = cap;
	}
	if (src->n_seen > 0)
		memcpy(dst->seen, src->seen, (size_t)src->n_seen * sizeof(uint32_t));
	dst->n_seen = src->n_seen;
	return 0;
}

/* ---- event ids --------------------------------------------------------------- */

uint64_t
state_event_id_hash(const char *event_id, size_t len)
{
	return model_id_hash(event_id, len);
}

int
state_event_known(const struct user_state *us, uint64_t id_hash)
{
	/* Slots 0..n_event_ids-1 are the filled ones (the ring fills from 0). */
	for (uint16_t i = 0; i < us->n_event_ids; i++)
		if (us->event_ids[i] == id_hash)
			return 1;
	return 0;
}

void
state_event_remember(struct user_state *us, uint64_t id_hash)
{
	us->event_ids[us->event_ids_head] = id_hash;
	us->event_ids_head = (uint16_t)((us->event_ids_head + 1) % STATE_EVENT_IDS);
	if (us->n_event_ids < STATE_EVENT_IDS)
		us->n_event_ids++;
}

/* The i-th remembered id, oldest first (i < n_event_ids). */
static uint64_t
event_id_get(const struct user_state *us, uint16_t i)
{
	return us->event_ids[(us->event_ids_head + STATE_EVENT_IDS - us->n_event_ids + i) %
	    STATE_EVENT_IDS];
}

void
state_event_ids_copy(struct user_state *dst, const struct user_state *src)
{
	memcpy(dst->event_ids, src->event_ids, sizeof(dst->event_ids));
	dst->n_event_ids = src->n_event_ids;
	dst->event_ids_head = src->event_ids_head;
}

/* ---- codec (schemas/state.md), little-endian by model/le.h ------------------ */

/* Where the sections of a checked blob are, and its counts. */
struct blob {
	unsigned version;
	uint32_t hidden, n_seen;
	uint16_t max_tiers, ring_len, n_tiers, ring_count, n_ids;
	size_t h, tiers, ring, ids, seen; /* offsets; seen: version 2 only */
};

static size_t
encoded_size(unsigned version, uint32_t hidden, uint32_t n_tiers, uint32_t ring_count,
    uint32_t n_ids, uint32_t n_seen)
{
	size_t n = 2 * (size_t)hidden * sizeof(float) + (size_t)n_tiers * STATE_TIER_SIZE +
	    (size_t)ring_count * STATE_RING_SIZE + STATE_CRC_SIZE;

	if (version == 1)
		return STATE_V1_HEADER + n + STATE_V1_FILTER;
	return STATE_HEADER_SIZE + n + (size_t)n_ids * STATE_ID_SIZE +
	    (size_t)n_seen * STATE_SEEN_SIZE;
}

size_t
state_encoded_size(const struct user_state *us)
{
	return encoded_size(STATE_CODEC_VERSION, us->hidden, us->n_tiers, us->ring_count,
	    us->n_event_ids, us->n_seen);
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
	p = le_put_u32(p, us->n_seen);
	p = le_put_u16(p, us->n_event_ids);
	p = le_put_u16(p, 0);
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
	for (uint16_t i = 0; i < us->n_event_ids; i++)
		p = le_put_u64(p, event_id_get(us, i));
	for (uint32_t i = 0; i < us->n_seen; i++)
		p = le_put_u32(p, us->seen[i]);
	p = le_put_u32(p, container_crc32(0, buf, (size_t)(p - buf)));
	return (size_t)(p - buf);
}

/*
 * Checks an encoded state of either version against us's sizes without
 * changing anything; fills bl. Returns 0, or -1 with the reason.
 */
static int
blob_check(const struct user_state *us, const uint8_t *buf, size_t len, struct blob *bl,
    char *errstr, size_t errstr_size)
{
	size_t need, header;
	const uint8_t *p;

	if (len < STATE_MAGIC_LEN + 1 || memcmp(buf, STATE_MAGIC, STATE_MAGIC_LEN) != 0) {
		snprintf(errstr, errstr_size, "state: bad magic");
		return -1;
	}
	bl->version = buf[STATE_MAGIC_LEN];
	if (bl->version != 1 && bl->version != STATE_CODEC_VERSION) {
		snprintf(errstr, errstr_size, "state: unknown version %u (supported: 1, %u)",
		    bl->version, STATE_CODEC_VERSION);
		return -1;
	}
	header = bl->version == 1 ? STATE_V1_HEADER : STATE_HEADER_SIZE;
	if (len < header) {
		snprintf(errstr, errstr_size, "state: truncated: %zu bytes, header needs %zu", len,
		    header);
		return -1;
	}
	bl->hidden = le_get_u32(buf + 4);
	bl->max_tiers = le_get_u16(buf + 8);
	bl->ring_len = le_get_u16(buf + 10);
	bl->n_tiers = le_get_u16(buf + 12);
	bl->ring_count = le_get_u16(buf + 14);
	bl->n_seen = bl->version == 1 ? 0 : le_get_u32(buf + 56);
	bl->n_ids = bl->version == 1 ? 0 : le_get_u16(buf + 60);
	if (bl->n_tiers > bl->max_tiers || bl->ring_count > bl->ring_len) {
		snprintf(errstr, errstr_size,
		    "state: counts exceed sizes (n_tiers %u > max_tiers %u or ring_count %u > "
		    "ring_len %u)",
		    bl->n_tiers, bl->max_tiers, bl->ring_count, bl->ring_len);
		return -1;
	}
	if (bl->n_seen > STATE_SEEN_MAX) {
		snprintf(errstr, errstr_size, "state: %" PRIu32 " consumed items (at most %d)",
		    bl->n_seen, STATE_SEEN_MAX);
		return -1;
	}
	need = encoded_size(
	    bl->version, bl->hidden, bl->n_tiers, bl->ring_count, bl->n_ids, bl->n_seen);
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
	if (bl->n_tiers > us->max_tiers) {
		snprintf(errstr, errstr_size,
		    "state: %u tier entries exceed the model's max_tiers %u", bl->n_tiers,
		    us->max_tiers);
		return -1;
	}
	if (le_get_u32(buf + 36) != 0 || (bl->version > 1 && le_get_u16(buf + 62) != 0)) {
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
	bl->h = header;
	bl->tiers = bl->h + 8 * (size_t)bl->hidden;
	bl->ring = bl->tiers + (size_t)bl->n_tiers * STATE_TIER_SIZE;
	bl->ids = bl->ring + (size_t)bl->ring_count * STATE_RING_SIZE;
	bl->seen = bl->ids + (size_t)bl->n_ids * STATE_ID_SIZE;
	p = buf + bl->h;
	for (uint32_t i = 0; i < 2 * bl->hidden; i++, p += 4) {
		if (!isfinite(le_get_f32(p))) {
			snprintf(errstr, errstr_size, "state: %s[%u] not finite",
			    i < bl->hidden ? "h" : "c", i % bl->hidden);
			return -1;
		}
	}
	for (uint16_t i = 0; i < bl->n_tiers; i++, p += STATE_TIER_SIZE) {
		uint32_t node = le_get_u32(p);
		float ws = le_get_f32(p + 4), wl = le_get_f32(p + 8);

		if (!isfinite(ws) || !isfinite(wl) || ws < 0.0f || wl < 0.0f) {
			snprintf(errstr, errstr_size, "state: tier entry %u: bad weight", i);
			return -1;
		}
		for (uint16_t j = 0; j < i; j++) {
			if (le_get_u32(buf + bl->tiers + (size_t)j * STATE_TIER_SIZE) == node) {
				snprintf(errstr, errstr_size, "state: tier node %u twice", node);
				return -1;
			}
		}
	}
	for (uint16_t i = 0; i < bl->ring_count; i++, p += STATE_RING_SIZE) {
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
	}
	/* Strictly increasing: one canonical encoding, and state_seen_has's binary search. */
	for (uint32_t i = 1; i < bl->n_seen; i++) {
		if (le_get_u32(buf + bl->seen + (size_t)i * STATE_SEEN_SIZE) <=
		    le_get_u32(buf + bl->seen + (size_t)(i - 1) * STATE_SEEN_SIZE)) {
			snprintf(errstr, errstr_size,
			    "state: consumed item %" PRIu32 " not above the one before", i);
			return -1;
		}
	}
	return 0;
}

static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The consumed set of a checked blob in a new allocation (*seen, NULL when
 * empty): version 2's fingerprints, or for version 1 those of its ring's
 * items (its Bloom filter cannot be turned back into items). Returns 0, or
 * -1 on ENOMEM.
 */
static int
blob_seen(const uint8_t *buf, const struct blob *bl, uint32_t **seen, uint32_t *n, uint32_t *cap)
{
	uint32_t count = bl->version == 1 ? bl->ring_count : bl->n_seen, k = 0;

	*seen = NULL;
	*n = *cap = 0;
	if (count == 0)
		return 0;
	*cap = seen_cap_for(count);
	*seen = malloc((size_t)*cap * sizeof(uint32_t));
	if (*seen == NULL)
		return -1;
	if (bl->version > 1) {
		for (uint32_t i = 0; i < count; i++)
			(*seen)[i] = le_get_u32(buf + bl->seen + (size_t)i * STATE_SEEN_SIZE);
		*n = count;
		return 0;
	}
	for (uint32_t i = 0; i < count && i < *cap; i++)
		(*seen)[i] =
		    seen_fingerprint(le_get_u64(buf + bl->ring + (size_t)i * STATE_RING_SIZE));
	count = count < *cap ? count : *cap;
	qsort(*seen, count, sizeof(uint32_t), u32_cmp);
	for (uint32_t i = 0; i < count; i++)
		if (k == 0 || (*seen)[i] != (*seen)[k - 1])
			(*seen)[k++] = (*seen)[i];
	*n = k;
	return 0;
}

/* Copies a checked blob into us, taking seen (n, cap) as its consumed set. */
static void
blob_apply(struct user_state *us, const uint8_t *buf, const struct blob *bl, uint32_t *seen,
    uint32_t n_seen, uint32_t seen_cap)
{
	const uint8_t *p;
	uint16_t skip;

	us->t_ref_ms = (int64_t)le_get_u64(buf + 16);
	us->last_offset = (int64_t)le_get_u64(buf + 24);
	us->last_partition = (int32_t)le_get_u32(buf + 32);
	us->events_applied = le_get_u64(buf + 40);
	us->model_version = le_get_u64(buf + 48);
	if (bl->hidden == us->hidden) {
		p = buf + bl->h;
		for (uint32_t i = 0; i < us->hidden; i++, p += 4)
			us->h[i] = le_get_f32(p);
		for (uint32_t i = 0; i < us->hidden; i++, p += 4)
			us->c[i] = le_get_f32(p);
	} else {
		/*
		 * Written under a model of another size: h and c mean nothing
		 * here. Everything else is kept; model_version 0 makes the
		 * caller re-warm h and c from the ring (model/state.h).
		 */
		memset(us->h, 0, us->hidden * sizeof(float));
		memset(us->c, 0, us->hidden * sizeof(float));
		us->model_version = 0;
	}
	p = buf + bl->tiers;
	for (uint16_t i = 0; i < bl->n_tiers; i++, p += STATE_TIER_SIZE) {
		us->tiers[i].node = le_get_u32(p);
		us->tiers[i].w_short = le_get_f32(p + 4);
		us->tiers[i].w_long = le_get_f32(p + 8);
	}
	us->n_tiers = bl->n_tiers;
	/* A model with a shorter ring keeps the newest events. */
	skip = bl->ring_count > us->ring_len ? (uint16_t)(bl->ring_count - us->ring_len) : 0;
	p = buf + bl->ring + (size_t)skip * STATE_RING_SIZE;
	for (uint16_t i = skip; i < bl->ring_count; i++, p += STATE_RING_SIZE) {
		struct ring_event *re = &us->ring[i - skip];

		re->item_hash = le_get_u64(p);
		ring_set_ts(re, (int64_t)le_get_u64(p + 8));
		re->type = p[16];
	}
	us->ring_count = (uint16_t)(bl->ring_count - skip);
	us->ring_head = (uint16_t)(us->ring_count % us->ring_len);
	/* More ids than remembered here keep the newest. */
	us->n_event_ids = 0;
	us->event_ids_head = 0;
	skip = bl->n_ids > STATE_EVENT_IDS ? (uint16_t)(bl->n_ids - STATE_EVENT_IDS) : 0;
	for (uint16_t i = skip; i < bl->n_ids; i++)
		state_event_remember(us, le_get_u64(buf + bl->ids + (size_t)i * STATE_ID_SIZE));
	free(us->seen);
	us->seen = seen;
	us->n_seen = n_seen;
	us->seen_cap = seen_cap;
}

int
state_decode(
    struct user_state *us, const uint8_t *buf, size_t len, char *errstr, size_t errstr_size)
{
	struct blob bl;
	uint32_t *seen, n_seen, seen_cap;

	if (blob_check(us, buf, len, &bl, errstr, errstr_size) != 0)
		return -1;
	if (blob_seen(buf, &bl, &seen, &n_seen, &seen_cap) != 0) {
		snprintf(errstr, errstr_size, "state: out of memory for %" PRIu32 " consumed items",
		    bl.version == 1 ? bl.ring_count : bl.n_seen);
		return STATE_DECODE_NOMEM;
	}
	blob_apply(us, buf, &bl, seen, n_seen, seen_cap);
	return 0;
}
