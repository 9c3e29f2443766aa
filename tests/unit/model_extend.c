/*
 * model_extend (live items, schemas/items.md "Items topic"): the extended
 * model has the base's items then the new ones, new embeddings are the LLM
 * embedding plus the mean residual of the tier-2 node (tier-1, all items as
 * fallbacks), biases their mean bias; lookups find the new ids; the base is
 * unchanged and independent (freed first); bad items are refused by name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "modelfile.h"

#define TOL 1e-5

/* Mean R row and bias of base items whose node (level 1 or 2) is node; count returned. */
static uint32_t
node_mean(const struct model *m, uint32_t node, double *r, double *b)
{
	uint32_t dim = model_dim(m), cnt = 0;
	const struct model_weights *w = model_weights(m);

	memset(r, 0, dim * sizeof(double));
	*b = 0;
	for (uint32_t i = 0; i < model_n_items(m); i++) {
		if (model_item_tier1(m, i) != node && model_item_tier2(m, i) != node)
			continue;
		for (uint32_t d = 0; d < dim; d++)
			r[d] += w->R[(size_t)i * dim + d];
		*b += w->ib[i];
		cnt++;
	}
	for (uint32_t d = 0; cnt > 0 && d < dim; d++)
		r[d] /= cnt;
	if (cnt > 0)
		*b /= cnt;
	return cnt;
}

int
main(void)
{
	/* 3 tier-1 nodes x 4 children, 9 items: the fourth child of each stays empty. */
	struct fixture_cat fc = { .n_items = 9, .dim = 8, .n_tier1 = 3, .k2 = 4, .seed = 11 };
	char dir[64], cpath[128], mpath[128], err[512];
	struct model *base, *ext = NULL, *bad;
	float emb[3][8];
	struct model_item_add add[3];
	uint32_t empty_t2 = MODEL_NODE_NONE, full_t2;
	double r[8], bias;
	int fails = 0;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0)
		return 1;
	snprintf(cpath, sizeof(cpath), "%s/c.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/m.imdl", dir);
	base = fixture_model(cpath, mpath, &fc, 6, err, sizeof(err));
	CHECK(base != NULL, "base model (%s)", base == NULL ? err : "ok");
	if (base == NULL)
		return 1;
	for (uint32_t t = fc.n_tier1; t < model_n_nodes(base); t++) {
		uint32_t cnt = 0;

		for (uint32_t i = 0; i < model_n_items(base); i++)
			cnt += model_item_tier2(base, i) == t;
		if (cnt == 0 && empty_t2 == MODEL_NODE_NONE)
			empty_t2 = t;
	}
	CHECK(empty_t2 != MODEL_NODE_NONE, "the fixture has an empty tier-2 node (%u)", empty_t2);
	if (empty_t2 == MODEL_NODE_NONE)
		return 1;
	full_t2 = model_item_tier2(base, 4); /* node 1, child 1 */
	for (int k = 0; k < 3; k++) {
		uint64_t s = 100 + (uint64_t)k;
		double nn = 0;

		for (int d = 0; d < 8; d++) {
			emb[k][d] = fixture_randf(&s);
			nn += (double)emb[k][d] * emb[k][d];
		}
		for (int d = 0; d < 8; d++)
			emb[k][d] = (float)(emb[k][d] / sqrt(nn));
	}
	add[0] = (struct model_item_add){ "new-a", 5, "New A", 5, emb[0],
		model_node_parent(base, full_t2), full_t2 };
	add[1] = (struct model_item_add){ "new-b", 5, "", 0, emb[1],
		model_node_parent(base, empty_t2), empty_t2 };
	add[2] = (struct model_item_add){ "new-c", 5, "New C", 5, emb[2],
		model_node_parent(base, full_t2), full_t2 };

	ext = model_extend(base, add, 3, err, sizeof(err));
	CHECK(ext != NULL, "model_extend (%s)", ext == NULL ? err : "ok");
	if (ext == NULL)
		return 1;
	CHECK(model_n_items(ext) == 12 && model_n_items(base) == 9, "items: base 9, extended %u",
	    model_n_items(ext));
	CHECK(model_hparams(ext)->model_version == model_hparams(base)->model_version,
	    "model_version unchanged");
	CHECK(model_n_nodes(ext) == model_n_nodes(base) && model_dim(ext) == 8 &&
		strcmp(model_embedder(ext), model_embedder(base)) == 0,
	    "tree, dim and embedder as the base");
	CHECK(model_item_lookup(base, "new-a", 5) == -1, "base does not know new-a");
	CHECK(model_item_lookup(ext, "new-a", 5) == 9 && model_item_lookup(ext, "new-b", 5) == 10 &&
		model_item_lookup(ext, "new-c", 5) == 11,
	    "new ids found at 9, 10, 11");
	CHECK(model_item_lookup_hash(ext, model_id_hash("new-b", 5)) == 10, "lookup by hash");
	CHECK(model_item_lookup(ext, "item-7", 6) == 7, "base ids keep their index");
	{
		size_t len;
		const char *t = model_item_title(ext, 9, &len);

		CHECK(len == 5 && memcmp(t, "New A", 5) == 0, "title of new-a");
		model_item_title(ext, 10, &len);
		CHECK(len == 0, "empty title of new-b");
		t = model_item_id(ext, 8, &len);
		CHECK(len == 6 && memcmp(t, "item-8", 6) == 0, "id of base item 8");
	}
	CHECK(model_item_tier1(ext, 10) == add[1].tier1 && model_item_tier2(ext, 10) == empty_t2,
	    "tiers of new-b");

	/* Embeddings and biases as specified. */
	{
		const float *e = model_item_embeddings(ext), *llm = model_llm_embeddings(ext);
		const float *eb = model_item_embeddings(base);
		const struct model_weights *w = model_weights(ext);
		double maxd = 0;

		for (size_t i = 0; i < 9 * 8; i++)
			maxd = fmax(maxd, fabs(e[i] - eb[i]));
		CHECK(maxd == 0, "base items' embeddings unchanged in the extension");
		CHECK(node_mean(base, full_t2, r, &bias) > 0, "tier-2 node %u has items", full_t2);
		maxd = 0;
		for (int d = 0; d < 8; d++) {
			maxd = fmax(maxd, fabs(e[9 * 8 + d] - (emb[0][d] + r[d])));
			maxd = fmax(maxd, fabs(e[11 * 8 + d] - (emb[2][d] + r[d])));
			maxd = fmax(maxd, fabs(llm[9 * 8 + d] - emb[0][d]));
		}
		CHECK(
		    maxd < TOL, "new-a, new-c: LLM + mean R of tier-2 node (max diff %.3g)", maxd);
		CHECK(fabs(w->ib[9] - bias) < TOL && fabs(w->ib[11] - bias) < TOL,
		    "new-a bias %g = tier-2 mean %g", (double)w->ib[9], bias);
		CHECK(node_mean(base, add[1].tier1, r, &bias) > 0, "tier-1 node %u has items",
		    add[1].tier1);
		maxd = 0;
		for (int d = 0; d < 8; d++)
			maxd = fmax(maxd, fabs(e[10 * 8 + d] - (emb[1][d] + r[d])));
		CHECK(maxd < TOL && fabs(w->ib[10] - bias) < TOL,
		    "new-b (empty tier-2 node): tier-1 mean R and bias (max diff %.3g)", maxd);
	}

	/* Refusals name the item. */
	{
		struct model_item_add b = add[0];

		b.id = "item-3", b.id_len = 6;
		bad = model_extend(base, &b, 1, err, sizeof(err));
		CHECK(bad == NULL && strstr(err, "already in the model") != NULL,
		    "base id refused: %s", err);
		b = add[0];
		b.tier2 = fc.n_tier1 + ((add[0].tier1 + 1) % fc.n_tier1) * fc.k2;
		bad = model_extend(base, &b, 1, err, sizeof(err));
		CHECK(bad == NULL && strstr(err, "tier2") != NULL, "tier2 of another parent: %s",
		    err);
		b = add[0];
		b.tier1 = 99;
		bad = model_extend(base, &b, 1, err, sizeof(err));
		CHECK(
		    bad == NULL && strstr(err, "tier1 99") != NULL, "tier1 out of range: %s", err);
		float nan_emb[8];

		memcpy(nan_emb, emb[0], sizeof(nan_emb));
		nan_emb[3] = NAN;
		b = add[0];
		b.embedding = nan_emb;
		bad = model_extend(base, &b, 1, err, sizeof(err));
		CHECK(
		    bad == NULL && strstr(err, "embedding[3] not finite") != NULL, "NaN: %s", err);
		struct model_item_add two[2] = { add[0], add[0] };

		bad = model_extend(base, two, 2, err, sizeof(err));
		CHECK(bad == NULL && strstr(err, "duplicate id") != NULL, "duplicate new ids: %s",
		    err);
		b = add[0];
		b.id_len = 0;
		bad = model_extend(base, &b, 1, err, sizeof(err));
		CHECK(bad == NULL && strstr(err, "id length 0") != NULL, "empty id: %s", err);
	}

	/* Independence: the base can go first; an extension cannot be written. */
	{
		struct model_hparams hp = *model_hparams(base);
		struct model_weights w = *model_weights(base);
		char wpath[160];

		snprintf(wpath, sizeof(wpath), "%s/ext.imdl", dir);
		CHECK(model_write(wpath, ext, &hp, &w, err, sizeof(err)) != 0,
		    "model_write refuses an extension (%s)", err);
		model_free(base);
		base = NULL;
		CHECK(model_item_lookup(ext, "item-8", 6) == 8 &&
			model_node_label(ext, 5, err, 16) > 0,
		    "extension usable after the base is freed");
		const float *e = model_item_embeddings(ext);
		double s = 0;

		for (size_t i = 0; i < 12 * 8; i++)
			s += e[i];
		CHECK(isfinite(s), "every embedding readable (sum %g)", s);
	}
	/* Extending an extension (SIGHUP path does base + live; this only checks chaining). */
	{
		float emb2[8];
		struct model_item_add a2;
		struct model *ext2;

		memcpy(emb2, emb[0], sizeof(emb2));
		a2 = add[0];
		a2.id = "new-d";
		ext2 = model_extend(ext, &a2, 1, err, sizeof(err));
		CHECK(ext2 != NULL && model_n_items(ext2) == 13 &&
			model_item_lookup(ext2, "new-a", 5) == 9,
		    "an extension extends again (%s)", ext2 == NULL ? err : "ok");
		model_free(ext2);
	}
	model_free(ext);
	model_free(base);
	unlink(cpath);
	unlink(mpath);
	rmdir(dir);
	printf("%s\n", fails ? "FAILED" : "all passed");
	return fails ? 1 : 0;
}
