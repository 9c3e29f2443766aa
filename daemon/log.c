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

#include <librdkafka/rdkafka.h>

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

/* log_vwrite at a level chosen at run time (the threshold already checked). */
static void log_emit(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
log_emit(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, -1, fmt, ap);
	va_end(ap);
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

/* syslog priority (0 emerg .. 7 debug) to our level. */
static enum log_level
log_from_syslog(int syslog_level)
{
	if (syslog_level <= 3)
		return LOG_LEVEL_ERROR;
	if (syslog_level == 4)
		return LOG_LEVEL_WARN;
	if (syslog_level <= 6)
		return LOG_LEVEL_INFO;
	return LOG_LEVEL_DEBUG;
}

void
log_library(int syslog_level, const char *event, const char *client, const char *facility,
    const char *message)
{
	enum log_level level = log_from_syslog(syslog_level);
	char esc[LOG_LINE_MAX / 2];
	size_t o = 0;

	if (level > log_state.level)
		return;
	for (const char *p = message; *p != '\0' && o + 5 < sizeof(esc); p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '"' || ch == '\\') {
			esc[o++] = '\\';
			esc[o++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			esc[o++] = ' '; /* newlines and tabs would split or skew the line */
		} else {
			esc[o++] = (char)ch;
		}
	}
	esc[o] = '\0';
	log_emit(
	    level, "event=%s client=%s facility=%s message=\"%s\"", event, client, facility, esc);
}

void
log_kafka_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	log_library(level, "kafka_log", rd_kafka_name(rk), fac, buf);
}

int
log_throttle_pass(struct log_throttle *t, const char *key, size_t key_len, int64_t now_ms,
    int64_t every_ms, uint64_t *suppressed)
{
	if (key_len >= sizeof(t->key))
		key_len = sizeof(t->key) - 1;
	if (t->last_ms != 0 && strncmp(t->key, key, key_len) == 0 && t->key[key_len] == '\0' &&
	    now_ms - t->last_ms < every_ms) {
		t->suppressed++;
		return 0;
	}
	*suppressed = t->suppressed;
	t->suppressed = 0;
	t->last_ms = now_ms != 0 ? now_ms : 1;
	memcpy(t->key, key, key_len);
	t->key[key_len] = '\0';
	return 1;
}
