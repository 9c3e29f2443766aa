/* Reading a whole small file: common/file.h. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *
file_read_all(const char *path, size_t max_bytes, size_t *len, char *errstr, size_t errstr_size)
{
	struct stat st;
	char *buf = NULL;
	size_t got_len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		snprintf(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(errstr, errstr_size, "%s: cannot stat: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max_bytes) {
		snprintf(errstr, errstr_size, "%s: not a regular file of at most %zu bytes", path,
		    max_bytes);
		goto fail;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		snprintf(errstr, errstr_size, "%s: out of memory", path);
		goto fail;
	}
	while (got_len < (size_t)st.st_size) {
		ssize_t got = read(fd, buf + got_len, (size_t)st.st_size - got_len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			snprintf(errstr, errstr_size, "%s: cannot read: %s", path, strerror(errno));
			goto fail;
		}
		if (got == 0)
			break; /* shrank since fstat: what is there */
		got_len += (size_t)got;
	}
	buf[got_len] = '\0';
	close(fd);
	*len = got_len;
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}
