/*
 * Applies a batch of events to user states: the LSTM steps of many users run
 * as one SGEMM per wave (the k-th event of each user in the batch), then each
 * event's tier weights, ring, consumed filter and applied marker. The daemon
 * and the offline replay both call this, so they agree to float rounding.
 */
#ifndef MODEL_UPDATER_H
#define MODEL_UPDATER_H

#include <stddef.h>
#include <stdint.h>

struct model;
struct user_state;

struct update_event {
	struct user_state *us; /* borrowed; several events may share one */
	uint32_t item;         /* model item index */
	uint8_t type;          /* enum model_event_type */
	int64_t ts_ms;
	int32_t partition; /* recorded as the user's marker; -1 offline */
	int64_t offset;
};

struct updater;

/*
 * Scratch for batches of up to max_batch events; NULL on ENOMEM or when m
 * has no weights (a catalog).
 */
struct updater *updater_new(const struct model *m, size_t max_batch);
void updater_free(struct updater *up);

/*
 * Applies ev[0..n) in order (n <= max_batch); one user's events keep their
 * order. Does not check markers: the caller skips events already applied.
 * Returns 0, or -1 (nothing applied) if n exceeds max_batch or an event has
 * no state, an item or type out of range, or a state of another hidden size.
 */
int updater_apply(struct updater *up, const struct update_event *ev, size_t n);

/*
 * After updater_apply returned 0: one flag per event of that batch, in its
 * order, 1 where the event's item was in its user's consumed set just before
 * the event (an earlier event of the same batch counts). Borrowed until the
 * next updater_apply.
 */
const uint8_t *updater_consumed_before(const struct updater *up);

#endif
