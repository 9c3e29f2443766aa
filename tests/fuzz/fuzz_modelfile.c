/*
 * libFuzzer target for the model-file loader (model/modelfile.c over
 * model/container.c): any bytes written to a file must load or fail with a
 * message, never crash, leak or read outside the mapping; a file that loaded
 * must answer every accessor consistently. model_load() takes a path, so the
 * input goes to one memfd reused for the whole run (opened as
 * /proc/self/fd/N, mapped like a regular file).
 *
 * Input: one flag byte, then the file. Flag bit 0 set: the header's
 * file_size and every CRC (section table, each in-bounds section) are fixed
 * up first, so mutations reach the content checks behind the checksums; clear:
 * the bytes are loaded as they are. Build and run: scripts/fuzz.
 * Seeds: tests/fuzz/corpus/modelfile/ (written by scripts/fuzz --seeds).
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "container.h"
#include "modelfile.h"

#define FUZZ_FLAG_FIXUP 0x01u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t
fuzz_rd_u64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* Rewrites file_size and the CRCs in buf (a private copy) as the writer would. */
static void
fuzz_fixup(uint8_t *buf, size_t size)
{
	uint32_t n, crc;

	if (size < CONTAINER_HEADER_SIZE)
		return;
	uint64_t fsz = size;
	memcpy(buf + 24, &fsz, 8);
	memcpy(&n, buf + 16, 4);
	if (n < 1 || n > CONTAINER_MAX_SECTIONS ||
	    CONTAINER_HEADER_SIZE + (size_t)n * CONTAINER_ENTRY_SIZE > size)
		return;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *e = buf + CONTAINER_HEADER_SIZE + (size_t)i * CONTAINER_ENTRY_SIZE;
		uint64_t off = fuzz_rd_u64(e + 8), len = fuzz_rd_u64(e + 16);

		if (off <= size && len <= size - off) {
			crc = container_crc32(0, buf + off, (size_t)len);
			memcpy(e + 24, &crc, 4);
		}
	}
	crc = container_crc32(0, buf + CONTAINER_HEADER_SIZE, (size_t)n * CONTAINER_ENTRY_SIZE);
	memcpy(buf + 32, &crc, 4);
}

/* Calls every accessor of a loaded model; aborts on an inconsistent answer. */
static void
fuzz_walk(const struct model *m)
{
	uint32_t n = model_n_items(m), dim = model_dim(m), nodes = model_n_nodes(m);
	const float *llm = model_llm_embeddings(m), *emb = model_item_embeddings(m);
	volatile float fsink = 0.0f;
	char label[32];
	size_t len;

	if (dim == 0 || model_n_tier1(m) == 0 || model_n_tier1(m) > nodes)
		abort();
	(void)model_embedder(m);
	for (uint32_t i = 0; i < n; i++) {
		const char *id = model_item_id(m, i, &len);
		uint32_t t1 = model_item_tier1(m, i), t2 = model_item_tier2(m, i);

		/* The loader refuses duplicate ids and hash collisions: lookups are exact. */
		if (model_item_lookup(m, id, len) != (int32_t)i ||
		    model_item_lookup_hash(m, model_item_hash(m, i)) != (int32_t)i ||
		    model_item_hash(m, i) != model_id_hash(id, len))
			abort();
		(void)model_item_title(m, i, &len);
		if (t1 >= nodes || model_node_level(m, t1) != 1 || t2 >= nodes ||
		    model_node_level(m, t2) != 2 || model_node_parent(m, t2) != t1)
			abort();
		fsink += llm[(size_t)i * dim + dim - 1] + emb[(size_t)i * dim + dim - 1];
	}
	for (uint32_t k = 0; k < nodes; k++) {
		const float *c = model_node_centroid(m, k);

		(void)model_node_index(m, k);
		(void)model_node_name(m, k, &len);
		if (model_node_label(m, k, label, sizeof(label)) == 0)
			abort();
		fsink += c[dim - 1];
	}
	if (model_has_weights(m)) {
		const struct model_hparams *hp = model_hparams(m);
		const struct model_weights *w = model_weights(m);
		size_t h = hp->hidden, din = model_din(m);

		fsink += w->W[4 * h * (din + h) - 1] + w->b[4 * h - 1] + w->P[(size_t)dim * h - 1];
		fsink += w->pb[dim - 1] + w->T[(size_t)hp->n_types * hp->type_dim - 1];
		fsink += w->alpha[3];
		if (n > 0)
			fsink += w->R[(size_t)n * dim - 1] + w->ib[n - 1];
	}
	(void)fsink;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* One memfd for the process: the harness's only state. */
	static int fd = -1;
	static char path[64];
	struct model *m;
	uint8_t *buf;
	char err[512];

	if (size < 1)
		return 0;
	if (fd < 0) {
		fd = memfd_create("fuzz_modelfile", 0);
		if (fd < 0) {
			perror("fuzz_modelfile: memfd_create");
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	buf = malloc(size - 1 + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	if (data[0] & FUZZ_FLAG_FIXUP)
		fuzz_fixup(buf, size - 1);
	if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, size - 1, 0) != (ssize_t)(size - 1)) {
		perror("fuzz_modelfile: write");
		abort();
	}
	free(buf);
	err[0] = '\0';
	m = model_load(path, err, sizeof(err));
	if (m == NULL) {
		if (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
			abort(); /* a failure always says why */
		return 0;
	}
	fuzz_walk(m);
	model_free(m);
	return 0;
}
