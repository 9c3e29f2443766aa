/*
 * InterestSnapshot encoding (schemas/interest_snapshot.avsc): a user's model
 * version, newest event time, the events applied since the previous snapshot
 * (from the state's ring), tier weights and interest vector, as Avro binary
 * in single-object encoding (C3 01 + CRC-64-AVRO fingerprint of the schema's
 * Parsing Canonical Form, little-endian, then the record). The consumer loop
 * produces it to topic.snapshots keyed by user id.
 */
#ifndef DAEMON_SNAPSHOT_H
#define DAEMON_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

struct model;
struct user_state;

#define SNAPSHOT_HEADER_SIZE 10 /* C3 01 + 8-byte fingerprint */

struct snapshot;

/*
 * An encoder with a reusable output buffer and the header of the compiled-in
 * schema (schemas.h), or NULL with the reason in errstr (out of memory, or
 * that schema does not parse: our bug). snapshot_free is NULL-safe.
 */
struct snapshot *snapshot_new(char *errstr, size_t errstr_size);
void snapshot_free(struct snapshot *sn);

/*
 * Encodes a snapshot of us (a state of model m) for user_id: the newest
 * n_events ring events (capped at the ring's count; items absent from m are
 * left out), every tier weight as of us->t_ref_ms with its wire label, and
 * vec[model_dim(m)] (the interest vector). On success *out / *out_len point
 * into the encoder's buffer, valid until the next call; returns 0, or -1 on
 * ENOMEM. The buffer grows to the largest snapshot and is then reused.
 */
int snapshot_encode(struct snapshot *sn, const struct model *m, const char *user_id,
    size_t user_id_len, const struct user_state *us, uint32_t n_events, const float *vec,
    const uint8_t **out, size_t *out_len);

#endif
