/*
 * interest-train's engine: next-item prediction over users' event sequences
 * (full softmax over the items seen in training), truncated BPTT with many
 * users in parallel lanes so each LSTM step is one SGEMM (lstm_forward, the
 * daemon's code), Adam, clipping, L2 on the residual R, dropout, early
 * stopping on validation NDCG@10. Also the replay+scoring used to evaluate a
 * model, shared by the trainer's validation and interest-eval.
 */
#ifndef MODEL_TRAIN_H
#define MODEL_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "modelfile.h"

struct dataset;

struct train_config {
	uint32_t hidden;              /* H */
	uint32_t type_dim;            /* E */
	uint64_t seed;
	uint32_t epochs;              /* maximum */
	uint32_t patience;            /* epochs without validation gain before stopping; 0 = never */
	uint32_t batch;               /* parallel user lanes */
	uint32_t bptt;                /* truncated BPTT window, steps */
	float lr;                     /* Adam */
	float l2;                     /* on R (and ib lightly) */
	float dropout;                /* on the input embedding and h, training only */
	float clip;                   /* global gradient-norm clip */
	uint32_t holdout_last;        /* each user's last N events excluded from training */
	uint32_t threads;             /* OpenBLAS threads */
	uint32_t sampled;             /* negatives per step for sampled softmax; 0 = full */
	uint32_t min_user_events;     /* users with fewer events are ignored (protocol: 5) */
	struct model_hparams hp;      /* ring, half-lives, type weights, max_tiers (hidden/type_dim copied) */
};

/* Fills cfg with the defaults (documented in cmd_train.c's usage). */
void train_config_default(struct train_config *cfg);

/* Weights to run: a loaded model, or a trainer's live buffers. */
struct train_view {
	const struct model *m;        /* catalog + HPAR: dims, tiers, half-lives (state_tiers_apply) */
	const struct model_weights *w;
	const float *E;               /* model item embeddings EMBD + R, [n_items][dim] */
};

/* The view of a loaded model file (weights and embeddings borrowed from m). */
void train_view_of_model(struct train_view *v, const struct model *m);

/*
 * Replays for each of n users (users[k]) its first n_hist[k] events through
 * the LSTM (batches of `batch` lanes) and the tier weights, then writes the
 * interest vector u into u_out[k][dim] and the user's normalised tier
 * features into feat_out[k][2*n_nodes] (short then long, each normalised
 * per level), ready for train_score(). Returns 0, or -1 on ENOMEM.
 */
int train_replay(const struct train_view *v, const struct dataset *ds,
    const uint32_t *users, const uint32_t *n_hist, size_t n, uint32_t batch,
    float *u_out, float *feat_out);

/* scores[n_items] = u.e_i + ib_i + tier terms of feat (schemas/modelfile.md). */
void train_score(const struct train_view *v, const float *u, const float *feat, float *scores);

struct trainer;

/*
 * A trainer for the catalog cat over ds. cold[n_items] (or NULL) marks items
 * whose events are dropped from training. Returns NULL with the reason in
 * errstr. tmp_path is where an initial model file is written and reloaded so
 * the tier weights use the serving code with these hyper-parameters.
 */
struct trainer *trainer_new(const struct model *cat, const struct dataset *ds,
    const struct train_config *cfg, const uint8_t *cold, const char *tmp_path,
    char *errstr, size_t errstr_size);
void trainer_free(struct trainer *tr);

/*
 * Trains up to cfg->epochs epochs, logging one line per epoch to log
 * (loss, validation NDCG@10/HR@10, seconds), keeping the weights of the best
 * validation epoch. Returns 0, or -1 with errstr.
 */
int trainer_run(struct trainer *tr, FILE *log, char *errstr, size_t errstr_size);

/* Best validation NDCG@10 seen by trainer_run (on each user's next-to-last event). */
double trainer_best_val(const struct trainer *tr);

/* Writes the model file (catalog of cat + HPAR + WGHT). Returns 0 or -1 with errstr. */
int trainer_write(const struct trainer *tr, const char *path, char *errstr, size_t errstr_size);

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

#endif
