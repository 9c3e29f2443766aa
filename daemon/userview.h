/*
 * The values a flush publishes for a user, computed from its state: the
 * interest vector (scorer_interest) and the top-N (scorer_topn_batch). The
 * daemon's flush and `interestctl replay` both call userview_fill_batch, so
 * they cannot diverge.
 */
#ifndef DAEMON_USERVIEW_H
#define DAEMON_USERVIEW_H

#include <stddef.h>
#include <stdint.h>

struct model;
struct user_state;
struct sink_user;

struct userview;

/*
 * Buffers for max_users users (one flush) of model m: vec [dim] and top-N
 * arrays per slot, plus one scorer. top_n: items per user; calibrate as
 * tiers.calibrate. NULL on ENOMEM. m is borrowed for the userview's life:
 * after a model swap make a new one. Free with userview_free (NULL-safe).
 */
struct userview *userview_new(const struct model *m, size_t max_users, size_t top_n, int calibrate);
void userview_free(struct userview *uv);
/* The top-N search (scorer_set_search): tiered != 0 takes cells of probe_items items. */
void userview_set_search(struct userview *uv, int tiered, uint32_t probe_items);
/* The scoring kernel this CPU runs ("avx512", "avx2", "sse2"). */
const char *userview_kernel(const struct userview *uv);

/*
 * Computes slot's vector and top-N from us and fills su (user_id, us, vec,
 * top_items, top_scores, n_top; epoch = 0 and result untouched: the caller
 * sets epoch). su's arrays live in the slot until the next fill of the same
 * slot or userview_free. Returns 0, or -1 if slot >= max_users.
 */
int userview_fill(struct userview *uv, size_t slot, const char *user_id, size_t user_id_len,
    const struct user_state *us, struct sink_user *su);

/*
 * userview_fill for slots 0..n-1 at once, the item scores of up to 64 users
 * by one SGEMM (scorer_topn_batch): the caller sets su[k].user_id,
 * user_id_len and us; this sets vec, top_items, top_scores and n_top (in
 * slot k, valid as for userview_fill) and leaves the rest untouched. A
 * user's values equal userview_fill's. Returns 0, or -1 if n > max_users.
 */
int userview_fill_batch(struct userview *uv, struct sink_user *su, size_t n);

/*
 * userview_fill_batch for su[first..first + n) into slots first.. (so the
 * earlier slots of a flush stay valid). Returns 0, or -1 if first + n >
 * max_users.
 */
int userview_fill_slots(struct userview *uv, struct sink_user *su, size_t first, size_t n);

#endif
