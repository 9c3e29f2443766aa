/*
 * daemon/metrics.c without a socket: the histogram (bucket placement at and
 * around the bounds, +Inf, NaN ignored, sum and count, bad bounds refused),
 * its exposition text (cumulative and monotonic buckets, +Inf == _count,
 * labels joined with le) and truncation at a line end when the buffer is
 * too small.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static int failures;

static void
check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failures++;
}

/* The value of the first line starting with prefix (name and labels), or -1. */
static double
sample(const char *text, const char *prefix)
{
	size_t len = strlen(prefix);

	for (const char *line = text; *line != '\0';) {
		const char *nl = strchr(line, '\n');

		if (strncmp(line, prefix, len) == 0 && line[len] == ' ')
			return strtod(line + len + 1, NULL);
		if (nl == NULL)
			break;
		line = nl + 1;
	}
	return -1;
}

/* Every _bucket line of text: cumulative counts never decrease, the last is +Inf. */
static int
buckets_monotonic(const char *text, double *inf)
{
	double prev = -1;
	const char *p = text;
	int n = 0;

	while ((p = strstr(p, "_bucket{")) != NULL) {
		const char *sp = strchr(p, ' ');
		double v = strtod(sp + 1, NULL);

		if (v < prev)
			return -1;
		prev = v;
		*inf = v;
		n++;
		p = sp;
	}
	return n;
}

static void
test_observe(void)
{
	static const double bounds[] = { 0.001, 0.01, 0.1, 1 };
	struct metrics_histogram h;

	check(metrics_histogram_init(&h, bounds, 4) == 0, "init with 4 ascending bounds");
	metrics_histogram_observe(&h, 0.0005); /* bucket 0 */
	metrics_histogram_observe(&h, 0.001);  /* le: equal to a bound stays in it */
	metrics_histogram_observe(&h, 0.002);  /* bucket 1 */
	metrics_histogram_observe(&h, 0.5);    /* bucket 3 */
	metrics_histogram_observe(&h, 7.0);    /* +Inf */
	metrics_histogram_observe(&h, NAN);    /* ignored */
	check(h.buckets[0] == 2 && h.buckets[1] == 1 && h.buckets[2] == 0 && h.buckets[3] == 1 &&
		h.buckets[4] == 1,
	    "values land in the first bucket whose bound is >= them; above all: +Inf");
	check(h.count == 5, "count 5 (NaN not counted)");
	check(fabs(h.sum - 7.5035) < 1e-12, "sum 7.5035");
}

static void
test_bad_bounds(void)
{
	static const double desc[] = { 0.1, 0.01 }, dup[] = { 1, 1 }, inf[] = { 1, INFINITY };
	double many[METRICS_BUCKETS_MAX + 1];
	struct metrics_histogram h;

	for (size_t i = 0; i < METRICS_BUCKETS_MAX + 1; i++)
		many[i] = (double)(i + 1);
	check(metrics_histogram_init(&h, desc, 2) != 0, "descending bounds refused");
	check(metrics_histogram_init(&h, dup, 2) != 0, "repeated bound refused");
	check(metrics_histogram_init(&h, inf, 2) != 0, "an infinite bound refused");
	check(metrics_histogram_init(&h, many, METRICS_BUCKETS_MAX + 1) != 0,
	    "more than METRICS_BUCKETS_MAX bounds refused");
	check(h.n_bounds == 0, "refused: left with only +Inf");
	metrics_histogram_observe(&h, 3);
	check(h.buckets[0] == 1 && h.count == 1, "refused histogram still counts into +Inf");
	check(metrics_histogram_init(&h, many, METRICS_BUCKETS_MAX) == 0,
	    "exactly METRICS_BUCKETS_MAX bounds accepted");
}

static void
test_render(void)
{
	struct metrics_histogram h;
	char buf[4096], small[300];
	size_t o = 0, end;
	double inf = -1;
	int n;

	metrics_histogram_init_latency(&h);
	check(h.n_bounds == 14 && h.bounds[0] == 0.0005 && h.bounds[13] == 10,
	    "latency bounds 0.5 ms .. 10 s, 14 of them");
	for (int i = 0; i < 100; i++)
		metrics_histogram_observe(&h, 0.0001 * (double)(i * i));
	metrics_family(buf, sizeof(buf), &o, "x_seconds", "histogram", "A test.");
	metrics_histogram_render(&h, "x_seconds", NULL, buf, sizeof(buf), &o);
	check(o < sizeof(buf) && strlen(buf) == o, "rendered length is the text's length");
	check(strncmp(buf, "# HELP x_seconds A test.\n# TYPE x_seconds histogram\n", 52) == 0,
	    "HELP and TYPE lines first");
	n = buckets_monotonic(buf, &inf);
	check(n == 15, "15 bucket lines (14 bounds + +Inf)");
	check(n > 0 && inf == 100 && sample(buf, "x_seconds_count") == 100,
	    "+Inf bucket == _count == 100");
	check(sample(buf, "x_seconds_bucket{le=\"0.0005\"}") == 3, "le=\"0.0005\": 0, 1e-4, 4e-4");
	check(sample(buf, "x_seconds_bucket{le=\"10\"}") == 100, "le=\"10\" holds everything");
	check(fabs(sample(buf, "x_seconds_sum") - 32.835) < 1e-9, "_sum 32.835");

	o = 0;
	metrics_histogram_render(&h, "y_seconds", "op=\"flush\"", buf, sizeof(buf), &o);
	check(sample(buf, "y_seconds_bucket{op=\"flush\",le=\"+Inf\"}") == 100,
	    "labels joined with le: {op=\"flush\",le=\"+Inf\"}");
	check(sample(buf, "y_seconds_count{op=\"flush\"}") == 100 &&
		sample(buf, "y_seconds_sum{op=\"flush\"}") > 32,
	    "_sum and _count carry the labels");

	/* Too small a buffer: cut back to the last whole line. */
	o = 0;
	metrics_family(small, sizeof(small), &o, "x_seconds", "histogram", "A test.");
	metrics_histogram_render(&h, "x_seconds", NULL, small, sizeof(small), &o);
	end = metrics_text_end(small, sizeof(small), o);
	check(o == sizeof(small), "overflow reported as o == size");
	check(end > 0 && end < sizeof(small) && small[end - 1] == '\n',
	    "metrics_text_end stops after a newline");
	o = 5;
	check(metrics_text_end(small, sizeof(small), o) == 5, "no overflow: the length as is");
}

int
main(void)
{
	test_observe();
	test_bad_bounds();
	test_render();
	if (failures > 0) {
		printf("%d failure(s)\n", failures);
		return 1;
	}
	printf("all metrics tests passed\n");
	return 0;
}
