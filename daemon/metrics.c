/*
 * Minimal HTTP/1.0 responder for Prometheus scrapes: accept, read one
 * request (bounded time and size), write the rendered counters, close.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include "log.h"

#define METRICS_BODY_MAX    65536
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
