/*
 * The section container of catalog and model files (schemas/modelfile.md
 * "Container"): read-only mapping and validation of the header, table and
 * per-section CRCs; a streaming writer with 64-byte aligned sections and an
 * atomic replace (temporary file, fsync, rename, directory fsync).
 */
/* MAP_ANONYMOUS is not in POSIX 2008. */
#define _DEFAULT_SOURCE

#include "container.h"
#include "le.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CONTAINER_MAGIC          "INTRSTv1"
#define CONTAINER_MAGIC_LEN      8
#define CONTAINER_FORMAT_VERSION 1

struct container_entry {
	char tag[5]; /* NUL-terminated for messages */
	uint64_t offset;
	uint64_t length;
	uint32_t crc;
};

struct container {
	const uint8_t *map;
	size_t map_size;
	uint32_t kind;
	uint32_t n_sections;
	struct container_entry sec[CONTAINER_MAX_SECTIONS];
};

struct container_writer {
	int fd;
	int committed;
	uint32_t kind;
	uint32_t n_sections;
	uint32_t n_begun;
	uint64_t pos; /* bytes written so far */
	char *path;
	char *tmp_path;
	struct container_entry sec[CONTAINER_MAX_SECTIONS];
};

uint32_t
container_crc32(uint32_t crc, const void *buf, size_t len)
{
	/* crc32_z takes a size_t length; its result fits 32 bits. */
	return (uint32_t)crc32_z(crc, buf, len);
}

static int
all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* A tag is four printable ASCII characters. */
static int
tag_valid(const char *tag)
{
	for (int i = 0; i < 4; i++)
		if (tag[i] < 0x20 || tag[i] > 0x7e)
			return 0;
	return 1;
}

/*
 * Validates the mapped bytes of a container into ct (map/map_size set).
 * Returns 0, or -1 with the reason in errstr.
 */
static int
container_validate(struct container *ct, char *errstr, size_t errstr_size)
{
	const uint8_t *p = ct->map;
	size_t size = ct->map_size;
	uint64_t file_size, table_end;
	uint32_t version, n;
	uint32_t order[CONTAINER_MAX_SECTIONS];

	if (memcmp(p, CONTAINER_MAGIC, CONTAINER_MAGIC_LEN) != 0) {
		snprintf(errstr, errstr_size, "header: bad magic (not a catalog or model file)");
		return -1;
	}
	version = le_get_u32(p + 8);
	if (version != CONTAINER_FORMAT_VERSION) {
		snprintf(errstr, errstr_size, "header: unknown format_version %u (supported: %u)",
		    version, CONTAINER_FORMAT_VERSION);
		return -1;
	}
	ct->kind = le_get_u32(p + 12);
	if (ct->kind != CONTAINER_KIND_CATALOG && ct->kind != CONTAINER_KIND_MODEL) {
		snprintf(errstr, errstr_size, "header: unknown kind %u (1 = catalog, 2 = model)",
		    ct->kind);
		return -1;
	}
	n = le_get_u32(p + 16);
	if (n < 1 || n > CONTAINER_MAX_SECTIONS) {
		snprintf(errstr, errstr_size, "header: section_count %u out of range 1..%d", n,
		    CONTAINER_MAX_SECTIONS);
		return -1;
	}
	if (le_get_u32(p + 20) != 0 || !all_zero(p + 36, 28)) {
		snprintf(errstr, errstr_size, "header: reserved bytes not zero");
		return -1;
	}
	file_size = le_get_u64(p + 24);
	if (file_size > size) {
		snprintf(errstr, errstr_size, "file truncated: size %zu, header says %llu", size,
		    (unsigned long long)file_size);
		return -1;
	}
	if (file_size < size) {
		snprintf(errstr, errstr_size, "file too long: size %zu, header says %llu", size,
		    (unsigned long long)file_size);
		return -1;
	}
	table_end = CONTAINER_HEADER_SIZE + (uint64_t)n * CONTAINER_ENTRY_SIZE;
	if (table_end > size) {
		snprintf(errstr, errstr_size, "section table: extends past end of file");
		return -1;
	}
	if (container_crc32(0, p + CONTAINER_HEADER_SIZE, n * CONTAINER_ENTRY_SIZE) !=
	    le_get_u32(p + 32)) {
		snprintf(errstr, errstr_size, "section table: bad checksum");
		return -1;
	}
	ct->n_sections = n;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = p + CONTAINER_HEADER_SIZE + (size_t)i * CONTAINER_ENTRY_SIZE;
		struct container_entry *s = &ct->sec[i];

		memcpy(s->tag, e, 4);
		s->tag[4] = '\0';
		if (!tag_valid(s->tag)) {
			snprintf(
			    errstr, errstr_size, "section table entry %u: tag is not ASCII", i);
			return -1;
		}
		s->offset = le_get_u64(e + 8);
		s->length = le_get_u64(e + 16);
		s->crc = le_get_u32(e + 24);
		if (le_get_u32(e + 4) != 0 || le_get_u32(e + 28) != 0) {
			snprintf(
			    errstr, errstr_size, "section %s: flags or reserved not zero", s->tag);
			return -1;
		}
		for (uint32_t j = 0; j < i; j++) {
			if (memcmp(ct->sec[j].tag, s->tag, 4) == 0) {
				snprintf(errstr, errstr_size, "section %s: duplicate", s->tag);
				return -1;
			}
		}
		if (s->offset % CONTAINER_ALIGN != 0) {
			snprintf(errstr, errstr_size,
			    "section %s: offset %llu not a multiple of %d", s->tag,
			    (unsigned long long)s->offset, CONTAINER_ALIGN);
			return -1;
		}
		if (s->offset < table_end) {
			snprintf(
			    errstr, errstr_size, "section %s: overlaps the section table", s->tag);
			return -1;
		}
		if (s->offset > size || s->length > size - s->offset) {
			snprintf(
			    errstr, errstr_size, "section %s: extends past end of file", s->tag);
			return -1;
		}
		/* Insertion sort by offset, for the overlap check. */
		uint32_t k = i;
		while (k > 0 && ct->sec[order[k - 1]].offset > s->offset) {
			order[k] = order[k - 1];
			k--;
		}
		order[k] = i;
	}
	for (uint32_t i = 1; i < n; i++) {
		const struct container_entry *a = &ct->sec[order[i - 1]], *b = &ct->sec[order[i]];

		if (a->offset + a->length > b->offset) {
			snprintf(
			    errstr, errstr_size, "section %s: overlaps section %s", b->tag, a->tag);
			return -1;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct container_entry *s = &ct->sec[i];

		if (container_crc32(0, p + s->offset, (size_t)s->length) != s->crc) {
			snprintf(errstr, errstr_size, "section %s: bad checksum", s->tag);
			return -1;
		}
	}
	return 0;
}

/* Reads exactly size bytes from the start of fd; the file may shrink meanwhile. */
static int
container_read_all(int fd, uint8_t *buf, size_t size, char *errstr, size_t errstr_size)
{
	size_t got = 0;

	errstr[0] = '\0';
	while (got < size) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(errstr, errstr_size, "read: %s", strerror(errno));
			return -1;
		}
		if (n == 0) {
			snprintf(errstr, errstr_size,
			    "file truncated while reading: %zu of %zu bytes", got, size);
			return -1;
		}
		got += (size_t)n;
	}
	return 0;
}

struct container *
container_open(const char *path, char *errstr, size_t errstr_size)
{
	struct container *ct = NULL;
	struct stat st;
	void *map = MAP_FAILED;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(errstr, errstr_size, "open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(errstr, errstr_size, "fstat: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(errstr, errstr_size, "not a regular file");
		goto fail;
	}
	if (st.st_size < CONTAINER_HEADER_SIZE) {
		snprintf(errstr, errstr_size, "file truncated: size %lld, header needs %d",
		    (long long)st.st_size, CONTAINER_HEADER_SIZE);
		goto fail;
	}
	/*
	 * The file is read into a private anonymous mapping, then made
	 * read-only, rather than mapped: a model file rewritten or truncated in
	 * place while it serves (cp over it) must not take the daemon down with
	 * SIGBUS on the next access past the new end.
	 */
	map = mmap(
	    NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		snprintf(errstr, errstr_size, "mmap: %s", strerror(errno));
		goto fail;
	}
	if (container_read_all(fd, map, (size_t)st.st_size, errstr, errstr_size) != 0 ||
	    mprotect(map, (size_t)st.st_size, PROT_READ) != 0) {
		if (errstr[0] == '\0')
			snprintf(errstr, errstr_size, "mprotect: %s", strerror(errno));
		goto fail;
	}
	ct = calloc(1, sizeof(*ct));
	if (ct == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	ct->map = map;
	ct->map_size = (size_t)st.st_size;
	if (container_validate(ct, errstr, errstr_size) != 0)
		goto fail;
	close(fd);
	return ct;
fail:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	free(ct);
	close(fd);
	return NULL;
}

void
container_close(struct container *ct)
{
	if (ct == NULL)
		return;
	munmap((void *)(uintptr_t)ct->map, ct->map_size);
	free(ct);
}

uint32_t
container_kind(const struct container *ct)
{
	return ct->kind;
}

const uint8_t *
container_section(const struct container *ct, const char *tag, size_t *len)
{
	for (uint32_t i = 0; i < ct->n_sections; i++) {
		if (memcmp(ct->sec[i].tag, tag, 4) == 0) {
			*len = (size_t)ct->sec[i].length;
			return ct->map + ct->sec[i].offset;
		}
	}
	*len = 0;
	return NULL;
}

/* Writes all of buf; returns 0 or -1 with errno set. */
static int
write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t r = write(fd, p, len);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

struct container_writer *
container_writer_new(
    const char *path, uint32_t kind, uint32_t n_sections, char *errstr, size_t errstr_size)
{
	static const char suffix[] = ".tmp.XXXXXX";
	struct container_writer *cw;
	size_t plen = strlen(path);

	if (n_sections < 1 || n_sections > CONTAINER_MAX_SECTIONS) {
		snprintf(errstr, errstr_size, "%s: section count %u out of range 1..%d", path,
		    n_sections, CONTAINER_MAX_SECTIONS);
		return NULL;
	}
	cw = calloc(1, sizeof(*cw));
	if (cw == NULL)
		goto nomem;
	cw->fd = -1;
	cw->kind = kind;
	cw->n_sections = n_sections;
	cw->path = strdup(path);
	cw->tmp_path = malloc(plen + sizeof(suffix));
	if (cw->path == NULL || cw->tmp_path == NULL)
		goto nomem;
	memcpy(cw->tmp_path, path, plen);
	memcpy(cw->tmp_path + plen, suffix, sizeof(suffix));
	cw->fd = mkstemp(cw->tmp_path);
	if (cw->fd < 0) {
		snprintf(errstr, errstr_size, "%s: %s", cw->tmp_path, strerror(errno));
		free(cw->tmp_path);
		cw->tmp_path = NULL; /* nothing to unlink */
		goto fail;
	}
	if (fchmod(cw->fd, 0644) != 0) {
		snprintf(errstr, errstr_size, "%s: chmod: %s", cw->tmp_path, strerror(errno));
		goto fail;
	}
	/* Header and table are written by commit; sections start after them. */
	cw->pos = CONTAINER_HEADER_SIZE + (uint64_t)n_sections * CONTAINER_ENTRY_SIZE;
	if (lseek(cw->fd, (off_t)cw->pos, SEEK_SET) < 0) {
		snprintf(errstr, errstr_size, "%s: seek: %s", cw->tmp_path, strerror(errno));
		goto fail;
	}
	return cw;
nomem:
	snprintf(errstr, errstr_size, "%s: out of memory", path);
fail:
	container_writer_free(cw);
	return NULL;
}

int
container_writer_begin(
    struct container_writer *cw, const char *tag, char *errstr, size_t errstr_size)
{
	static const uint8_t zeros[CONTAINER_ALIGN];
	struct container_entry *s;
	size_t pad;

	if (cw->n_begun >= cw->n_sections) {
		snprintf(errstr, errstr_size, "%s: more than the %u declared sections", cw->path,
		    cw->n_sections);
		return -1;
	}
	if (!tag_valid(tag)) {
		snprintf(
		    errstr, errstr_size, "%s: section tag is not four ASCII characters", cw->path);
		return -1;
	}
	pad = (size_t)((CONTAINER_ALIGN - cw->pos % CONTAINER_ALIGN) % CONTAINER_ALIGN);
	if (pad > 0 && write_full(cw->fd, zeros, pad) != 0) {
		snprintf(errstr, errstr_size, "%s: write: %s", cw->tmp_path, strerror(errno));
		return -1;
	}
	cw->pos += pad;
	s = &cw->sec[cw->n_begun++];
	memcpy(s->tag, tag, 4);
	s->tag[4] = '\0';
	s->offset = cw->pos;
	s->length = 0;
	s->crc = 0;
	return 0;
}

int
container_writer_append(
    struct container_writer *cw, const void *data, size_t len, char *errstr, size_t errstr_size)
{
	struct container_entry *s;

	if (cw->n_begun == 0) {
		snprintf(errstr, errstr_size, "%s: data before the first section", cw->path);
		return -1;
	}
	s = &cw->sec[cw->n_begun - 1];
	if (write_full(cw->fd, data, len) != 0) {
		snprintf(errstr, errstr_size, "%s: section %s: write: %s", cw->tmp_path, s->tag,
		    strerror(errno));
		return -1;
	}
	s->crc = container_crc32(s->crc, data, len);
	s->length += len;
	cw->pos += len;
	return 0;
}

/* fsyncs the directory holding path, so a rename into it is durable. */
static int
fsync_parent_dir(const char *path, char *errstr, size_t errstr_size)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, ret = -1;

	if (slash == NULL)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", path);
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		snprintf(errstr, errstr_size, "%s: fsync directory: %s", dir, strerror(errno));
		goto done;
	}
	ret = 0;
done:
	if (fd >= 0)
		close(fd);
	free(dir);
	return ret;
}

int
container_writer_commit(struct container_writer *cw, char *errstr, size_t errstr_size)
{
	uint8_t head[CONTAINER_HEADER_SIZE + CONTAINER_MAX_SECTIONS * CONTAINER_ENTRY_SIZE];
	size_t table_len = (size_t)cw->n_sections * CONTAINER_ENTRY_SIZE;
	ssize_t r;

	if (cw->n_begun != cw->n_sections) {
		snprintf(errstr, errstr_size, "%s: %u sections written, %u declared", cw->path,
		    cw->n_begun, cw->n_sections);
		return -1;
	}
	memset(head, 0, sizeof(head));
	memcpy(head, CONTAINER_MAGIC, CONTAINER_MAGIC_LEN);
	le_put_u32(head + 8, CONTAINER_FORMAT_VERSION);
	le_put_u32(head + 12, cw->kind);
	le_put_u32(head + 16, cw->n_sections);
	le_put_u64(head + 24, cw->pos);
	for (uint32_t i = 0; i < cw->n_sections; i++) {
		uint8_t *e = head + CONTAINER_HEADER_SIZE + (size_t)i * CONTAINER_ENTRY_SIZE;

		memcpy(e, cw->sec[i].tag, 4);
		le_put_u64(e + 8, cw->sec[i].offset);
		le_put_u64(e + 16, cw->sec[i].length);
		le_put_u32(e + 24, cw->sec[i].crc);
	}
	le_put_u32(head + 32, container_crc32(0, head + CONTAINER_HEADER_SIZE, table_len));
	do
		r = pwrite(cw->fd, head, CONTAINER_HEADER_SIZE + table_len, 0);
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)(CONTAINER_HEADER_SIZE + table_len)) {
		snprintf(errstr, errstr_size, "%s: write header: %s", cw->tmp_path,
		    r < 0 ? strerror(errno) : "short write");
		return -1;
	}
	if (fsync(cw->fd) != 0) {
		snprintf(errstr, errstr_size, "%s: fsync: %s", cw->tmp_path, strerror(errno));
		return -1;
	}
	if (close(cw->fd) != 0) {
		cw->fd = -1;
		snprintf(errstr, errstr_size, "%s: close: %s", cw->tmp_path, strerror(errno));
		return -1;
	}
	cw->fd = -1;
	if (rename(cw->tmp_path, cw->path) != 0) {
		snprintf(errstr, errstr_size, "rename %s -> %s: %s", cw->tmp_path, cw->path,
		    strerror(errno));
		return -1;
	}
	cw->committed = 1;
	return fsync_parent_dir(cw->path, errstr, errstr_size);
}

void
container_writer_free(struct container_writer *cw)
{
	if (cw == NULL)
		return;
	if (cw->fd >= 0)
		close(cw->fd);
	if (!cw->committed && cw->tmp_path != NULL)
		unlink(cw->tmp_path);
	free(cw->tmp_path);
	free(cw->path);
	free(cw);
}
