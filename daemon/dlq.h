/*
 * Dead-letter producer: a message that cannot be applied goes to topic.dlq
 * with its original key and value and headers naming why and where it came
 * from (interestd.reason, interestd.detail, interestd.topic,
 * interestd.partition, interestd.offset). An original longer than the
 * producer accepts (key over 4096 bytes, value over message.max.bytes less
 * headroom) is cut to fit and gets interestd.truncated = "key=N value=N"
 * (the original sizes). Delivery is tracked so the loop commits a range
 * only after its dead letters are acknowledged.
 */
#ifndef DAEMON_DLQ_H
#define DAEMON_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* Reasons beyond decode_err_name()'s. */
#define DLQ_REASON_UNKNOWN_ITEM  "unknown_item"
#define DLQ_REASON_BAD_TIMESTAMP "bad_timestamp"
#define DLQ_REASON_MISSING_USER  "missing_user"
#define DLQ_REASON_CRASHED       "crashed" /* in flight each time the daemon died */
#define DLQ_REASON_KEY_MISMATCH  "key_mismatch"

struct dlq;

/*
 * A dead-letter writer producing to topic through rkp (borrowed; its
 * dr_msg_cb must pass messages whose opaque is this dlq to
 * dlq_on_delivery). NULL on ENOMEM. dlq_free is NULL-safe.
 */
struct dlq *dlq_new(rd_kafka_t *rkp, const char *topic);
void dlq_free(struct dlq *d);

/*
 * Enqueues a dead letter for rkm (the consumed message, borrowed) with
 * reason and a human detail (may be NULL or empty). Payloads are copied.
 * When the producer queue is full, serves delivery reports for up to
 * block_ms and retries. Returns 0, or the librdkafka error code (the letter
 * was not enqueued: the caller must not commit past rkm).
 */
rd_kafka_resp_err_t dlq_send(struct dlq *d, const rd_kafka_message_t *rkm, const char *reason,
    const char *detail, int block_ms);

/*
 * The delivery report of a dead letter (rkm->_private == d): counts it
 * delivered or failed. Called from the producer's dr_msg_cb.
 */
void dlq_on_delivery(struct dlq *d, const rd_kafka_message_t *rkm);

/* Dead letters enqueued and not yet reported. */
uint64_t dlq_in_flight(const struct dlq *d);
/* Dead letters whose delivery failed for good (since dlq_new). */
uint64_t dlq_failed(const struct dlq *d);
/* Dead letters delivered (since dlq_new). */
uint64_t dlq_delivered(const struct dlq *d);

#endif
