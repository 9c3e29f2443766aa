/*
 * Leveled key=value logging to stderr, one line per event, for the journal.
 * The level is the one process-wide setting besides the signal flag (like
 * relayd's log.c): set it once at start-up and on reload.
 */
#ifndef DAEMON_LOG_H
#define DAEMON_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/*
 * Sets the threshold (messages above it are skipped before any formatting)
 * and the line format: when stderr is the journal ($JOURNAL_STREAM set) lines
 * carry a "<N>" syslog priority prefix and no timestamp; otherwise an ISO-8601
 * UTC timestamp with milliseconds. Default before any call: INFO, timestamps.
 * Line shape: "2026-11-29T01:58:59.123Z level=info <your text>\n".
 */
void log_init(enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* 1 when messages at level would be written (to skip expensive arguments). */
int log_enabled(enum log_level level);

/* Lower-case level name ("error", "warn", "info", "debug"). */
const char *log_level_name(enum log_level level);

/*
 * printf-style; write the rest of the line as key=value fields, e.g.
 * log_info("event=assigned topic=%s partition=%d", t, p). No newline needed.
 */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * As log_error / log_warn, then appends " error=\"<strerror(errno)>\"" using
 * errno as it was on entry (saved before formatting).
 */
void log_error_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A line from a library's own logger (librdkafka's log_cb), at the level
 * mapped from its syslog level (0-3 error, 4 warn, 5-6 info, 7 debug):
 * "event=<event> client=<client> facility=<facility> message=\"<message>\"",
 * with quotes, backslashes and control characters of message escaped so the
 * line stays one key=value line. Safe to call from the library's threads.
 */
void log_library(int syslog_level, const char *event, const char *client, const char *facility,
    const char *message);

struct rd_kafka_s;

/*
 * librdkafka's log_cb (rd_kafka_conf_set_log_cb) through log_library as
 * event=kafka_log client=<rd_kafka_name>. Calls rd_kafka_name, so the
 * handle's logs must be served from a poll (conf log.queue=true, then
 * rd_kafka_set_log_queue(rk, NULL) after rd_kafka_new), never from
 * librdkafka's own threads.
 */
void log_kafka_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);

/* Longest throttle key kept; longer keys are compared on this prefix. */
#define LOG_THROTTLE_KEY_MAX 256

/*
 * Rate limit for a repeating error: one line per distinct key per interval.
 * Zero-initialise; not thread-safe (keep it with the code that logs).
 */
struct log_throttle {
	char key[LOG_THROTTLE_KEY_MAX];
	int64_t last_ms;     /* when the key was last let through */
	uint64_t suppressed; /* held back since then */
};

/*
 * 1 when the message keyed key (key_len bytes) is to be logged now: its key
 * differs from the last one let through, or every_ms have passed since
 * (now_ms: CLOCK_MONOTONIC milliseconds); *suppressed then gets how many
 * were held back in between. 0 (counted) otherwise.
 */
int log_throttle_pass(struct log_throttle *t, const char *key, size_t key_len, int64_t now_ms,
    int64_t every_ms, uint64_t *suppressed);

#endif
