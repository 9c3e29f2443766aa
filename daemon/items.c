/*
 * Live catalog items: the topic.items reader (its own consumer, every
 * partition assigned from the beginning), the ItemUpdate decoder and
 * validation (schemas/item_update.avsc, schemas/items.md "Items topic"),
 * the live-item table and the model built from it.
 */
#include "clock.h"
#include "items.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "binary.h"
#include "config.h"
#include "dlq.h"
#include "log.h"
#include "modelfile.h"
#include "schemas.h"

#define ITEMS_ID_MAX           255  /* as item ids in model files */
#define ITEMS_TITLE_MAX        4096 /* as event strings (DECODE_MAX_STRING_BYTES) */
#define ITEMS_EMBEDDER_MAX     64   /* CATM embedder field */
#define ITEMS_DIM_MAX          4096 /* as model files */
#define ITEMS_NORM_TOL         1e-3
#define ITEMS_POLL_MAX         4096  /* records taken per items_poll */
#define ITEMS_META_EVERY_MS    2000  /* partition look-up while the topic is missing */
#define ITEMS_META_IDLE_MS     30000 /* and once it has partitions */
#define ITEMS_META_TIMEOUT_MS  500   /* from the loop */
#define ITEMS_META_RETRY_MS    30000 /* after a failed look-up (broker unreachable) */
#define ITEMS_CATCH_UP_META_MS 5000  /* at start-up (the first connection included) */
#define ITEMS_WATERMARK_MS     2000
#define ITEMS_DLQ_BLOCK_MS     1000
#define ITEMS_ERR_MAX          512
#define ITEMS_DETAIL_MAX       160
#define ITEMS_SLOT_EMPTY       SIZE_MAX

static const char *const items_refusal_names[ITEMS_N_REFUSALS] = { "decode", "key", "item_id",
	"title", "embedder", "dim", "embedding", "tier1", "tier2", "tree" };

/* One live item: everything model_extend needs, plus what a rebuild checks again. */
struct live_item {
	char *id;
	size_t id_len;
	char *title;
	size_t title_len;
	float *emb; /* [dim] */
	uint32_t dim;
	uint32_t tier1, tier2;
	char embedder[ITEMS_EMBEDDER_MAX + 1];
	char tree[ITEMS_TREE_FP_LEN + 1];
};

/* A decoded ItemUpdate; strings point into the message. */
struct item_update {
	const char *id, *title, *embedder, *tree;
	size_t id_len, title_len, embedder_len, tree_len;
	const uint8_t *emb;
	size_t emb_len;
	int32_t dim, tier1, tier2;
	int64_t ts_ms;
};

struct items {
	rd_kafka_t *rk;
	char *topic;
	struct dlq *dlq;
	const struct model *base;
	char tree[ITEMS_TREE_FP_LEN + 1];              /* base's */
	uint8_t fingerprint[SCHEMAS_FINGERPRINT_SIZE]; /* single-object header bytes 2..9 */

	int32_t n_parts; /* partitions assigned (0: topic not seen yet) */
	int64_t *next;   /* [n_parts] next offset to read, or RD_KAFKA_OFFSET_BEGINNING */
	uint8_t *eof;    /* [n_parts] reached the end once */
	int64_t next_meta_ms;

	struct live_item *live; /* [n_live], table order */
	size_t n_live, cap_live;
	size_t *slots; /* open addressing by id hash: index into live, or ITEMS_SLOT_EMPTY */
	size_t cap_slots;
	int pending;
	struct items_counters n;
};

const char *
items_refusal_name(enum items_refusal r)
{
	return (unsigned)r < ITEMS_N_REFUSALS ? items_refusal_names[r] : "unknown";
}

int
items_tree_fingerprint(const struct model *m, char out[ITEMS_TREE_FP_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	const void *tnod, *tcen;
	size_t tnod_len, tcen_len;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok;

	out[0] = '\0';
	model_tree_sections(m, &tnod, &tnod_len, &tcen, &tcen_len);
	ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, tnod, tnod_len) == 1 &&
	    EVP_DigestUpdate(md, tcen, tcen_len) == 1 && EVP_DigestFinal_ex(md, d, &n) == 1 &&
	    n == ITEMS_TREE_FP_LEN / 2;
	EVP_MD_CTX_free(md);
	if (!ok) {
		ERR_clear_error();
		return -1;
	}
	for (unsigned int i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[ITEMS_TREE_FP_LEN] = '\0';
	return 0;
}

/* ---- the table ------------------------------------------------------------- */

static void
live_item_fini(struct live_item *li)
{
	free(li->id);
	free(li->title);
	free(li->emb);
}

/* Index of id in the table, or ITEMS_SLOT_EMPTY; *slot gets the probe's end. */
static size_t
items_find(const struct items *it, const char *id, size_t len, size_t *slot)
{
	size_t s;

	if (it->cap_slots == 0) {
		*slot = ITEMS_SLOT_EMPTY;
		return ITEMS_SLOT_EMPTY;
	}
	for (s = model_id_hash(id, len) & (it->cap_slots - 1); it->slots[s] != ITEMS_SLOT_EMPTY;
	     s = (s + 1) & (it->cap_slots - 1)) {
		const struct live_item *li = &it->live[it->slots[s]];

		if (li->id_len == len && memcmp(li->id, id, len) == 0) {
			*slot = s;
			return it->slots[s];
		}
	}
	*slot = s;
	return ITEMS_SLOT_EMPTY;
}

/* Rebuilds the index for cap slots (a power of two over 2 * n_live). -1 on ENOMEM. */
static int
items_reindex(struct items *it, size_t cap)
{
	size_t *ns = malloc(cap * sizeof(*ns)), slot;

	if (ns == NULL)
		return -1;
	free(it->slots);
	it->slots = ns;
	it->cap_slots = cap;
	for (size_t s = 0; s < cap; s++)
		ns[s] = ITEMS_SLOT_EMPTY;
	for (size_t i = 0; i < it->n_live; i++) {
		items_find(it, it->live[i].id, it->live[i].id_len, &slot);
		ns[slot] = i;
	}
	return 0;
}

/* Takes li into the table (replacing a record of the same id). -1 on ENOMEM (li freed). */
static int
items_put(struct items *it, struct live_item *li)
{
	size_t slot, idx = items_find(it, li->id, li->id_len, &slot);

	if (idx != ITEMS_SLOT_EMPTY) {
		live_item_fini(&it->live[idx]);
		it->live[idx] = *li;
		return 0;
	}
	if (it->n_live == it->cap_live) {
		size_t cap = it->cap_live ? 2 * it->cap_live : 64;
		struct live_item *nl = realloc(it->live, cap * sizeof(*nl));

		if (nl == NULL)
			goto oom;
		it->live = nl;
		it->cap_live = cap;
	}
	it->live[it->n_live++] = *li;
	if (2 * it->n_live > it->cap_slots) {
		size_t cap = it->cap_slots ? 2 * it->cap_slots : 128;

		if (items_reindex(it, cap) != 0) {
			it->n_live--;
			goto oom;
		}
	} else {
		it->slots[slot] = it->n_live - 1;
	}
	return 0;
oom:
	live_item_fini(li);
	return -1;
}

/* Removes id; 1 if it was there. */
static int
items_remove(struct items *it, const char *id, size_t len)
{
	size_t slot, idx = items_find(it, id, len, &slot);

	if (idx == ITEMS_SLOT_EMPTY)
		return 0;
	live_item_fini(&it->live[idx]);
	it->live[idx] = it->live[--it->n_live];
	/* Deletions are rare (tombstones): a fresh index keeps probing simple. */
	if (items_reindex(it, it->cap_slots) != 0)
		log_error("event=items_reindex_failed error=\"out of memory\"");
	return 1;
}

/* ---- decoding -------------------------------------------------------------- */

struct rd {
	const uint8_t *p, *end;
};

/* Avro zig-zag varint (avro/binary.h); -1 when truncated or longer than 64 bits. */
static int
rd_long(struct rd *r, int64_t *v)
{
	return avro_read_long(&r->p, r->end, v) == AVRO_READ_OK ? 0 : -1;
}

static int
rd_int(struct rd *r, int32_t *v)
{
	int64_t l;

	if (rd_long(r, &l) != 0 || l < INT32_MIN || l > INT32_MAX)
		return -1;
	*v = (int32_t)l;
	return 0;
}

/* string or bytes: a length, then that many bytes. */
static int
rd_bytes(struct rd *r, const uint8_t **p, size_t *len)
{
	int64_t l;

	if (rd_long(r, &l) != 0 || l < 0 || l > r->end - r->p)
		return -1;
	*p = r->p;
	*len = (size_t)l;
	r->p += l;
	return 0;
}

static int
rd_str(struct rd *r, const char **s, size_t *len)
{
	const uint8_t *p;

	if (rd_bytes(r, &p, len) != 0)
		return -1;
	*s = (const char *)p;
	return 0;
}

/* Single-object ItemUpdate into u; 0, or -1 with the problem in detail. */
static int
items_decode(const struct items *it, const uint8_t *buf, size_t len, struct item_update *u,
    char *detail, size_t detail_size)
{
	struct rd r = { buf + 10, buf + len };

	if (len < 10 || buf[0] != 0xC3 || buf[1] != 0x01) {
		snprintf(detail, detail_size, "not Avro single-object encoding (C3 01 header)");
		return -1;
	}
	if (memcmp(buf + 2, it->fingerprint, sizeof(it->fingerprint)) != 0) {
		snprintf(detail, detail_size, "writer fingerprint is not ItemUpdate's");
		return -1;
	}
	if (rd_str(&r, &u->id, &u->id_len) != 0 || rd_str(&r, &u->title, &u->title_len) != 0 ||
	    rd_str(&r, &u->embedder, &u->embedder_len) != 0 || rd_int(&r, &u->dim) != 0 ||
	    rd_bytes(&r, &u->emb, &u->emb_len) != 0 || rd_int(&r, &u->tier1) != 0 ||
	    rd_int(&r, &u->tier2) != 0 || rd_str(&r, &u->tree, &u->tree_len) != 0 ||
	    rd_long(&r, &u->ts_ms) != 0) {
		snprintf(detail, detail_size, "Avro body truncated or malformed");
		return -1;
	}
	if (r.p != r.end) {
		snprintf(detail, detail_size, "%zu trailing bytes", (size_t)(r.end - r.p));
		return -1;
	}
	return 0;
}

/* Checks u against base; ITEMS_N_REFUSALS when it fits, else the refusal (detail set). */
static enum items_refusal
items_check(const struct model *base, const char *tree, const struct item_update *u,
    const void *key, size_t key_len, char *detail, size_t detail_size)
{
	const char *emb = model_embedder(base);
	uint32_t dim = model_dim(base);
	double norm = 0;

	if (u->id_len < 1 || u->id_len > ITEMS_ID_MAX) {
		snprintf(detail, detail_size, "item_id length %zu out of range 1..%d", u->id_len,
		    ITEMS_ID_MAX);
		return ITEMS_BAD_ITEM_ID;
	}
	if (key == NULL || key_len != u->id_len || memcmp(key, u->id, key_len) != 0) {
		snprintf(detail, detail_size, "key is not the item_id");
		return ITEMS_BAD_KEY;
	}
	if (u->title_len > ITEMS_TITLE_MAX) {
		snprintf(detail, detail_size, "title of %zu bytes over %d", u->title_len,
		    ITEMS_TITLE_MAX);
		return ITEMS_BAD_TITLE;
	}
	if (u->embedder_len != strlen(emb) || memcmp(u->embedder, emb, u->embedder_len) != 0) {
		snprintf(detail, detail_size, "embedder \"%.*s\", the model's is \"%s\"",
		    (int)(u->embedder_len < ITEMS_EMBEDDER_MAX ? u->embedder_len
							       : ITEMS_EMBEDDER_MAX),
		    u->embedder, emb);
		return ITEMS_BAD_EMBEDDER;
	}
	if (u->dim < 0 || (uint32_t)u->dim != dim) {
		snprintf(
		    detail, detail_size, "dim %" PRId32 ", the model's is %" PRIu32, u->dim, dim);
		return ITEMS_BAD_DIM;
	}
	if (u->tree_len != ITEMS_TREE_FP_LEN || memcmp(u->tree, tree, u->tree_len) != 0) {
		snprintf(
		    detail, detail_size, "tree fingerprint is not the model's (%.16s...)", tree);
		return ITEMS_BAD_TREE;
	}
	if (u->emb_len != (size_t)dim * sizeof(float)) {
		snprintf(detail, detail_size, "embedding of %zu bytes, dim*4 = %zu", u->emb_len,
		    (size_t)dim * sizeof(float));
		return ITEMS_BAD_EMBEDDING;
	}
	for (uint32_t d = 0; d < dim; d++) {
		float f;

		memcpy(&f, u->emb + 4 * (size_t)d, sizeof(f)); /* little-endian hosts only */
		if (!isfinite(f)) {
			snprintf(detail, detail_size, "embedding[%" PRIu32 "] not finite", d);
			return ITEMS_BAD_EMBEDDING;
		}
		norm += (double)f * f;
	}
	norm = sqrt(norm);
	if (fabs(norm - 1.0) > ITEMS_NORM_TOL) {
		snprintf(detail, detail_size, "embedding norm %.6g, must be 1 within %g", norm,
		    ITEMS_NORM_TOL);
		return ITEMS_BAD_EMBEDDING;
	}
	if (u->tier1 < 0 || (uint32_t)u->tier1 >= model_n_tier1(base)) {
		snprintf(detail, detail_size,
		    "tier1 %" PRId32 " is not a level-1 node (0..%" PRIu32 ")", u->tier1,
		    model_n_tier1(base) - 1);
		return ITEMS_BAD_TIER1;
	}
	if (u->tier2 < (int32_t)model_n_tier1(base) || (uint32_t)u->tier2 >= model_n_nodes(base) ||
	    model_node_parent(base, (uint32_t)u->tier2) != (uint32_t)u->tier1) {
		snprintf(detail, detail_size, "tier2 %" PRId32 " is not a child of node %" PRId32,
		    u->tier2, u->tier1);
		return ITEMS_BAD_TIER2;
	}
	return ITEMS_N_REFUSALS;
}

/* A live_item copied out of a checked update; -1 on ENOMEM. */
static int
live_item_init(struct live_item *li, const struct item_update *u, const char *tree)
{
	memset(li, 0, sizeof(*li));
	li->id = malloc(u->id_len);
	li->title = malloc(u->title_len > 0 ? u->title_len : 1);
	li->emb = malloc(u->emb_len);
	if (li->id == NULL || li->title == NULL || li->emb == NULL) {
		live_item_fini(li);
		return -1;
	}
	memcpy(li->id, u->id, u->id_len);
	li->id_len = u->id_len;
	if (u->title_len > 0)
		memcpy(li->title, u->title, u->title_len);
	li->title_len = u->title_len;
	memcpy(li->emb, u->emb, u->emb_len);
	li->dim = (uint32_t)u->dim;
	li->tier1 = (uint32_t)u->tier1;
	li->tier2 = (uint32_t)u->tier2;
	memcpy(li->embedder, u->embedder, u->embedder_len);
	li->embedder[u->embedder_len] = '\0';
	memcpy(li->tree, tree, sizeof(li->tree));
	return 0;
}

static void
items_refuse(
    struct items *it, const rd_kafka_message_t *rkm, enum items_refusal r, const char *detail)
{
	char reason[64];
	rd_kafka_resp_err_t err;

	snprintf(reason, sizeof(reason), "bad_item_update:%s", items_refusal_name(r));
	it->n.refused[r]++;
	err = dlq_send(it->dlq, rkm, reason, detail, ITEMS_DLQ_BLOCK_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		it->n.dlq_failed++;
		log_warn("event=item_update_dead_letter_failed reason=%s partition=%" PRId32
			 " offset=%" PRId64 " error=\"%s\"",
		    reason, rkm->partition, rkm->offset, rd_kafka_err2str(err));
	}
	log_debug("event=item_update_refused reason=%s detail=\"%s\" partition=%" PRId32
		  " offset=%" PRId64,
	    reason, detail, rkm->partition, rkm->offset);
}

/* One record of topic.items. */
static void
items_handle(struct items *it, const rd_kafka_message_t *rkm)
{
	char detail[ITEMS_DETAIL_MAX];
	struct item_update u;
	struct live_item li;
	enum items_refusal r;

	it->n.records++;
	if (rkm->payload == NULL) { /* a tombstone */
		if (rkm->key == NULL || rkm->key_len < 1 || rkm->key_len > ITEMS_ID_MAX) {
			items_refuse(
			    it, rkm, ITEMS_BAD_KEY, "tombstone without a valid item id key");
			return;
		}
		if (model_item_lookup(it->base, rkm->key, rkm->key_len) >= 0) {
			it->n.known++;
		} else if (items_remove(it, rkm->key, rkm->key_len)) {
			it->n.withdrawn++;
			it->pending = 1;
		}
		return;
	}
	if (items_decode(it, rkm->payload, rkm->len, &u, detail, sizeof(detail)) != 0) {
		items_refuse(it, rkm, ITEMS_BAD_DECODE, detail);
		return;
	}
	r = items_check(it->base, it->tree, &u, rkm->key, rkm->key_len, detail, sizeof(detail));
	if (r != ITEMS_N_REFUSALS) {
		items_refuse(it, rkm, r, detail);
		return;
	}
	if (model_item_lookup(it->base, u.id, u.id_len) >= 0) {
		it->n.known++; /* the model file is authoritative for its own items */
		return;
	}
	if (live_item_init(&li, &u, it->tree) != 0 || items_put(it, &li) != 0) {
		log_error("event=item_update_dropped error=\"out of memory\" offset=%" PRId64,
		    rkm->offset);
		return;
	}
	it->n.added++;
	it->pending = 1;
}

/* ---- the consumer ---------------------------------------------------------- */

static void
items_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	log_warn("event=items_consumer_error error=\"%s\" detail=\"%s\"",
	    rd_kafka_err2str((rd_kafka_resp_err_t)err), reason);
}

/* The reader's conf (config_kafka_conf) with our callbacks. */
static rd_kafka_conf_t *
items_kafka_conf(const struct config *cfg, char *errstr, size_t errstr_size)
{
	rd_kafka_conf_t *conf =
	    config_kafka_conf(cfg, CONFIG_KAFKA_ITEMS_CONSUMER, errstr, errstr_size);

	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_error_cb(conf, items_error_cb);
	rd_kafka_conf_set_log_cb(conf, log_kafka_cb);
	return conf;
}

struct items *
items_new(const struct config *cfg, const struct model *base, struct dlq *dlq, char *errstr,
    size_t errstr_size)
{
	struct items *it = calloc(1, sizeof(*it));
	rd_kafka_conf_t *conf;
	rd_kafka_resp_err_t kerr;
	char err[ITEMS_ERR_MAX];

	if (it == NULL || (it->topic = strdup(cfg->topic_items)) == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	it->dlq = dlq;
	items_set_base(it, base);
	if (schemas_fingerprint(schemas_item_update_avsc, schemas_item_update_avsc_len,
		it->fingerprint, err, sizeof(err)) != 0) {
		snprintf(errstr, errstr_size, "ItemUpdate schema: %s", err); /* our bug */
		goto fail;
	}
	conf = items_kafka_conf(cfg, errstr, errstr_size);
	if (conf == NULL)
		goto fail;
	it->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (it->rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(errstr, errstr_size, "kafka (items consumer): %s", err);
		goto fail;
	}
	rd_kafka_poll_set_consumer(it->rk);
	kerr = rd_kafka_set_log_queue(it->rk, NULL);
	if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("event=kafka_log_queue_failed client=%s error=\"%s\"",
		    rd_kafka_name(it->rk), rd_kafka_err2str(kerr));
	return it;
fail:
	items_free(it);
	return NULL;
}

void
items_free(struct items *it)
{
	if (it == NULL)
		return;
	if (it->rk != NULL) {
		rd_kafka_consumer_close(it->rk);
		rd_kafka_destroy(it->rk);
	}
	for (size_t i = 0; i < it->n_live; i++)
		live_item_fini(&it->live[i]);
	free(it->live);
	free(it->slots);
	free(it->next);
	free(it->eof);
	free(it->topic);
	free(it);
}

void
items_set_base(struct items *it, const struct model *base)
{
	it->base = base;
	if (items_tree_fingerprint(base, it->tree) != 0)
		log_error(
		    "event=items_tree_fingerprint_failed error=\"SHA-256 failed in libcrypto\" "
		    "action=refuse_updates");
}

/*
 * Looks the topic up (waiting at most timeout_ms) and assigns any partition
 * not assigned yet (from the beginning; the others where they are). Returns
 * the partition count, 0 when the topic does not exist, -1 when the look-up
 * failed. Sets when to look again.
 */
static int
items_refresh(struct items *it, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(it->rk, it->topic, NULL);
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	int32_t n;
	int64_t *nn;
	uint8_t *ne;

	it->next_meta_ms = clock_mono_ms() + ITEMS_META_RETRY_MS;
	if (rkt == NULL)
		return -1;
	err = rd_kafka_metadata(it->rk, 0, rkt, &md, timeout_ms);
	rd_kafka_topic_destroy(rkt);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_debug("event=items_metadata_failed topic=%s error=\"%s\"", it->topic,
		    rd_kafka_err2str(err));
		return -1;
	}
	it->next_meta_ms =
	    clock_mono_ms() + (it->n_parts > 0 ? ITEMS_META_IDLE_MS : ITEMS_META_EVERY_MS);
	if (md->topic_cnt < 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_metadata_destroy(md);
		return 0;
	}
	n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	if (n <= it->n_parts)
		return it->n_parts;
	nn = realloc(it->next, (size_t)n * sizeof(*nn));
	if (nn == NULL)
		return -1;
	it->next = nn;
	ne = realloc(it->eof, (size_t)n * sizeof(*ne));
	if (ne == NULL)
		return -1;
	it->eof = ne;
	for (int32_t p = it->n_parts; p < n; p++) {
		it->next[p] = RD_KAFKA_OFFSET_BEGINNING;
		it->eof[p] = 0;
	}
	l = rd_kafka_topic_partition_list_new(n);
	for (int32_t p = 0; p < n; p++)
		rd_kafka_topic_partition_list_add(l, it->topic, p)->offset = it->next[p];
	err = rd_kafka_assign(it->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("event=items_assign_failed topic=%s error=\"%s\"", it->topic,
		    rd_kafka_err2str(err));
		return -1;
	}
	it->next_meta_ms = clock_mono_ms() + ITEMS_META_IDLE_MS;
	log_info("event=items_assigned topic=%s partitions=%" PRId32 " new=%" PRId32, it->topic, n,
	    n - it->n_parts);
	it->n_parts = n;
	return n;
}

/* Takes up to max records waiting at most timeout_ms for the first. */
static void
items_consume(struct items *it, int timeout_ms, int max)
{
	for (int i = 0; i < max; i++) {
		rd_kafka_message_t *rkm = rd_kafka_consumer_poll(it->rk, i == 0 ? timeout_ms : 0);

		if (rkm == NULL)
			return;
		if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (rkm->partition >= 0 && rkm->partition < it->n_parts)
				it->eof[rkm->partition] = 1;
		} else if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_warn("event=items_consume_error topic=%s error=\"%s\"", it->topic,
			    rd_kafka_message_errstr(rkm));
		} else {
			if (rkm->partition >= 0 && rkm->partition < it->n_parts)
				it->next[rkm->partition] = rkm->offset + 1;
			items_handle(it, rkm);
		}
		rd_kafka_message_destroy(rkm);
	}
}

int
items_catch_up(struct items *it, int timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms, *high = NULL;
	int32_t n = items_refresh(
	    it, timeout_ms < ITEMS_CATCH_UP_META_MS ? timeout_ms : ITEMS_CATCH_UP_META_MS);
	int ret = 1;

	if (n <= 0) {
		log_info("event=items_catch_up topic=%s partitions=0 note=\"%s\"", it->topic,
		    n == 0 ? "topic not there yet: looked up again every 2 s"
			   : "topic look-up failed: retried in 30 s");
		return n == 0 ? 0 : 1;
	}
	high = calloc((size_t)n, sizeof(*high));
	if (high == NULL)
		return 1;
	for (int32_t p = 0; p < n; p++) {
		int64_t lo;

		if (rd_kafka_query_watermark_offsets(it->rk, it->topic, p, &lo, &high[p],
			ITEMS_WATERMARK_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
			high[p] = INT64_MAX; /* unknown: wait for the end of the partition */
		else if (high[p] <= lo)
			high[p] = 0; /* empty */
	}
	for (;;) {
		int done = 1;

		for (int32_t p = 0; p < n && done; p++)
			if (!it->eof[p] &&
			    (high[p] > 0 && (it->next[p] < 0 || it->next[p] < high[p])))
				done = 0;
		if (done) {
			ret = 0;
			break;
		}
		if (clock_mono_ms() >= deadline)
			break;
		items_consume(it, 100, ITEMS_POLL_MAX);
	}
	free(high);
	if (ret != 0)
		log_warn("event=items_catch_up_timeout topic=%s timeout_ms=%d live_items=%zu "
			 "note=\"the rest is read while events are consumed\"",
		    it->topic, timeout_ms, it->n_live);
	else
		log_info("event=items_caught_up topic=%s partitions=%" PRId32 " records=%" PRIu64
			 " live_items=%zu",
		    it->topic, n, it->n.records, it->n_live);
	return ret;
}

void
items_poll(struct items *it)
{
	if (clock_mono_ms() >= it->next_meta_ms)
		items_refresh(it, ITEMS_META_TIMEOUT_MS);
	if (it->n_parts > 0)
		items_consume(it, 0, ITEMS_POLL_MAX);
}

int
items_pending(const struct items *it)
{
	return it->pending;
}

int
items_build(struct items *it, const struct model *base, struct model **out, char *errstr,
    size_t errstr_size)
{
	struct model_item_add *add = NULL;
	char tree[ITEMS_TREE_FP_LEN + 1];
	const char *emb = model_embedder(base);
	size_t n = 0, stale = 0;
	struct model *m = NULL;

	*out = NULL;
	if (items_tree_fingerprint(base, tree) != 0) {
		snprintf(errstr, errstr_size,
		    "live items: SHA-256 of the tier tree failed in libcrypto");
		return -1;
	}
	if (it->n_live > 0 && (add = calloc(it->n_live, sizeof(*add))) == NULL) {
		snprintf(errstr, errstr_size, "live items: out of memory");
		return -1;
	}
	for (size_t i = 0; i < it->n_live; i++) {
		const struct live_item *li = &it->live[i];

		if (model_item_lookup(base, li->id, li->id_len) >= 0)
			continue; /* the model file has it now */
		if (li->dim != model_dim(base) || strcmp(li->embedder, emb) != 0 ||
		    strcmp(li->tree, tree) != 0) {
			stale++;
			continue;
		}
		add[n++] = (struct model_item_add){ li->id, li->id_len, li->title, li->title_len,
			li->emb, li->tier1, li->tier2 };
	}
	if (stale > 0) {
		it->n.stale += stale;
		log_warn("event=live_items_stale count=%zu note=\"placed against another catalog "
			 "(embedder, dim or tier tree): left out until republished\"",
		    stale);
	}
	if (n > 0) {
		m = model_extend(base, add, n, errstr, errstr_size);
		if (m == NULL) {
			free(add);
			return -1;
		}
	}
	free(add);
	*out = m;
	return 0;
}

void
items_applied(struct items *it)
{
	it->pending = 0;
}

size_t
items_live(const struct items *it)
{
	return it->n_live;
}

const struct items_counters *
items_counters(const struct items *it)
{
	return &it->n;
}
