/*
 * Reading a whole small file (configuration, secret, schema), written once.
 */
#ifndef INTERESTD_FILE_H
#define INTERESTD_FILE_H

#include <stddef.h>

/*
 * The whole of path, NUL-terminated (*len without the NUL), in a malloc'd
 * buffer. Refuses what is not a regular file (opened without blocking, so a
 * FIFO cannot hang us) or is larger than max_bytes. NULL with "PATH: cannot
 * open: <reason>", "PATH: not a regular file of at most N bytes", "PATH:
 * cannot read: <reason>" or "PATH: out of memory" in errstr.
 */
char *file_read_all(
    const char *path, size_t max_bytes, size_t *len, char *errstr, size_t errstr_size);

#endif
