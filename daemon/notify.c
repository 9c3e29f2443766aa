/*
 * sd_notify wrapper: the daemon's only contact with the service manager.
 */
#include "clock.h"
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

/*
 * status as one STATUS= value in buf: control characters (a newline would
 * start another assignment, e.g. READY=1, in the message) become spaces;
 * cut at NOTIFY_MAX - 1 bytes. Texts from brokers and servers pass here.
 */
static const char *
notify_clean(const char *status, char *buf)
{
	size_t i = 0;

	for (; status[i] != '\0' && i < NOTIFY_MAX - 1; i++) {
		unsigned char ch = (unsigned char)status[i];

		buf[i] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
	}
	buf[i] = '\0';
	return buf;
}

void
notify_ready(struct notify *n, const char *status)
{
	char buf[NOTIFY_MAX];

	if (!n->enabled)
		return;
	if (status != NULL)
		sd_notifyf(0, "READY=1\nSTATUS=%s", notify_clean(status, buf));
	else
		sd_notify(0, "READY=1");
}

void
notify_status(struct notify *n, const char *status)
{
	char buf[NOTIFY_MAX];

	if (n->enabled)
		sd_notifyf(0, "STATUS=%s", notify_clean(status, buf));
}

void
notify_reloading(struct notify *n)
{
	if (!n->enabled)
		return;
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, clock_mono_us());
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
