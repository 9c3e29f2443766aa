/*
 * The section container shared by catalog and model files (layout:
 * schemas/modelfile.md "Container"): a validated read-only mapping with
 * section lookup by tag, and a streaming writer that aligns sections to 64
 * bytes, fills in the table and CRCs, and replaces the target atomically.
 */
#ifndef MODEL_CONTAINER_H
#define MODEL_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#define CONTAINER_KIND_CATALOG 1
#define CONTAINER_KIND_MODEL   2
#define CONTAINER_MAX_SECTIONS 64
#define CONTAINER_ALIGN        64 /* section offsets are multiples of this */
#define CONTAINER_HEADER_SIZE  64
#define CONTAINER_ENTRY_SIZE   32 /* one section-table entry */

struct container;
struct container_writer;

/* zlib's CRC-32 (IEEE 802.3) of buf, continuing crc; start with crc = 0. */
uint32_t container_crc32(uint32_t crc, const void *buf, size_t len);

/*
 * Reads path into a private read-only mapping (never a mapping of the file
 * itself, so rewriting the file in place cannot fault the reader) and
 * validates the header, the section table (its CRC, offsets, alignment,
 * overlaps, bounds) and every section's CRC. Section contents are not
 * interpreted. Returns NULL with the reason in errstr
 * ("section EMBD: bad checksum"; the path is left to the caller to add).
 * Caller frees with container_close().
 */
struct container *container_open(const char *path, char *errstr, size_t errstr_size);
/* Unmaps; NULL-safe. Pointers returned by container_section() die with it. */
void container_close(struct container *ct);

uint32_t container_kind(const struct container *ct);
/*
 * The section with this four-character tag (e.g. "EMBD"), or NULL when the
 * file has none; its byte length in *len. Data is 64-byte aligned, borrowed
 * from the mapping.
 */
const uint8_t *container_section(const struct container *ct, const char *tag, size_t *len);

/*
 * Starts writing a container of `kind` with exactly n_sections sections to a
 * temporary file next to path. Returns NULL with the reason in errstr.
 */
struct container_writer *container_writer_new(
    const char *path, uint32_t kind, uint32_t n_sections, char *errstr, size_t errstr_size);
/*
 * Opens the next section (tag: four ASCII characters); its data is appended
 * with container_writer_append() until the next begin or the commit.
 * Returns 0, or -1 with the reason in errstr (the writer is then unusable:
 * free it).
 */
int container_writer_begin(
    struct container_writer *cw, const char *tag, char *errstr, size_t errstr_size);
int container_writer_append(
    struct container_writer *cw, const void *data, size_t len, char *errstr, size_t errstr_size);
/*
 * Writes the header and the section table, fsyncs, renames the temporary
 * file over path and fsyncs the directory. Exactly n_sections must have been
 * begun. Returns 0, or -1 with the reason in errstr.
 */
int container_writer_commit(struct container_writer *cw, char *errstr, size_t errstr_size);
/* Frees the writer; removes the temporary file unless committed. NULL-safe. */
void container_writer_free(struct container_writer *cw);

#endif
