/*
 * The loaded catalog or model file (format: schemas/modelfile.md): mapped
 * read-only, validated once on load, then shared by every user update.
 */
#ifndef MODEL_MODELFILE_H
#define MODEL_MODELFILE_H

#include <stddef.h>
#include <stdint.h>

#define MODEL_N_TYPES   8 /* BehaviourEvent.type symbols */
#define MODEL_NODE_NONE UINT32_MAX

/* Event types, in the order of the Avro enum (schemas/behaviour_event.avsc). */
enum model_event_type {
	MODEL_EV_IMPRESSION = 0,
	MODEL_EV_VIEW,
	MODEL_EV_CLICK,
	MODEL_EV_LIKE,
	MODEL_EV_ADD_TO_CART,
	MODEL_EV_PURCHASE,
	MODEL_EV_SHARE,
	MODEL_EV_DISLIKE
};

/* The Avro symbol of an event type ("VIEW"), or NULL when type >= MODEL_N_TYPES. */
const char *model_event_type_name(uint32_t type);

/* Hyper-parameters (section HPAR). */
struct model_hparams {
	uint32_t hidden;   /* H */
	uint32_t type_dim; /* E */
	uint32_t n_types;  /* MODEL_N_TYPES */
	uint32_t ring_len; /* K */
	uint64_t model_version;
	uint64_t train_seed;
	float half_life_short_s;
	float half_life_long_s;
	float type_weight[MODEL_N_TYPES];
	uint32_t max_tiers;
};

/*
 * Learned weights (section WGHT), pointers into the mapping (or into the
 * trainer's buffers). Shapes in schemas/modelfile.md.
 */
struct model_weights {
	const float *W;     /* [4H][din+H] */
	const float *b;     /* [4H] */
	const float *P;     /* [dim][H] */
	const float *pb;    /* [dim] */
	const float *T;     /* [n_types][E] */
	const float *R;     /* [n_items][dim] */
	const float *ib;    /* [n_items] */
	const float *alpha; /* [4] */
};

struct model;

/*
 * Maps and validates a catalog (kind 1) or model (kind 2) file. Returns NULL
 * with a message naming the section or field ("section EMBD: bad checksum")
 * in errstr. A catalog has no weights: model_has_weights() is 0.
 * Caller frees with model_free().
 */
struct model *model_load(const char *path, char *errstr, size_t errstr_size);
void model_free(struct model *m);

int model_has_weights(const struct model *m);
uint32_t model_n_items(const struct model *m);
uint32_t model_dim(const struct model *m);
uint32_t model_n_tier1(const struct model *m);
uint32_t model_n_nodes(const struct model *m);
/* din = dim + type_dim + 1, the LSTM input width. */
uint32_t model_din(const struct model *m);
const struct model_hparams *model_hparams(const struct model *m);
const struct model_weights *model_weights(const struct model *m);
const char *model_embedder(const struct model *m);

/* LLM embeddings, [n_items][dim], L2-normalised. Borrowed from the model. */
const float *model_llm_embeddings(const struct model *m);
/*
 * Model item embeddings e_i = EMBD + R, [n_items][dim], computed once on
 * load (equal to the LLM embeddings for a catalog). Borrowed.
 */
const float *model_item_embeddings(const struct model *m);

/* Item index of an id, or -1 when the catalog does not have it. O(1). */
int32_t model_item_lookup(const struct model *m, const char *id, size_t len);
/*
 * 64-bit FNV-1a hash of an item id, the item's identity in user state (it
 * survives a model swap that renumbers items); lookup by hash, -1 if absent.
 */
uint64_t model_id_hash(const char *id, size_t len);
uint64_t model_item_hash(const struct model *m, uint32_t item);
int32_t model_item_lookup_hash(const struct model *m, uint64_t hash);
/* Item id / title of an index (not NUL-terminated; length in *len). */
const char *model_item_id(const struct model *m, uint32_t item, size_t *len);
const char *model_item_title(const struct model *m, uint32_t item, size_t *len);
/* Level-1 and level-2 node of an item. */
uint32_t model_item_tier1(const struct model *m, uint32_t item);
uint32_t model_item_tier2(const struct model *m, uint32_t item);

/* Tier tree (section TNOD/TNAM/TCEN). */
uint32_t model_node_level(const struct model *m, uint32_t node);  /* 1 or 2 */
uint32_t model_node_parent(const struct model *m, uint32_t node); /* MODEL_NODE_NONE for level 1 */
uint32_t model_node_index(const struct model *m, uint32_t node);
const char *model_node_name(const struct model *m, uint32_t node, size_t *len);
const float *model_node_centroid(const struct model *m, uint32_t node);
/* Wire name "3" or "3/5" into buf; returns its length (buf >= 16 bytes). */
size_t model_node_label(const struct model *m, uint32_t node, char *buf, size_t size);

/*
 * Writes a model file: the catalog sections of cat (a catalog or a model)
 * copied verbatim, plus HPAR from hp and WGHT from w (shapes from cat and
 * hp). Written to a temporary name, fsynced, renamed, directory fsynced.
 * Returns 0, or -1 with the reason in errstr.
 */
int model_write(const char *path, const struct model *cat, const struct model_hparams *hp,
    const struct model_weights *w, char *errstr, size_t errstr_size);

/*
 * model_write plus the optional TRCH section: choice, the trainer's settings
 * search as text lines (what was tried, what was chosen; at most
 * MODEL_TRCH_MAX bytes, no control bytes but tab and newline). NULL: none.
 */
#define MODEL_TRCH_MAX 65536
int model_write_choice(const char *path, const struct model *cat, const struct model_hparams *hp,
    const struct model_weights *w, const char *choice, char *errstr, size_t errstr_size);

/* The TRCH text of a model file (not NUL-terminated, *len bytes), or NULL. */
const char *model_choice(const struct model *m, size_t *len);

/* One item to add to a model (model_extend). Everything is borrowed. */
struct model_item_add {
	const char *id; /* 1..255 bytes, not in the base */
	size_t id_len;
	const char *title;
	size_t title_len;
	const float *embedding; /* [dim] LLM embedding, L2-normalised, finite */
	uint32_t tier1;         /* a level-1 node */
	uint32_t tier2;         /* a level-2 node whose parent is tier1 */
};

/*
 * A new, independent model (it shares nothing with base): base's items
 * followed by items[0..n) in that order, every other section copied (the
 * tier tree keeps base's TNOD node counts). A new item's residual R is the
 * mean R of base's items in its tier-2 node and its bias their mean bias;
 * with no such item, of its tier-1 node; with none there either, of all
 * items (schemas/items.md "Items topic"). model_version is base's. NULL with
 * the reason naming the item ("live item 3 (id x): ...") in errstr: a bad
 * id, a duplicate, a node out of the tree, a non-finite float. A catalog
 * (no weights) extends to a catalog. Caller frees with model_free(); an
 * extended model cannot be written with model_write().
 */
struct model *model_extend(const struct model *base, const struct model_item_add *items, size_t n,
    char *errstr, size_t errstr_size);

/*
 * The tier tree as stored in the file: the TNOD section bytes
 * ([n_nodes][4] little-endian uint32) and the TCEN bytes ([n_nodes][dim]
 * float32), borrowed. Their SHA-256 is the tree fingerprint of the items
 * topic (schemas/items.md "Items topic"); an extended model has its base's.
 */
void model_tree_sections(const struct model *m, const void **tnod, size_t *tnod_len,
    const void **tcen, size_t *tcen_len);

#endif
