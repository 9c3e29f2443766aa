/*
 * model/modelfile.c: catalog load, model write/load round trip (every array
 * compared), lookups, labels, and the content checks naming section/field.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "modelfile.h"

static int
arrays_equal(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

static int
test_catalog(const char *cat_path, const struct fixture_cat *fc)
{
	char err[512];
	struct model *m = model_load(cat_path, err, sizeof(err));
	int fails = 0;

	CHECK(m != NULL, "catalog loads (%s)", m == NULL ? err : "ok");
	if (m == NULL)
		return fails;
	CHECK(!model_has_weights(m), "catalog has no weights");
	CHECK(model_hparams(m) == NULL && model_weights(m) == NULL, "catalog hparams/weights NULL");
	CHECK(model_n_items(m) == fc->n_items && model_dim(m) == fc->dim &&
		model_n_tier1(m) == fc->n_tier1 && model_n_nodes(m) == fc->n_tier1 * (1 + fc->k2),
	    "catalog sizes");
	CHECK(model_item_embeddings(m) == model_llm_embeddings(m), "catalog e_i = EMBD");
	CHECK(strncmp(model_embedder(m), "fixture:random:", 15) == 0, "embedder name");

	int lookups_ok = 1;
	for (uint32_t i = 0; i < fc->n_items; i++) {
		char id[32];
		size_t len, tlen;
		int n = snprintf(id, sizeof(id), "item-%u", i);
		const char *p = model_item_id(m, i, &len);
		const char *t = model_item_title(m, i, &tlen);

		if (model_item_lookup(m, id, (size_t)n) != (int32_t)i || len != (size_t)n ||
		    memcmp(p, id, len) != 0 || tlen < 7 || memcmp(t, "Title ", 6) != 0 ||
		    model_item_hash(m, i) != model_id_hash(id, (size_t)n) ||
		    model_item_lookup_hash(m, model_id_hash(id, (size_t)n)) != (int32_t)i ||
		    model_item_tier1(m, i) != i % fc->n_tier1 ||
		    model_item_tier2(m, i) != fixture_item_tier2(fc, i))
			lookups_ok = 0;
	}
	CHECK(lookups_ok, "every id, title, hash and tier looked up");
	CHECK(model_item_lookup(m, "item-", 5) == -1 && model_item_lookup(m, "nope", 4) == -1 &&
		model_item_lookup_hash(m, model_id_hash("nope", 4)) == -1,
	    "unknown ids not found");
	/* FNV-1a 64 reference values. */
	CHECK(model_id_hash("", 0) == 0xcbf29ce484222325ull &&
		model_id_hash("a", 1) == 0xaf63dc4c8601ec8cull,
	    "FNV-1a 64 test vectors");

	char label[16];
	size_t ll = model_node_label(m, 1, label, sizeof(label));
	CHECK(ll == 1 && strcmp(label, "1") == 0, "label of level-1 node 1: %s", label);
	uint32_t node = fc->n_tier1 + 2 * fc->k2 + 1; /* parent 2, child 1 */
	ll = model_node_label(m, node, label, sizeof(label));
	CHECK(ll == 3 && strcmp(label, "2/1") == 0, "label of level-2 node: %s", label);
	CHECK(model_node_level(m, node) == 2 && model_node_parent(m, node) == 2 &&
		model_node_index(m, node) == 1 && model_node_parent(m, 0) == MODEL_NODE_NONE,
	    "node level/parent/index");
	CHECK(model_node_label(m, model_n_nodes(m), label, sizeof(label)) == 0 && label[0] == '\0',
	    "label of a node this model lacks is empty");
	size_t nl;
	const char *name = model_node_name(m, node, &nl);
	CHECK(nl > 5 && memcmp(name, "node ", 5) == 0, "node name");
	model_free(m);
	return fails;
}

static int
test_round_trip(const char *dir, const struct fixture_cat *fc, const char *cat_path)
{
	char err[512], path[256], path2[256];
	struct model_hparams hp;
	struct model_weights w;
	float *buf = NULL;
	struct model *cat, *m = NULL, *m2 = NULL;
	int fails = 0;

	snprintf(path, sizeof(path), "%s/rt.imdl", dir);
	snprintf(path2, sizeof(path2), "%s/rt2.imdl", dir);
	cat = model_load(cat_path, err, sizeof(err));
	CHECK(cat != NULL, "catalog loads");
	if (cat == NULL)
		return fails;
	fixture_hparams(&hp, 12);
	hp.half_life_short_s = 1234.5f;
	hp.type_weight[7] = -0.75f;
	hp.max_tiers = 33;
	CHECK(fixture_weights(cat, &hp, 99, &w, &buf) == 0, "weights allocated");
	CHECK(model_write(path, cat, &hp, &w, err, sizeof(err)) == 0, "model_write (%s)", err);
	m = model_load(path, err, sizeof(err));
	CHECK(m != NULL, "model loads (%s)", m == NULL ? err : "ok");
	if (m == NULL)
		goto done;
	uint32_t H = hp.hidden, dim = fc->dim, n = fc->n_items, din = dim + hp.type_dim + 1;
	const struct model_hparams *hq = model_hparams(m);
	const struct model_weights *wq = model_weights(m);
	CHECK(model_has_weights(m) && hq != NULL && wq != NULL, "model has weights");
	CHECK(model_din(m) == din, "din = dim + E + 1");
	CHECK(hq->hidden == hp.hidden && hq->type_dim == hp.type_dim && hq->n_types == hp.n_types &&
		hq->ring_len == hp.ring_len && hq->model_version == hp.model_version &&
		hq->train_seed == hp.train_seed && hq->half_life_short_s == hp.half_life_short_s &&
		hq->half_life_long_s == hp.half_life_long_s && hq->max_tiers == hp.max_tiers &&
		memcmp(hq->type_weight, hp.type_weight, sizeof(hp.type_weight)) == 0,
	    "HPAR round trip");
	CHECK(arrays_equal(wq->W, w.W, (size_t)4 * H * (din + H)), "W equal");
	CHECK(arrays_equal(wq->b, w.b, (size_t)4 * H), "b equal");
	CHECK(arrays_equal(wq->P, w.P, (size_t)dim * H), "P equal");
	CHECK(arrays_equal(wq->pb, w.pb, dim), "pb equal");
	CHECK(arrays_equal(wq->T, w.T, (size_t)MODEL_N_TYPES * hp.type_dim), "T equal");
	CHECK(arrays_equal(wq->R, w.R, (size_t)n * dim), "R equal");
	CHECK(arrays_equal(wq->ib, w.ib, n), "ib equal");
	CHECK(arrays_equal(wq->alpha, w.alpha, 4), "alpha equal");
	CHECK(arrays_equal(model_llm_embeddings(m), model_llm_embeddings(cat), (size_t)n * dim),
	    "EMBD copied verbatim");
	CHECK(arrays_equal(model_node_centroid(m, 0), model_node_centroid(cat, 0),
		  (size_t)model_n_nodes(cat) * dim),
	    "TCEN copied verbatim");
	int emb_ok = 1;
	const float *e = model_item_embeddings(m), *llm = model_llm_embeddings(m);
	for (size_t i = 0; i < (size_t)n * dim; i++)
		if (e[i] != llm[i] + w.R[i])
			emb_ok = 0;
	CHECK(emb_ok && e != llm, "e_i = EMBD + R");

	/* Writing from a model (not a catalog) copies the same catalog sections. */
	CHECK(model_write(path2, m, &hp, &w, err, sizeof(err)) == 0, "model_write from a model");
	m2 = model_load(path2, err, sizeof(err));
	CHECK(m2 != NULL && model_n_items(m2) == n &&
		arrays_equal(model_item_embeddings(m2), e, (size_t)n * dim),
	    "model written from a model loads equal");

	/* Writer refuses bad hyper-parameters and non-finite weights. */
	struct model_hparams bad = hp;
	bad.hidden = 0;
	CHECK(model_write(path2, cat, &bad, &w, err, sizeof(err)) == -1 &&
		strstr(err, "section HPAR: hidden 0 out of range 1..1024") != NULL,
	    "write rejects hidden 0: %s", err);
	buf[3] = NAN;
	CHECK(model_write(path2, cat, &hp, &w, err, sizeof(err)) == -1 &&
		strstr(err, "WGHT: W[3] not finite") != NULL,
	    "write rejects NaN weight: %s", err);
	CHECK(access(path2, F_OK) == 0, "failed write leaves the old file in place");
done:
	model_free(m);
	model_free(m2);
	model_free(cat);
	free(buf);
	unlink(path);
	unlink(path2);
	return fails;
}

/* A content fault patched in with valid CRCs must be rejected by name. */
static int
expect_patch_error(const char *dir, const struct fixture_cat *fc, int model, const char *tag,
    size_t at, const void *bytes, size_t len, const char *want)
{
	char err[512], cpath[256], mpath[256];
	struct model *m;
	int fails = 0;

	snprintf(cpath, sizeof(cpath), "%s/p.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/p.imdl", dir);
	if (model) {
		m = fixture_model(cpath, mpath, fc, 6, err, sizeof(err));
		model_free(m);
	} else if (fixture_write_catalog(cpath, fc, err, sizeof(err)) != 0) {
		fails++;
	}
	const char *path = model ? mpath : cpath;
	CHECK(fixture_patch(path, tag, at, bytes, len) == 0, "patched %s", tag);
	m = model_load(path, err, sizeof(err));
	CHECK(m == NULL && strstr(err, want) != NULL, "rejected: %s", m == NULL ? err : "loaded!");
	model_free(m);
	unlink(cpath);
	unlink(mpath);
	return fails;
}

/*
 * Random content faults with valid CRCs (the checksums cannot save the
 * parser here): every load either succeeds or fails naming a section; under
 * ASan this also proves no read outside the mapping.
 */
static int
test_random_faults(const char *dir, const struct fixture_cat *fc)
{
	char err[512], cpath[256], mpath[256], bad[256];
	struct model *m;
	uint8_t *orig = NULL, *buf = NULL;
	size_t len = 0;
	uint64_t s = 2024;
	int fails = 0, named = 1, loaded = 0, rejected = 0;
	FILE *f;

	snprintf(cpath, sizeof(cpath), "%s/f.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/f.imdl", dir);
	snprintf(bad, sizeof(bad), "%s/f-bad.imdl", dir);
	m = fixture_model(cpath, mpath, fc, 6, err, sizeof(err));
	model_free(m);
	f = fopen(mpath, "rb");
	if (f != NULL && fseek(f, 0, SEEK_END) == 0) {
		len = (size_t)ftell(f);
		orig = malloc(len);
		buf = malloc(len);
		if (fseek(f, 0, SEEK_SET) != 0 || orig == NULL || buf == NULL ||
		    fread(orig, 1, len, f) != len)
			len = 0;
	}
	if (f != NULL)
		fclose(f);
	CHECK(len > 0, "model bytes read");
	for (int it = 0; len > 0 && it < 400; it++) {
		static const uint32_t vals[] = { 0, 1, 2, 7, 0xFFFFFFFFu, 0x7FC00000u, 0x80000000u,
			51 };
		uint32_t n_sec, sec, crc, v;
		uint64_t off, slen;

		memcpy(buf, orig, len);
		memcpy(&n_sec, buf + 16, 4);
		sec = (uint32_t)(fixture_rand(&s) % n_sec);
		memcpy(&off, buf + 64 + 32 * sec + 8, 8);
		memcpy(&slen, buf + 64 + 32 * sec + 16, 8);
		if (slen < 4)
			continue;
		/* Mostly the first bytes (counts, offsets), sometimes anywhere. */
		uint64_t at = fixture_rand(&s) % 2
		    ? (fixture_rand(&s) % (slen < 64 ? slen - 3 : 61)) & ~3ull
		    : (fixture_rand(&s) % (slen - 3)) & ~3ull;
		v = fixture_rand(&s) % 2 ? vals[fixture_rand(&s) % 8] : (uint32_t)fixture_rand(&s);
		memcpy(buf + off + at, &v, 4);
		crc = container_crc32(0, buf + off, slen);
		memcpy(buf + 64 + 32 * sec + 24, &crc, 4);
		crc = container_crc32(0, buf + 64, 32 * n_sec);
		memcpy(buf + 32, &crc, 4);
		f = fopen(bad, "wb");
		if (f == NULL || fwrite(buf, 1, len, f) != len) {
			fails++;
			if (f != NULL)
				fclose(f);
			break;
		}
		fclose(f);
		m = model_load(bad, err, sizeof(err));
		if (m != NULL) {
			loaded++;
		} else {
			rejected++;
			if (strstr(err, "section ") == NULL)
				named = 0;
		}
		model_free(m);
	}
	CHECK(named && rejected > 100,
	    "random faults: %d rejected (all naming a section), %d loaded", rejected, loaded);
	free(orig);
	free(buf);
	unlink(cpath);
	unlink(mpath);
	unlink(bad);
	return fails;
}

int
main(void)
{
	struct fixture_cat fc = { .n_items = 50, .dim = 8, .n_tier1 = 4, .k2 = 3, .seed = 42 };
	char dir[64], err[512], cat_path[128];
	int fails = 0;
	uint32_t zero = 0, big = 5000, nines = 9;
	float nan = NAN;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(cat_path, sizeof(cat_path), "%s/c.icat", dir);
	CHECK(fixture_write_catalog(cat_path, &fc, err, sizeof(err)) == 0, "catalog written (%s)",
	    err);
	fails += test_catalog(cat_path, &fc);
	fails += test_round_trip(dir, &fc, cat_path);
	fails += test_random_faults(dir, &fc);

	fails += expect_patch_error(
	    dir, &fc, 1, "HPAR", 0, &zero, 4, "section HPAR: hidden 0 out of range 1..1024");
	fails += expect_patch_error(dir, &fc, 1, "HPAR", 4, &big, 4, "section HPAR: type_dim 5000");
	fails += expect_patch_error(dir, &fc, 1, "HPAR", 8, &nines, 4, "section HPAR: n_types 9");
	fails += expect_patch_error(dir, &fc, 1, "HPAR", 32, &nan, 4, "section HPAR: half-lives");
	fails +=
	    expect_patch_error(dir, &fc, 1, "WGHT", 8, &nan, 4, "section WGHT: W[2] not finite");
	fails += expect_patch_error(
	    dir, &fc, 0, "EMBD", 20, &nan, 4, "section EMBD: float 5 not finite");
	fails +=
	    expect_patch_error(dir, &fc, 0, "TCEN", 0, &nan, 4, "section TCEN: float 0 not finite");
	fails += expect_patch_error(
	    dir, &fc, 0, "CATM", 0, &zero, 4, "section CATM: n_items 0 out of range");
	fails += expect_patch_error(
	    dir, &fc, 0, "CATM", 4, &nines, 4, "section EMBD: length 1600 != n_items*dim*4 = 1800");
	fails += expect_patch_error(
	    dir, &fc, 0, "ITIR", 0, &nines, 4, "section ITIR: item 0: level-1 node 9 out of range");
	fails += expect_patch_error(dir, &fc, 0, "ITIR", 4, &nines, 4,
	    "section ITIR: item 0: level-2 node 9 is not a child of node 0");
	fails += expect_patch_error(dir, &fc, 0, "TNOD", 16 * 5 + 12, &nines, 4,
	    "section TNOD: node 5: n_items 9, but ITIR places");
	fails += expect_patch_error(dir, &fc, 0, "TNOD", 16 * 5 + 8, &nines, 4,
	    "section TNOD: node 5: index 9, expected 1");
	/* Second id "item-1" becomes "item-0": offsets start after (n+1)*4 bytes. */
	fails += expect_patch_error(dir, &fc, 0, "IIDS", (fc.n_items + 1) * 4 + 6 + 5, "0", 1,
	    "section IIDS: duplicate id \"item-0\" (items 0 and 1)");
	fails += expect_patch_error(dir, &fc, 0, "IIDS", 4, &zero, 4,
	    "section IIDS: string 0 length 0 out of range 1..255");

	{
		/* A model file without WGHT: a kind-2 container with only HPAR extra. */
		char path[128];
		struct container_writer *cw;
		uint8_t hpar[128] = { 0 };
		struct model *m;

		snprintf(path, sizeof(path), "%s/nowght.imdl", dir);
		cw = fixture_catalog_begin(path, &fc, CONTAINER_KIND_MODEL, 1, err, sizeof(err));
		CHECK(cw != NULL && container_writer_begin(cw, "HPAR", err, sizeof(err)) == 0 &&
			container_writer_append(cw, hpar, sizeof(hpar), err, sizeof(err)) == 0 &&
			container_writer_commit(cw, err, sizeof(err)) == 0,
		    "model without WGHT written");
		container_writer_free(cw);
		m = model_load(path, err, sizeof(err));
		CHECK(
		    m == NULL && strstr(err, "section WGHT: missing") != NULL, "rejected: %s", err);
		model_free(m);
		unlink(path);
	}
	unlink(cat_path);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
