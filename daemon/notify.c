/*
 * sd_notify wrapper: the daemon's only contact with the service manager.
 */
#include "notify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#define NOTIFY_MAX 256

struct notify {
	int enabled;         /* NOTIFY_SOCKET set */
	int64_t watchdog_ms; /* 0: no watchdog */
	int64_t last_ping_ms;
};

struct notify *
notify_new(void)
{
	struct notify *n = calloc(1, sizeof(*n));
	uint64_t usec = 0;

	if (n == NULL)
		return NULL;
	n->enabled = getenv("NOTIFY_SOCKET") != NULL;
	if (n->enabled && sd_watchdog_enabled(0, &usec) > 0)
		n->watchdog_ms = (int64_t)(usec / 1000);
	return n;
}

void
notify_free(struct notify *n)
{
	free(n);
}

void
notify_ready(struct notify *n, const char *status)
{
	if (!n->enabled)
		return;
	if (status != NULL)
		sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	else
		sd_notify(0, "READY=1");
}

void
notify_status(struct notify *n, const char *status)
{
	if (n->enabled)
		sd_notifyf(0, "STATUS=%s", status);
}

void
notify_reloading(struct notify *n)
{
	struct timespec ts;

	if (!n->enabled)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	    (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

void
notify_stopping(struct notify *n)
{
	if (n->enabled)
		sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void
notify_watchdog(struct notify *n, int64_t now_ms)
{
	if (!n->enabled || n->watchdog_ms <= 0 || now_ms - n->last_ping_ms < n->watchdog_ms / 2)
		return;
	n->last_ping_ms = now_ms;
	sd_notify(0, "WATCHDOG=1");
}
