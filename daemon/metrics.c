/*
 * Minimal HTTP/1.0 responder for Prometheus scrapes: accept, read one
 * request (bounded time and size), write the rendered counters, close.
 * Plus the histogram type and the exposition-format writers the renderer
 * uses.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include "log.h"

#define METRICS_BODY_MAX    (1 << 20) /* lag lines grow with the partitions owned */
#define METRICS_REQUEST_MAX 2048
#define METRICS_READ_MS     200 /* a client gets this long to send its request */
#define METRICS_ACCEPT_MAX  16  /* connections answered per metrics_serve call */
#define METRICS_ADDR_MAX    128

struct metrics {
	int fd;
	metrics_render_fn *render;
	void *opaque;
	char *body;
	char addr[METRICS_ADDR_MAX];
};

struct metrics *
metrics_new(const char *listen_addr, metrics_render_fn *render, void *opaque, char *errstr,
    size_t errstr_size)
{
	struct metrics *mx = calloc(1, sizeof(*mx));
	struct addrinfo hints, *res = NULL;
	const char *colon = strrchr(listen_addr, ':');
	char host[METRICS_ADDR_MAX], port[16], bound[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	size_t hl;
	int one = 1, rc;

	if (mx == NULL || (mx->body = malloc(METRICS_BODY_MAX)) == NULL) {
		snprintf(errstr, errstr_size, "metrics: out of memory");
		goto fail;
	}
	mx->fd = -1;
	mx->render = render;
	mx->opaque = opaque;
	if (colon == NULL || (hl = (size_t)(colon - listen_addr)) >= sizeof(host)) {
		snprintf(errstr, errstr_size, "metrics.listen '%s': not HOST:PORT", listen_addr);
		goto fail;
	}
	memcpy(host, listen_addr, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	snprintf(port, sizeof(port), "%s", colon + 1);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(
		    errstr, errstr_size, "metrics.listen '%s': %s", listen_addr, gai_strerror(rc));
		goto fail;
	}
	mx->fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
	if (mx->fd < 0 || setsockopt(mx->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(mx->fd, res->ai_addr, res->ai_addrlen) != 0 || listen(mx->fd, 16) != 0 ||
	    fcntl(mx->fd, F_SETFL, fcntl(mx->fd, F_GETFL) | O_NONBLOCK) != 0 ||
	    getsockname(mx->fd, (struct sockaddr *)&ss, &sl) != 0) {
		snprintf(
		    errstr, errstr_size, "metrics.listen '%s': %s", listen_addr, strerror(errno));
		goto fail;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, bound, sizeof(bound));
		snprintf(mx->addr, sizeof(mx->addr), "[%s]:%u", bound, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, bound, sizeof(bound));
		snprintf(mx->addr, sizeof(mx->addr), "%s:%u", bound, ntohs(s4->sin_port));
	}
	freeaddrinfo(res);
	return mx;
fail:
	if (res != NULL)
		freeaddrinfo(res);
	metrics_free(mx);
	return NULL;
}

void
metrics_free(struct metrics *mx)
{
	if (mx == NULL)
		return;
	if (mx->fd >= 0)
		close(mx->fd);
	free(mx->body);
	free(mx);
}

const char *
metrics_address(const struct metrics *mx)
{
	return mx->addr;
}

/* Writes all of buf (the socket is blocking with a timeout); 0 or -1. */
static int
metrics_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
metrics_answer(struct metrics *mx, int fd)
{
	struct timeval tv = { 0, METRICS_READ_MS * 1000 };
	char req[METRICS_REQUEST_MAX], head[256];
	size_t got = 0, body_len = 0;
	int ok;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	/* Read until the end of the request head (or the limit, or the timeout). */
	while (got < sizeof(req) - 1) {
		ssize_t n = recv(fd, req + got, sizeof(req) - 1 - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL)
			break;
	}
	req[got] = '\0';
	ok = strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0 ||
	    strncmp(req, "GET /metrics\r", 13) == 0;
	if (ok)
		body_len = mx->render(mx->opaque, mx->body, METRICS_BODY_MAX);
	snprintf(head, sizeof(head),
	    "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    ok ? "200 OK" : "404 Not Found",
	    ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain", ok ? body_len : 10);
	if (metrics_write_all(fd, head, strlen(head)) == 0)
		metrics_write_all(fd, ok ? mx->body : "not found\n", ok ? body_len : 10);
	close(fd);
}

void
metrics_serve(struct metrics *mx)
{
	for (int i = 0; i < METRICS_ACCEPT_MAX; i++) {
		int fd = accept(mx->fd, NULL, NULL);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warn_errno("event=metrics_accept_failed");
			return;
		}
		metrics_answer(mx, fd);
	}
}

/* ---- histograms and the exposition format -------------------------------- */

int
metrics_histogram_init(struct metrics_histogram *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	if (n > METRICS_BUCKETS_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
			return -1;
	memcpy(h->bounds, bounds, n * sizeof(*bounds));
	h->n_bounds = n;
	return 0;
}

void
metrics_histogram_init_latency(struct metrics_histogram *h)
{
	/* Redis round trips on loopback sit near 1 ms; a slow flush or WAIT, seconds. */
	static const double latency_s[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
		0.25, 0.5, 1, 2.5, 5, 10 };

	metrics_histogram_init(h, latency_s, sizeof(latency_s) / sizeof(latency_s[0]));
}

void
metrics_histogram_observe(struct metrics_histogram *h, double v)
{
	size_t i = 0;

	if (isnan(v))
		return;
	while (i < h->n_bounds && v > h->bounds[i]) /* le: a value equal to a bound is in it */
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum += v;
}

void
metrics_printf(char *buf, size_t size, size_t *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*o >= size)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *o, size - *o, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < size - *o)
		*o += (size_t)n;
	else
		*o = size;
}

void
metrics_family(
    char *buf, size_t size, size_t *o, const char *name, const char *type, const char *help)
{
	metrics_printf(buf, size, o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
metrics_histogram_render(const struct metrics_histogram *h, const char *name, const char *labels,
    char *buf, size_t size, size_t *o)
{
	const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";
	uint64_t cum = 0;

	if (labels == NULL)
		labels = "";
	for (size_t i = 0; i <= h->n_bounds; i++) {
		cum += h->buckets[i];
		if (i < h->n_bounds)
			metrics_printf(buf, size, o, "%s_bucket{%s%sle=\"%.9g\"} %" PRIu64 "\n",
			    name, labels, sep, h->bounds[i], cum);
		else
			metrics_printf(buf, size, o, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n",
			    name, labels, sep, cum);
	}
	if (labels[0] != '\0') {
		metrics_printf(buf, size, o, "%s_sum{%s} %.17g\n", name, labels, h->sum);
		metrics_printf(buf, size, o, "%s_count{%s} %" PRIu64 "\n", name, labels, h->count);
	} else {
		metrics_printf(buf, size, o, "%s_sum %.17g\n", name, h->sum);
		metrics_printf(buf, size, o, "%s_count %" PRIu64 "\n", name, h->count);
	}
}

size_t
metrics_text_end(const char *buf, size_t size, size_t o)
{
	if (o < size)
		return o;
	while (o > 0 && buf[o - 1] != '\n')
		o--;
	return o;
}
