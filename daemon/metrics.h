/*
 * The Prometheus text endpoint (metrics.listen): one non-blocking listening
 * socket served from the consumer loop between batches, so it answers as
 * long as the loop runs (also while Redis is down) and needs no thread.
 * Also the histogram type the loop's timings are kept in, and the helpers
 * that write samples in the exposition format (text format 0.0.4).
 */
#ifndef DAEMON_METRICS_H
#define DAEMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Most finite bucket bounds a histogram may have (+Inf comes on top). */
#define METRICS_BUCKETS_MAX 24

/*
 * A Prometheus histogram with fixed bucket bounds: observe is a few
 * comparisons and additions (no allocation), render writes the cumulative
 * _bucket lines, _sum and _count. Plain data: embed it, no free needed.
 */
struct metrics_histogram {
	double bounds[METRICS_BUCKETS_MAX]; /* finite upper bounds, ascending */
	size_t n_bounds;
	uint64_t buckets[METRICS_BUCKETS_MAX + 1]; /* per bucket, not cumulative; last: +Inf */
	uint64_t count;
	double sum;
};

/*
 * Sets the bounds (copied; n at most METRICS_BUCKETS_MAX, strictly
 * ascending, finite) and zeroes the counts. Returns 0, or -1 on bad bounds
 * (h is then an empty histogram with only the +Inf bucket).
 */
int metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t n);

/* As metrics_histogram_init with the latency bounds, 0.5 ms .. 10 s, in seconds. */
void metrics_histogram_init_latency(struct metrics_histogram *h);

/* Counts one value (seconds for the latency histograms); NaN is ignored. */
void metrics_histogram_observe(struct metrics_histogram *h, double v);

/*
 * Appends text to buf at *o, never past size (size_t *o is the running
 * length). When something does not fit, *o is set to size and nothing more
 * is written: the caller cuts back to the last whole line with
 * metrics_text_end. printf-style.
 */
void metrics_printf(char *buf, size_t size, size_t *o, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Appends the HELP and TYPE lines of a metric family. type is "counter",
 * "gauge" or "histogram".
 */
void metrics_family(
    char *buf, size_t size, size_t *o, const char *name, const char *type, const char *help);

/*
 * Appends the samples of h as family name with extra labels (NULL or
 * 'op="flush"', without braces) added to each: name_bucket{...,le="B"} for
 * every bound and +Inf (cumulative), name_sum, name_count. No HELP/TYPE.
 */
void metrics_histogram_render(const struct metrics_histogram *h, const char *name,
    const char *labels, char *buf, size_t size, size_t *o);

/*
 * The length of the text to send: o itself when nothing was cut, else the
 * end of the last complete line before size.
 */
size_t metrics_text_end(const char *buf, size_t size, size_t o);

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
 * One turn of the responder, never blocking: accepts waiting connections
 * (up to 16 open at once), reads their requests, answers GET /metrics with
 * the rendered text and anything else with 404, writes what each socket
 * takes, and closes a connection once answered or 2 s after its accept,
 * whatever it has sent. Call it every loop turn.
 */
void metrics_serve(struct metrics *mx);

#endif
