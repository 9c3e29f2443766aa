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

/*
 * Scratch for one model (scores of every item, the rows of one batched
 * chunk: 64 users x n_items floats) and the model's per-node item lists;
 * NULL on ENOMEM.
 */
struct scorer *scorer_new(const struct model *m);
void scorer_free(struct scorer *sc);

/* u[dim] = P h + pb. */
void scorer_interest(const struct model *m, const struct user_state *us, float *u);

/*
 * Score of every item into out[n_items] (no exclusion), tier weights taken
 * at the user's t_ref_ms. Returns out.
 */
const float *scorer_score_all(
    struct scorer *sc, const struct user_state *us, const float *u, float *out);

/*
 * scorer_score_all for n_users users: us[k] with interest vector U[k * dim ..],
 * scores into out[k * n_items ..], through the top-N kernel: up to 64 users
 * share each span of the item embeddings in cache, a few at a time in
 * registers. A user's scores are scorer_score_all's, bit for bit, whatever
 * n_users. No allocation. SCORER_BATCH: the users per call the trainer's
 * validation uses (its buffers are sized for it).
 */
#define SCORER_BATCH 8
void scorer_score_all_batch(struct scorer *sc, const struct user_state *const *us, const float *U,
    size_t n_users, float *out);

/*
 * Best n items, best first, into items/scores; consumed items (the state's
 * filter) excluded. calibrate != 0 spreads the slots across tier-1 nodes in
 * proportion to the user's long-term tier-1 weights (largest remainder),
 * then fills from the rest. Returns the count written (<= n).
 */
size_t scorer_topn(struct scorer *sc, const struct user_state *us, const float *u, size_t n,
    int calibrate, uint32_t *items, float *scores);

/*
 * scorer_topn for n_users users at once: us[k] with interest vector
 * U[k * dim .. ], results into items[k * n ..], scores[k * n ..] (stride n)
 * and the count of user k into counts[k]. The item scores of up to 64 users
 * come from one SGEMM over the item embeddings, so a user's scores may differ
 * from scorer_score_all's SGEMV in the last bits (not by the batch's other
 * users); the selection is scorer_topn's. No allocation.
 */
void scorer_topn_batch(struct scorer *sc, const struct user_state *const *us, const float *U,
    size_t n_users, size_t n, int calibrate, uint32_t *items, float *scores, size_t *counts);

/*
 * Search of scorer_topn / scorer_topn_batch. Exact (the default) scores
 * every item. Tiered scores only the cells of the tier tree a user's
 * estimates rank first: a cell is a bias band of the items of one tier-2
 * node, its estimate u.c + the largest item bias + the user's node terms
 * (c its items' centroid); cells are taken best first until they hold
 * probe_items items (calibrated: plus the best cell of every tier-1 node
 * with a quota). A cell whose bound (the estimate + |u| r, r its radius) is
 * below the user's current N-th score when its turn comes is skipped. The
 * result is the exact top-N over the cells taken.
 */
#define SCORER_PROBE_ITEMS_MAX 65536 /* probe_items is clamped to it */
void scorer_set_search(struct scorer *sc, int tiered, uint32_t probe_items);
/* Users scored and items scored for them since scorer_new. */
void scorer_stats(const struct scorer *sc, uint64_t *users, uint64_t *items_scored);

/*
 * The scoring kernel of top-N and of scorer_score_all*: one per instruction
 * set ("avx512", "avx2" (with FMA), "sse2"; the register blocking of each
 * fits its registers), the best this CPU runs chosen by scorer_new. A score
 * is a chain of multiply-adds in dimension order: fused on "avx512" and
 * "avx2", which compute the same bits; "sse2" (no FMA) rounds each product
 * and differs in the last bits. Whatever the kernel, a user's scores do not
 * depend on the path (top-N, score_all), batch or position. scorer_set_kernel
 * forces one by name (NULL: the best again): 0, -1 for an unknown name, -2
 * when this CPU lacks its instructions.
 */
const char *scorer_kernel_name(const struct scorer *sc);
int scorer_set_kernel(struct scorer *sc, const char *name);

/*
 * For benchmarks: the current kernel's pass over every item for n_users
 * vectors U[k * dim ..], every score computed and none selected (the
 * multiply-add rate of the kernel alone).
 */
void scorer_kernel_pass(struct scorer *sc, const float *U, size_t n_users);

#endif
