/*
 * Dead letters: rd_kafka_producev with the original key/value copied and
 * the reason/source headers, and the delivery bookkeeping the commit waits on.
 */
#include "dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define DLQ_POLL_STEP_MS 50 /* queue full: serve reports this long, retry */

struct dlq {
	rd_kafka_t *rkp;
	char *topic;
	uint64_t enqueued, delivered, failed;
};

struct dlq *
dlq_new(rd_kafka_t *rkp, const char *topic)
{
	struct dlq *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->rkp = rkp;
	d->topic = strdup(topic);
	if (d->topic == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

void
dlq_free(struct dlq *d)
{
	if (d == NULL)
		return;
	free(d->topic);
	free(d);
}

rd_kafka_resp_err_t
dlq_send(struct dlq *d, const rd_kafka_message_t *rkm, const char *reason, const char *detail,
    int block_ms)
{
	char part[16], off[24];
	const char *src = rkm->rkt != NULL ? rd_kafka_topic_name(rkm->rkt) : "";
	rd_kafka_resp_err_t err;

	snprintf(part, sizeof(part), "%" PRId32, rkm->partition);
	snprintf(off, sizeof(off), "%" PRId64, rkm->offset);
	if (detail == NULL)
		detail = "";
	for (;;) {
		err = rd_kafka_producev(d->rkp, RD_KAFKA_V_TOPIC(d->topic),
		    RD_KAFKA_V_KEY(rkm->key, rkm->key_len),
		    RD_KAFKA_V_VALUE(rkm->payload, rkm->len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		    RD_KAFKA_V_HEADER("interestd.reason", reason, -1),
		    RD_KAFKA_V_HEADER("interestd.detail", detail, -1),
		    RD_KAFKA_V_HEADER("interestd.topic", src, -1),
		    RD_KAFKA_V_HEADER("interestd.partition", part, -1),
		    RD_KAFKA_V_HEADER("interestd.offset", off, -1), RD_KAFKA_V_OPAQUE(d),
		    RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || block_ms <= 0)
			break;
		rd_kafka_poll(d->rkp, DLQ_POLL_STEP_MS);
		block_ms -= DLQ_POLL_STEP_MS;
	}
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		d->enqueued++;
	return err;
}

void
dlq_on_delivery(struct dlq *d, const rd_kafka_message_t *rkm)
{
	if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		d->delivered++;
		return;
	}
	d->failed++;
	log_error("event=dlq_delivery_failed topic=%s error=\"%s\"", d->topic,
	    rd_kafka_err2str(rkm->err));
}

uint64_t
dlq_in_flight(const struct dlq *d)
{
	return d->enqueued - d->delivered - d->failed;
}

uint64_t
dlq_failed(const struct dlq *d)
{
	return d->failed;
}

uint64_t
dlq_delivered(const struct dlq *d)
{
	return d->delivered;
}
