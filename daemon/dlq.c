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

#define DLQ_POLL_STEP_MS      50      /* queue full: serve reports this long, retry */
#define DLQ_KEY_MAX_BYTES     4096    /* a longer original key is cut (a user id is at most this) */
#define DLQ_HEADROOM_BYTES    2048    /* headers and record overhead under message.max.bytes */
#define DLQ_DEFAULT_MAX_BYTES 1000000 /* librdkafka's message.max.bytes default */

struct dlq {
	rd_kafka_t *rkp;
	char *topic;
	size_t max_value_bytes; /* the producer's message.max.bytes less key and headroom */
	uint64_t enqueued, delivered, failed, truncated;
};

/*
 * The largest original value a letter can carry: the producer's
 * message.max.bytes less the longest key and the headers. A larger one
 * would be refused by the producer (MSG_SIZE_TOO_LARGE) and stop the
 * daemon on every restart.
 */
static size_t
dlq_max_value_bytes(rd_kafka_t *rkp)
{
	char buf[32], *end;
	size_t size = sizeof(buf);
	long long v = DLQ_DEFAULT_MAX_BYTES;

	if (rd_kafka_conf_get(rd_kafka_conf(rkp), "message.max.bytes", buf, &size) ==
	    RD_KAFKA_CONF_OK) {
		long long x = strtoll(buf, &end, 10);

		if (*end == '\0' && x > 0)
			v = x;
	}
	if (v < DLQ_KEY_MAX_BYTES + 2 * DLQ_HEADROOM_BYTES)
		return DLQ_HEADROOM_BYTES;
	return (size_t)v - DLQ_KEY_MAX_BYTES - DLQ_HEADROOM_BYTES;
}

struct dlq *
dlq_new(rd_kafka_t *rkp, const char *topic)
{
	struct dlq *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->rkp = rkp;
	d->max_value_bytes = dlq_max_value_bytes(rkp);
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
	char part[16], off[24], cut[64];
	const char *src = rkm->rkt != NULL ? rd_kafka_topic_name(rkm->rkt) : "";
	size_t key_len = rkm->key_len, len = rkm->len;
	rd_kafka_resp_err_t err;

	snprintf(part, sizeof(part), "%" PRId32, rkm->partition);
	snprintf(off, sizeof(off), "%" PRId64, rkm->offset);
	if (detail == NULL)
		detail = "";
	/* Over-long originals are cut to what the producer accepts, and say so. */
	cut[0] = '\0';
	if (key_len > DLQ_KEY_MAX_BYTES || len > d->max_value_bytes) {
		snprintf(cut, sizeof(cut), "key=%zu value=%zu", key_len, len);
		if (key_len > DLQ_KEY_MAX_BYTES)
			key_len = DLQ_KEY_MAX_BYTES;
		if (len > d->max_value_bytes)
			len = d->max_value_bytes;
		if (d->truncated++ == 0)
			log_warn("event=dlq_letter_truncated original=\"%s\" max_value_bytes=%zu "
				 "header=interestd.truncated",
			    cut, d->max_value_bytes);
	}
	for (;;) {
		/* producev owns the headers once it succeeds; a new set per attempt. */
		rd_kafka_headers_t *hdrs = rd_kafka_headers_new(6);

		rd_kafka_header_add(hdrs, "interestd.reason", -1, reason, -1);
		rd_kafka_header_add(hdrs, "interestd.detail", -1, detail, -1);
		rd_kafka_header_add(hdrs, "interestd.topic", -1, src, -1);
		rd_kafka_header_add(hdrs, "interestd.partition", -1, part, -1);
		rd_kafka_header_add(hdrs, "interestd.offset", -1, off, -1);
		if (cut[0] != '\0')
			rd_kafka_header_add(hdrs, "interestd.truncated", -1, cut, -1);
		err = rd_kafka_producev(d->rkp, RD_KAFKA_V_TOPIC(d->topic),
		    RD_KAFKA_V_KEY(rkm->key, key_len), RD_KAFKA_V_VALUE(rkm->payload, len),
		    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
		    RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			rd_kafka_headers_destroy(hdrs);
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
