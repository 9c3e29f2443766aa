/*
 * Minimal HTTP/1.0 responder for Prometheus scrapes, run from the consumer
 * loop without ever blocking it: every socket is non-blocking; each turn
 * accepts what is waiting, reads what each connection has sent, renders the
 * counters once a request head is complete, writes what the socket takes,
 * and closes a connection done or past its deadline.
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
#include <unistd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include "clock.h"
#include "log.h"

#define METRICS_BODY_MAX    (1 << 20) /* lag lines grow with the partitions owned */
#define METRICS_REQUEST_MAX 2048
#define METRICS_CONN_MS                                                                            \
	2000                /* a connection gets this long to send its request and
				     * take the answer (Prometheus waits 10 s by default) */
#define METRICS_CONN_MAX 16 /* connections open at once; more wait in the backlog */
#define METRICS_ADDR_MAX 128

/* One scrape in progress: reading its request, then writing out[sent..len). */
struct metrics_conn {
	int fd; /* -1: a free slot */
	int64_t deadline_ms;
	size_t got;
	char req[METRICS_REQUEST_MAX];
	char *out; /* NULL while reading */
	size_t len, sent;
};

struct metrics {
	int fd;
	metrics_render_fn *render;
	void *opaque;
	char *body;
	char addr[METRICS_ADDR_MAX];
	struct metrics_conn conns[METRICS_CONN_MAX];
};

static void metrics_conn_close(struct metrics_conn *mc);

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
	for (int i = 0; i < METRICS_CONN_MAX; i++)
		mx->conns[i].fd = -1;
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
	for (int i = 0; i < METRICS_CONN_MAX; i++)
		metrics_conn_close(&mx->conns[i]);
	free(mx->body);
	free(mx);
}

const char *
metrics_address(const struct metrics *mx)
{
	return mx->addr;
}

/* ---- the connections ------------------------------------------------------ */

static void
metrics_conn_close(struct metrics_conn *mc)
{
	if (mc->fd >= 0)
		close(mc->fd);
	free(mc->out);
	mc->fd = -1;
	mc->out = NULL;
	mc->got = mc->len = mc->sent = 0;
}

/* Renders the answer to the request in mc->req into mc->out; 0 or -1 (out of memory). */
static int
metrics_conn_answer(struct metrics *mx, struct metrics_conn *mc)
{
	const char *req = mc->req, *body = "not found\n";
	size_t body_len = 10, head_len;
	char head[256];
	int ok = strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0 ||
	    strncmp(req, "GET /metrics\r", 13) == 0;

	if (ok) {
		body_len = mx->render(mx->opaque, mx->body, METRICS_BODY_MAX);
		body = mx->body;
	}
	snprintf(head, sizeof(head),
	    "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    ok ? "200 OK" : "404 Not Found",
	    ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain", body_len);
	head_len = strlen(head);
	if ((mc->out = malloc(head_len + body_len)) == NULL)
		return -1;
	memcpy(mc->out, head, head_len);
	memcpy(mc->out + head_len, body, body_len);
	mc->len = head_len + body_len;
	return 0;
}

/*
 * One non-blocking step of a connection: read what has arrived (answering
 * once the request head is complete, at the size limit, or when the client
 * stops sending), write what the socket takes. Returns 1 while the
 * connection has more to do, 0 when it is finished (or failed).
 */
static int
metrics_conn_step(struct metrics *mx, struct metrics_conn *mc)
{
	while (mc->out == NULL) {
		ssize_t n = recv(mc->fd, mc->req + mc->got, sizeof(mc->req) - 1 - mc->got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n < 0)
			return 0;
		mc->got += (size_t)n;
		mc->req[mc->got] = '\0';
		if (n == 0 || mc->got == sizeof(mc->req) - 1 ||
		    strstr(mc->req, "\r\n\r\n") != NULL || strstr(mc->req, "\n\n") != NULL) {
			if (metrics_conn_answer(mx, mc) != 0)
				return 0;
		}
	}
	while (mc->sent < mc->len) {
		ssize_t n = send(mc->fd, mc->out + mc->sent, mc->len - mc->sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n <= 0)
			return 0;
		mc->sent += (size_t)n;
	}
	return 0;
}

void
metrics_serve(struct metrics *mx)
{
	int64_t now = clock_mono_ms();

	for (int i = 0; i < METRICS_CONN_MAX; i++) {
		struct metrics_conn *mc = &mx->conns[i];

		if (mc->fd < 0) {
			mc->fd = accept(mx->fd, NULL, NULL);
			if (mc->fd < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
					log_warn_errno("event=metrics_accept_failed");
				continue;
			}
			if (fcntl(mc->fd, F_SETFL, fcntl(mc->fd, F_GETFL) | O_NONBLOCK) != 0) {
				metrics_conn_close(mc);
				continue;
			}
			mc->deadline_ms = now + METRICS_CONN_MS;
		}
		if (metrics_conn_step(mx, mc) == 0 || now >= mc->deadline_ms)
			metrics_conn_close(mc);
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
