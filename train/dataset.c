/*
 * Reader of the generic interactions CSV (schemas/items.md) into per-user
 * sequences, time-ordered or in file order. Plain CSV with optional
 * double-quoted fields.
 */
#include "dataset.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfile.h"

#define DATASET_MAX_FIELDS 5
#define DATASET_MAX_ID     255

struct dataset_row {
	uint32_t user;
	uint32_t line; /* file order, the tie-breaker */
	struct dataset_event e;
};

/* Open-addressing map from user id to user index. */
struct dataset_users {
	char **ids; /* owned, [n] */
	uint32_t n, cap_ids;
	uint32_t *slots; /* [mask+1], UINT32_MAX empty */
	size_t mask;
};

int
dataset_type_parse(const char *s, size_t len)
{
	for (uint32_t t = 0; t < MODEL_N_TYPES; t++) {
		const char *name = model_event_type_name(t);

		if (strlen(name) == len && memcmp(name, s, len) == 0)
			return (int)t;
	}
	return -1;
}

const struct dataset_event *
dataset_user(const struct dataset *ds, uint32_t u, size_t *n)
{
	*n = ds->user_off[u + 1] - ds->user_off[u];
	return ds->ev + ds->user_off[u];
}

/*
 * Splits one line into at most DATASET_MAX_FIELDS fields in place (quotes
 * removed, "" unescaped). Returns the field count, or -1 on a bad quote.
 */
static int
dataset_split(char *line, char **f, size_t *flen)
{
	int nf = 0;
	char *p = line;

	for (;;) {
		if (nf == DATASET_MAX_FIELDS)
			return -1;
		if (*p == '"') {
			char *w = ++p;
			f[nf] = w;
			for (;;) {
				if (*p == '\0')
					return -1;
				if (*p == '"') {
					if (p[1] == '"') {
						*w++ = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				*w++ = *p++;
			}
			flen[nf] = (size_t)(w - f[nf]);
			if (*p != ',' && *p != '\0')
				return -1;
		} else {
			f[nf] = p;
			while (*p != ',' && *p != '\0')
				p++;
			flen[nf] = (size_t)(p - f[nf]);
		}
		nf++;
		if (*p == '\0')
			return nf;
		p++;
	}
}

static uint64_t
dataset_hash(const char *s, size_t len)
{
	return model_id_hash(s, len);
}

static int
dataset_users_grow(struct dataset_users *um)
{
	size_t ncap = (um->mask + 1) * 2;
	uint32_t *ns = malloc(ncap * sizeof(*ns));

	if (ns == NULL)
		return -1;
	memset(ns, 0xff, ncap * sizeof(*ns));
	for (uint32_t u = 0; u < um->n; u++) {
		size_t h = (size_t)dataset_hash(um->ids[u], strlen(um->ids[u])) & (ncap - 1);
		while (ns[h] != UINT32_MAX)
			h = (h + 1) & (ncap - 1);
		ns[h] = u;
	}
	free(um->slots);
	um->slots = ns;
	um->mask = ncap - 1;
	return 0;
}

/* Index of a user id, added when new; UINT32_MAX on ENOMEM. */
static uint32_t
dataset_users_get(struct dataset_users *um, const char *id, size_t len)
{
	size_t h;

	if ((size_t)um->n * 2 >= um->mask + 1 && dataset_users_grow(um) < 0)
		return UINT32_MAX;
	h = (size_t)dataset_hash(id, len) & um->mask;
	while (um->slots[h] != UINT32_MAX) {
		const char *s = um->ids[um->slots[h]];
		if (strlen(s) == len && memcmp(s, id, len) == 0)
			return um->slots[h];
		h = (h + 1) & um->mask;
	}
	if (um->n == um->cap_ids) {
		uint32_t nc = um->cap_ids ? um->cap_ids * 2 : 1024;
		char **ni = realloc(um->ids, nc * sizeof(*ni));
		if (ni == NULL)
			return UINT32_MAX;
		um->ids = ni;
		um->cap_ids = nc;
	}
	um->ids[um->n] = malloc(len + 1);
	if (um->ids[um->n] == NULL)
		return UINT32_MAX;
	memcpy(um->ids[um->n], id, len);
	um->ids[um->n][len] = '\0';
	um->slots[h] = um->n;
	return um->n++;
}

/* DATASET_TIME_ORDER: by user, then time, then file line. */
static int
dataset_row_cmp_time(const void *a, const void *b)
{
	const struct dataset_row *x = a, *y = b;

	if (x->user != y->user)
		return x->user < y->user ? -1 : 1;
	if (x->e.ts_ms != y->e.ts_ms)
		return x->e.ts_ms < y->e.ts_ms ? -1 : 1;
	return x->line < y->line ? -1 : (x->line > y->line);
}

/* DATASET_FILE_ORDER: by user, then file line. */
static int
dataset_row_cmp_file(const void *a, const void *b)
{
	const struct dataset_row *x = a, *y = b;

	if (x->user != y->user)
		return x->user < y->user ? -1 : 1;
	return x->line < y->line ? -1 : (x->line > y->line);
}

/* Parses a decimal integer field; 0 on success. */
static int
dataset_parse_i64(const char *s, size_t len, int64_t *out)
{
	char buf[32], *end;
	long long v;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = (int64_t)v;
	return 0;
}

static int
dataset_parse_float(const char *s, size_t len, float *out)
{
	char buf[64], *end;
	double v;

	if (len == 0) {
		*out = NAN;
		return 0;
	}
	if (len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	v = strtod(buf, &end);
	if (*end != '\0' || !isfinite(v))
		return -1;
	*out = (float)v;
	return 0;
}

struct dataset *
dataset_load(const char *path, const struct model *cat, char *errstr, size_t errstr_size)
{
	return dataset_load_order(path, cat, DATASET_TIME_ORDER, errstr, errstr_size);
}

struct dataset *
dataset_load_order(const char *path, const struct model *cat, enum dataset_order order,
    char *errstr, size_t errstr_size)
{
	FILE *fp = NULL;
	char *line = NULL;
	size_t line_cap = 0;
	ssize_t got;
	struct dataset_row *rows = NULL;
	size_t n_rows = 0, cap_rows = 0, n_unknown = 0;
	struct dataset_users um = { 0 };
	struct dataset *ds = NULL;
	uint32_t lineno = 0;

	fp = fopen(path, "r");
	if (fp == NULL) {
		snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
		goto fail;
	}
	um.slots = malloc(1024 * sizeof(*um.slots));
	if (um.slots == NULL)
		goto nomem;
	memset(um.slots, 0xff, 1024 * sizeof(*um.slots));
	um.mask = 1023;

	while ((got = getline(&line, &line_cap, fp)) > 0) {
		char *f[DATASET_MAX_FIELDS];
		size_t fl[DATASET_MAX_FIELDS];
		int nf, type;
		int32_t item;
		struct dataset_row *r;

		lineno++;
		while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
			line[--got] = '\0';
		if (lineno == 1) {
			if (strncmp(line, "user_id,item_id,type,ts", 23) != 0) {
				snprintf(errstr, errstr_size,
				    "%s:1: header must start with user_id,item_id,type,ts", path);
				goto fail;
			}
			continue;
		}
		if (got == 0)
			continue;
		nf = dataset_split(line, f, fl);
		if (nf < 4) {
			snprintf(
			    errstr, errstr_size, "%s:%u: expected 4 or 5 fields", path, lineno);
			goto fail;
		}
		if (fl[0] == 0 || fl[1] == 0 || fl[0] > DATASET_MAX_ID || fl[1] > DATASET_MAX_ID) {
			snprintf(errstr, errstr_size, "%s:%u: empty or too long id", path, lineno);
			goto fail;
		}
		type = dataset_type_parse(f[2], fl[2]);
		if (type < 0) {
			snprintf(errstr, errstr_size, "%s:%u: unknown type '%.*s'", path, lineno,
			    (int)fl[2], f[2]);
			goto fail;
		}
		item = model_item_lookup(cat, f[1], fl[1]);
		if (item < 0) {
			n_unknown++;
			continue;
		}
		if (n_rows == cap_rows) {
			size_t nc = cap_rows ? cap_rows * 2 : 65536;
			struct dataset_row *nr = realloc(rows, nc * sizeof(*nr));
			if (nr == NULL)
				goto nomem;
			rows = nr;
			cap_rows = nc;
		}
		r = &rows[n_rows];
		r->line = lineno;
		r->e.item = (uint32_t)item;
		r->e.type = (uint8_t)type;
		if (dataset_parse_i64(f[3], fl[3], &r->e.ts_ms) < 0) {
			snprintf(errstr, errstr_size, "%s:%u: bad ts", path, lineno);
			goto fail;
		}
		r->e.value = NAN;
		if (nf == 5 && dataset_parse_float(f[4], fl[4], &r->e.value) < 0) {
			snprintf(errstr, errstr_size, "%s:%u: bad value", path, lineno);
			goto fail;
		}
		r->user = dataset_users_get(&um, f[0], fl[0]);
		if (r->user == UINT32_MAX)
			goto nomem;
		n_rows++;
	}
	if (ferror(fp)) {
		snprintf(errstr, errstr_size, "%s: read error", path);
		goto fail;
	}
	if (lineno == 0) {
		snprintf(errstr, errstr_size, "%s: empty file", path);
		goto fail;
	}
	qsort(rows, n_rows, sizeof(*rows),
	    order == DATASET_FILE_ORDER ? dataset_row_cmp_file : dataset_row_cmp_time);

	ds = calloc(1, sizeof(*ds));
	if (ds == NULL)
		goto nomem;
	ds->n_users = um.n;
	ds->n_items = model_n_items(cat);
	ds->n_events = n_rows;
	ds->n_unknown_items = n_unknown;
	ds->user_off = calloc((size_t)um.n + 1, sizeof(*ds->user_off));
	ds->ev = malloc((n_rows ? n_rows : 1) * sizeof(*ds->ev));
	if (ds->user_off == NULL || ds->ev == NULL)
		goto nomem;
	for (size_t k = 0; k < n_rows; k++) {
		ds->ev[k] = rows[k].e;
		ds->user_off[rows[k].user + 1]++;
	}
	for (uint32_t u = 0; u < um.n; u++)
		ds->user_off[u + 1] += ds->user_off[u];
	ds->user_ids = um.ids;
	um.ids = NULL;
	free(um.slots);
	free(rows);
	free(line);
	fclose(fp);
	return ds;

nomem:
	snprintf(errstr, errstr_size, "%s: out of memory", path);
fail:
	if (ds != NULL) {
		free(ds->user_off);
		free(ds->ev);
		free(ds);
	}
	for (uint32_t u = 0; um.ids != NULL && u < um.n; u++)
		free(um.ids[u]);
	free(um.ids);
	free(um.slots);
	free(rows);
	free(line);
	if (fp != NULL)
		fclose(fp);
	return NULL;
}

void
dataset_free(struct dataset *ds)
{
	if (ds == NULL)
		return;
	for (uint32_t u = 0; u < ds->n_users; u++)
		free(ds->user_ids[u]);
	free(ds->user_ids);
	free(ds->user_off);
	free(ds->ev);
	free(ds);
}
