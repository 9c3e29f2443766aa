/*
 * interest-train's engine: next-item prediction over users' event sequences
 * (full softmax over the items seen in training), truncated BPTT with many
 * users in parallel lanes so each LSTM step is one SGEMM (lstm_forward, the
 * daemon's code), Adam, clipping, L2 on the residual R, dropout, early
 * stopping on validation NDCG@10, measured through the serving path (the
 * model file as written, model/updater.h and model/scorer.h). Items without
 * training events are placed from their LLM embedding when weights are
 * written (train_place_untrained).
 */
#ifndef MODEL_TRAIN_H
#define MODEL_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "modelfile.h"

struct dataset;

struct train_config {
	uint32_t hidden;   /* H */
	uint32_t type_dim; /* E */
	uint64_t seed;
	uint32_t epochs;          /* maximum */
	double train_budget_s;    /* wall seconds for trainer_run's epochs; 0 = none */
	uint32_t patience;        /* epochs without validation gain before stopping; 0 = never */
	uint32_t batch;           /* parallel user lanes */
	uint32_t bptt;            /* truncated BPTT window, steps */
	float lr;                 /* Adam */
	float l2;                 /* L2 on the residuals R */
	float l2_bias;            /* L2 on the item biases ib */
	float dropout;            /* on the input embedding and h, training only */
	float clip;               /* global gradient-norm clip */
	uint32_t holdout_last;    /* each user's last N events excluded from training */
	uint32_t threads;         /* OpenBLAS threads */
	uint32_t sampled;         /* negatives per step for sampled softmax; 0 = full */
	uint32_t min_user_events; /* users with fewer events are ignored (protocol: 5) */
	float cold_sim;           /* fraction of candidate items per window scored as if unseen */
	int content_init;         /* start as a content recommender (trainer_content_init) */
	struct model_hparams
	    hp; /* ring, half-lives, type weights, max_tiers (hidden/type_dim copied) */
};

/* Fills cfg with the defaults (documented in cmd_train.c's usage). */
void train_config_default(struct train_config *cfg);

/*
 * Content placement of items without training events (trained[i] == 0), the
 * design's "the LLM places a brand-new item": a ridge regression from the
 * item's LLM embedding (plus an unshrunk intercept) to its learned residual
 * R_i and bias ib_i, fitted on the trained items (at most 50000 of them),
 * the strength chosen by 5-fold cross-validation on those items, separately
 * for R and for ib (the strongest setting is close to the trained items'
 * mean). Writes the predictions into R [n_items][dim] and ib [n_items] of
 * the untrained items only; the chosen strengths into *lambda_R and *lambda_ib
 * (either may be NULL). With no trained item at all, untrained items get
 * R = 0 and ib = 0. Cost O(folds * 7 * dim^3). Returns 0, or -1 on ENOMEM
 * (R and ib of untrained items then unspecified).
 */
int train_place_untrained(const struct model *cat, const uint8_t *trained, float *R, float *ib,
    double *lambda_R, double *lambda_ib);

struct trainer;

/*
 * A trainer for the catalog cat over ds. cold[n_items] (or NULL) marks items
 * whose events are dropped from training. Returns NULL with the reason in
 * errstr. tmp_path is where an initial model file is written and reloaded so
 * the tier weights use the serving code with these hyper-parameters.
 */
struct trainer *trainer_new(const struct model *cat, const struct dataset *ds,
    const struct train_config *cfg, const uint8_t *cold, const char *tmp_path, char *errstr,
    size_t errstr_size);
void trainer_free(struct trainer *tr);

/*
 * Trains up to cfg->epochs epochs, logging one line per epoch to log
 * (loss, validation NDCG@10/HR@10, seconds), keeping the weights of the best
 * validation epoch, then places the untrained items (one log line naming
 * their count and the ridge strengths). Validation writes and reloads the
 * model file at trainer_new's tmp_path. Returns 0, or -1 with errstr.
 */
int trainer_run(struct trainer *tr, FILE *log, char *errstr, size_t errstr_size);

/* Best validation NDCG@10 seen by trainer_run (on each user's next-to-last event). */
double trainer_best_val(const struct trainer *tr);
/*
 * At that best epoch, the pseudo-cold HR@10: each validation target ranked
 * as if it were a new item, its own learned residual and bias replaced by
 * its out-of-fold content placement (what a cold item gets).
 */
double trainer_best_cold_hr(const struct trainer *tr);

/* What trainer_run did: epochs trained, the best one, training positions and seconds. */
struct trainer_stats {
	uint32_t epochs;     /* trained (not counting epoch 0, the starting weights) */
	uint32_t best_epoch; /* 0 = the starting weights won */
	uint64_t positions;  /* training targets processed */
	double train_s;      /* wall seconds in training windows (validation excluded) */
};
void trainer_stats(const struct trainer *tr, struct trainer_stats *st);

/*
 * Writes the model file (catalog of cat + HPAR + WGHT): the weights of the
 * best epoch as trainer_run left them (the initial weights before it), with
 * the untrained items placed from content, and choice (the settings search's
 * record, TRCH; NULL: none). Returns 0 or -1 with errstr.
 */
int trainer_write(const struct trainer *tr, const char *path, const char *choice, char *errstr,
    size_t errstr_size);

/* One model's figures on the leave-last-out test (train_test). */
struct train_test_result {
	double ndcg10, hr10;
	uint32_t users; /* evaluated: users with >= EVAL_MIN_EVENTS events */
};

/*
 * The retraining gate's measurement, the protocol of train/evaluate.h: each
 * user of ds with >= EVAL_MIN_EVENTS events, its last event (time order) the
 * target, the events before it replayed through the serving path (updater,
 * scorer, as the daemon serves), full ranking over every item minus the
 * user's history, never the target. m must be a model (with weights) whose
 * items are those ds was loaded with, same indices. Fills *res. Returns 0,
 * or -1 with errstr (not a model of that catalog, ENOMEM).
 */
int train_test(const struct model *m, const struct dataset *ds, struct train_test_result *res,
    char *errstr, size_t errstr_size);

/*
 * The retraining gate's rule: 1 when a new model measuring new_ndcg may
 * replace the current one measuring cur_ndcg, i.e. new_ndcg >= cur_ndcg *
 * (1 - max_regression). max_regression is the fraction of the current
 * figure the new model may lose (0: must not be worse; 0.02: up to 2 %
 * worse; 1: always). 0 when a figure is not finite or max_regression is
 * outside [0, 1].
 */
int train_accept(double new_ndcg, double cur_ndcg, double max_regression);

/*
 * For gradient checks: the flat parameter array (WGHT layout, n_par floats,
 * mutable: the caller may perturb it), the gradient of the last
 * trainer_window_loss(), and the weight blocks (pointers into the array).
 */
float *trainer_params(struct trainer *tr, size_t *n_par);
const float *trainer_grad(const struct trainer *tr);
const struct model_weights *trainer_weights(const struct trainer *tr);
/*
 * Mean cross-entropy of the first training window (users in stored order)
 * plus 0.5 * l2 * |R|^2, its gradient left in trainer_grad(); no update.
 * Deterministic when dropout is 0 and the softmax is full.
 */
double trainer_window_loss(struct trainer *tr);
/*
 * The positions of the last trainer_window_loss() window, for serving
 * equivalence tests: up to cap entries of the dataset user, the number of
 * that user's training-sequence events fed so far (the input is the last of
 * them, the target the next one; with no cold items the sequence is the
 * user's dataset events) and the cross-entropy of the target over the
 * candidates (every item with training events, full softmax). Returns the
 * number of active positions (may exceed cap; only cap are written).
 */
size_t trainer_window_positions(
    const struct trainer *tr, size_t cap, uint32_t *user, uint32_t *n_applied, double *ce);

#endif
