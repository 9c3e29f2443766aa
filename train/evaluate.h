/*
 * The evaluation protocol (leave-last-out per user, full ranking over every
 * item minus the user's history, never the target), its metrics, and the
 * baselines (Popularity, first-order Markov, ItemKNN) it compares against.
 */
#ifndef MODEL_EVALUATE_H
#define MODEL_EVALUATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct dataset;
struct model;
struct updater;
struct user_state;

#define EVAL_MIN_EVENTS 5 /* users with fewer interactions are dropped */
#define EVAL_TOPK       10
#define EVAL_CALIB_EPS  0.01       /* additive smoothing of both tier-1 distributions */
#define EVAL_NO_TARGET  UINT32_MAX /* eval_acc_add: the target could not be served */

enum eval_metric {
	EVAL_HR10 = 0,
	EVAL_NDCG10,
	EVAL_HR20,
	EVAL_NDCG20,
	EVAL_MRR,
	EVAL_COVERAGE10,
	EVAL_ILD10,
	EVAL_CALIB_KL10,
	EVAL_N_METRICS
};

/* JSON key of a metric ("hr@10", ..., "calibration_kl@10"). */
const char *eval_metric_name(enum eval_metric k);

/*
 * Rank (0 = best) of target among the items i with stamp[i] != mark (the
 * excluded history), target always a candidate; ties go to the lower index.
 */
uint32_t eval_rank(
    const float *scores, uint32_t n_items, uint32_t target, const uint32_t *stamp, uint32_t mark);

/*
 * The leave-last-out split: users with >= EVAL_MIN_EVENTS events; the test
 * target is the last event, validation the one before, the rest training.
 */
struct eval_split {
	uint32_t n;       /* evaluated users */
	uint32_t *users;  /* [n] dataset user index */
	uint32_t *n_hist; /* [n] events before the test target (train + validation) */
};
int eval_split_make(const struct dataset *ds, struct eval_split *sp);
void eval_split_fini(struct eval_split *sp);

/*
 * The serving path offline: resets states[k] and applies the first n_hist[k]
 * events of dataset user users[k] (k < n) through updater_apply, exactly as
 * the daemon would (partition -1, offsets numbering the events), packed into
 * batches of up to max_batch events (up must have been made for at least
 * that many) so each wave is one SGEMM across users. Score with
 * scorer_interest() and scorer_score_all() afterwards. Returns 0, or -1 if
 * max_batch is 0, on ENOMEM or if the updater refuses a batch.
 */
int eval_replay(struct updater *up, const struct dataset *ds, const uint32_t *users,
    const uint32_t *n_hist, size_t n, size_t max_batch, struct user_state **states);

/*
 * The user's long-term tier-1 weight distribution into p1[n_tier1] (sums to
 * 1, or all zero without tier-1 weight), for calibration metrics.
 */
void eval_tier1_dist(const struct model *m, const struct user_state *us, float *p1);

/* Accumulates metrics over users (one instance per method). */
struct eval_acc;
struct eval_acc *eval_acc_new(const struct model *cat);
void eval_acc_free(struct eval_acc *ea);
/*
 * Adds one user: scores of every item, the target, the excluded history
 * (stamp/mark), and the user's tier-1 weight distribution p1[n_tier1]
 * (summing to 1, or all zero) for calibration. target EVAL_NO_TARGET: the
 * target was excluded too (a miss: no hit, no reciprocal rank); the list
 * metrics still count the user's top 10.
 */
void eval_acc_add(struct eval_acc *ea, const float *scores, uint32_t target, const uint32_t *stamp,
    uint32_t mark, const float *p1);
/* Final metric values into out[EVAL_N_METRICS]. */
void eval_acc_result(const struct eval_acc *ea, double *out);

/*
 * The three baselines, fitted on each evaluated user's training part (the
 * events before the validation item). Scores use the user's history before
 * the test target.
 */
struct eval_baselines;
struct eval_baselines *eval_baselines_new(const struct dataset *ds, const struct eval_split *sp);
void eval_baselines_free(struct eval_baselines *bl);
enum eval_baseline { EVAL_POP = 0, EVAL_MARKOV, EVAL_ITEMKNN, EVAL_N_BASELINES };
const char *eval_baseline_name(enum eval_baseline b);
/* Scores every item for user k of the split into scores[n_items]. */
void eval_baseline_score(struct eval_baselines *bl, enum eval_baseline b, const struct dataset *ds,
    const struct eval_split *sp, uint32_t k, float *scores);

#endif
