/*
 * Header-only helpers shared by the model/ unit tests: a check macro, a
 * seeded generator, and writers of small synthetic catalogs (through the
 * real container writer) and models (through model_write) in a temporary
 * directory, so the tests need no Python-built catalog.
 */
#ifndef TESTS_UNIT_FIXTURE_H
#define TESTS_UNIT_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "container.h"
#include "modelfile.h"

/* Counts a failure in the enclosing function's `int fails`. */
#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (cond) {                                                                        \
			printf("ok   ");                                                           \
		} else {                                                                           \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);                                \
			fails++;                                                                   \
		}                                                                                  \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
	} while (0)

/* splitmix64: small, seeded, reproducible. */
static inline uint64_t
fixture_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float
fixture_randf(uint64_t *s)
{
	return (float)((double)(fixture_rand(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static inline void
fixture_put_u32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4); /* the tests run on little-endian hosts, as the model code */
}

/* A temporary directory; path into dir (>= 64 bytes). Returns 0 or -1. */
static inline int
fixture_tmpdir(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/interest-unit-XXXXXX");
	return mkdtemp(dir) == NULL ? -1 : 0;
}

/* Catalog shape: item i is in level-1 node i % n_tier1, child (i / n_tier1) % k2. */
struct fixture_cat {
	uint32_t n_items, dim, n_tier1, k2;
	uint64_t seed;
};

static inline uint32_t
fixture_item_tier2(const struct fixture_cat *fc, uint32_t i)
{
	uint32_t t1 = i % fc->n_tier1;

	return fc->n_tier1 + t1 * fc->k2 + (i / fc->n_tier1) % fc->k2;
}

/* Appends a string table "prefix<i>" for i < count (empty strings if prefix is NULL). */
static inline int
fixture_strtab(struct container_writer *cw, const char *tag, const char *prefix, uint32_t count,
    char *err, size_t errsz)
{
	uint32_t *off = calloc((size_t)count + 1, 4);
	char *bytes = malloc((size_t)count * 24 + 1);
	size_t used = 0;
	int ret = -1;

	if (off == NULL || bytes == NULL)
		goto done;
	for (uint32_t i = 0; i < count; i++) {
		if (prefix != NULL)
			used += (size_t)sprintf(bytes + used, "%s%u", prefix, i);
		off[i + 1] = (uint32_t)used;
	}
	if (container_writer_begin(cw, tag, err, errsz) == 0 &&
	    container_writer_append(cw, off, ((size_t)count + 1) * 4, err, errsz) == 0 &&
	    container_writer_append(cw, bytes, used, err, errsz) == 0)
		ret = 0;
done:
	free(off);
	free(bytes);
	return ret;
}

/*
 * Starts a container of `kind` declaring 8 + extra sections and writes the
 * eight valid catalog sections; the caller appends `extra` more, commits
 * and frees. Returns NULL on failure (reason in err).
 */
static inline struct container_writer *
fixture_catalog_begin(const char *path, const struct fixture_cat *fc, uint32_t kind, uint32_t extra,
    char *err, size_t errsz)
{
	uint32_t n = fc->n_items, dim = fc->dim, n_nodes = fc->n_tier1 * (1 + fc->k2);
	struct container_writer *cw = container_writer_new(path, kind, 8 + extra, err, errsz);
	float *embd = malloc((size_t)n * dim * 4), *cen = calloc((size_t)n_nodes * dim, 4);
	uint32_t *tnod = calloc((size_t)n_nodes * 4, 4), *itir = malloc((size_t)n * 8);
	uint8_t catm[128];
	uint64_t s = fc->seed;
	int ok = 0;

	if (cw == NULL || embd == NULL || cen == NULL || tnod == NULL || itir == NULL)
		goto done;
	for (uint32_t j = 0; j < n_nodes; j++) {
		uint32_t *nd = tnod + (size_t)j * 4;

		if (j < fc->n_tier1) {
			nd[0] = MODEL_NODE_NONE, nd[1] = 1, nd[2] = j;
		} else {
			nd[0] = (j - fc->n_tier1) / fc->k2, nd[1] = 2,
			nd[2] = (j - fc->n_tier1) % fc->k2;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		float *e = embd + (size_t)i * dim;
		double norm = 0;
		uint32_t t1 = i % fc->n_tier1, t2 = fixture_item_tier2(fc, i);

		for (uint32_t k = 0; k < dim; k++) {
			e[k] = fixture_randf(&s) + (k % fc->n_tier1 == t1 ? 1.0f : 0.0f);
			norm += (double)e[k] * e[k];
		}
		for (uint32_t k = 0; k < dim; k++) {
			e[k] = (float)(e[k] / sqrt(norm));
			cen[(size_t)t1 * dim + k] += e[k];
			cen[(size_t)t2 * dim + k] += e[k];
		}
		itir[2 * i] = t1;
		itir[2 * i + 1] = t2;
		tnod[(size_t)t1 * 4 + 3]++;
		tnod[(size_t)t2 * 4 + 3]++;
	}
	memset(catm, 0, sizeof(catm));
	fixture_put_u32(catm, n);
	fixture_put_u32(catm + 4, dim);
	fixture_put_u32(catm + 8, fc->n_tier1);
	fixture_put_u32(catm + 12, n_nodes);
	memcpy(catm + 16, &fc->seed, 8);
	fixture_put_u32(catm + 24, fc->n_tier1);
	fixture_put_u32(catm + 28, fc->k2);
	snprintf((char *)catm + 32, 64, "fixture:random:%u", dim);
	if (container_writer_begin(cw, "CATM", err, errsz) != 0 ||
	    container_writer_append(cw, catm, sizeof(catm), err, errsz) != 0 ||
	    fixture_strtab(cw, "IIDS", "item-", n, err, errsz) != 0 ||
	    fixture_strtab(cw, "ITTL", "Title ", n, err, errsz) != 0 ||
	    container_writer_begin(cw, "EMBD", err, errsz) != 0 ||
	    container_writer_append(cw, embd, (size_t)n * dim * 4, err, errsz) != 0 ||
	    container_writer_begin(cw, "TNOD", err, errsz) != 0 ||
	    container_writer_append(cw, tnod, (size_t)n_nodes * 16, err, errsz) != 0 ||
	    container_writer_begin(cw, "TCEN", err, errsz) != 0 ||
	    container_writer_append(cw, cen, (size_t)n_nodes * dim * 4, err, errsz) != 0 ||
	    fixture_strtab(cw, "TNAM", "node ", n_nodes, err, errsz) != 0 ||
	    container_writer_begin(cw, "ITIR", err, errsz) != 0 ||
	    container_writer_append(cw, itir, (size_t)n * 8, err, errsz) != 0)
		goto done;
	ok = 1;
done:
	free(embd);
	free(cen);
	free(tnod);
	free(itir);
	if (!ok) {
		container_writer_free(cw);
		return NULL;
	}
	return cw;
}

/* Writes a valid catalog file. Returns 0 or -1 (reason in err). */
static inline int
fixture_write_catalog(const char *path, const struct fixture_cat *fc, char *err, size_t errsz)
{
	struct container_writer *cw =
	    fixture_catalog_begin(path, fc, CONTAINER_KIND_CATALOG, 0, err, errsz);
	int ret;

	if (cw == NULL)
		return -1;
	ret = container_writer_commit(cw, err, errsz);
	container_writer_free(cw);
	return ret;
}

/*
 * ML-100K's u.data under the shared data: $DATA_ROOT (default ../shared/data,
 * relative to the repository root the tests run in) + /ml-100k/u.data. A test
 * that reads it fails when it is missing (tests/run-unit: only a test that
 * cannot run for a reason outside the project exits 77, skipped).
 */
static inline const char *
fixture_ml100k(char *buf, size_t size)
{
	const char *root = getenv("DATA_ROOT");

	snprintf(buf, size, "%s/ml-100k/u.data", root != NULL && *root ? root : "../shared/data");
	return buf;
}

/*
 * A training fixture in a new temporary directory dir: the catalog fc at
 * dir/cat.icat (loaded into *cat) and dir/ev.csv, opened for writing with
 * its header (the caller writes the events and closes it). Returns the
 * open file, or NULL (printed).
 */
static inline FILE *
fixture_train_setup(const struct fixture_cat *fc, char *dir, size_t dir_size, char *cat_path,
    char *csv, size_t path_size, struct model **cat)
{
	char err[512];
	FILE *fp;

	if (fixture_tmpdir(dir, dir_size) < 0)
		return NULL;
	snprintf(cat_path, path_size, "%s/cat.icat", dir);
	snprintf(csv, path_size, "%s/ev.csv", dir);
	if (fixture_write_catalog(cat_path, fc, err, sizeof(err)) != 0 ||
	    (*cat = model_load(cat_path, err, sizeof(err))) == NULL) {
		printf("FAIL catalog: %s\n", err);
		return NULL;
	}
	if ((fp = fopen(csv, "w")) == NULL) {
		printf("FAIL %s: cannot create\n", csv);
		return NULL;
	}
	fprintf(fp, "user_id,item_id,type,ts\n");
	return fp;
}

/* Removes what fixture_train_setup made, and the files tmp and out (if any) of dir. */
static inline void
fixture_train_teardown(
    const char *dir, const char *cat_path, const char *csv, const char *tmp, const char *out)
{
	unlink(cat_path);
	unlink(csv);
	unlink(tmp);
	unlink(out);
	rmdir(dir);
}

/*
 * Rewrites len bytes at offset `at` of section tag in the file at path and
 * fixes the section and table CRCs, so only the content checks can object.
 * Returns 0 or -1.
 */
static inline int
fixture_patch(const char *path, const char *tag, size_t at, const void *bytes, size_t len)
{
	FILE *f = fopen(path, "r+b");
	uint8_t head[CONTAINER_HEADER_SIZE + CONTAINER_MAX_SECTIONS * CONTAINER_ENTRY_SIZE];
	uint8_t *sec = NULL;
	uint32_t n, crc;
	int ret = -1;

	if (f == NULL || fread(head, 1, sizeof(head), f) < CONTAINER_HEADER_SIZE)
		goto done;
	memcpy(&n, head + 16, 4);
	for (uint32_t i = 0; i < n && i < CONTAINER_MAX_SECTIONS; i++) {
		uint8_t *e = head + CONTAINER_HEADER_SIZE + i * CONTAINER_ENTRY_SIZE;
		uint64_t off, slen;

		if (memcmp(e, tag, 4) != 0)
			continue;
		memcpy(&off, e + 8, 8);
		memcpy(&slen, e + 16, 8);
		if (at + len > slen || (sec = malloc(slen)) == NULL)
			goto done;
		if (fseek(f, (long)off, SEEK_SET) != 0 || fread(sec, 1, slen, f) != slen)
			goto done;
		memcpy(sec + at, bytes, len);
		crc = container_crc32(0, sec, slen);
		memcpy(e + 24, &crc, 4);
		crc = container_crc32(0, head + CONTAINER_HEADER_SIZE, n * CONTAINER_ENTRY_SIZE);
		memcpy(head + 32, &crc, 4);
		if (fseek(f, (long)off, SEEK_SET) != 0 || fwrite(sec, 1, slen, f) != slen ||
		    fseek(f, 0, SEEK_SET) != 0 ||
		    fwrite(head, 1, CONTAINER_HEADER_SIZE + n * CONTAINER_ENTRY_SIZE, f) !=
			CONTAINER_HEADER_SIZE + n * CONTAINER_ENTRY_SIZE)
			goto done;
		ret = 0;
		break;
	}
done:
	free(sec);
	if (f != NULL && fclose(f) != 0)
		ret = -1;
	return ret;
}

/* Default hyper-parameters for tests. */
static inline void
fixture_hparams(struct model_hparams *hp, uint32_t hidden)
{
	static const float tw[MODEL_N_TYPES] = { 0.0f, 0.5f, 1.0f, 2.0f, 2.0f, 3.0f, 1.5f, -1.0f };

	memset(hp, 0, sizeof(*hp));
	hp->hidden = hidden;
	hp->type_dim = 4;
	hp->n_types = MODEL_N_TYPES;
	hp->ring_len = 8;
	hp->model_version = 1700000000;
	hp->train_seed = 7;
	hp->half_life_short_s = 3600.0f;
	hp->half_life_long_s = 30.0f * 86400.0f;
	memcpy(hp->type_weight, tw, sizeof(tw));
	hp->max_tiers = 16;
}

/*
 * Random weights for cat's shapes and hp in one buffer (caller frees *buf);
 * fills w. Returns 0 or -1 on ENOMEM.
 */
static inline int
fixture_weights(const struct model *cat, const struct model_hparams *hp, uint64_t seed,
    struct model_weights *w, float **buf)
{
	uint64_t h = hp->hidden, dim = model_dim(cat), n = model_n_items(cat);
	uint64_t din = dim + hp->type_dim + 1;
	uint64_t sz[8] = { 4 * h * (din + h), 4 * h, dim * h, dim,
		(uint64_t)MODEL_N_TYPES * hp->type_dim, n * dim, n, 4 };
	uint64_t total = 0;
	const float **dst[8] = { &w->W, &w->b, &w->P, &w->pb, &w->T, &w->R, &w->ib, &w->alpha };
	float *f;

	for (int i = 0; i < 8; i++)
		total += sz[i];
	f = malloc(total * sizeof(float));
	if (f == NULL)
		return -1;
	*buf = f;
	for (uint64_t i = 0; i < total; i++)
		f[i] = 0.3f * fixture_randf(&seed);
	for (int i = 0; i < 8; i++) {
		*dst[i] = f;
		if (i == 5) /* R: a small residual */
			for (uint64_t k = 0; k < sz[i]; k++)
				f[k] *= 0.1f;
		f += sz[i];
	}
	return 0;
}

/*
 * Writes catalog cat_path and a model model_path built from it with random
 * weights. Returns the loaded model, or NULL (reason in err).
 */
static inline struct model *
fixture_model(const char *cat_path, const char *model_path, const struct fixture_cat *fc,
    uint32_t hidden, char *err, size_t errsz)
{
	struct model_hparams hp;
	struct model_weights w;
	struct model *cat, *m = NULL;
	float *buf = NULL;

	if (fixture_write_catalog(cat_path, fc, err, errsz) != 0)
		return NULL;
	cat = model_load(cat_path, err, errsz);
	if (cat == NULL)
		return NULL;
	fixture_hparams(&hp, hidden);
	if (fixture_weights(cat, &hp, fc->seed + 1, &w, &buf) == 0 &&
	    model_write(model_path, cat, &hp, &w, err, errsz) == 0)
		m = model_load(model_path, err, errsz);
	free(buf);
	model_free(cat);
	return m;
}

#endif
