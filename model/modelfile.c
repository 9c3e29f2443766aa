/*
 * Meaning of catalog and model files (schemas/modelfile.md): validates every
 * section against CATM/HPAR, builds the id and id-hash lookup tables and the
 * model item embeddings, and writes model files for the trainer.
 */
#include "modelfile.h"
#include "le.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model files are little-endian and mapped in place: big-endian hosts unsupported"
#endif

#define CATM_SIZE         128 /* schemas/modelfile.md */
#define CATM_EMBEDDER_LEN 64
#define HPAR_SIZE         128
#define TNOD_FIELDS       4 /* parent, level, index, n_items */
#define ITIR_FIELDS       2
#define ITEM_ID_MAX       255
#define MAX_ITEMS         (1u << 24)
#define MAX_DIM           4096
#define MAX_TIER1         256
#define MAX_NODES         65535
#define MAX_HIDDEN        1024
#define MAX_TYPE_DIM      64
#define MAX_RING          64
#define MAX_TIERS         1024
#define N_ALPHA           4
#define FNV_OFFSET        14695981039346656037ull
#define FNV_PRIME         1099511628211ull
#define SLOT_EMPTY        (-1)
#define OWN_MAX           32 /* blocks an extended model owns (18 used) */

static const char *const catalog_tags[] = {
	"CATM",
	"IIDS",
	"ITTL",
	"EMBD",
	"TNOD",
	"TCEN",
	"TNAM",
	"ITIR",
};
#define N_CATALOG_TAGS (sizeof(catalog_tags) / sizeof(catalog_tags[0]))

/* A string table (IIDS, ITTL, TNAM): offsets then bytes. */
struct strtab {
	const uint32_t *off; /* [count + 1] */
	const char *bytes;
};

struct model {
	struct container *ct;
	uint32_t n_items, dim, n_tier1, n_nodes;
	char embedder[CATM_EMBEDDER_LEN + 1];
	struct strtab ids, titles, names;
	const float *embd;    /* [n_items][dim] */
	const uint32_t *tnod; /* [n_nodes][4] */
	const float *tcen;    /* [n_nodes][dim] */
	const uint32_t *itir; /* [n_items][2] */
	int has_weights;
	struct model_hparams hp;
	struct model_weights w;
	float *item_emb_owned; /* EMBD + R for a model, NULL for a catalog */
	const char *trch;      /* TRCH: the trainer's settings search, text; NULL if none */
	size_t trch_len;
	uint64_t *item_hash; /* [n_items] */
	int32_t *id_slots;   /* open addressing by id, item index or SLOT_EMPTY */
	int32_t *hash_slots; /* open addressing by item hash */
	uint64_t slot_mask;
	void *own[OWN_MAX]; /* model_extend's copies of every section (ct NULL) */
	size_t n_own;
};

uint64_t
model_id_hash(const char *id, size_t len)
{
	uint64_t h = FNV_OFFSET;

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)id[i];
		h *= FNV_PRIME;
	}
	return h;
}

/* Index of the first non-finite float in a[0..n), or n if all are finite. */
static uint64_t
first_nonfinite(const float *a, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (!isfinite(a[i]))
			return i;
	return n;
}

/* Checks that section tag holds exactly n floats, all finite. */
static int
check_floats(const char *tag, const char *what, const uint8_t *p, size_t len, uint64_t n,
    char *errstr, size_t errstr_size)
{
	uint64_t bad;

	if ((uint64_t)len != n * sizeof(float)) {
		snprintf(errstr, errstr_size, "section %s: length %zu != %s*4 = %llu", tag, len,
		    what, (unsigned long long)(n * sizeof(float)));
		return -1;
	}
	bad = first_nonfinite((const float *)(const void *)p, n);
	if (bad < n) {
		snprintf(errstr, errstr_size, "section %s: float %llu not finite", tag,
		    (unsigned long long)bad);
		return -1;
	}
	return 0;
}

/*
 * Validates a string table of count strings: offsets from 0, non-decreasing,
 * ending at the byte count; each string at least min_len and at most max_len
 * bytes.
 */
static int
parse_strtab(const char *tag, const uint8_t *p, size_t len, uint32_t count, size_t min_len,
    size_t max_len, struct strtab *st, char *errstr, size_t errstr_size)
{
	uint64_t head = ((uint64_t)count + 1) * sizeof(uint32_t);
	const uint32_t *off = (const uint32_t *)(const void *)p;

	if ((uint64_t)len < head) {
		snprintf(errstr, errstr_size, "section %s: length %zu < (count+1)*4 = %llu", tag,
		    len, (unsigned long long)head);
		return -1;
	}
	if (off[0] != 0) {
		snprintf(errstr, errstr_size, "section %s: off[0] = %u, must be 0", tag, off[0]);
		return -1;
	}
	if ((uint64_t)off[count] != len - head) {
		snprintf(errstr, errstr_size, "section %s: off[%u] = %u != byte count %llu", tag,
		    count, off[count], (unsigned long long)(len - head));
		return -1;
	}
	for (uint32_t i = 0; i < count; i++) {
		if (off[i + 1] < off[i]) {
			snprintf(errstr, errstr_size, "section %s: offsets decrease at %u", tag, i);
			return -1;
		}
		size_t n = off[i + 1] - off[i];
		if (n < min_len || n > max_len) {
			snprintf(errstr, errstr_size,
			    "section %s: string %u length %zu out of range %zu..%zu", tag, i, n,
			    min_len, max_len);
			return -1;
		}
	}
	st->off = off;
	st->bytes = (const char *)(p + head);
	return 0;
}

static const char *
strtab_get(const struct strtab *st, uint32_t i, size_t *len)
{
	*len = st->off[i + 1] - st->off[i];
	return st->bytes + st->off[i];
}

/* Range checks of hyper-parameters, shared by load and write. */
static int
check_hparams(const struct model_hparams *hp, char *errstr, size_t errstr_size)
{
	const char *field = NULL;
	uint32_t v = 0, lo = 1, hi = 0;

	if (hp->hidden < 1 || hp->hidden > MAX_HIDDEN)
		field = "hidden", v = hp->hidden, hi = MAX_HIDDEN;
	else if (hp->type_dim < 1 || hp->type_dim > MAX_TYPE_DIM)
		field = "type_dim", v = hp->type_dim, hi = MAX_TYPE_DIM;
	else if (hp->n_types != MODEL_N_TYPES)
		field = "n_types", v = hp->n_types, lo = hi = MODEL_N_TYPES;
	else if (hp->ring_len < 1 || hp->ring_len > MAX_RING)
		field = "ring_len", v = hp->ring_len, hi = MAX_RING;
	else if (hp->max_tiers < 1 || hp->max_tiers > MAX_TIERS)
		field = "max_tiers", v = hp->max_tiers, hi = MAX_TIERS;
	if (field != NULL) {
		snprintf(errstr, errstr_size, "section HPAR: %s %u out of range %u..%u", field, v,
		    lo, hi);
		return -1;
	}
	if (!isfinite(hp->half_life_short_s) || hp->half_life_short_s <= 0.0f ||
	    !isfinite(hp->half_life_long_s) || hp->half_life_long_s <= 0.0f) {
		snprintf(errstr, errstr_size,
		    "section HPAR: half-lives must be finite and > 0 (short %g, long %g)",
		    (double)hp->half_life_short_s, (double)hp->half_life_long_s);
		return -1;
	}
	for (int t = 0; t < MODEL_N_TYPES; t++) {
		if (!isfinite(hp->type_weight[t])) {
			snprintf(
			    errstr, errstr_size, "section HPAR: type_weight[%d] not finite", t);
			return -1;
		}
	}
	return 0;
}

static int
parse_hpar(const uint8_t *p, size_t len, struct model_hparams *hp, char *errstr, size_t errstr_size)
{
	if (len != HPAR_SIZE) {
		snprintf(errstr, errstr_size, "section HPAR: length %zu != %d", len, HPAR_SIZE);
		return -1;
	}
	hp->hidden = le_get_u32(p);
	hp->type_dim = le_get_u32(p + 4);
	hp->n_types = le_get_u32(p + 8);
	hp->ring_len = le_get_u32(p + 12);
	hp->model_version = le_get_u64(p + 16);
	hp->train_seed = le_get_u64(p + 24);
	hp->half_life_short_s = le_get_f32(p + 32);
	hp->half_life_long_s = le_get_f32(p + 36);
	for (int t = 0; t < MODEL_N_TYPES; t++)
		hp->type_weight[t] = le_get_f32(p + 40 + 4 * t);
	hp->max_tiers = le_get_u32(p + 72);
	return check_hparams(hp, errstr, errstr_size);
}

/* Float counts of the WGHT arrays, in file order. */
struct wght_layout {
	uint64_t n[8];
	uint64_t total;
};

static void
wght_layout(uint32_t dim, uint32_t n_items, const struct model_hparams *hp, struct wght_layout *wl)
{
	uint64_t h = hp->hidden, din = (uint64_t)dim + hp->type_dim + 1;

	wl->n[0] = 4 * h * (din + h);                    /* W */
	wl->n[1] = 4 * h;                                /* b */
	wl->n[2] = (uint64_t)dim * h;                    /* P */
	wl->n[3] = dim;                                  /* pb */
	wl->n[4] = (uint64_t)hp->n_types * hp->type_dim; /* T */
	wl->n[5] = (uint64_t)n_items * dim;              /* R */
	wl->n[6] = n_items;                              /* ib */
	wl->n[7] = N_ALPHA;                              /* alpha */
	wl->total = 0;
	for (int i = 0; i < 8; i++)
		wl->total += wl->n[i];
}

static const char *const wght_names[8] = { "W", "b", "P", "pb", "T", "R", "ib", "alpha" };

static int
parse_wght(struct model *m, const uint8_t *p, size_t len, char *errstr, size_t errstr_size)
{
	struct wght_layout wl;
	const float *f = (const float *)(const void *)p;
	const float **dst[8] = { &m->w.W, &m->w.b, &m->w.P, &m->w.pb, &m->w.T, &m->w.R, &m->w.ib,
		&m->w.alpha };

	wght_layout(m->dim, m->n_items, &m->hp, &wl);
	if ((uint64_t)len != wl.total * sizeof(float)) {
		snprintf(errstr, errstr_size,
		    "section WGHT: length %zu != %llu floats * 4 (from CATM and HPAR)", len,
		    (unsigned long long)wl.total);
		return -1;
	}
	for (int i = 0; i < 8; i++) {
		uint64_t bad = first_nonfinite(f, wl.n[i]);

		if (bad < wl.n[i]) {
			snprintf(errstr, errstr_size, "section WGHT: %s[%llu] not finite",
			    wght_names[i], (unsigned long long)bad);
			return -1;
		}
		*dst[i] = f;
		f += wl.n[i];
	}
	return 0;
}

static int
parse_catm(struct model *m, const uint8_t *p, size_t len, char *errstr, size_t errstr_size)
{
	if (len != CATM_SIZE) {
		snprintf(errstr, errstr_size, "section CATM: length %zu != %d", len, CATM_SIZE);
		return -1;
	}
	m->n_items = le_get_u32(p);
	m->dim = le_get_u32(p + 4);
	m->n_tier1 = le_get_u32(p + 8);
	m->n_nodes = le_get_u32(p + 12);
	memcpy(m->embedder, p + 32, CATM_EMBEDDER_LEN);
	m->embedder[CATM_EMBEDDER_LEN] = '\0';
	if (m->n_items < 1 || m->n_items > MAX_ITEMS) {
		snprintf(errstr, errstr_size, "section CATM: n_items %u out of range 1..%u",
		    m->n_items, MAX_ITEMS);
		return -1;
	}
	if (m->dim < 1 || m->dim > MAX_DIM) {
		snprintf(errstr, errstr_size, "section CATM: dim %u out of range 1..%d", m->dim,
		    MAX_DIM);
		return -1;
	}
	if (m->n_tier1 < 1 || m->n_tier1 > MAX_TIER1) {
		snprintf(errstr, errstr_size, "section CATM: n_tier1 %u out of range 1..%d",
		    m->n_tier1, MAX_TIER1);
		return -1;
	}
	if (m->n_nodes < m->n_tier1 || m->n_nodes > MAX_NODES) {
		snprintf(errstr, errstr_size, "section CATM: n_nodes %u out of range %u..%d",
		    m->n_nodes, m->n_tier1, MAX_NODES);
		return -1;
	}
	return 0;
}

/* TNOD structure and ITIR consistency with it (including per-node counts). */
static int
check_tree(struct model *m, const uint8_t *tnod, size_t tnod_len, const uint8_t *itir,
    size_t itir_len, char *errstr, size_t errstr_size)
{
	uint8_t parent_done[MAX_TIER1];
	uint32_t *count = NULL;
	uint32_t prev_parent = MODEL_NODE_NONE, next_index = 0;
	int ret = -1;

	if ((uint64_t)tnod_len != (uint64_t)m->n_nodes * TNOD_FIELDS * 4) {
		snprintf(errstr, errstr_size, "section TNOD: length %zu != n_nodes*16 = %llu",
		    tnod_len, (unsigned long long)m->n_nodes * TNOD_FIELDS * 4);
		return -1;
	}
	if ((uint64_t)itir_len != (uint64_t)m->n_items * ITIR_FIELDS * 4) {
		snprintf(errstr, errstr_size, "section ITIR: length %zu != n_items*8 = %llu",
		    itir_len, (unsigned long long)m->n_items * ITIR_FIELDS * 4);
		return -1;
	}
	m->tnod = (const uint32_t *)(const void *)tnod;
	m->itir = (const uint32_t *)(const void *)itir;
	memset(parent_done, 0, sizeof(parent_done));
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		const uint32_t *nd = m->tnod + (size_t)i * TNOD_FIELDS;

		if (i < m->n_tier1) {
			if (nd[0] != MODEL_NODE_NONE || nd[1] != 1 || nd[2] != i) {
				snprintf(errstr, errstr_size,
				    "section TNOD: node %u must be level 1 with no parent and "
				    "index %u",
				    i, i);
				return -1;
			}
			continue;
		}
		if (nd[1] != 2 || nd[0] >= m->n_tier1) {
			snprintf(errstr, errstr_size,
			    "section TNOD: node %u must be level 2 with a level-1 parent (level "
			    "%u, parent %u)",
			    i, nd[1], nd[0]);
			return -1;
		}
		if (nd[0] != prev_parent) {
			if (parent_done[nd[0]]) {
				snprintf(errstr, errstr_size,
				    "section TNOD: node %u: children of parent %u not grouped", i,
				    nd[0]);
				return -1;
			}
			parent_done[nd[0]] = 1;
			prev_parent = nd[0];
			next_index = 0;
		}
		if (nd[2] != next_index) {
			snprintf(errstr, errstr_size,
			    "section TNOD: node %u: index %u, expected %u", i, nd[2], next_index);
			return -1;
		}
		next_index++;
	}
	count = calloc(m->n_nodes, sizeof(*count));
	if (count == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < m->n_items; i++) {
		uint32_t t1 = m->itir[2 * (size_t)i], t2 = m->itir[2 * (size_t)i + 1];

		if (t1 >= m->n_tier1) {
			snprintf(errstr, errstr_size,
			    "section ITIR: item %u: level-1 node %u out of range", i, t1);
			goto done;
		}
		if (t2 < m->n_tier1 || t2 >= m->n_nodes ||
		    m->tnod[(size_t)t2 * TNOD_FIELDS] != t1) {
			snprintf(errstr, errstr_size,
			    "section ITIR: item %u: level-2 node %u is not a child of node %u", i,
			    t2, t1);
			goto done;
		}
		count[t1]++;
		count[t2]++;
	}
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		if (m->tnod[(size_t)i * TNOD_FIELDS + 3] != count[i]) {
			snprintf(errstr, errstr_size,
			    "section TNOD: node %u: n_items %u, but ITIR places %u items there", i,
			    m->tnod[(size_t)i * TNOD_FIELDS + 3], count[i]);
			goto done;
		}
	}
	ret = 0;
done:
	free(count);
	return ret;
}

/* Builds both lookup tables; rejects duplicate ids and 64-bit hash collisions. */
static int
build_index(struct model *m, char *errstr, size_t errstr_size)
{
	uint64_t cap = 1;

	while (cap < 2 * (uint64_t)m->n_items)
		cap <<= 1;
	m->slot_mask = cap - 1;
	m->item_hash = malloc(m->n_items * sizeof(*m->item_hash));
	m->id_slots = malloc(cap * sizeof(*m->id_slots));
	m->hash_slots = malloc(cap * sizeof(*m->hash_slots));
	if (m->item_hash == NULL || m->id_slots == NULL || m->hash_slots == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	for (uint64_t s = 0; s < cap; s++)
		m->id_slots[s] = m->hash_slots[s] = SLOT_EMPTY;
	for (uint32_t i = 0; i < m->n_items; i++) {
		size_t len, olen;
		const char *id = strtab_get(&m->ids, i, &len);
		uint64_t h = model_id_hash(id, len), s;

		m->item_hash[i] = h;
		for (s = h & m->slot_mask; m->id_slots[s] != SLOT_EMPTY;
		     s = (s + 1) & m->slot_mask) {
			uint32_t j = (uint32_t)m->id_slots[s];
			const char *other = strtab_get(&m->ids, j, &olen);

			if (olen == len && memcmp(other, id, len) == 0) {
				snprintf(errstr, errstr_size,
				    "section IIDS: duplicate id \"%.*s\" (items %u and %u)",
				    (int)len, id, j, i);
				return -1;
			}
		}
		m->id_slots[s] = (int32_t)i;
		for (s = h & m->slot_mask; m->hash_slots[s] != SLOT_EMPTY;
		     s = (s + 1) & m->slot_mask) {
			if (m->item_hash[m->hash_slots[s]] == h) {
				snprintf(errstr, errstr_size,
				    "section IIDS: items %d and %u have the same 64-bit id hash",
				    m->hash_slots[s], i);
				return -1;
			}
		}
		m->hash_slots[s] = (int32_t)i;
	}
	return 0;
}

/* TRCH (optional): text lines, tab and newline allowed, no other control byte. */
static int
parse_trch(struct model *m, char *errstr, size_t errstr_size)
{
	size_t len;
	const uint8_t *p = container_section(m->ct, "TRCH", &len);

	if (p == NULL)
		return 0;
	if (len > MODEL_TRCH_MAX) {
		snprintf(errstr, errstr_size, "section TRCH: length %zu > %d", len, MODEL_TRCH_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if ((p[i] < 0x20 && p[i] != '\n' && p[i] != '\t') || p[i] == 0x7f) {
			snprintf(errstr, errstr_size,
			    "section TRCH: byte %zu is 0x%02x, not text (UTF-8 lines)", i, p[i]);
			return -1;
		}
	m->trch = (const char *)p;
	m->trch_len = len;
	return 0;
}

const char *
model_choice(const struct model *m, size_t *len)
{
	*len = m->trch_len;
	return m->trch;
}

/* Loads and validates; the message does not name the path (model_load adds it). */
static struct model *
model_load_inner(const char *path, char *errstr, size_t errstr_size)
{
	struct model *m;
	const uint8_t *sec[N_CATALOG_TAGS];
	size_t len[N_CATALOG_TAGS];

	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	m->ct = container_open(path, errstr, errstr_size);
	if (m->ct == NULL)
		goto fail;
	for (size_t i = 0; i < N_CATALOG_TAGS; i++) {
		sec[i] = container_section(m->ct, catalog_tags[i], &len[i]);
		if (sec[i] == NULL) {
			snprintf(errstr, errstr_size, "section %s: missing", catalog_tags[i]);
			goto fail;
		}
	}
	if (parse_catm(m, sec[0], len[0], errstr, errstr_size) != 0)
		goto fail;
	if (parse_strtab("IIDS", sec[1], len[1], m->n_items, 1, ITEM_ID_MAX, &m->ids, errstr,
		errstr_size) != 0)
		goto fail;
	if (parse_strtab("ITTL", sec[2], len[2], m->n_items, 0, SIZE_MAX, &m->titles, errstr,
		errstr_size) != 0)
		goto fail;
	if (check_floats("EMBD", "n_items*dim", sec[3], len[3], (uint64_t)m->n_items * m->dim,
		errstr, errstr_size) != 0)
		goto fail;
	m->embd = (const float *)(const void *)sec[3];
	if (check_tree(m, sec[4], len[4], sec[7], len[7], errstr, errstr_size) != 0)
		goto fail;
	if (check_floats("TCEN", "n_nodes*dim", sec[5], len[5], (uint64_t)m->n_nodes * m->dim,
		errstr, errstr_size) != 0)
		goto fail;
	m->tcen = (const float *)(const void *)sec[5];
	if (parse_strtab("TNAM", sec[6], len[6], m->n_nodes, 0, SIZE_MAX, &m->names, errstr,
		errstr_size) != 0)
		goto fail;
	if (container_kind(m->ct) == CONTAINER_KIND_MODEL) {
		size_t hlen, wlen;
		const uint8_t *hpar = container_section(m->ct, "HPAR", &hlen);
		const uint8_t *wght = container_section(m->ct, "WGHT", &wlen);

		if (hpar == NULL || wght == NULL) {
			snprintf(errstr, errstr_size, "section %s: missing",
			    hpar == NULL ? "HPAR" : "WGHT");
			goto fail;
		}
		if (parse_hpar(hpar, hlen, &m->hp, errstr, errstr_size) != 0)
			goto fail;
		if (parse_wght(m, wght, wlen, errstr, errstr_size) != 0)
			goto fail;
		if (parse_trch(m, errstr, errstr_size) != 0)
			goto fail;
		m->has_weights = 1;
		m->item_emb_owned = malloc((size_t)m->n_items * m->dim * sizeof(float));
		if (m->item_emb_owned == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < (size_t)m->n_items * m->dim; i++)
			m->item_emb_owned[i] = m->embd[i] + m->w.R[i];
	}
	if (build_index(m, errstr, errstr_size) != 0)
		goto fail;
	return m;
fail:
	model_free(m);
	return NULL;
}

struct model *
model_load(const char *path, char *errstr, size_t errstr_size)
{
	char reason[512];
	struct model *m = model_load_inner(path, reason, sizeof(reason));

	if (m == NULL)
		snprintf(errstr, errstr_size, "%s: %s", path, reason);
	return m;
}

void
model_free(struct model *m)
{
	if (m == NULL)
		return;
	container_close(m->ct);
	for (size_t i = 0; i < m->n_own; i++)
		free(m->own[i]);
	free(m->item_emb_owned);
	free(m->item_hash);
	free(m->id_slots);
	free(m->hash_slots);
	free(m);
}

int
model_has_weights(const struct model *m)
{
	return m->has_weights;
}

uint32_t
model_n_items(const struct model *m)
{
	return m->n_items;
}

uint32_t
model_dim(const struct model *m)
{
	return m->dim;
}

uint32_t
model_n_tier1(const struct model *m)
{
	return m->n_tier1;
}

uint32_t
model_n_nodes(const struct model *m)
{
	return m->n_nodes;
}

uint32_t
model_din(const struct model *m)
{
	return m->dim + (m->has_weights ? m->hp.type_dim : 0) + 1;
}

static const char *const model_type_names[MODEL_N_TYPES] = {
	"IMPRESSION",
	"VIEW",
	"CLICK",
	"LIKE",
	"ADD_TO_CART",
	"PURCHASE",
	"SHARE",
	"DISLIKE",
};

const char *
model_event_type_name(uint32_t type)
{
	return type < MODEL_N_TYPES ? model_type_names[type] : NULL;
}

const struct model_hparams *
model_hparams(const struct model *m)
{
	return m->has_weights ? &m->hp : NULL;
}

const struct model_weights *
model_weights(const struct model *m)
{
	return m->has_weights ? &m->w : NULL;
}

const char *
model_embedder(const struct model *m)
{
	return m->embedder;
}

const float *
model_llm_embeddings(const struct model *m)
{
	return m->embd;
}

const float *
model_item_embeddings(const struct model *m)
{
	return m->item_emb_owned != NULL ? m->item_emb_owned : m->embd;
}

int32_t
model_item_lookup(const struct model *m, const char *id, size_t len)
{
	uint64_t s = model_id_hash(id, len) & m->slot_mask;

	for (; m->id_slots[s] != SLOT_EMPTY; s = (s + 1) & m->slot_mask) {
		size_t olen;
		const char *other = strtab_get(&m->ids, (uint32_t)m->id_slots[s], &olen);

		if (olen == len && memcmp(other, id, len) == 0)
			return m->id_slots[s];
	}
	return -1;
}

uint64_t
model_item_hash(const struct model *m, uint32_t item)
{
	return m->item_hash[item];
}

int32_t
model_item_lookup_hash(const struct model *m, uint64_t hash)
{
	for (uint64_t s = hash & m->slot_mask; m->hash_slots[s] != SLOT_EMPTY;
	     s = (s + 1) & m->slot_mask)
		if (m->item_hash[m->hash_slots[s]] == hash)
			return m->hash_slots[s];
	return -1;
}

const char *
model_item_id(const struct model *m, uint32_t item, size_t *len)
{
	return strtab_get(&m->ids, item, len);
}

const char *
model_item_title(const struct model *m, uint32_t item, size_t *len)
{
	return strtab_get(&m->titles, item, len);
}

uint32_t
model_item_tier1(const struct model *m, uint32_t item)
{
	return m->itir[2 * (size_t)item];
}

uint32_t
model_item_tier2(const struct model *m, uint32_t item)
{
	return m->itir[2 * (size_t)item + 1];
}

uint32_t
model_node_level(const struct model *m, uint32_t node)
{
	return m->tnod[(size_t)node * TNOD_FIELDS + 1];
}

uint32_t
model_node_parent(const struct model *m, uint32_t node)
{
	return m->tnod[(size_t)node * TNOD_FIELDS];
}

uint32_t
model_node_index(const struct model *m, uint32_t node)
{
	return m->tnod[(size_t)node * TNOD_FIELDS + 2];
}

const char *
model_node_name(const struct model *m, uint32_t node, size_t *len)
{
	return strtab_get(&m->names, node, len);
}

const float *
model_node_centroid(const struct model *m, uint32_t node)
{
	return m->tcen + (size_t)node * m->dim;
}

size_t
model_node_label(const struct model *m, uint32_t node, char *buf, size_t size)
{
	int n;

	if (node >= m->n_nodes || size == 0) {
		/* A node from an older model's state: no label. */
		if (size > 0)
			buf[0] = '\0';
		return 0;
	}
	if (model_node_level(m, node) == 1)
		n = snprintf(buf, size, "%u", model_node_index(m, node));
	else
		n = snprintf(buf, size, "%u/%u", model_node_index(m, model_node_parent(m, node)),
		    model_node_index(m, node));
	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

static void
encode_hpar(const struct model_hparams *hp, uint8_t *p)
{
	memset(p, 0, HPAR_SIZE);
	le_put_u32(p, hp->hidden);
	le_put_u32(p + 4, hp->type_dim);
	le_put_u32(p + 8, hp->n_types);
	le_put_u32(p + 12, hp->ring_len);
	le_put_u64(p + 16, hp->model_version);
	le_put_u64(p + 24, hp->train_seed);
	le_put_f32(p + 32, hp->half_life_short_s);
	le_put_f32(p + 36, hp->half_life_long_s);
	for (int t = 0; t < MODEL_N_TYPES; t++)
		le_put_f32(p + 40 + 4 * t, hp->type_weight[t]);
	le_put_u32(p + 72, hp->max_tiers);
}

int
model_write(const char *path, const struct model *cat, const struct model_hparams *hp,
    const struct model_weights *w, char *errstr, size_t errstr_size)
{
	return model_write_choice(path, cat, hp, w, NULL, errstr, errstr_size);
}

int
model_write_choice(const char *path, const struct model *cat, const struct model_hparams *hp,
    const struct model_weights *w, const char *choice, char *errstr, size_t errstr_size)
{
	struct container_writer *cw = NULL;
	struct wght_layout wl;
	uint8_t hpar[HPAR_SIZE];
	const float *arrays[8] = { w->W, w->b, w->P, w->pb, w->T, w->R, w->ib, w->alpha };
	char reason[256];
	int ret = -1;

	if (cat->ct == NULL) {
		snprintf(errstr, errstr_size,
		    "%s: an extended model (live items) cannot be written", path);
		return -1;
	}
	if (check_hparams(hp, reason, sizeof(reason)) != 0) {
		snprintf(errstr, errstr_size, "%s: %s", path, reason);
		return -1;
	}
	wght_layout(cat->dim, cat->n_items, hp, &wl);
	for (int i = 0; i < 8; i++) {
		uint64_t bad = first_nonfinite(arrays[i], wl.n[i]);

		if (bad < wl.n[i]) {
			snprintf(errstr, errstr_size, "%s: section WGHT: %s[%llu] not finite", path,
			    wght_names[i], (unsigned long long)bad);
			return -1;
		}
	}
	if (choice != NULL && strlen(choice) > MODEL_TRCH_MAX) {
		snprintf(errstr, errstr_size, "%s: section TRCH: length %zu > %d", path,
		    strlen(choice), MODEL_TRCH_MAX);
		return -1;
	}
	cw = container_writer_new(path, CONTAINER_KIND_MODEL,
	    (uint32_t)N_CATALOG_TAGS + 2 + (choice != NULL), errstr, errstr_size);
	if (cw == NULL)
		return -1;
	for (size_t i = 0; i < N_CATALOG_TAGS; i++) {
		size_t len;
		const uint8_t *data = container_section(cat->ct, catalog_tags[i], &len);

		if (container_writer_begin(cw, catalog_tags[i], errstr, errstr_size) != 0 ||
		    container_writer_append(cw, data, len, errstr, errstr_size) != 0)
			goto done;
	}
	encode_hpar(hp, hpar);
	if (container_writer_begin(cw, "HPAR", errstr, errstr_size) != 0 ||
	    container_writer_append(cw, hpar, sizeof(hpar), errstr, errstr_size) != 0 ||
	    container_writer_begin(cw, "WGHT", errstr, errstr_size) != 0)
		goto done;
	for (int i = 0; i < 8; i++)
		if (container_writer_append(
			cw, arrays[i], wl.n[i] * sizeof(float), errstr, errstr_size) != 0)
			goto done;
	if (choice != NULL &&
	    (container_writer_begin(cw, "TRCH", errstr, errstr_size) != 0 ||
		container_writer_append(cw, choice, strlen(choice), errstr, errstr_size) != 0))
		goto done;
	if (container_writer_commit(cw, errstr, errstr_size) != 0)
		goto done;
	ret = 0;
done:
	container_writer_free(cw);
	return ret;
}

/* ---- extension by live items (schemas/items.md "Items topic") -------------- */

/* malloc recorded for model_free; NULL on ENOMEM or when the table is full. */
static void *
model_own(struct model *m, size_t size)
{
	void *p;

	if (m->n_own == OWN_MAX)
		return NULL;
	p = malloc(size > 0 ? size : 1);
	if (p != NULL)
		m->own[m->n_own++] = p;
	return p;
}

static void *
model_own_copy(struct model *m, const void *src, size_t size)
{
	void *p = model_own(m, size);

	if (p != NULL && size > 0)
		memcpy(p, src, size);
	return p;
}

/* base's n_base strings followed by the ids (or titles) of items; -1 on ENOMEM/overflow. */
static int
extend_strtab(struct model *m, const struct strtab *base, uint32_t n_base,
    const struct model_item_add *items, size_t n, int titles, struct strtab *out)
{
	uint64_t bytes = base->off[n_base], pos;
	uint32_t *off;
	char *b;

	for (size_t i = 0; i < n; i++)
		bytes += titles ? items[i].title_len : items[i].id_len;
	if (bytes > UINT32_MAX)
		return -1;
	off = model_own(m, ((size_t)n_base + n + 1) * sizeof(*off));
	b = model_own(m, (size_t)bytes);
	if (off == NULL || b == NULL)
		return -1;
	memcpy(off, base->off, ((size_t)n_base + 1) * sizeof(*off));
	memcpy(b, base->bytes, base->off[n_base]);
	pos = base->off[n_base];
	for (size_t i = 0; i < n; i++) {
		const char *str = titles ? items[i].title : items[i].id;
		size_t len = titles ? items[i].title_len : items[i].id_len;

		if (len > 0)
			memcpy(b + pos, str, len);
		pos += len;
		off[(size_t)n_base + i + 1] = (uint32_t)pos;
	}
	out->off = off;
	out->bytes = b;
	return 0;
}

/* The checks of one item to add against base. */
static int
check_add(const struct model *base, const struct model_item_add *it, size_t i, char *errstr,
    size_t errstr_size)
{
	int idl = it->id_len <= ITEM_ID_MAX ? (int)it->id_len : ITEM_ID_MAX;
	uint64_t bad;

	if (it->id == NULL || it->id_len < 1 || it->id_len > ITEM_ID_MAX) {
		snprintf(errstr, errstr_size, "live item %zu: id length %zu out of range 1..%d", i,
		    it->id_len, ITEM_ID_MAX);
		return -1;
	}
	if (it->title == NULL && it->title_len > 0) {
		snprintf(errstr, errstr_size, "live item %zu (id %.*s): no title", i, idl, it->id);
		return -1;
	}
	if (model_item_lookup(base, it->id, it->id_len) >= 0) {
		snprintf(errstr, errstr_size, "live item %zu (id %.*s): already in the model", i,
		    idl, it->id);
		return -1;
	}
	if (it->tier1 >= base->n_tier1) {
		snprintf(errstr, errstr_size,
		    "live item %zu (id %.*s): tier1 %u is not a level-1 node", i, idl, it->id,
		    it->tier1);
		return -1;
	}
	if (it->tier2 < base->n_tier1 || it->tier2 >= base->n_nodes ||
	    model_node_parent(base, it->tier2) != it->tier1) {
		snprintf(errstr, errstr_size,
		    "live item %zu (id %.*s): tier2 %u is not a child of node %u", i, idl, it->id,
		    it->tier2, it->tier1);
		return -1;
	}
	bad = first_nonfinite(it->embedding, base->dim);
	if (bad < base->dim) {
		snprintf(errstr, errstr_size, "live item %zu (id %.*s): embedding[%llu] not finite",
		    i, idl, it->id, (unsigned long long)bad);
		return -1;
	}
	return 0;
}

/*
 * R rows and biases of the new items: the mean over base's items of their
 * tier-2 node, else tier-1 node, else all items. Only the nodes the new
 * items name are summed (one pass over base's items).
 */
static int
extend_residuals(const struct model *base, const struct model_item_add *items, size_t n,
    float *r_new, float *ib_new)
{
	size_t dim = base->dim, n_slots = 1; /* slot 0: every item */
	int32_t *slot_of = malloc((size_t)base->n_nodes * sizeof(*slot_of));
	size_t max_slots =
	    2 * n + 1 < (size_t)base->n_nodes + 1 ? 2 * n + 1 : (size_t)base->n_nodes + 1;
	double *sum = NULL, *bsum = NULL;
	uint64_t *cnt = NULL;
	int ret = -1;

	sum = calloc(max_slots * dim, sizeof(*sum));
	bsum = calloc(max_slots, sizeof(*bsum));
	cnt = calloc(max_slots, sizeof(*cnt));
	if (slot_of == NULL || sum == NULL || bsum == NULL || cnt == NULL)
		goto done;
	for (uint32_t k = 0; k < base->n_nodes; k++)
		slot_of[k] = SLOT_EMPTY;
	for (size_t i = 0; i < n; i++) {
		uint32_t nodes[2] = { items[i].tier1, items[i].tier2 };

		for (int j = 0; j < 2; j++)
			if (slot_of[nodes[j]] == SLOT_EMPTY)
				slot_of[nodes[j]] = (int32_t)n_slots++;
	}
	for (uint32_t it = 0; it < base->n_items; it++) {
		int32_t slots[3] = { 0, slot_of[base->itir[2 * (size_t)it]],
			slot_of[base->itir[2 * (size_t)it + 1]] };
		const float *r = base->w.R + (size_t)it * dim;

		for (int j = 0; j < 3; j++) {
			double *acc;

			if (slots[j] == SLOT_EMPTY)
				continue;
			acc = sum + (size_t)slots[j] * dim;
			for (size_t d = 0; d < dim; d++)
				acc[d] += (double)r[d];
			bsum[slots[j]] += (double)base->w.ib[it];
			cnt[slots[j]]++;
		}
	}
	for (size_t i = 0; i < n; i++) {
		int32_t s = slot_of[items[i].tier2];

		if (cnt[s] == 0)
			s = slot_of[items[i].tier1];
		if (cnt[s] == 0)
			s = 0;
		for (size_t d = 0; d < dim; d++)
			r_new[i * dim + d] = (float)(sum[(size_t)s * dim + d] / (double)cnt[s]);
		ib_new[i] = (float)(bsum[s] / (double)cnt[s]);
	}
	ret = 0;
done:
	free(slot_of);
	free(sum);
	free(bsum);
	free(cnt);
	return ret;
}

/* Copies base's weights, R and ib grown by the new items' rows. */
static int
extend_weights(
    struct model *m, const struct model *base, const struct model_item_add *items, size_t n)
{
	struct wght_layout wl;
	float *r, *ib;
	const float **dst[8] = { &m->w.W, &m->w.b, &m->w.P, &m->w.pb, &m->w.T, &m->w.R, &m->w.ib,
		&m->w.alpha };
	const float *src[8] = { base->w.W, base->w.b, base->w.P, base->w.pb, base->w.T, base->w.R,
		base->w.ib, base->w.alpha };

	wght_layout(base->dim, base->n_items, &base->hp, &wl);
	for (int i = 0; i < 8; i++) {
		if (i == 5 || i == 6)
			continue;
		*dst[i] = model_own_copy(m, src[i], (size_t)wl.n[i] * sizeof(float));
		if (*dst[i] == NULL)
			return -1;
	}
	r = model_own(m, (size_t)m->n_items * m->dim * sizeof(float));
	ib = model_own(m, (size_t)m->n_items * sizeof(float));
	if (r == NULL || ib == NULL)
		return -1;
	memcpy(r, base->w.R, (size_t)wl.n[5] * sizeof(float));
	memcpy(ib, base->w.ib, (size_t)wl.n[6] * sizeof(float));
	if (extend_residuals(base, items, n, r + wl.n[5], ib + base->n_items) != 0)
		return -1;
	m->w.R = r;
	m->w.ib = ib;
	return 0;
}

struct model *
model_extend(const struct model *base, const struct model_item_add *items, size_t n, char *errstr,
    size_t errstr_size)
{
	struct model *m;
	size_t dim = base->dim, nb = base->n_items;
	float *embd;
	uint32_t *itir;
	char reason[512];

	if ((uint64_t)nb + n > MAX_ITEMS) {
		snprintf(
		    errstr, errstr_size, "live items: %zu + %zu items exceed %u", nb, n, MAX_ITEMS);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (check_add(base, &items[i], i, errstr, errstr_size) != 0)
			return NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		goto oom;
	m->n_items = (uint32_t)(nb + n);
	m->dim = base->dim;
	m->n_tier1 = base->n_tier1;
	m->n_nodes = base->n_nodes;
	memcpy(m->embedder, base->embedder, sizeof(m->embedder));
	if (extend_strtab(m, &base->ids, base->n_items, items, n, 0, &m->ids) != 0 ||
	    extend_strtab(m, &base->titles, base->n_items, items, n, 1, &m->titles) != 0)
		goto oom;
	/* Node names: a table of n_nodes strings, copied whole. */
	m->names.off = model_own_copy(
	    m, base->names.off, ((size_t)base->n_nodes + 1) * sizeof(*base->names.off));
	m->names.bytes = model_own_copy(m, base->names.bytes, base->names.off[base->n_nodes]);
	m->tnod = model_own_copy(m, base->tnod, (size_t)base->n_nodes * TNOD_FIELDS * 4);
	m->tcen = model_own_copy(m, base->tcen, (size_t)base->n_nodes * dim * sizeof(float));
	embd = model_own(m, (nb + n) * dim * sizeof(float));
	itir = model_own(m, (nb + n) * ITIR_FIELDS * sizeof(uint32_t));
	if (m->names.off == NULL || m->names.bytes == NULL || m->tnod == NULL || m->tcen == NULL ||
	    embd == NULL || itir == NULL)
		goto oom;
	memcpy(embd, base->embd, nb * dim * sizeof(float));
	memcpy(itir, base->itir, nb * ITIR_FIELDS * sizeof(uint32_t));
	for (size_t i = 0; i < n; i++) {
		memcpy(embd + (nb + i) * dim, items[i].embedding, dim * sizeof(float));
		itir[(nb + i) * ITIR_FIELDS] = items[i].tier1;
		itir[(nb + i) * ITIR_FIELDS + 1] = items[i].tier2;
	}
	m->embd = embd;
	m->itir = itir;
	if (base->has_weights) {
		m->has_weights = 1;
		m->hp = base->hp;
		if (extend_weights(m, base, items, n) != 0)
			goto oom;
		m->item_emb_owned = malloc((size_t)m->n_items * dim * sizeof(float));
		if (m->item_emb_owned == NULL)
			goto oom;
		for (size_t i = 0; i < (size_t)m->n_items * dim; i++)
			m->item_emb_owned[i] = m->embd[i] + m->w.R[i];
	}
	if (build_index(m, reason, sizeof(reason)) != 0) {
		snprintf(errstr, errstr_size, "live items: %s", reason);
		model_free(m);
		return NULL;
	}
	return m;
oom:
	snprintf(errstr, errstr_size, "live items: out of memory");
	model_free(m);
	return NULL;
}

void
model_tree_sections(
    const struct model *m, const void **tnod, size_t *tnod_len, const void **tcen, size_t *tcen_len)
{
	*tnod = m->tnod;
	*tnod_len = (size_t)m->n_nodes * TNOD_FIELDS * 4;
	*tcen = m->tcen;
	*tcen_len = (size_t)m->n_nodes * m->dim * sizeof(float);
}
