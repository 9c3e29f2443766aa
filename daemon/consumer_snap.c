/*
 * Snapshots for retraining (topic.snapshots, schemas/interest_snapshot.avsc):
 * a user's goes out after snapshot.every_events events (never more than its
 * ring holds), after snapshot.max_interval_s, and before the user leaves the
 * cache (eviction, revoke, shutdown).
 */
#include "consumer_int.h"

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"
#include "modelfile.h"
#include "scorer.h"
#include "snapshot.h"
#include "users.h"

void
consumer_snapshot(struct consumer *c, struct user_entry *e)
{
	const uint8_t *buf;
	size_t len;
	rd_kafka_resp_err_t err;

	if (e->since_snapshot == 0)
		return;
	scorer_interest(c->m, e->us, c->vec);
	if (snapshot_encode(c->snap, c->m, e->id, e->id_len, e->us, e->since_snapshot, c->vec, &buf,
		&len) != 0) {
		c->n.snapshot_errors++;
		return;
	}
	for (int tries = 0;; tries++) {
		err = rd_kafka_producev(c->rkp, RD_KAFKA_V_TOPIC(c->cfg->topic_snapshots),
		    RD_KAFKA_V_KEY(e->id, e->id_len), RD_KAFKA_V_VALUE((void *)(uintptr_t)buf, len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(NULL),
		    RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries >= 20)
			break;
		rd_kafka_poll(c->rkp, 50);
	}
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		c->n.snapshot_errors++;
	else
		c->n.snapshots++;
	e->since_snapshot = 0;
	e->snapshot_mono_ms = clock_mono_ms();
}

struct snapscan {
	struct consumer *c;
	int64_t now;
};

static void
consumer_snapscan_one(void *opaque, struct user_entry *e)
{
	struct snapscan *s = opaque;

	if (e->since_snapshot > 0 &&
	    s->now - e->snapshot_mono_ms >= (int64_t)s->c->cfg->snapshot_max_interval_s * 1000)
		consumer_snapshot(s->c, e);
}

/* Snapshots every cached user whose oldest pending event is snapshot.max_interval_s old. */
void
consumer_snapshot_scan(struct consumer *c, int64_t now)
{
	struct snapscan s = { c, now };

	users_foreach(c->users, consumer_snapscan_one, &s);
}

struct snappart {
	struct consumer *c;
	int32_t partition; /* -1: every partition */
};

static void
consumer_snappart_one(void *opaque, struct user_entry *e)
{
	struct snappart *s = opaque;

	if (e->since_snapshot > 0 && (s->partition < 0 || e->partition == s->partition))
		consumer_snapshot(s->c, e);
}

/*
 * Before users are given up (revoke, shutdown) after their events were
 * written and committed: their pending snapshot events go out now, or the
 * retraining feed would miss them (the next owner starts with none pending).
 */
void
consumer_snapshot_pending(struct consumer *c, int32_t partition)
{
	struct snappart s = { c, partition };

	users_foreach(c->users, consumer_snappart_one, &s);
}

void
consumer_set_snap_limit(struct consumer *c)
{
	uint32_t k = model_hparams(c->m)->ring_len;

	if (c->cfg->snapshot_every_events == 0 && c->cfg->snapshot_max_interval_s == 0)
		c->snap_limit = UINT32_MAX;
	else if (c->cfg->snapshot_every_events > 0 && (uint32_t)c->cfg->snapshot_every_events < k)
		c->snap_limit = (uint32_t)c->cfg->snapshot_every_events;
	else
		c->snap_limit = k; /* the ring holds only K events */
}
