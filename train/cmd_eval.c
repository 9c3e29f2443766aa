/*
 * interest-eval: the leave-last-out evaluation (train/evaluate.h) of one or
 * more trained models (one per seed) against Popularity, Markov and ItemKNN
 * on the same split, plus the cold-start check and the LSTM once more with
 * the daemon's own exclusion (its consumed-items filter, not the exact
 * history); prints a table and writes the JSON summary. Also picks the
 * seeded cold-item list for the cold run. Models are replayed and scored
 * through the daemon's own code (model/updater.h, model/scorer.h), many
 * users per SGEMM.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"
#include "blas.h"
#include "dataset.h"
#include "evaluate.h"
#include "modelfile.h"
#include "scorer.h"
#include "state.h"
#include "updater.h"

#define EX_DATAERR   65
#define EX_SOFTWARE  70
#define MAX_MODELS   16
#define REPLAY_USERS 4096  /* users replayed (states held) per chunk */
#define REPLAY_BATCH 65536 /* events per updater_apply */
#define MAX_REFS     4
#define REF_MAGIC    "IREF0001"
#define SERVE_N      50 /* the daemon's top-N (redis.top_n default) for the lstm-tiered row */

struct eval_args {
	const char *catalog, *interactions, *json, *dataset_name, *cold_model, *cold_items;
	const char *write_cold, *write_split;
	const char *models[MAX_MODELS];
	char ref_name[MAX_REFS][32]; /* --reference NAME=FILE */
	const char *ref_path[MAX_REFS];
	uint32_t n_refs;
	int on_validation; /* --on validation: targets are the validation items */
	unsigned seeds[MAX_MODELS];
	uint32_t n_models, n_seeds;
	double cold_fraction;
	uint64_t cold_seed;
	uint32_t probe_items; /* --probe-items: the lstm-tiered row's topn.probe_items */
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: interest-eval --catalog X.icat --interactions F.csv --model M.imdl [--model "
	    "...]\n"
	    "           [--seed N ...] [--cold-model M --cold-items FILE] [--dataset NAME]\n"
	    "           [--reference NAME=REF.bin ...] [--on test|validation] [--json OUT.json]\n"
	    "           [--probe-items N]\n"
	    "       interest-eval --catalog X.icat --write-cold-items FILE [--cold-fraction 0.1]\n"
	    "           [--cold-seed N]\n"
	    "       interest-eval --catalog X.icat --interactions F.csv --write-split FILE\n"
	    "       interest-eval -h|--help|--version\n"
	    "Leave-last-out per user (>= 5 events): last = test, full ranking over all items\n"
	    "minus the user's history. Models must be trained with --holdout-last 2.\n"
	    "--write-split writes the split for reference methods trained outside (one line\n"
	    "per evaluated user: id, TAB, its items' catalog indices in time order; last =\n"
	    "test, next-to-last = validation); --reference scores each user by the dot\n"
	    "product of the reference file's user and item vectors (IREF0001: u32 n_users,\n"
	    "n_items, dim, 0; float32 user[n_users][dim] in split order, item[n_items][dim]).\n"
	    "--on validation measures every method on the validation items instead (history\n"
	    "before them; baselines fitted as for the test), to compare the two targets.\n"
	    "The lstm-filt row is the LSTM as the daemon serves it: items excluded by the\n"
	    "user state's consumed-items filter (model/state.h) instead of the exact history.\n"
	    "The lstm-tiered row is the same served by topn.search = tiered (--probe-items N,\n"
	    "default 4096, as topn.probe_items): the daemon's top-50 list, ranked as it is\n"
	    "(items outside it rank last, so mrr counts the list only); recall@50 of its\n"
	    "lists against the exact ones is printed and written to the JSON.\n");
}

/* splitmix64, for the seeded cold-item choice. */
static uint64_t
eval_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static int
parse_args(int argc, char **argv, struct eval_args *a)
{
	a->cold_fraction = 0.1;
	a->cold_seed = 1;
	a->probe_items = 4096;
	a->dataset_name = "dataset";
	const char *k, *v;
	int i = 1, got;

	while ((got = cli_next(argc, argv, &i, "interest-eval", NULL, usage, &k, &v)) > 0) {
		char *end = NULL;

		if (strcmp(k, "--catalog") == 0)
			a->catalog = v;
		else if (strcmp(k, "--interactions") == 0)
			a->interactions = v;
		else if (strcmp(k, "--json") == 0)
			a->json = v;
		else if (strcmp(k, "--dataset") == 0)
			a->dataset_name = v;
		else if (strcmp(k, "--cold-model") == 0)
			a->cold_model = v;
		else if (strcmp(k, "--cold-items") == 0)
			a->cold_items = v;
		else if (strcmp(k, "--write-cold-items") == 0)
			a->write_cold = v;
		else if (strcmp(k, "--write-split") == 0)
			a->write_split = v;
		else if (strcmp(k, "--on") == 0) {
			if (strcmp(v, "validation") != 0 && strcmp(v, "test") != 0) {
				fprintf(stderr,
				    "interest-eval: bad --on '%s' (test or validation)\n", v);
				return -1;
			}
			a->on_validation = strcmp(v, "validation") == 0;
		} else if (strcmp(k, "--reference") == 0) {
			const char *eq = strchr(v, '=');
			if (eq == NULL || eq == v || eq[1] == '\0' || a->n_refs == MAX_REFS ||
			    (size_t)(eq - v) > 31) {
				fprintf(stderr,
				    "interest-eval: bad --reference '%s' (want NAME=FILE, NAME at "
				    "most 31 bytes, at most %d)\n",
				    v, MAX_REFS);
				return -1;
			}
			snprintf(a->ref_name[a->n_refs], sizeof(a->ref_name[0]), "%.*s",
			    (int)(eq - v), v);
			a->ref_path[a->n_refs++] = eq + 1;
		} else if (strcmp(k, "--model") == 0) {
			if (a->n_models == MAX_MODELS) {
				fprintf(stderr, "interest-eval: at most %d models\n", MAX_MODELS);
				return -1;
			}
			a->models[a->n_models++] = v;
		} else if (strcmp(k, "--seed") == 0) {
			unsigned long s = strtoul(v, &end, 10);
			if (*end != '\0' || a->n_seeds == MAX_MODELS) {
				fprintf(stderr, "interest-eval: bad --seed '%s'\n", v);
				return -1;
			}
			a->seeds[a->n_seeds++] = (unsigned)s;
		} else if (strcmp(k, "--cold-fraction") == 0) {
			a->cold_fraction = strtod(v, &end);
			if (*end != '\0' || !(a->cold_fraction > 0 && a->cold_fraction < 1)) {
				fprintf(stderr, "interest-eval: bad --cold-fraction '%s'\n", v);
				return -1;
			}
		} else if (strcmp(k, "--probe-items") == 0) {
			unsigned long p = strtoul(v, &end, 10);

			if (*end != '\0' || p < 16 || p > SCORER_PROBE_ITEMS_MAX) {
				fprintf(stderr, "interest-eval: bad --probe-items '%s' (16..%d)\n",
				    v, SCORER_PROBE_ITEMS_MAX);
				return -1;
			}
			a->probe_items = (uint32_t)p;
		} else if (strcmp(k, "--cold-seed") == 0) {
			a->cold_seed = strtoull(v, &end, 10);
			if (*end != '\0') {
				fprintf(stderr, "interest-eval: bad --cold-seed '%s'\n", v);
				return -1;
			}
		} else {
			fprintf(stderr, "interest-eval: unknown option %s\n", k);
			return -1;
		}
	}
	if (got < 0)
		return -1;
	if (a->catalog == NULL) {
		fprintf(stderr, "interest-eval: --catalog is required\n");
		return -1;
	}
	if (a->write_split != NULL && a->interactions == NULL) {
		fprintf(stderr, "interest-eval: --write-split needs --interactions\n");
		return -1;
	}
	if (a->write_cold == NULL && a->write_split == NULL &&
	    (a->interactions == NULL || a->n_models == 0)) {
		fprintf(stderr, "interest-eval: --interactions and --model are required\n");
		return -1;
	}
	if (a->on_validation && (a->n_refs > 0 || a->cold_model != NULL)) {
		fprintf(stderr,
		    "interest-eval: --on validation takes no --reference or "
		    "--cold-model\n");
		return -1;
	}
	if ((a->cold_model == NULL) != (a->cold_items == NULL)) {
		fprintf(stderr, "interest-eval: --cold-model and --cold-items go together\n");
		return -1;
	}
	return 0;
}

/* The seeded cold-item choice: a Fisher-Yates prefix of the catalog's items. */
static int
write_cold_items(const struct eval_args *a, const struct model *cat)
{
	uint32_t n = model_n_items(cat), take;
	uint32_t *perm = malloc((size_t)n * sizeof(uint32_t));
	uint64_t s = a->cold_seed;
	FILE *fp;

	if (perm == NULL)
		return -1;
	take = (uint32_t)(a->cold_fraction * n + 0.5);
	for (uint32_t i = 0; i < n; i++)
		perm[i] = i;
	for (uint32_t i = 0; i < take; i++) {
		uint32_t j = i + (uint32_t)(eval_rand(&s) % (n - i)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	fp = fopen(a->write_cold, "w");
	if (fp == NULL) {
		fprintf(stderr, "interest-eval: %s: %s\n", a->write_cold, strerror(errno));
		free(perm);
		return -1;
	}
	for (uint32_t i = 0; i < take; i++) {
		size_t len;
		const char *id = model_item_id(cat, perm[i], &len);
		fprintf(fp, "%.*s\n", (int)len, id);
	}
	free(perm);
	if (fclose(fp) != 0) {
		fprintf(stderr, "interest-eval: %s: %s\n", a->write_cold, strerror(errno));
		return -1;
	}
	fprintf(stderr, "interest-eval: wrote %u cold items to %s\n", take, a->write_cold);
	return 0;
}

/* Marks user k's history (all n_hist events) with mark in stamp. */
static void
stamp_history(const struct dataset *ds, const struct eval_split *sp, uint32_t k, uint32_t *stamp,
    uint32_t mark)
{
	size_t n;
	const struct dataset_event *ev = dataset_user(ds, sp->users[k], &n);

	for (uint32_t j = 0; j < sp->n_hist[k]; j++)
		stamp[ev[j].item] = mark;
}

/*
 * The daemon's exclusion on top of the history stamped with mark: every item
 * the user's consumed-items filter reports (model/state.h: its false
 * positives too) gets mark as well, counted in *extra. Returns 1 when the
 * filter excludes the target although the history does not have it: the
 * daemon would never serve it (a miss), where the protocol keeps a target
 * from the history a candidate.
 */
static int
stamp_filter(const struct model *m, const struct user_state *us, uint32_t target, uint32_t *stamp,
    uint32_t mark, uint64_t *extra)
{
	uint32_t n_items = model_n_items(m);
	int lost = stamp[target] != mark && state_seen_has(us, model_item_hash(m, target));

	for (uint32_t i = 0; i < n_items; i++)
		if (stamp[i] != mark && state_seen_has(us, model_item_hash(m, i))) {
			stamp[i] = mark;
			(*extra)++;
		}
	return lost;
}

static uint32_t
test_target(const struct dataset *ds, const struct eval_split *sp, uint32_t k)
{
	size_t n;
	const struct dataset_event *ev = dataset_user(ds, sp->users[k], &n);

	return ev[sp->n_hist[k]].item;
}

/*
 * --write-split: the split for reference methods trained outside this tool
 * (scripts/sasrec), so they train, stop early and are tested on exactly the
 * items this evaluator uses. Returns 0, or -1 (printed).
 */
static int
write_split(const char *path, const struct model *cat, const struct dataset *ds,
    const struct eval_split *sp)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL) {
		fprintf(stderr, "interest-eval: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(fp, "# interestd eval split v1 n_items=%u n_users=%u\n", model_n_items(cat), sp->n);
	for (uint32_t k = 0; k < sp->n; k++) {
		size_t n;
		const struct dataset_event *ev = dataset_user(ds, sp->users[k], &n);
		fprintf(fp, "%s\t", ds->user_ids[sp->users[k]]);
		for (uint32_t j = 0; j <= sp->n_hist[k]; j++)
			fprintf(fp, "%s%u", j ? " " : "", ev[j].item);
		fputc('\n', fp);
	}
	if (fclose(fp) != 0) {
		fprintf(stderr, "interest-eval: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(stderr, "interest-eval: wrote the split of %u users to %s\n", sp->n, path);
	return 0;
}

/*
 * Reads a reference file (usage()) for n_users split users and n_items
 * items: *user [n_users][*dim] then *item [n_items][*dim], one allocation
 * (free *user). Returns 0, or -1 with the field that is wrong (printed).
 */
static int
load_reference(
    const char *path, uint32_t n_users, uint32_t n_items, float **user, float **item, uint32_t *dim)
{
	FILE *fp = fopen(path, "rb");
	char magic[8];
	uint32_t hdr[4];
	size_t n;
	float *buf = NULL;
	int ret = -1;

	if (fp == NULL) {
		fprintf(stderr, "interest-eval: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, REF_MAGIC, 8) != 0 ||
	    fread(hdr, sizeof(uint32_t), 4, fp) != 4) {
		fprintf(stderr, "interest-eval: %s: not a reference file (magic %s)\n", path,
		    REF_MAGIC);
		goto done;
	}
	if (hdr[0] != n_users || hdr[1] != n_items || hdr[2] == 0 || hdr[2] > 4096) {
		fprintf(stderr,
		    "interest-eval: %s: n_users %u, n_items %u, dim %u; this split has %u users "
		    "and %u items (dim 1..4096)\n",
		    path, hdr[0], hdr[1], hdr[2], n_users, n_items);
		goto done;
	}
	n = ((size_t)n_users + n_items) * hdr[2];
	buf = malloc(n * sizeof(float));
	if (buf == NULL || fread(buf, sizeof(float), n, fp) != n || fgetc(fp) != EOF) {
		fprintf(stderr, "interest-eval: %s: %s\n", path,
		    buf == NULL ? "out of memory" : "length is not that of the header's sizes");
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		if (!isfinite(buf[i])) {
			fprintf(stderr, "interest-eval: %s: value %zu is not finite\n", path, i);
			goto done;
		}
	*user = buf;
	*item = buf + (size_t)n_users * hdr[2];
	*dim = hdr[2];
	buf = NULL;
	ret = 0;
done:
	free(buf);
	fclose(fp);
	return ret;
}

/* What one model's pass over the split measures. */
struct eval_pass {
	struct eval_acc *ea;         /* every user's test target, or NULL */
	struct eval_acc *ea_filter;  /* the same, excluded as the daemon does, or NULL */
	struct eval_acc *ea_tiered;  /* ea_filter's users served by the tiered search, or NULL */
	uint32_t probe_items;        /* its topn.probe_items */
	double *recall;              /* [n] recall@SERVE_N of tiered against exact per user */
	uint64_t tiered_scored;      /* items the tiered search scored, all users */
	uint64_t filter_extra;       /* items its filter excluded beyond the users' histories */
	size_t filter_lost;          /* targets its filter excluded (not in the history) */
	float *p1;                   /* [n][n_tier1] to fill with tier-1 distributions, or NULL */
	const float *p1_in;          /* [n][n_tier1] passed to eval_acc_add */
	const uint8_t *cold;         /* count cold test targets only (HR@10 vs random), or NULL */
	double cold_hits, cold_rand; /* HR@10 hits, and their random-ranking expectation */
	double cold_auc;             /* sum of the share of candidates ranked below the target */
	size_t cold_targets;
};

/*
 * The lstm-tiered row for user k (state us, vector u): the daemon's top-N
 * by the exact and by the tiered search; the tiered list's scores (the
 * exact ones of its items) into served, -inf elsewhere (left so), ranked
 * with the lstm-filt row's exclusion; recall of the tiered list against the
 * exact one into ps->recall[k].
 */
static void
eval_tiered(struct scorer *sc, const struct user_state *us, const float *u, uint32_t tg, int lost,
    const uint32_t *stamp, uint32_t mark, float *served, struct eval_pass *ps, uint32_t k,
    const float *p1)
{
	uint32_t exact[SERVE_N], tiered[SERVE_N];
	float s_exact[SERVE_N], s_tiered[SERVE_N];
	uint64_t u0, i0, u1, i1;
	size_t n_exact, n_tiered, hit = 0;

	scorer_set_search(sc, 0, 0);
	n_exact = scorer_topn(sc, us, u, SERVE_N, 0, exact, s_exact);
	scorer_set_search(sc, 1, ps->probe_items);
	scorer_stats(sc, &u0, &i0);
	n_tiered = scorer_topn(sc, us, u, SERVE_N, 0, tiered, s_tiered);
	scorer_stats(sc, &u1, &i1);
	ps->tiered_scored += i1 - i0;
	for (size_t q = 0; q < n_tiered; q++) {
		served[tiered[q]] = s_tiered[q];
		for (size_t e = 0; e < n_exact; e++)
			hit += tiered[q] == exact[e];
	}
	ps->recall[k] = n_exact ? (double)hit / (double)n_exact : 1.0;
	eval_acc_add(ps->ea_tiered, served, lost ? EVAL_NO_TARGET : tg, stamp, mark, p1);
	for (size_t q = 0; q < n_tiered; q++)
		served[tiered[q]] = -INFINITY;
}

/*
 * Loads model file path, replays every split user's history with
 * updater_apply (chunks of REPLAY_USERS users) and scores every item with
 * scorer_interest + scorer_score_all, as the daemon would serve the user
 * right before the test event; accumulates into ps. stamp [n_items] must be
 * zero and is left zero. Returns 0, or -1 (printed).
 */
static int
eval_model(const char *path, const struct model *cat, const struct dataset *ds,
    const struct eval_split *sp, uint32_t *stamp, float *scores, struct eval_pass *ps)
{
	char err[512];
	struct model *m = model_load(path, err, sizeof(err));
	struct updater *up = NULL;
	struct scorer *sc = NULL;
	struct user_state **us = NULL;
	float *u = NULL, *served = NULL;
	uint32_t n_items = model_n_items(cat), n_tier1 = model_n_tier1(cat), chunk;
	int ret = -1;

	if (m == NULL) {
		fprintf(stderr, "interest-eval: %s: %s\n", path, err);
		return -1;
	}
	if (!model_has_weights(m) || model_n_items(m) != n_items ||
	    model_dim(m) != model_dim(cat) || model_n_nodes(m) != model_n_nodes(cat)) {
		fprintf(stderr, "interest-eval: %s: not a model of this catalog\n", path);
		goto done;
	}
	chunk = sp->n < REPLAY_USERS ? sp->n : REPLAY_USERS;
	up = updater_new(m, REPLAY_BATCH);
	sc = scorer_new(m);
	us = calloc((size_t)chunk + 1, sizeof(*us));
	u = malloc(model_dim(m) * sizeof(float));
	served = malloc((size_t)n_items * sizeof(float));
	if (up == NULL || sc == NULL || us == NULL || u == NULL || served == NULL)
		goto nomem;
	for (uint32_t i = 0; i < n_items; i++)
		served[i] = -INFINITY;
	for (uint32_t j = 0; j < chunk; j++)
		if ((us[j] = state_new(model_hparams(m))) == NULL)
			goto nomem;
	for (uint32_t k0 = 0; k0 < sp->n; k0 += chunk) {
		uint32_t nk = sp->n - k0 < chunk ? sp->n - k0 : chunk;
		if (eval_replay(up, ds, sp->users + k0, sp->n_hist + k0, nk, REPLAY_BATCH, us) < 0)
			goto nomem;
		for (uint32_t j = 0; j < nk; j++) {
			uint32_t k = k0 + j, tg = test_target(ds, sp, k), mark = k + 1;
			if (ps->cold != NULL && !ps->cold[tg])
				continue;
			stamp_history(ds, sp, k, stamp, mark);
			scorer_interest(m, us[j], u);
			scorer_score_all(sc, us[j], u, scores);
			if (ps->p1 != NULL)
				eval_tier1_dist(m, us[j], ps->p1 + (size_t)k * n_tier1);
			if (ps->ea != NULL)
				eval_acc_add(ps->ea, scores, tg, stamp, mark,
				    ps->p1_in + (size_t)k * n_tier1);
			if (ps->ea_filter != NULL) {
				int lost =
				    stamp_filter(m, us[j], tg, stamp, mark, &ps->filter_extra);

				ps->filter_lost += (size_t)lost;
				eval_acc_add(ps->ea_filter, scores, lost ? EVAL_NO_TARGET : tg,
				    stamp, mark, ps->p1_in + (size_t)k * n_tier1);
				if (ps->ea_tiered != NULL)
					eval_tiered(sc, us[j], u, tg, lost, stamp, mark, served, ps,
					    k, ps->p1_in + (size_t)k * n_tier1);
			}
			if (ps->cold != NULL) {
				uint32_t excl = 0;
				for (uint32_t i = 0; i < n_items; i++)
					excl += (stamp[i] == mark && i != tg);
				uint32_t rank = eval_rank(scores, n_items, tg, stamp, mark);
				ps->cold_hits += rank < EVAL_TOPK;
				ps->cold_rand +=
				    fmin(1.0, (double)EVAL_TOPK / (double)(n_items - excl));
				if (n_items - excl > 1)
					ps->cold_auc +=
					    1.0 - (double)rank / (double)(n_items - excl - 1);
				else
					ps->cold_auc += 0.5;
				ps->cold_targets++;
			}
		}
	}
	ret = 0;
	goto done;
nomem:
	fprintf(stderr, "interest-eval: %s: out of memory\n", path);
done:
	memset(stamp, 0, n_items * sizeof(uint32_t));
	for (uint32_t j = 0; us != NULL && j < chunk; j++)
		state_free(us[j]);
	free(us);
	free(u);
	free(served);
	scorer_free(sc);
	updater_free(up);
	model_free(m);
	return ret;
}

static int
dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : (x > y);
}

static double
median(const double *v, uint32_t n)
{
	double s[MAX_MODELS];

	memcpy(s, v, n * sizeof(double));
	qsort(s, n, sizeof(double), dbl_cmp);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void
json_metrics(FILE *fp, const double *m)
{
	fprintf(fp, "{");
	for (int k = 0; k < EVAL_N_METRICS; k++)
		fprintf(fp, "%s\"%s\": %.6f", k ? ", " : "", eval_metric_name((enum eval_metric)k),
		    m[k]);
	fprintf(fp, "}");
}

static void
json_string(FILE *fp, const char *s)
{
	json_write_string(fp, s, strlen(s));
}

static void
print_row(const char *name, const double *m)
{
	printf("%-11s", name);
	for (int k = 0; k < EVAL_N_METRICS; k++)
		printf(" %9.4f", m[k]);
	printf("\n");
}

int
main(int argc, char **argv)
{
	struct eval_args a = { 0 };
	struct model *cat = NULL;
	struct dataset *ds = NULL;
	struct eval_split sp = { 0 };
	struct eval_baselines *bl = NULL;
	struct eval_acc *ea = NULL, *ea_filter = NULL, *ea_tiered = NULL;
	float *scores = NULL, *p1 = NULL;
	uint32_t *stamp = NULL, n_tier1, n_items;
	uint8_t *cold = NULL;
	double per_seed[MAX_MODELS][EVAL_N_METRICS], lstm[EVAL_N_METRICS];
	double filt_seed[MAX_MODELS][EVAL_N_METRICS], lstm_filter[EVAL_N_METRICS];
	double tier_seed[MAX_MODELS][EVAL_N_METRICS], lstm_tiered[EVAL_N_METRICS];
	double rec_mean_seed[MAX_MODELS], rec_p5_seed[MAX_MODELS], scored_seed[MAX_MODELS];
	double rec_mean = 0, rec_p5 = 0, tiered_scored = 0, *recall = NULL;
	double filter_extra = 0, filter_lost = 0; /* per evaluated user, median over seeds */
	double extra_seed[MAX_MODELS], lost_seed[MAX_MODELS];
	double base[EVAL_N_BASELINES][EVAL_N_METRICS], ref[MAX_REFS][EVAL_N_METRICS];
	double cold_hits = 0, cold_rand = 0, cold_auc = 0;
	size_t cold_targets = 0;
	char err[512];
	int rc = EX_SOFTWARE, have_cold = 0;

	if (blas_choose_kernel("interest-eval", argv) != 0)
		return CLI_EXIT_CONFIG;
	if (parse_args(argc, argv, &a) < 0) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	openblas_set_num_threads(1);
	cat = model_load(a.catalog, err, sizeof(err));
	if (cat == NULL) {
		fprintf(stderr, "interest-eval: %s: %s\n", a.catalog, err);
		return EX_DATAERR;
	}
	if (a.write_cold != NULL) {
		rc = write_cold_items(&a, cat) == 0 ? 0 : EX_SOFTWARE;
		goto done;
	}
	ds = dataset_load(a.interactions, cat, err, sizeof(err));
	if (ds == NULL) {
		fprintf(stderr, "interest-eval: %s\n", err);
		rc = EX_DATAERR;
		goto done;
	}
	if (eval_split_make(ds, &sp) < 0)
		goto nomem;
	if (a.write_split != NULL) {
		rc = write_split(a.write_split, cat, ds, &sp) == 0 ? 0 : EX_SOFTWARE;
		goto done;
	}
	/* Baselines are fitted on the training part of the test split in either mode. */
	bl = eval_baselines_new(ds, &sp);
	if (bl == NULL)
		goto nomem;
	if (a.on_validation)
		for (uint32_t k = 0; k < sp.n; k++)
			sp.n_hist[k]--; /* >= EVAL_MIN_EVENTS - 2 events of history remain */
	n_items = model_n_items(cat);
	n_tier1 = model_n_tier1(cat);
	p1 = calloc(((size_t)sp.n + 1) * n_tier1, sizeof(float));
	scores = malloc((size_t)n_items * sizeof(float));
	stamp = calloc(n_items, sizeof(uint32_t));
	recall = calloc((size_t)sp.n + 1, sizeof(double));
	if (!p1 || !scores || !stamp || !recall)
		goto nomem;
	fprintf(stderr,
	    "interest-eval: %s: %u users evaluated (of %u), %u items, %zu events; targets: the %s "
	    "items\n",
	    a.dataset_name, sp.n, ds->n_users, n_items, ds->n_events,
	    a.on_validation ? "validation" : "test");

	/* The LSTM, one model per seed; the first also gives the users' tier-1 distributions. */
	for (uint32_t s = 0; s < a.n_models; s++) {
		struct eval_pass ps = { 0 };
		if ((ea = eval_acc_new(cat)) == NULL || (ea_filter = eval_acc_new(cat)) == NULL ||
		    (ea_tiered = eval_acc_new(cat)) == NULL)
			goto nomem;
		ps.ea = ea;
		ps.ea_filter = ea_filter;
		ps.ea_tiered = ea_tiered;
		ps.probe_items = a.probe_items;
		ps.recall = recall;
		ps.p1 = s == 0 ? p1 : NULL;
		ps.p1_in = p1;
		if (eval_model(a.models[s], cat, ds, &sp, stamp, scores, &ps) < 0) {
			rc = EX_DATAERR;
			goto done;
		}
		eval_acc_result(ea, per_seed[s]);
		eval_acc_result(ea_filter, filt_seed[s]);
		eval_acc_result(ea_tiered, tier_seed[s]);
		extra_seed[s] = sp.n ? (double)ps.filter_extra / sp.n : 0.0;
		lost_seed[s] = (double)ps.filter_lost;
		rec_mean_seed[s] = 0;
		for (uint32_t k = 0; k < sp.n; k++)
			rec_mean_seed[s] += recall[k] / (sp.n ? sp.n : 1);
		qsort(recall, sp.n, sizeof(double), dbl_cmp);
		rec_p5_seed[s] = sp.n ? recall[sp.n / 20] : 1.0;
		scored_seed[s] = sp.n ? (double)ps.tiered_scored / sp.n : 0.0;
		eval_acc_free(ea);
		eval_acc_free(ea_filter);
		eval_acc_free(ea_tiered);
		ea = ea_filter = ea_tiered = NULL;
	}
	for (int k = 0; k < EVAL_N_METRICS; k++) {
		double col[MAX_MODELS], colf[MAX_MODELS], colt[MAX_MODELS];
		for (uint32_t s = 0; s < a.n_models; s++) {
			col[s] = per_seed[s][k];
			colf[s] = filt_seed[s][k];
			colt[s] = tier_seed[s][k];
		}
		lstm[k] = median(col, a.n_models);
		lstm_filter[k] = median(colf, a.n_models);
		lstm_tiered[k] = median(colt, a.n_models);
	}
	rec_mean = median(rec_mean_seed, a.n_models);
	rec_p5 = median(rec_p5_seed, a.n_models);
	tiered_scored = median(scored_seed, a.n_models);
	filter_extra = median(extra_seed, a.n_models);
	filter_lost = median(lost_seed, a.n_models);

	/* Baselines on the same split. */
	for (int b = 0; b < EVAL_N_BASELINES; b++) {
		if ((ea = eval_acc_new(cat)) == NULL)
			goto nomem;
		for (uint32_t k = 0; k < sp.n; k++) {
			stamp_history(ds, &sp, k, stamp, k + 1);
			eval_baseline_score(bl, (enum eval_baseline)b, ds, &sp, k, scores);
			eval_acc_add(ea, scores, test_target(ds, &sp, k), stamp, k + 1,
			    p1 + (size_t)k * n_tier1);
		}
		eval_acc_result(ea, base[b]);
		eval_acc_free(ea);
		ea = NULL;
		memset(stamp, 0, n_items * sizeof(uint32_t));
	}

	/* Reference methods trained outside on the --write-split split: user . item. */
	for (uint32_t r = 0; r < a.n_refs; r++) {
		float *uv = NULL, *iv = NULL;
		uint32_t dim = 0;
		if (load_reference(a.ref_path[r], sp.n, n_items, &uv, &iv, &dim) < 0) {
			rc = EX_DATAERR;
			goto done;
		}
		if ((ea = eval_acc_new(cat)) == NULL) {
			free(uv);
			goto nomem;
		}
		for (uint32_t k = 0; k < sp.n; k++) {
			stamp_history(ds, &sp, k, stamp, k + 1);
			cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)n_items, (blasint)dim,
			    1.0f, iv, (blasint)dim, uv + (size_t)k * dim, 1, 0.0f, scores, 1);
			eval_acc_add(ea, scores, test_target(ds, &sp, k), stamp, k + 1,
			    p1 + (size_t)k * n_tier1);
		}
		eval_acc_result(ea, ref[r]);
		eval_acc_free(ea);
		ea = NULL;
		free(uv);
		memset(stamp, 0, n_items * sizeof(uint32_t));
	}

	/* Cold start: HR@10 on test targets the cold model never saw in training. */
	if (a.cold_model != NULL) {
		FILE *fp = fopen(a.cold_items, "r");
		char *line = NULL;
		size_t cap = 0;
		ssize_t got;
		if (fp == NULL) {
			fprintf(stderr, "interest-eval: %s: %s\n", a.cold_items, strerror(errno));
			rc = EX_DATAERR;
			goto done;
		}
		cold = calloc(n_items, 1);
		while (cold != NULL && (got = getline(&line, &cap, fp)) > 0) {
			int32_t it;
			while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
				line[--got] = '\0';
			if (got > 0 && (it = model_item_lookup(cat, line, (size_t)got)) >= 0)
				cold[it] = 1;
		}
		free(line);
		fclose(fp);
		if (cold == NULL)
			goto nomem;
		struct eval_pass ps = { 0 };
		ps.cold = cold;
		if (eval_model(a.cold_model, cat, ds, &sp, stamp, scores, &ps) < 0) {
			rc = EX_DATAERR;
			goto done;
		}
		cold_hits = ps.cold_hits;
		cold_rand = ps.cold_rand;
		cold_auc = ps.cold_auc;
		cold_targets = ps.cold_targets;
		have_cold = 1;
	}

	/* Table. */
	printf("%-11s", "method");
	for (int k = 0; k < EVAL_N_METRICS; k++)
		printf(" %9.9s", eval_metric_name((enum eval_metric)k));
	printf("\n");
	print_row("lstm", lstm);
	print_row("lstm-filt", lstm_filter);
	print_row("lstm-tiered", lstm_tiered);
	for (int b = 0; b < EVAL_N_BASELINES; b++)
		print_row(eval_baseline_name((enum eval_baseline)b), base[b]);
	for (uint32_t r = 0; r < a.n_refs; r++)
		print_row(a.ref_name[r], ref[r]);
	if (a.n_models > 1)
		for (uint32_t s = 0; s < a.n_models; s++) {
			char name[32];
			snprintf(name, sizeof(name), "lstm#%u", s < a.n_seeds ? a.seeds[s] : s + 1);
			print_row(name, per_seed[s]);
		}
	{
		double best_ndcg = 0, best_hr = 0;
		for (int b = 0; b < EVAL_N_BASELINES; b++) {
			best_ndcg = fmax(best_ndcg, base[b][EVAL_NDCG10]);
			best_hr = fmax(best_hr, base[b][EVAL_HR10]);
		}
		printf(
		    "lstm / best baseline: ndcg@10 %.3fx, hr@10 %.3fx; coverage@10 / pop %.2fx\n",
		    best_ndcg > 0 ? lstm[EVAL_NDCG10] / best_ndcg : 0.0,
		    best_hr > 0 ? lstm[EVAL_HR10] / best_hr : 0.0,
		    base[EVAL_POP][EVAL_COVERAGE10] > 0
			? lstm[EVAL_COVERAGE10] / base[EVAL_POP][EVAL_COVERAGE10]
			: 0.0);
	}
	if (have_cold)
		printf(
		    "cold items: hr@10 %.4f vs random %.4f, auc %.4f vs random 0.5, over %zu test"
		    " targets\n",
		    cold_targets ? cold_hits / (double)cold_targets : 0.0,
		    cold_targets ? cold_rand / (double)cold_targets : 0.0,
		    cold_targets ? cold_auc / (double)cold_targets : 0.0, cold_targets);
	printf(
	    "lstm-filt: the lstm as the daemon serves it, excluding what its consumed-items filter"
	    " reports:\n  %.2f items per user beyond the history, %.0f of %u targets excluded"
	    " (medians over the models)\n",
	    filter_extra, filter_lost, sp.n);
	printf(
	    "lstm-tiered: topn.search = tiered, probe_items %u: recall@%d against exact mean %.4f,"
	    " 5th percentile %.4f; %.0f of %u items scored per user; ndcg@10 %.4f vs %.4f "
	    "exact (%+.2f%%) (medians over the models)\n",
	    a.probe_items, SERVE_N, rec_mean, rec_p5, tiered_scored, n_items,
	    lstm_tiered[EVAL_NDCG10], lstm_filter[EVAL_NDCG10],
	    lstm_filter[EVAL_NDCG10] > 0
		? 100.0 * (lstm_tiered[EVAL_NDCG10] / lstm_filter[EVAL_NDCG10] - 1.0)
		: 0.0);
	printf("calibration_kl@10: KL(user long-term tier-1 weights || tier-1 share of the top-10),"
	       " both smoothed by eps=%g\n",
	    EVAL_CALIB_EPS);

	if (a.json != NULL) {
		FILE *fp = fopen(a.json, "w");
		if (fp == NULL) {
			fprintf(stderr, "interest-eval: %s: %s\n", a.json, strerror(errno));
			goto done;
		}
		fprintf(fp, "{\"dataset\": ");
		json_string(fp, a.dataset_name);
		fprintf(fp, ", \"methods\": {\"lstm\": ");
		json_metrics(fp, lstm);
		for (int b = 0; b < EVAL_N_BASELINES; b++) {
			fprintf(fp, ", \"%s\": ", eval_baseline_name((enum eval_baseline)b));
			json_metrics(fp, base[b]);
		}
		for (uint32_t r = 0; r < a.n_refs; r++) {
			fprintf(fp, ", ");
			json_string(fp, a.ref_name[r]);
			fprintf(fp, ": ");
			json_metrics(fp, ref[r]);
		}
		fprintf(fp, "}, \"cold\": ");
		if (have_cold)
			fprintf(fp,
			    "{\"hr@10\": %.6f, \"random_hr@10\": %.6f, \"auc\": %.6f, "
			    "\"targets\": %zu}",
			    cold_targets ? cold_hits / (double)cold_targets : 0.0,
			    cold_targets ? cold_rand / (double)cold_targets : 0.0,
			    cold_targets ? cold_auc / (double)cold_targets : 0.0, cold_targets);
		else
			fprintf(fp, "null");
		fprintf(fp, ", \"seeds\": [");
		for (uint32_t s = 0; s < a.n_models; s++)
			fprintf(fp, "%s%u", s ? ", " : "", s < a.n_seeds ? a.seeds[s] : s + 1);
		fprintf(fp, "], \"lstm_per_seed\": [");
		for (uint32_t s = 0; s < a.n_models; s++) {
			fprintf(fp, "%s", s ? ", " : "");
			json_metrics(fp, per_seed[s]);
		}
		fprintf(fp, "], \"lstm_filter\": ");
		json_metrics(fp, lstm_filter);
		fprintf(fp, ", \"lstm_filter_per_seed\": [");
		for (uint32_t s = 0; s < a.n_models; s++) {
			fprintf(fp, "%s", s ? ", " : "");
			json_metrics(fp, filt_seed[s]);
		}
		fprintf(fp,
		    "], \"filter\": {\"extra_excluded_per_user\": %.4f, \"targets_excluded\": "
		    "%.0f}",
		    filter_extra, filter_lost);
		fprintf(fp, ", \"lstm_tiered\": ");
		json_metrics(fp, lstm_tiered);
		fprintf(fp,
		    ", \"tiered\": {\"probe_items\": %u, \"recall@%d_mean\": %.5f, "
		    "\"recall@%d_p5\": %.5f, \"items_scored_per_user\": %.1f}",
		    a.probe_items, SERVE_N, rec_mean, SERVE_N, rec_p5, tiered_scored);
		fprintf(fp, ", \"targets\": \"%s\"", a.on_validation ? "validation" : "test");
		fprintf(fp, ", \"users\": %u, \"items\": %u, \"calibration_eps\": %g}\n", sp.n,
		    n_items, EVAL_CALIB_EPS);
		if (fclose(fp) != 0) {
			fprintf(stderr, "interest-eval: %s: %s\n", a.json, strerror(errno));
			goto done;
		}
	}
	rc = 0;
	goto done;
nomem:
	fprintf(stderr, "interest-eval: out of memory\n");
done:
	eval_acc_free(ea);
	eval_acc_free(ea_filter);
	eval_acc_free(ea_tiered);
	eval_baselines_free(bl);
	free(cold);
	free(recall);
	free(stamp);
	free(scores);
	free(p1);
	eval_split_fini(&sp);
	dataset_free(ds);
	model_free(cat);
	return rc;
}
