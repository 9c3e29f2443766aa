/*
 * systemd notification (sd_notify): READY=1 once the first assignment is
 * served, STATUS= lines, WATCHDOG=1 keep-alives when the unit sets
 * WatchdogSec (WATCHDOG_USEC), RELOADING=1 with MONOTONIC_USEC on SIGHUP and
 * STOPPING=1. Every call is a no-op outside systemd (no NOTIFY_SOCKET).
 */
#ifndef DAEMON_NOTIFY_H
#define DAEMON_NOTIFY_H

#include <stdint.h>

struct notify;

/* Reads the environment once; NULL on ENOMEM. notify_free is NULL-safe. */
struct notify *notify_new(void);
void notify_free(struct notify *n);

/*
 * READY=1 with a STATUS line (status may be NULL). Status texts may quote a
 * server's error message: control characters become spaces (one line, no
 * injected assignments) and they are cut at 255 bytes.
 */
void notify_ready(struct notify *n, const char *status);
/* STATUS=<text>, cleaned as for notify_ready. */
void notify_status(struct notify *n, const char *status);
/* RELOADING=1 and MONOTONIC_USEC=<now>; follow with notify_ready when done. */
void notify_reloading(struct notify *n);
void notify_stopping(struct notify *n);
/*
 * WATCHDOG=1 when a watchdog is configured and half its interval has passed
 * since the last keep-alive; now_ms is CLOCK_MONOTONIC milliseconds. Call
 * from the main loop only, so a stuck loop is noticed.
 */
void notify_watchdog(struct notify *n, int64_t now_ms);

#endif
