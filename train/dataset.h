/*
 * Interaction datasets (schemas/items.md): a CSV with header
 * user_id,item_id,type,ts[,value] read into per-user event sequences, sorted
 * by time (ties keep file order) or in file order (the order the daemon
 * would receive them), items mapped to catalog indices.
 */
#ifndef MODEL_DATASET_H
#define MODEL_DATASET_H

#include <stddef.h>
#include <stdint.h>

struct model;

struct dataset_event {
	uint32_t item; /* catalog item index */
	uint8_t type;  /* enum model_event_type */
	int64_t ts_ms;
	float value; /* the optional value column, NaN when absent */
};

struct dataset {
	uint32_t n_users;
	uint32_t n_items; /* of the catalog the ids were mapped with */
	size_t n_events;
	size_t *user_off;         /* [n_users+1]: user u owns ev[user_off[u] .. user_off[u+1]) */
	struct dataset_event *ev; /* grouped by user (first appearance order), in the load order */
	char **user_ids;          /* [n_users], NUL-terminated */
	size_t n_unknown_items;   /* rows skipped: item id not in the catalog */
};

/* Order of each user's events after loading. */
enum dataset_order {
	DATASET_TIME_ORDER = 0, /* by ts, ties in file order (training, evaluation) */
	DATASET_FILE_ORDER      /* as in the file: arrival order, as the daemon applies them */
};

/*
 * Reads path, mapping item ids with cat (a catalog or model); each user's
 * events in the given order. Rows whose item the catalog lacks are skipped
 * and counted. Returns NULL with the file and line of the first bad row (or
 * ENOMEM) in errstr. Free with dataset_free().
 */
struct dataset *dataset_load_order(const char *path, const struct model *cat,
    enum dataset_order order, char *errstr, size_t errstr_size);
/* dataset_load_order() in DATASET_TIME_ORDER. */
struct dataset *dataset_load(
    const char *path, const struct model *cat, char *errstr, size_t errstr_size);
void dataset_free(struct dataset *ds);

/* Events of user u and their count. */
const struct dataset_event *dataset_user(const struct dataset *ds, uint32_t u, size_t *n);

/* Event type from its Avro symbol ("VIEW"); -1 if unknown. */
int dataset_type_parse(const char *s, size_t len);

#endif
