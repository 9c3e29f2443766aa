/*
 * interest-train: trains the LSTM, projection, type embeddings, item
 * residuals/biases and tier terms on an interactions file against a catalog,
 * and writes one model file (schemas/modelfile.md).
 */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataset.h"
#include "modelfile.h"
#include "train.h"

#define EX_USAGE    64
#define EX_DATAERR  65
#define EX_SOFTWARE 70

struct train_args {
	const char *catalog, *interactions, *out, *cold_items;
	struct train_config cfg;
};

static void
usage(FILE *fp)
{
	struct train_config d;

	train_config_default(&d);
	fprintf(fp,
	    "usage: interest-train --catalog X.icat --interactions F.csv --out M.imdl [options]\n"
	    "  --seed N           random seed (default %llu); same seed and threads: same weights\n"
	    "  --epochs N         maximum epochs (default %u)\n"
	    "  --patience N       stop after N epochs without validation gain (default %u, 0 = "
	    "off)\n"
	    "  --hidden N         LSTM size H (default %u)\n"
	    "  --type-dim N       event-type embedding size E (default %u)\n"
	    "  --lr F             Adam learning rate (default %g)\n"
	    "  --batch N          users trained in parallel (default %u)\n"
	    "  --bptt N           truncated BPTT window in steps (default %u)\n"
	    "  --l2 F             L2 on the item residuals R (default %g)\n"
	    "  --dropout F        dropout on input embedding and h (default %g)\n"
	    "  --clip F           global gradient-norm clip (default %g)\n"
	    "  --sampled N        sampled softmax with N negatives (default: full softmax,\n"
	    "                     2048 negatives automatically above 50000 items)\n"
	    "  --holdout-last N   drop each user's last N events from training; with N >= 1 the\n"
	    "                     N-th last event is the validation item for early stopping "
	    "(default 0)\n"
	    "  --cold-items FILE  item ids (one per line) whose events are dropped from training\n"
	    "  --cold-sim F       share of candidate items per step scored by their content\n"
	    "                     placement only, as items without training events are served,\n"
	    "                     so the interest vector learns to rank new items (default %g)\n"
	    "  --threads N        OpenBLAS threads (default %u)\n"
	    "  --half-life-short S, --half-life-long S   tier-weight half-lives in seconds\n"
	    "                     (default %g, %g)\n"
	    "  --model-version N  HPAR model_version (default: unix time now)\n",
	    (unsigned long long)d.seed, d.epochs, d.patience, d.hidden, d.type_dim, (double)d.lr,
	    d.batch, d.bptt, (double)d.l2, (double)d.dropout, (double)d.clip, (double)d.cold_sim,
	    d.threads, (double)d.hp.half_life_short_s, (double)d.hp.half_life_long_s);
}

static int
parse_u32(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int
parse_f(const char *s, float *out)
{
	char *end;
	double v = strtod(s, &end);

	if (*end != '\0' || end == s || !(v == v))
		return -1;
	*out = (float)v;
	return 0;
}

static int
parse_args(int argc, char **argv, struct train_args *a)
{
	train_config_default(&a->cfg);
	a->cfg.hp.model_version = (uint64_t)time(NULL);
	for (int i = 1; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint32_t u = 0;
		int bad = 0;

		if (strcmp(k, "-h") == 0 || strcmp(k, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (v == NULL) {
			fprintf(stderr, "interest-train: %s needs a value\n", k);
			return -1;
		}
		i++;
		if (strcmp(k, "--catalog") == 0)
			a->catalog = v;
		else if (strcmp(k, "--interactions") == 0)
			a->interactions = v;
		else if (strcmp(k, "--out") == 0)
			a->out = v;
		else if (strcmp(k, "--cold-items") == 0)
			a->cold_items = v;
		else if (strcmp(k, "--seed") == 0)
			bad = parse_u32(v, &u), a->cfg.seed = u;
		else if (strcmp(k, "--model-version") == 0)
			bad = parse_u32(v, &u), a->cfg.hp.model_version = u;
		else if (strcmp(k, "--epochs") == 0)
			bad = parse_u32(v, &a->cfg.epochs);
		else if (strcmp(k, "--patience") == 0)
			bad = parse_u32(v, &a->cfg.patience);
		else if (strcmp(k, "--hidden") == 0)
			bad = parse_u32(v, &a->cfg.hidden) || a->cfg.hidden == 0 ||
			    a->cfg.hidden > 1024;
		else if (strcmp(k, "--type-dim") == 0)
			bad = parse_u32(v, &a->cfg.type_dim) || a->cfg.type_dim == 0 ||
			    a->cfg.type_dim > 64;
		else if (strcmp(k, "--batch") == 0)
			bad =
			    parse_u32(v, &a->cfg.batch) || a->cfg.batch == 0 || a->cfg.batch > 4096;
		else if (strcmp(k, "--bptt") == 0)
			bad = parse_u32(v, &a->cfg.bptt) || a->cfg.bptt == 0 || a->cfg.bptt > 1024;
		else if (strcmp(k, "--threads") == 0)
			bad = parse_u32(v, &a->cfg.threads) || a->cfg.threads == 0 ||
			    a->cfg.threads > 256;
		else if (strcmp(k, "--sampled") == 0)
			bad = parse_u32(v, &a->cfg.sampled);
		else if (strcmp(k, "--holdout-last") == 0)
			bad = parse_u32(v, &a->cfg.holdout_last);
		else if (strcmp(k, "--lr") == 0)
			bad = parse_f(v, &a->cfg.lr) || !(a->cfg.lr > 0);
		else if (strcmp(k, "--l2") == 0)
			bad = parse_f(v, &a->cfg.l2) || a->cfg.l2 < 0;
		else if (strcmp(k, "--dropout") == 0)
			bad = parse_f(v, &a->cfg.dropout) || a->cfg.dropout < 0 ||
			    a->cfg.dropout >= 1;
		else if (strcmp(k, "--cold-sim") == 0)
			bad = parse_f(v, &a->cfg.cold_sim) || a->cfg.cold_sim < 0 ||
			    a->cfg.cold_sim >= 1;
		else if (strcmp(k, "--clip") == 0)
			bad = parse_f(v, &a->cfg.clip) || a->cfg.clip < 0;
		else if (strcmp(k, "--half-life-short") == 0)
			bad = parse_f(v, &a->cfg.hp.half_life_short_s) ||
			    !(a->cfg.hp.half_life_short_s > 0);
		else if (strcmp(k, "--half-life-long") == 0)
			bad = parse_f(v, &a->cfg.hp.half_life_long_s) ||
			    !(a->cfg.hp.half_life_long_s > 0);
		else {
			fprintf(stderr, "interest-train: unknown option %s\n", k);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "interest-train: bad value for %s: '%s'\n", k, v);
			return -1;
		}
	}
	if (a->catalog == NULL || a->interactions == NULL || a->out == NULL) {
		fprintf(
		    stderr, "interest-train: --catalog, --interactions and --out are required\n");
		return -1;
	}
	return 0;
}

/* Reads item ids, one per line, into a [n_items] flag array. NULL on error (printed). */
static uint8_t *
load_cold_items(const char *path, const struct model *cat, size_t *n_cold)
{
	FILE *fp = fopen(path, "r");
	uint8_t *cold = NULL;
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;

	*n_cold = 0;
	if (fp == NULL) {
		fprintf(stderr, "interest-train: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	cold = calloc(model_n_items(cat), 1);
	if (cold == NULL) {
		fprintf(stderr, "interest-train: out of memory\n");
		goto done;
	}
	while ((got = getline(&line, &cap, fp)) > 0) {
		int32_t it;
		while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
			line[--got] = '\0';
		if (got == 0)
			continue;
		it = model_item_lookup(cat, line, (size_t)got);
		if (it >= 0 && !cold[it]) {
			cold[it] = 1;
			(*n_cold)++;
		}
	}
done:
	free(line);
	fclose(fp);
	return cold;
}

int
main(int argc, char **argv)
{
	struct train_args a = { 0 };
	struct model *cat = NULL;
	struct dataset *ds = NULL;
	struct trainer *tr = NULL;
	uint8_t *cold = NULL;
	char err[512], tmp[4096];
	size_t n_cold = 0;
	int rc = EX_SOFTWARE;

	if (parse_args(argc, argv, &a) < 0) {
		usage(stderr);
		return EX_USAGE;
	}
	openblas_set_num_threads((int)a.cfg.threads);
	cat = model_load(a.catalog, err, sizeof(err));
	if (cat == NULL) {
		fprintf(stderr, "interest-train: %s: %s\n", a.catalog, err);
		rc = EX_DATAERR;
		goto done;
	}
	ds = dataset_load(a.interactions, cat, err, sizeof(err));
	if (ds == NULL) {
		fprintf(stderr, "interest-train: %s\n", err);
		rc = EX_DATAERR;
		goto done;
	}
	if (a.cold_items != NULL && (cold = load_cold_items(a.cold_items, cat, &n_cold)) == NULL) {
		rc = EX_DATAERR;
		goto done;
	}
	fprintf(stderr,
	    "interest-train: %u items, %u users, %zu events (%zu with unknown items skipped), "
	    "%zu cold items; H=%u E=%u batch=%u bptt=%u lr=%g dropout=%g l2=%g cold-sim=%g "
	    "seed=%llu\n",
	    model_n_items(cat), ds->n_users, ds->n_events, ds->n_unknown_items, n_cold,
	    a.cfg.hidden, a.cfg.type_dim, a.cfg.batch, a.cfg.bptt, (double)a.cfg.lr,
	    (double)a.cfg.dropout, (double)a.cfg.l2, (double)a.cfg.cold_sim,
	    (unsigned long long)a.cfg.seed);
	snprintf(tmp, sizeof(tmp), "%s.init", a.out);
	tr = trainer_new(cat, ds, &a.cfg, cold, tmp, err, sizeof(err));
	if (tr == NULL) {
		fprintf(stderr, "interest-train: %s\n", err);
		goto done;
	}
	if (trainer_run(tr, stdout, err, sizeof(err)) < 0) {
		fprintf(stderr, "interest-train: %s\n", err);
		goto done;
	}
	if (trainer_write(tr, a.out, err, sizeof(err)) < 0) {
		fprintf(stderr, "interest-train: %s: %s\n", a.out, err);
		goto done;
	}
	printf("best val_ndcg@10 %.4f, wrote %s\n", trainer_best_val(tr), a.out);
	rc = 0;
done:
	trainer_free(tr);
	free(cold);
	dataset_free(ds);
	model_free(cat);
	return rc;
}
