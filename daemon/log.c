/*
 * Leveled key=value logging to stderr. The threshold is checked before any
 * formatting; each line is written with one fputs-sized write.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_LINE_MAX 4096

/* The process-wide logging setting (see log.h). */
static struct {
	enum log_level level;
	int journal; /* stderr is the journal: priority prefix, no timestamp */
} log_state = { LOG_LEVEL_INFO, 0 };

static const char *const log_names[] = { "error", "warn", "info", "debug" };
/* syslog priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
static const int log_prio[] = { 3, 4, 6, 7 };

void
log_init(enum log_level level)
{
	log_set_level(level);
	log_state.journal = getenv("JOURNAL_STREAM") != NULL;
}

void
log_set_level(enum log_level level)
{
	if (level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	log_state.level = level;
}

enum log_level
log_get_level(void)
{
	return log_state.level;
}

int
log_enabled(enum log_level level)
{
	return level <= log_state.level;
}

const char *
log_level_name(enum log_level level)
{
	return level <= LOG_LEVEL_DEBUG ? log_names[level] : "unknown";
}

/* Formats and writes one line; errnum >= 0 appends its strerror. */
static void log_vwrite(enum log_level level, int errnum, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
log_vwrite(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	size_t len = 0;
	int n;

	if (log_state.journal) {
		n = snprintf(
		    line, sizeof(line), "<%d>level=%s ", log_prio[level], log_names[level]);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		    ts.tv_nsec / 1000000, log_names[level]);
	}
	if (n > 0)
		len = (size_t)n;
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	if (n > 0)
		len += (size_t)n;
	if (len >= sizeof(line) - 1)
		len = sizeof(line) - 2; /* truncated: keep room for the newline */
	if (errnum >= 0 && len < sizeof(line) - 2) {
		n = snprintf(line + len, sizeof(line) - len, " error=\"%s\"", strerror(errnum));
		if (n > 0)
			len += (size_t)n;
		if (len >= sizeof(line) - 1)
			len = sizeof(line) - 2;
	}
	line[len++] = '\n';
	line[len] = '\0';
	fputs(line, stderr);
}

#define LOG_DEFINE(fn, lvl, with_errno)                                                            \
	void fn(const char *fmt, ...)                                                              \
	{                                                                                          \
		int saved = errno;                                                                 \
		va_list ap;                                                                        \
		if ((lvl) > log_state.level)                                                       \
			return;                                                                    \
		va_start(ap, fmt);                                                                 \
		log_vwrite((lvl), (with_errno) ? saved : -1, fmt, ap);                             \
		va_end(ap);                                                                        \
		errno = saved;                                                                     \
	}

LOG_DEFINE(log_error, LOG_LEVEL_ERROR, 0)
LOG_DEFINE(log_warn, LOG_LEVEL_WARN, 0)
LOG_DEFINE(log_info, LOG_LEVEL_INFO, 0)
LOG_DEFINE(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_DEFINE(log_error_errno, LOG_LEVEL_ERROR, 1)
LOG_DEFINE(log_warn_errno, LOG_LEVEL_WARN, 1)
