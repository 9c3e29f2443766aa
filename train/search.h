/*
 * interest-train's settings search: which hidden size, learning rate,
 * regularisation (L2 on the item residuals R and biases ib, dropout),
 * truncation length and starting point generalise best on the data given,
 * judged only on each user's validation item (the next-to-last event with
 * --holdout-last 2), within a time budget. Coordinate search from the
 * defaults: one setting at a time, each alternative trained for a few
 * epochs (a screen), kept when its merit beats the best so far by more
 * than SEARCH_MARGIN. The merit is the screen's best validation NDCG@10
 * times a small power of how often its validation items, each placed from
 * its content as a new item would be, reach the top 10 (search.c, merit()).
 * Settings given on the command line are not searched. Test items are
 * never looked at.
 */
#ifndef MODEL_SEARCH_H
#define MODEL_SEARCH_H

#include <stdint.h>
#include <stdio.h>

#include "train.h"

#define SEARCH_MARGIN      0.01 /* relative merit gain an alternative must show */
#define SEARCH_COLD_WEIGHT 0.2  /* exponent of the pseudo-cold term of the merit (search.c) */

/* Settings the search may vary (bits); those set in search_opts.fixed are left alone. */
enum search_dim {
	SEARCH_L2 = 1 << 0,
	SEARCH_DROPOUT = 1 << 1,
	SEARCH_INIT = 1 << 2,
	SEARCH_HIDDEN = 1 << 3,
	SEARCH_LR = 1 << 4,
	SEARCH_L2_BIAS = 1 << 5,
	SEARCH_BPTT = 1 << 6
};

struct search_opts {
	double budget_s;        /* wall seconds for all screens */
	uint32_t screen_epochs; /* epochs per screen (early stopping inside) */
	unsigned fixed;         /* enum search_dim bits not to search */
};

/*
 * Runs the search for training cat over ds (cold[] as trainer_new) from
 * base (its holdout_last must be >= 1). Logs one line per screen to log,
 * fills *best with the chosen settings (base's other fields kept) and
 * *record with a malloc'd text of what was tried and chosen (the model
 * file's TRCH). Returns 0, or -1 with errstr.
 */
int search_run(const struct model *cat, const struct dataset *ds, const uint8_t *cold,
    const struct train_config *base, const struct search_opts *o, const char *tmp_path, FILE *log,
    struct train_config *best, char **record, char *errstr, size_t errstr_size);

/* The searched settings of cfg as interest-train flags, into buf. */
void search_flags(const struct train_config *cfg, char *buf, size_t size);

#endif
