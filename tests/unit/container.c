/*
 * model/container.c: CRC-32 vectors, writer layout (alignment, zero
 * padding, no stray temporary files), and corruption of every section, the
 * table and the header rejected by name.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "container.h"
#include "fixture.h"
#include "modelfile.h"

static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n)) != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n)
		*len = (size_t)n;
	else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static int
write_file(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ret = -1;

	if (f == NULL)
		return -1;
	if (fwrite(buf, 1, len, f) == len)
		ret = 0;
	if (fclose(f) != 0)
		ret = -1;
	return ret;
}

/* Loads path through the container and the model loader; both must fail with want. */
static int
expect_error(const char *path, const char *want)
{
	char err[512], err2[512];
	struct container *ct = container_open(path, err, sizeof(err));
	struct model *m = model_load(path, err2, sizeof(err2));
	int fails = 0;

	CHECK(ct == NULL && strstr(err, want) != NULL, "container rejects: %s",
	    ct == NULL ? err : "opened!");
	CHECK(m == NULL && strstr(err2, want) != NULL, "model_load rejects: %s",
	    m == NULL ? err2 : "loaded!");
	container_close(ct);
	model_free(m);
	return fails;
}

static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int
test_writer(const char *dir)
{
	char path[128], err[256];
	struct container_writer *cw;
	struct container *ct;
	const uint8_t *p;
	size_t len;
	int fails = 0;

	snprintf(path, sizeof(path), "%s/w.bin", dir);
	cw = container_writer_new(path, CONTAINER_KIND_CATALOG, 3, err, sizeof(err));
	CHECK(cw != NULL, "writer created");
	if (cw == NULL)
		return fails;
	CHECK(container_writer_begin(cw, "AAAA", err, sizeof(err)) == 0 &&
		container_writer_append(cw, "hello", 5, err, sizeof(err)) == 0 &&
		container_writer_append(cw, " world", 6, err, sizeof(err)) == 0 &&
		container_writer_begin(cw, "EMPT", err, sizeof(err)) == 0 &&
		container_writer_begin(cw, "BBBB", err, sizeof(err)) == 0 &&
		container_writer_append(cw, "x", 1, err, sizeof(err)) == 0,
	    "three sections written");
	CHECK(container_writer_begin(cw, "CCCC", err, sizeof(err)) == -1,
	    "a fourth section is refused: %s", err);
	CHECK(count_entries(dir) == 1 && access(path, F_OK) != 0,
	    "only the temporary file exists before commit");
	CHECK(container_writer_commit(cw, err, sizeof(err)) == 0, "commit (%s)", err);
	container_writer_free(cw);
	CHECK(count_entries(dir) == 1 && access(path, F_OK) == 0, "renamed, no temporary left");

	ct = container_open(path, err, sizeof(err));
	CHECK(ct != NULL, "written container opens (%s)", ct == NULL ? err : "ok");
	if (ct != NULL) {
		uintptr_t base;
		p = container_section(ct, "AAAA", &len);
		CHECK(p != NULL && len == 11 && memcmp(p, "hello world", 11) == 0,
		    "section AAAA data");
		base = (uintptr_t)p;
		CHECK(base % 64 == 0, "section data 64-byte aligned in memory");
		p = container_section(ct, "EMPT", &len);
		CHECK(p != NULL && len == 0, "empty section present");
		p = container_section(ct, "BBBB", &len);
		CHECK(p != NULL && len == 1 && *p == 'x' && ((uintptr_t)p - base) % 64 == 0,
		    "section BBBB aligned");
		CHECK(
		    container_section(ct, "ZZZZ", &len) == NULL && len == 0, "absent section NULL");
		CHECK(container_kind(ct) == CONTAINER_KIND_CATALOG, "kind");
		container_close(ct);
	}
	size_t flen;
	uint8_t *buf = read_file(path, &flen);
	CHECK(buf != NULL && flen == 64 * 4 + 1 && memcmp(buf, "INTRSTv1", 8) == 0,
	    "file size = header+table padded, 3 aligned sections (%zu)", flen);
	int zero_pad = buf != NULL;
	for (size_t i = 64 + 3 * 32; buf != NULL && i < 64 * 3; i++)
		if (buf[i] != 0)
			zero_pad = 0;
	for (size_t i = 64 * 3 + 11; buf != NULL && i < 64 * 4; i++)
		if (buf[i] != 0)
			zero_pad = 0;
	CHECK(zero_pad, "padding is zero");
	free(buf);
	unlink(path);

	/* A writer freed without commit leaves nothing behind. */
	cw = container_writer_new(path, CONTAINER_KIND_MODEL, 2, err, sizeof(err));
	CHECK(cw != NULL && container_writer_begin(cw, "AAAA", err, sizeof(err)) == 0 &&
		container_writer_commit(cw, err, sizeof(err)) == -1,
	    "commit with a missing section fails: %s", err);
	container_writer_free(cw);
	CHECK(count_entries(dir) == 0, "aborted writer removed its temporary file");
	return fails;
}

int
main(void)
{
	struct fixture_cat fc = { .n_items = 40, .dim = 8, .n_tier1 = 3, .k2 = 2, .seed = 5 };
	char dir[64], err[512], cpath[128], mpath[128], bad[128];
	uint8_t *orig, *buf;
	size_t len;
	uint32_t n;
	int fails = 0;
	struct model *m;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0) {
		perror("mkdtemp");
		return 1;
	}
	CHECK(container_crc32(0, "123456789", 9) == 0xCBF43926u, "CRC-32 check value");
	CHECK(container_crc32(container_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u,
	    "CRC-32 incremental");
	CHECK(container_crc32(0, "", 0) == 0, "CRC-32 of nothing");
	fails += test_writer(dir);

	snprintf(cpath, sizeof(cpath), "%s/c.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/m.imdl", dir);
	snprintf(bad, sizeof(bad), "%s/bad.imdl", dir);
	m = fixture_model(cpath, mpath, &fc, 4, err, sizeof(err));
	CHECK(m != NULL, "model built (%s)", m == NULL ? err : "ok");
	model_free(m);
	orig = read_file(mpath, &len);
	CHECK(orig != NULL, "model read");
	if (orig == NULL)
		return 1;
	buf = malloc(len);
	memcpy(&n, orig + 16, 4);
	CHECK(n == 10, "model has 10 sections");

	/* Flip one byte in the middle of each section. */
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = orig + 64 + 32 * i;
		uint64_t off, slen;
		char want[64];

		memcpy(&off, e + 8, 8);
		memcpy(&slen, e + 16, 8);
		memcpy(buf, orig, len);
		buf[off + slen / 2] ^= 0x10;
		write_file(bad, buf, len);
		snprintf(want, sizeof(want), "section %.4s: bad checksum", (const char *)e);
		fails += expect_error(bad, want);
	}
	/* Every byte of the table is covered by the table CRC. */
	int table_ok = 1;
	for (size_t at = 64; at < 64 + 32 * (size_t)n; at += 7) {
		char e2[256];
		struct container *ct;

		memcpy(buf, orig, len);
		buf[at] ^= 0x01;
		write_file(bad, buf, len);
		ct = container_open(bad, e2, sizeof(e2));
		if (ct != NULL || strstr(e2, "section table: bad checksum") == NULL)
			table_ok = 0;
		container_close(ct);
	}
	CHECK(table_ok, "every probed table byte flip -> section table: bad checksum");
	memcpy(buf, orig, len);
	buf[33] ^= 0x01;
	write_file(bad, buf, len);
	fails += expect_error(bad, "section table: bad checksum");

	/* Truncations, appended bytes, header fields. */
	char want[128];
	write_file(bad, orig, len - 1);
	snprintf(want, sizeof(want), "file truncated: size %zu, header says %zu", len - 1, len);
	fails += expect_error(bad, want);
	write_file(bad, orig, len / 2);
	snprintf(want, sizeof(want), "file truncated: size %zu, header says %zu", len / 2, len);
	fails += expect_error(bad, want);
	write_file(bad, orig, 10);
	fails += expect_error(bad, "file truncated: size 10, header needs 64");
	write_file(bad, orig, 0);
	fails += expect_error(bad, "file truncated: size 0");
	memcpy(buf, orig, len);
	buf = realloc(buf, len + 1);
	buf[len] = 0;
	write_file(bad, buf, len + 1);
	fails += expect_error(bad, "file too long");
	memcpy(buf, orig, len);
	buf[0] = 'X';
	write_file(bad, buf, len);
	fails += expect_error(bad, "header: bad magic");
	memcpy(buf, orig, len);
	buf[8] = 2;
	write_file(bad, buf, len);
	fails += expect_error(bad, "header: unknown format_version 2");
	memcpy(buf, orig, len);
	buf[12] = 3;
	write_file(bad, buf, len);
	fails += expect_error(bad, "header: unknown kind 3");
	memcpy(buf, orig, len);
	buf[16] = 65;
	write_file(bad, buf, len);
	fails += expect_error(bad, "header: section_count 65 out of range");
	memcpy(buf, orig, len);
	buf[50] = 1;
	write_file(bad, buf, len);
	fails += expect_error(bad, "header: reserved bytes not zero");
	fails += expect_error("/nonexistent/x.imdl", "No such file");

	/* Section table faults with a valid table CRC: past the end, overlap, duplicate. */
	{
		uint64_t off, v;
		uint32_t crc;

		memcpy(buf, orig, len);
		memcpy(&off, buf + 64 + 32 * 9 + 8, 8);
		v = len - off + 64; /* last section's length runs past the end */
		memcpy(buf + 64 + 32 * 9 + 16, &v, 8);
		crc = container_crc32(0, buf + 64, 32 * n);
		memcpy(buf + 32, &crc, 4);
		write_file(bad, buf, len);
		snprintf(want, sizeof(want), "section %.4s: extends past end of file",
		    (const char *)buf + 64 + 32 * 9);
		fails += expect_error(bad, want);

		memcpy(buf, orig, len);
		memcpy(&off, buf + 64 + 32 * 1 + 8, 8);
		memcpy(buf + 64 + 32 * 2 + 8, &off, 8); /* section 2 starts where section 1 does */
		crc = container_crc32(0, buf + 64, 32 * n);
		memcpy(buf + 32, &crc, 4);
		write_file(bad, buf, len);
		fails += expect_error(bad, "overlaps section");

		memcpy(buf, orig, len);
		memcpy(buf + 64 + 32 * 3, "CATM", 4);
		crc = container_crc32(0, buf + 64, 32 * n);
		memcpy(buf + 32, &crc, 4);
		write_file(bad, buf, len);
		fails += expect_error(bad, "section CATM: duplicate");

		memcpy(buf, orig, len);
		memcpy(buf + 64 + 32 * 3, "XXXX", 4); /* EMBD renamed: missing */
		crc = container_crc32(0, buf + 64, 32 * n);
		memcpy(buf + 32, &crc, 4);
		write_file(bad, buf, len);
		{
			/* A missing section is the model layer's finding, not the container's. */
			m = model_load(bad, err, sizeof(err));
			CHECK(m == NULL && strstr(err, "section EMBD: missing") != NULL,
			    "model_load rejects: %s", m == NULL ? err : "loaded!");
			model_free(m);
		}

		memcpy(buf, orig, len);
		memcpy(&off, buf + 64 + 32 * 4 + 8, 8);
		off += 4;
		memcpy(buf + 64 + 32 * 4 + 8, &off, 8);
		crc = container_crc32(0, buf + 64, 32 * n);
		memcpy(buf + 32, &crc, 4);
		write_file(bad, buf, len);
		fails += expect_error(bad, "not a multiple of 64");
	}
	/* The untouched file still loads. */
	write_file(bad, orig, len);
	m = model_load(bad, err, sizeof(err));
	CHECK(m != NULL, "pristine copy loads (%s)", m == NULL ? err : "ok");
	model_free(m);

	free(orig);
	free(buf);
	unlink(bad);
	unlink(cpath);
	unlink(mpath);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
