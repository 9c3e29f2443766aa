/*
 * Interest vector and top-N: every item scored by u.e_i + item bias + the
 * learned per-level tier terms, consumed items excluded, optionally the N
 * slots spread across the user's tier-1 interests by weight (calibration).
 */
#ifndef MODEL_SCORER_H
#define MODEL_SCORER_H

#include <stddef.h>
#include <stdint.h>

struct model;
struct user_state;

struct scorer;

/* Scratch for one model (scores of every item); NULL on ENOMEM. */
struct scorer *scorer_new(const struct model *m);
void scorer_free(struct scorer *sc);

/* u[dim] = P h + pb. */
void scorer_interest(const struct model *m, const struct user_state *us, float *u);

/*
 * Score of every item into out[n_items] (no exclusion), tier weights taken
 * at the user's t_ref_ms. Returns out.
 */
const float *scorer_score_all(struct scorer *sc, const struct user_state *us,
    const float *u, float *out);

/*
 * Best n items, best first, into items/scores; consumed items (the state's
 * filter) excluded. calibrate != 0 spreads the slots across tier-1 nodes in
 * proportion to the user's long-term tier-1 weights (largest remainder),
 * then fills from the rest. Returns the count written (<= n).
 */
size_t scorer_topn(struct scorer *sc, const struct user_state *us, const float *u,
    size_t n, int calibrate, uint32_t *items, float *scores);

#endif
