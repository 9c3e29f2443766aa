/*
 * The Prometheus text endpoint (metrics.listen): one non-blocking listening
 * socket served from the consumer loop between batches, so it answers as
 * long as the loop runs (also while Redis is down) and needs no thread.
 */
#ifndef DAEMON_METRICS_H
#define DAEMON_METRICS_H

#include <stddef.h>

/*
 * Writes the exposition text into buf (at most size bytes); returns its
 * length (truncated output is still valid text up to the last full line).
 */
typedef size_t metrics_render_fn(void *opaque, char *buf, size_t size);

struct metrics;

/*
 * Listens on listen ("HOST:PORT", "[V6]:PORT"; port 0 picks a free one).
 * NULL with the reason in errstr. metrics_free is NULL-safe.
 */
struct metrics *metrics_new(
    const char *listen, metrics_render_fn *render, void *opaque, char *errstr, size_t errstr_size);
void metrics_free(struct metrics *mx);

/* The bound address as "HOST:PORT" (static buffer inside mx). */
const char *metrics_address(const struct metrics *mx);

/*
 * Answers every connection waiting to be accepted: GET /metrics gets the
 * rendered text, anything else 404. Each request is read with a short
 * timeout so a slow client cannot hold the loop. Never blocks otherwise.
 */
void metrics_serve(struct metrics *mx);

#endif
