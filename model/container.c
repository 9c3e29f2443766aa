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

#define CONTAINER_MAGIC          "INTRSTv1"
#define CONTAINER_MAGIC_LEN      8
#define CONTAINER_FORMAT_VERSION 1

/* CRC-32 (IEEE, reflected polynomial 0xEDB88320), one byte per step. */
static const uint32_t crc32_table[256] = {
	0x00000000u,
	0x77073096u,
	0xee0e612cu,
	0x990951bau,
	0x076dc419u,
	0x706af48fu,
	0xe963a535u,
	0x9e6495a3u,
	0x0edb8832u,
	0x79dcb8a4u,
	0xe0d5e91eu,
	0x97d2d988u,
	0x09b64c2bu,
	0x7eb17cbdu,
	0xe7b82d07u,
	0x90bf1d91u,
	0x1db71064u,
	0x6ab020f2u,
	0xf3b97148u,
	0x84be41deu,
	0x1adad47du,
	0x6ddde4ebu,
	0xf4d4b551u,
	0x83d385c7u,
	0x136c9856u,
	0x646ba8c0u,
	0xfd62f97au,
	0x8a65c9ecu,
	0x14015c4fu,
	0x63066cd9u,
	0xfa0f3d63u,
	0x8d080df5u,
	0x3b6e20c8u,
	0x4c69105eu,
	0xd56041e4u,
	0xa2677172u,
	0x3c03e4d1u,
	0x4b04d447u,
	0xd20d85fdu,
	0xa50ab56bu,
	0x35b5a8fau,
	0x42b2986cu,
	0xdbbbc9d6u,
	0xacbcf940u,
	0x32d86ce3u,
	0x45df5c75u,
	0xdcd60dcfu,
	0xabd13d59u,
	0x26d930acu,
	0x51de003au,
	0xc8d75180u,
	0xbfd06116u,
	0x21b4f4b5u,
	0x56b3c423u,
	0xcfba9599u,
	0xb8bda50fu,
	0x2802b89eu,
	0x5f058808u,
	0xc60cd9b2u,
	0xb10be924u,
	0x2f6f7c87u,
	0x58684c11u,
	0xc1611dabu,
	0xb6662d3du,
	0x76dc4190u,
	0x01db7106u,
	0x98d220bcu,
	0xefd5102au,
	0x71b18589u,
	0x06b6b51fu,
	0x9fbfe4a5u,
	0xe8b8d433u,
	0x7807c9a2u,
	0x0f00f934u,
	0x9609a88eu,
	0xe10e9818u,
	0x7f6a0dbbu,
	0x086d3d2du,
	0x91646c97u,
	0xe6635c01u,
	0x6b6b51f4u,
	0x1c6c6162u,
	0x856530d8u,
	0xf262004eu,
	0x6c0695edu,
	0x1b01a57bu,
	0x8208f4c1u,
	0xf50fc457u,
	0x65b0d9c6u,
	0x12b7e950u,
	0x8bbeb8eau,
	0xfcb9887cu,
	0x62dd1ddfu,
	0x15da2d49u,
	0x8cd37cf3u,
	0xfbd44c65u,
	0x4db26158u,
	0x3ab551ceu,
	0xa3bc0074u,
	0xd4bb30e2u,
	0x4adfa541u,
	0x3dd895d7u,
	0xa4d1c46du,
	0xd3d6f4fbu,
	0x4369e96au,
	0x346ed9fcu,
	0xad678846u,
	0xda60b8d0u,
	0x44042d73u,
	0x33031de5u,
	0xaa0a4c5fu,
	0xdd0d7cc9u,
	0x5005713cu,
	0x270241aau,
	0xbe0b1010u,
	0xc90c2086u,
	0x5768b525u,
	0x206f85b3u,
	0xb966d409u,
	0xce61e49fu,
	0x5edef90eu,
	0x29d9c998u,
	0xb0d09822u,
	0xc7d7a8b4u,
	0x59b33d17u,
	0x2eb40d81u,
	0xb7bd5c3bu,
	0xc0ba6cadu,
	0xedb88320u,
	0x9abfb3b6u,
	0x03b6e20cu,
	0x74b1d29au,
	0xead54739u,
	0x9dd277afu,
	0x04db2615u,
	0x73dc1683u,
	0xe3630b12u,
	0x94643b84u,
	0x0d6d6a3eu,
	0x7a6a5aa8u,
	0xe40ecf0bu,
	0x9309ff9du,
	0x0a00ae27u,
	0x7d079eb1u,
	0xf00f9344u,
	0x8708a3d2u,
	0x1e01f268u,
	0x6906c2feu,
	0xf762575du,
	0x806567cbu,
	0x196c3671u,
	0x6e6b06e7u,
	0xfed41b76u,
	0x89d32be0u,
	0x10da7a5au,
	0x67dd4accu,
	0xf9b9df6fu,
	0x8ebeeff9u,
	0x17b7be43u,
	0x60b08ed5u,
	0xd6d6a3e8u,
	0xa1d1937eu,
	0x38d8c2c4u,
	0x4fdff252u,
	0xd1bb67f1u,
	0xa6bc5767u,
	0x3fb506ddu,
	0x48b2364bu,
	0xd80d2bdau,
	0xaf0a1b4cu,
	0x36034af6u,
	0x41047a60u,
	0xdf60efc3u,
	0xa867df55u,
	0x316e8eefu,
	0x4669be79u,
	0xcb61b38cu,
	0xbc66831au,
	0x256fd2a0u,
	0x5268e236u,
	0xcc0c7795u,
	0xbb0b4703u,
	0x220216b9u,
	0x5505262fu,
	0xc5ba3bbeu,
	0xb2bd0b28u,
	0x2bb45a92u,
	0x5cb36a04u,
	0xc2d7ffa7u,
	0xb5d0cf31u,
	0x2cd99e8bu,
	0x5bdeae1du,
	0x9b64c2b0u,
	0xec63f226u,
	0x756aa39cu,
	0x026d930au,
	0x9c0906a9u,
	0xeb0e363fu,
	0x72076785u,
	0x05005713u,
	0x95bf4a82u,
	0xe2b87a14u,
	0x7bb12baeu,
	0x0cb61b38u,
	0x92d28e9bu,
	0xe5d5be0du,
	0x7cdcefb7u,
	0x0bdbdf21u,
	0x86d3d2d4u,
	0xf1d4e242u,
	0x68ddb3f8u,
	0x1fda836eu,
	0x81be16cdu,
	0xf6b9265bu,
	0x6fb077e1u,
	0x18b74777u,
	0x88085ae6u,
	0xff0f6a70u,
	0x66063bcau,
	0x11010b5cu,
	0x8f659effu,
	0xf862ae69u,
	0x616bffd3u,
	0x166ccf45u,
	0xa00ae278u,
	0xd70dd2eeu,
	0x4e048354u,
	0x3903b3c2u,
	0xa7672661u,
	0xd06016f7u,
	0x4969474du,
	0x3e6e77dbu,
	0xaed16a4au,
	0xd9d65adcu,
	0x40df0b66u,
	0x37d83bf0u,
	0xa9bcae53u,
	0xdebb9ec5u,
	0x47b2cf7fu,
	0x30b5ffe9u,
	0xbdbdf21cu,
	0xcabac28au,
	0x53b39330u,
	0x24b4a3a6u,
	0xbad03605u,
	0xcdd70693u,
	0x54de5729u,
	0x23d967bfu,
	0xb3667a2eu,
	0xc4614ab8u,
	0x5d681b02u,
	0x2a6f2b94u,
	0xb40bbe37u,
	0xc30c8ea1u,
	0x5a05df1bu,
	0x2d02ef8du,
};

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
	const uint8_t *p = buf;

	crc = ~crc;
	while (len-- > 0)
		crc = crc32_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
	return ~crc;
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
