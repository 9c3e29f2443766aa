/*
 * interest-train: trains the LSTM, projection, type embeddings, item
 * residuals/biases and tier terms on an interactions file against a catalog,
 * and writes one model file (schemas/modelfile.md). With --current it is the
 * retraining gate (docs/RETRAINING.md): the new model is written only if it
 * is not worse than the current one on each user's last event.
 */
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "blas.h"
#include "dataset.h"
#include "evaluate.h"
#include "modelfile.h"
#include "search.h"
#include "train.h"

#define EX_REFUSED  3 /* --current: the new model was worse; --out left untouched */
#define EX_DATAERR  65
#define EX_SOFTWARE 70

#define TRAIN_GATE_HOLDOUT    2 /* --current: last = test, next-to-last = validation */
#define TRAIN_SEARCH_BUDGET_S 600.0
#define TRAIN_SCREEN_EPOCHS   2

/* Flags given on the command line (the others come from --current, if any). */
enum train_flag {
	TRAIN_SET_HIDDEN = 1 << 0,
	TRAIN_SET_TYPE_DIM = 1 << 1,
	TRAIN_SET_HL_SHORT = 1 << 2,
	TRAIN_SET_HL_LONG = 1 << 3,
	TRAIN_SET_HOLDOUT = 1 << 4,
	TRAIN_SET_VERSION = 1 << 5,
	TRAIN_SET_INIT = 1 << 6
};

struct train_args {
	const char *catalog, *interactions, *out, *cold_items, *current;
	double max_regression;
	unsigned set; /* enum train_flag bits */
	int no_search;
	struct search_opts so; /* .fixed: the searched settings given as flags */
	struct train_config cfg;
};

static void
usage(FILE *fp)
{
	struct train_config d;

	train_config_default(&d);
	fprintf(fp,
	    "usage: interest-train --catalog X.icat --interactions F.csv --out M.imdl [options]\n"
	    "       interest-train --current CUR.imdl --interactions DUMP.csv --out M.imdl\n"
	    "                      [--max-regression F] [options]\n"
	    "       interest-train -h|--help|--version\n"
	    "  --current M        the retraining gate: M is the model now serving; its catalog\n"
	    "                     is the default --catalog (another must have the same items),\n"
	    "                     its hidden/type-dim/half-lives/ring/type weights the defaults;\n"
	    "                     --holdout-last defaults to 2 (at least 2). After training,\n"
	    "                     both models are tested on each user's last event (NDCG@10,\n"
	    "                     full ranking minus history, serving path); --out is written\n"
	    "                     only if new >= current * (1 - max-regression), else exit 3\n"
	    "                     and --out is left untouched. model_version must be greater\n"
	    "                     than M's (default: max(unix time, M's + 1))\n"
	    "  --max-regression F fraction of the current NDCG@10 the new model may lose and\n"
	    "                     still be written, 0..1 (default 0: must not be worse)\n"
	    "  --seed N           random seed (default %llu); same seed and threads: same weights\n"
	    "  --epochs N         maximum epochs (default %u)\n"
	    "  --train-budget-s S wall seconds for the training's epochs (default 0: none); an\n"
	    "                     epoch that would end past it is not started, the best so far\n"
	    "                     is written and the log says so\n"
	    "  --patience N       stop after N epochs without validation gain (default %u, 0 = "
	    "off)\n"
	    "  --hidden N         LSTM size H (default %u)\n"
	    "  --type-dim N       event-type embedding size E (default %u)\n"
	    "  --lr F             Adam learning rate (default %g)\n"
	    "  --batch N          users trained in parallel (default %u)\n"
	    "  --bptt N           truncated BPTT window in steps (default %u)\n"
	    "  --l2 F             L2 on the item residuals R (default %g)\n"
	    "  --l2-bias F        L2 on the item biases ib (default %g)\n"
	    "  --dropout F        dropout on input embedding and h (default %g)\n"
	    "  --clip F           global gradient-norm clip (default %g)\n"
	    "  --content-init 0|1 start as a content recommender: the interest vector echoes\n"
	    "                     the recent items' LLM embeddings (default 1 with validation\n"
	    "                     items, where the start competes as epoch 0; 0 without)\n"
	    "settings search (train/search.h), on whenever there are validation items\n"
	    "(--holdout-last >= 1) and epochs to train: a coordinate search over --l2 {1e-5,\n"
	    "1e-4,1e-3}, --dropout {0.3,0.1,0.5}, --content-init {1,0}, --hidden {128,64,256},\n"
	    "--lr {1e-3,3e-3}, --l2-bias {0,1e-4,1e-3}, --bptt {20,50}, in that order, each try\n"
	    "trained for --screen-epochs and judged on the validation items only; settings\n"
	    "given as flags are not searched; the tries and the choice are printed and kept\n"
	    "in the model file (interestctl model shows them)\n"
	    "  --budget-s S       wall seconds for the search's tries (default %g); a try that\n"
	    "                     would not fit is skipped and named\n"
	    "  --screen-epochs N  epochs per try (default %u)\n"
	    "  --no-search        train with the given settings and defaults only\n"
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
	    "  --model-version N  HPAR model_version (default: unix time now)\n"
	    "exit status: 0 written, 3 refused by the --current gate, 64 usage, 65 bad input,\n"
	    "70 failure\n",
	    (unsigned long long)d.seed, d.epochs, d.patience, d.hidden, d.type_dim, (double)d.lr,
	    d.batch, d.bptt, (double)d.l2, (double)d.l2_bias, (double)d.dropout, (double)d.clip,
	    TRAIN_SEARCH_BUDGET_S, TRAIN_SCREEN_EPOCHS, (double)d.cold_sim, d.threads,
	    (double)d.hp.half_life_short_s, (double)d.hp.half_life_long_s);
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
	a->so.budget_s = TRAIN_SEARCH_BUDGET_S;
	a->so.screen_epochs = TRAIN_SCREEN_EPOCHS;
	static const char *const flags[] = { "--no-search", NULL };
	const char *k, *v;
	int i = 1, got;

	while ((got = cli_next(argc, argv, &i, "interest-train", flags, usage, &k, &v)) > 0) {
		uint32_t u = 0;
		int bad = 0;

		if (strcmp(k, "--no-search") == 0)
			a->no_search = 1;
		else if (strcmp(k, "--catalog") == 0)
			a->catalog = v;
		else if (strcmp(k, "--interactions") == 0)
			a->interactions = v;
		else if (strcmp(k, "--out") == 0)
			a->out = v;
		else if (strcmp(k, "--cold-items") == 0)
			a->cold_items = v;
		else if (strcmp(k, "--current") == 0)
			a->current = v;
		else if (strcmp(k, "--max-regression") == 0) {
			float f = 0;
			bad = parse_f(v, &f) || !(f >= 0 && f <= 1);
			a->max_regression = f;
		} else if (strcmp(k, "--seed") == 0)
			bad = parse_u32(v, &u), a->cfg.seed = u;
		else if (strcmp(k, "--model-version") == 0)
			bad = parse_u32(v, &u), a->cfg.hp.model_version = u,
			a->set |= TRAIN_SET_VERSION;
		else if (strcmp(k, "--epochs") == 0)
			bad = parse_u32(v, &a->cfg.epochs);
		else if (strcmp(k, "--patience") == 0)
			bad = parse_u32(v, &a->cfg.patience);
		else if (strcmp(k, "--hidden") == 0)
			bad = parse_u32(v, &a->cfg.hidden) || a->cfg.hidden == 0 ||
			    a->cfg.hidden > 1024,
			a->set |= TRAIN_SET_HIDDEN, a->so.fixed |= SEARCH_HIDDEN;
		else if (strcmp(k, "--train-budget-s") == 0) {
			float f = 0;
			bad = parse_f(v, &f) || !(f >= 0);
			a->cfg.train_budget_s = f;
		} else if (strcmp(k, "--budget-s") == 0) {
			float f = 0;
			bad = parse_f(v, &f) || !(f >= 0);
			a->so.budget_s = f;
		} else if (strcmp(k, "--screen-epochs") == 0)
			bad = parse_u32(v, &a->so.screen_epochs) || a->so.screen_epochs == 0;
		else if (strcmp(k, "--content-init") == 0)
			bad = parse_u32(v, &u) || u > 1, a->cfg.content_init = (int)u,
			a->set |= TRAIN_SET_INIT, a->so.fixed |= SEARCH_INIT;
		else if (strcmp(k, "--l2-bias") == 0)
			bad = parse_f(v, &a->cfg.l2_bias) || !(a->cfg.l2_bias >= 0),
			a->so.fixed |= SEARCH_L2_BIAS;
		else if (strcmp(k, "--type-dim") == 0)
			bad = parse_u32(v, &a->cfg.type_dim) || a->cfg.type_dim == 0 ||
			    a->cfg.type_dim > 64,
			a->set |= TRAIN_SET_TYPE_DIM;
		else if (strcmp(k, "--batch") == 0)
			bad =
			    parse_u32(v, &a->cfg.batch) || a->cfg.batch == 0 || a->cfg.batch > 4096;
		else if (strcmp(k, "--bptt") == 0)
			bad = parse_u32(v, &a->cfg.bptt) || a->cfg.bptt == 0 || a->cfg.bptt > 1024,
			a->so.fixed |= SEARCH_BPTT;
		else if (strcmp(k, "--threads") == 0)
			bad = parse_u32(v, &a->cfg.threads) || a->cfg.threads == 0 ||
			    a->cfg.threads > 256;
		else if (strcmp(k, "--sampled") == 0)
			bad = parse_u32(v, &a->cfg.sampled);
		else if (strcmp(k, "--holdout-last") == 0)
			bad = parse_u32(v, &a->cfg.holdout_last), a->set |= TRAIN_SET_HOLDOUT;
		else if (strcmp(k, "--lr") == 0)
			bad = parse_f(v, &a->cfg.lr) || !(a->cfg.lr > 0), a->so.fixed |= SEARCH_LR;
		else if (strcmp(k, "--l2") == 0)
			bad = parse_f(v, &a->cfg.l2) || a->cfg.l2 < 0, a->so.fixed |= SEARCH_L2;
		else if (strcmp(k, "--dropout") == 0)
			bad = parse_f(v, &a->cfg.dropout) || a->cfg.dropout < 0 ||
			    a->cfg.dropout >= 1,
			a->so.fixed |= SEARCH_DROPOUT;
		else if (strcmp(k, "--cold-sim") == 0)
			bad = parse_f(v, &a->cfg.cold_sim) || a->cfg.cold_sim < 0 ||
			    a->cfg.cold_sim >= 1;
		else if (strcmp(k, "--clip") == 0)
			bad = parse_f(v, &a->cfg.clip) || a->cfg.clip < 0;
		else if (strcmp(k, "--half-life-short") == 0)
			bad = parse_f(v, &a->cfg.hp.half_life_short_s) ||
			    !(a->cfg.hp.half_life_short_s > 0),
			a->set |= TRAIN_SET_HL_SHORT;
		else if (strcmp(k, "--half-life-long") == 0)
			bad = parse_f(v, &a->cfg.hp.half_life_long_s) ||
			    !(a->cfg.hp.half_life_long_s > 0),
			a->set |= TRAIN_SET_HL_LONG;
		else {
			fprintf(stderr, "interest-train: unknown option %s\n", k);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "interest-train: bad value for %s: '%s'\n", k, v);
			return -1;
		}
	}
	if (got < 0)
		return -1;
	if ((a->catalog == NULL && a->current == NULL) || a->interactions == NULL ||
	    a->out == NULL) {
		fprintf(stderr,
		    "interest-train: --catalog (or --current), --interactions and --out "
		    "are required\n");
		return -1;
	}
	if (a->current != NULL && (a->set & TRAIN_SET_HOLDOUT) &&
	    a->cfg.holdout_last < TRAIN_GATE_HOLDOUT) {
		fprintf(stderr,
		    "interest-train: --current needs --holdout-last >= %d (the last event is the "
		    "test, the one before it the validation item)\n",
		    TRAIN_GATE_HOLDOUT);
		return -1;
	}
	if (a->current == NULL && a->max_regression > 0) {
		fprintf(stderr, "interest-train: --max-regression needs --current\n");
		return -1;
	}
	return 0;
}

/* 1 when a and b have the same items (ids, order), embedding size and tier tree. */
static int
same_catalog(const struct model *a, const struct model *b)
{
	if (model_n_items(a) != model_n_items(b) || model_dim(a) != model_dim(b) ||
	    model_n_nodes(a) != model_n_nodes(b))
		return 0;
	for (uint32_t i = 0; i < model_n_items(a); i++) {
		size_t la, lb;
		const char *ia = model_item_id(a, i, &la), *ib = model_item_id(b, i, &lb);
		if (la != lb || memcmp(ia, ib, la) != 0)
			return 0;
	}
	return 1;
}

/*
 * --current: the serving model's hyper-parameters are the defaults of those
 * not given on the command line, so the new model serves users the same way
 * (ring, half-lives, type weights); model_version goes above the current one.
 * Returns 0, or -1 (printed) when --model-version is not above it.
 */
static int
inherit_current(struct train_args *a, const struct model *cur)
{
	const struct model_hparams *hp = model_hparams(cur);
	struct model_hparams mine = a->cfg.hp;

	if (!(a->set & TRAIN_SET_HIDDEN))
		a->cfg.hidden = hp->hidden;
	a->so.fixed |= SEARCH_HIDDEN; /* the serving model's shape (or the one asked for) */
	if (!(a->set & TRAIN_SET_TYPE_DIM))
		a->cfg.type_dim = hp->type_dim;
	if (!(a->set & TRAIN_SET_HOLDOUT))
		a->cfg.holdout_last = TRAIN_GATE_HOLDOUT;
	a->cfg.hp = *hp;
	if (a->set & TRAIN_SET_HL_SHORT)
		a->cfg.hp.half_life_short_s = mine.half_life_short_s;
	if (a->set & TRAIN_SET_HL_LONG)
		a->cfg.hp.half_life_long_s = mine.half_life_long_s;
	if (a->set & TRAIN_SET_VERSION) {
		a->cfg.hp.model_version = mine.model_version;
		if (mine.model_version <= hp->model_version) {
			fprintf(stderr,
			    "interest-train: --model-version %llu is not above the current "
			    "model's %llu\n",
			    (unsigned long long)mine.model_version,
			    (unsigned long long)hp->model_version);
			return -1;
		}
	} else {
		a->cfg.hp.model_version = mine.model_version > hp->model_version
		    ? mine.model_version
		    : hp->model_version + 1;
	}
	return 0;
}

/* Renames from to to and fsyncs the directory of to. 0, or -1 (printed). */
static int
rename_durable(const char *from, const char *to)
{
	char dir[4096];
	int fd, ret = 0;

	if (rename(from, to) != 0) {
		fprintf(stderr, "interest-train: rename %s -> %s: %s\n", from, to, strerror(errno));
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", to);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fsync(fd) != 0) {
		fprintf(stderr, "interest-train: fsync of the directory of %s: %s\n", to,
		    strerror(errno));
		ret = -1;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/*
 * The gate: tests the candidate file cand and the current model cur on ds
 * (train_test), prints both figures and the decision, and renames cand to
 * a->out when accepted (removes it otherwise). Returns 0 written, EX_REFUSED,
 * or another exit status (printed).
 */
static int
gate(
    const struct train_args *a, const char *cand, const struct model *cur, const struct dataset *ds)
{
	struct train_test_result rn = { 0 }, rc = { 0 };
	struct model *m;
	char err[512];
	double bar;
	int ret = EX_SOFTWARE;

	m = model_load(cand, err, sizeof(err));
	if (m == NULL) {
		fprintf(stderr, "interest-train: %s: %s\n", cand, err);
		goto done;
	}
	if (train_test(m, ds, &rn, err, sizeof(err)) < 0 ||
	    train_test(cur, ds, &rc, err, sizeof(err)) < 0) {
		fprintf(stderr, "interest-train: %s\n", err);
		goto done;
	}
	bar = rc.ndcg10 * (1.0 - a->max_regression);
	printf("test on each user's last event (%u users): new ndcg@10 %.4f hr@10 %.4f "
	       "(version %llu), current ndcg@10 %.4f hr@10 %.4f (version %llu)\n",
	    rn.users, rn.ndcg10, rn.hr10, (unsigned long long)a->cfg.hp.model_version, rc.ndcg10,
	    rc.hr10, (unsigned long long)model_hparams(cur)->model_version);
	if (rn.users == 0) {
		printf("decision: refused: no user with %d or more events to test on; %s left "
		       "untouched\n",
		    EVAL_MIN_EVENTS, a->out);
		ret = EX_REFUSED;
	} else if (!train_accept(rn.ndcg10, rc.ndcg10, a->max_regression)) {
		printf("decision: refused: new %.4f < current %.4f * (1 - %g) = %.4f; %s left "
		       "untouched\n",
		    rn.ndcg10, rc.ndcg10, a->max_regression, bar, a->out);
		ret = EX_REFUSED;
	} else {
		model_free(m);
		m = NULL;
		if (rename_durable(cand, a->out) < 0)
			goto done;
		printf("decision: accepted: new %.4f >= current %.4f * (1 - %g) = %.4f; wrote %s "
		       "model_version %llu\n",
		    rn.ndcg10, rc.ndcg10, a->max_regression, bar, a->out,
		    (unsigned long long)a->cfg.hp.model_version);
		ret = 0;
	}
done:
	fflush(stdout);
	model_free(m);
	if (ret != 0)
		unlink(cand);
	return ret;
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

/*
 * The settings to train with: the search's choice when there are validation
 * items and epochs to train (unless --no-search), else the flags and
 * defaults. *record is the model file's TRCH text (malloc'd). Returns 0, or
 * -1 (printed).
 */
static int
record_settings(struct train_args *a, const struct dataset *ds, const struct model *cat,
    const uint8_t *cold, const char *tmp, char **record)
{
	char err[512], flags[256];
	const char *why = NULL;
	size_t n;

	/* Without validation items the content-echo start cannot be judged against
	 * the trained epochs: the random start (interest vectors learned from
	 * scratch) is the default there. */
	if (!(a->set & TRAIN_SET_INIT) && a->cfg.holdout_last == 0)
		a->cfg.content_init = 0;
	if (a->no_search)
		why = "--no-search";
	else if (a->cfg.holdout_last == 0)
		why = "no validation items (--holdout-last 0)";
	else if (a->cfg.epochs == 0)
		why = "no epochs to train (--epochs 0)";
	if (why == NULL) {
		struct train_config best;
		if (search_run(cat, ds, cold, &a->cfg, &a->so, tmp, stdout, &best, record, err,
			sizeof(err)) < 0) {
			fprintf(stderr, "interest-train: %s\n", err);
			return -1;
		}
		a->cfg = best;
		return 0;
	}
	search_flags(&a->cfg, flags, sizeof(flags));
	n = strlen(why) + strlen(flags) + 64;
	if ((*record = malloc(n)) == NULL) {
		fprintf(stderr, "interest-train: out of memory\n");
		return -1;
	}
	snprintf(*record, n, "search: off: %s\nsettings: %s\n", why, flags);
	printf("%s", *record);
	return 0;
}

int
main(int argc, char **argv)
{
	struct train_args a = { 0 };
	struct model *cat = NULL, *cur = NULL;
	struct dataset *ds = NULL;
	struct trainer *tr = NULL;
	uint8_t *cold = NULL;
	char err[512], tmp[4096], cand[4096], flags[256];
	char *record = NULL;
	size_t n_cold = 0;
	int rc = EX_SOFTWARE;

	if (blas_choose_kernel("interest-train", argv) != 0)
		return CLI_EXIT_CONFIG;
	if (parse_args(argc, argv, &a) < 0) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	openblas_set_num_threads((int)a.cfg.threads);
	if (a.current != NULL) {
		cur = model_load(a.current, err, sizeof(err));
		if (cur == NULL || !model_has_weights(cur)) {
			fprintf(stderr, "interest-train: --current %s: %s\n", a.current,
			    cur == NULL ? err : "a catalog, not a model");
			rc = EX_DATAERR;
			goto done;
		}
		if (inherit_current(&a, cur) < 0) {
			rc = CLI_EXIT_USAGE;
			goto done;
		}
	}
	if (a.catalog != NULL) {
		cat = model_load(a.catalog, err, sizeof(err));
		if (cat == NULL) {
			fprintf(stderr, "interest-train: %s: %s\n", a.catalog, err);
			rc = EX_DATAERR;
			goto done;
		}
		if (cur != NULL && !same_catalog(cat, cur)) {
			fprintf(stderr,
			    "interest-train: %s and --current %s have different items: the "
			    "models could not be compared\n",
			    a.catalog, a.current);
			rc = EX_DATAERR;
			goto done;
		}
	}
	ds = dataset_load(a.interactions, cat != NULL ? cat : cur, err, sizeof(err));
	if (ds == NULL) {
		fprintf(stderr, "interest-train: %s\n", err);
		rc = EX_DATAERR;
		goto done;
	}
	if (a.cold_items != NULL &&
	    (cold = load_cold_items(a.cold_items, cat != NULL ? cat : cur, &n_cold)) == NULL) {
		rc = EX_DATAERR;
		goto done;
	}
	fprintf(stderr,
	    "interest-train: %u items, %u users, %zu events (%zu with unknown items skipped), "
	    "%zu cold items; E=%u batch=%u cold-sim=%g seed=%llu\n",
	    ds->n_items, ds->n_users, ds->n_events, ds->n_unknown_items, n_cold, a.cfg.type_dim,
	    a.cfg.batch, (double)a.cfg.cold_sim, (unsigned long long)a.cfg.seed);
	snprintf(tmp, sizeof(tmp), "%s.init", a.out);
	if (record_settings(&a, ds, cat != NULL ? cat : cur, cold, tmp, &record) < 0)
		goto done;
	search_flags(&a.cfg, flags, sizeof(flags));
	fprintf(stderr, "interest-train: training with %s\n", flags);
	tr = trainer_new(cat != NULL ? cat : cur, ds, &a.cfg, cold, tmp, err, sizeof(err));
	if (tr == NULL) {
		fprintf(stderr, "interest-train: %s\n", err);
		goto done;
	}
	if (trainer_run(tr, stdout, err, sizeof(err)) < 0) {
		fprintf(stderr, "interest-train: %s\n", err);
		goto done;
	}
	if (cur == NULL) {
		if (trainer_write(tr, a.out, record, err, sizeof(err)) < 0) {
			fprintf(stderr, "interest-train: %s: %s\n", a.out, err);
			goto done;
		}
		printf("best val_ndcg@10 %.4f, wrote %s\n", trainer_best_val(tr), a.out);
		rc = 0;
		goto done;
	}
	/* The gate: the candidate is written beside --out and renamed over it if accepted. */
	snprintf(cand, sizeof(cand), "%s.candidate", a.out);
	if (trainer_write(tr, cand, record, err, sizeof(err)) < 0) {
		fprintf(stderr, "interest-train: %s: %s\n", cand, err);
		goto done;
	}
	printf("best val_ndcg@10 %.4f, candidate %s\n", trainer_best_val(tr), cand);
	rc = gate(&a, cand, cur, ds);
done:
	trainer_free(tr);
	free(record);
	free(cold);
	dataset_free(ds);
	model_free(cat);
	model_free(cur);
	return rc;
}
