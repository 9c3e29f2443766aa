/*
 * Top-N kernel benchmark (make bench, docs/BENCH.md "Kernel"): the CPU's
 * multiply-add peak measured by tight loops, then interestd's top-N kernels
 * (every one this CPU runs; the others are reported as skipped) over the
 * same users, as multiply-adds per second and as a share of that peak.
 * Users are simulated through the daemon's own updater: each gets events on
 * items of three favourite tier-1 nodes (as tests/tools/bench-gen does), so
 * its hidden state, tier weights and consumed items are real.
 *
 * Then the tiered search (model/scorer.h) at each probe budget on the best
 * kernel: its speed against exact top-N and its recall@N against it.
 *
 *   build/tools/bench-kernel --model M.imdl [--users 2048] [--events 40]
 *       [--top-n 50] [--calibrate 0|1] [--probe-items 2048,8192] [--reps 5]
 *       [--kernels all|none|avx2,sse2..] [--seed 1]
 * Prints one JSON line: cpu, features, peak figures; per kernel its median
 * pass time, multiply-adds per second, share of the peak (measured next to
 * it), exact top-N time; per probe budget the tiered top-N time, items
 * scored per user, recall@N mean and 5th percentile.
 */
#include <immintrin.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "modelfile.h"
#include "scorer.h"
#include "state.h"
#include "updater.h"

#define BK_MAX_REPS 15

static uint64_t bk_rng;

static uint32_t
bk_rand(void)
{
	bk_rng ^= bk_rng << 13;
	bk_rng ^= bk_rng >> 7;
	bk_rng ^= bk_rng << 17;
	return (uint32_t)(bk_rng >> 16);
}

static int
bk_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
bk_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), bk_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The CPU's model name from /proc/cpuinfo into buf ("unknown" without one). */
static void
bk_cpu_name(char *buf, size_t size)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(buf, size, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) != 0 || colon == NULL)
			continue;
		colon += 2;
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(buf, size, "%s", colon);
		break;
	}
	fclose(f);
}

/*
 * Peak loops: independent accumulator chains, enough of them to cover the
 * latency of an add (multiply then add) or of an FMA, so only the
 * throughput of the vector units limits them. The empty asm statements make
 * the compiler treat the multiplicands as changed every iteration (so it
 * cannot hoist the products) while keeping everything in registers. Each
 * returns multiply-adds per second.
 */
#define BK_PEAK_ITERS 20000000u

__attribute__((target("avx2"))) static double
bk_peak_avx2_muladd(void)
{
	__m256 m = _mm256_set1_ps(0.999f);
	__m256 x0 = _mm256_set1_ps(1.0f), x1 = _mm256_set1_ps(1.1f), x2 = _mm256_set1_ps(1.2f);
	__m256 x3 = _mm256_set1_ps(1.3f), x4 = _mm256_set1_ps(1.4f), x5 = _mm256_set1_ps(1.5f);
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
	double t0 = clock_mono_s();

	for (uint32_t i = 0; i < BK_PEAK_ITERS; i++) {
		__asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5));
		a0 = _mm256_add_ps(a0, _mm256_mul_ps(x0, m));
		a1 = _mm256_add_ps(a1, _mm256_mul_ps(x1, m));
		a2 = _mm256_add_ps(a2, _mm256_mul_ps(x2, m));
		a3 = _mm256_add_ps(a3, _mm256_mul_ps(x3, m));
		a4 = _mm256_add_ps(a4, _mm256_mul_ps(x4, m));
		a5 = _mm256_add_ps(a5, _mm256_mul_ps(x5, m));
	}
	double dt = clock_mono_s() - t0;

	a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
	    _mm256_add_ps(a4, a5));
	__asm__ volatile("" : : "x"(a0));
	return (double)BK_PEAK_ITERS * 6 * 8 / dt;
}

/*
 * An FMA peak loop for vectors VT of W floats (P: the intrinsics' prefix,
 * C: the asm register constraint): ten chains cover the FMA latency.
 */
/* clang-format off */
#define BK_PEAK_FMA(NAME, TARGET, VT, P, W, C)                                    \
__attribute__((target(TARGET))) static double                                     \
NAME(void)                                                                        \
{                                                                                 \
	VT m = P##_set1_ps(0.999f), x = P##_set1_ps(1.0f), a[10];                 \
	double t0 = clock_mono_s();                                               \
                                                                                  \
	for (int k = 0; k < 10; k++)                                              \
		a[k] = P##_setzero_ps();                                          \
	for (uint32_t i = 0; i < BK_PEAK_ITERS; i++) {                            \
		__asm__ volatile("" : "+" C(x), "+" C(m));                        \
		_Pragma("GCC unroll 10")                                          \
		for (int k = 0; k < 10; k++)                                      \
			a[k] = P##_fmadd_ps(x, m, a[k]);                          \
	}                                                                         \
	double dt = clock_mono_s() - t0;                                          \
                                                                                  \
	for (int k = 1; k < 10; k++)                                              \
		a[0] = P##_add_ps(a[0], a[k]);                                    \
	__asm__ volatile("" : : C(a[0]));                                         \
	return (double)BK_PEAK_ITERS * 10 * (W) / dt;                             \
}
/* clang-format on */
BK_PEAK_FMA(bk_peak_avx2_fma, "avx2,fma", __m256, _mm256, 8, "x")
BK_PEAK_FMA(bk_peak_avx512_fma, "avx512f", __m512, _mm512, 16, "v")

/* Median of reps runs of one peak loop. */
static double
bk_peak(double (*loop)(void), int reps)
{
	double v[BK_MAX_REPS];

	for (int r = 0; r < reps; r++)
		v[r] = loop();
	return bk_median(v, reps);
}

/*
 * n_users users, each given n_events events (VIEW, one a second) on items
 * of three tier-1 nodes drawn at random, applied by the updater.
 */
static struct user_state **
bk_users(const struct model *m, size_t n_users, uint32_t n_events)
{
	struct user_state **us = calloc(n_users, sizeof(*us));
	struct update_event *ev = calloc(n_users * n_events, sizeof(*ev));
	uint32_t n_items = model_n_items(m), n_t1 = model_n_tier1(m);
	uint32_t **by_t1 = calloc(n_t1, sizeof(*by_t1)), *cnt = calloc(n_t1, sizeof(*cnt));
	struct updater *up = updater_new(m, n_users * n_events);

	if (us == NULL || ev == NULL || by_t1 == NULL || cnt == NULL || up == NULL)
		goto fail;
	for (uint32_t i = 0; i < n_items; i++)
		cnt[model_item_tier1(m, i)]++;
	for (uint32_t j = 0; j < n_t1; j++) {
		by_t1[j] = malloc(((size_t)cnt[j] + 1) * sizeof(uint32_t));
		if (by_t1[j] == NULL)
			goto fail;
		cnt[j] = 0;
	}
	for (uint32_t i = 0; i < n_items; i++) {
		uint32_t j = model_item_tier1(m, i);

		by_t1[j][cnt[j]++] = i;
	}
	for (size_t u = 0; u < n_users; u++) {
		uint32_t fav[3];

		us[u] = state_new(model_hparams(m));
		if (us[u] == NULL)
			goto fail;
		for (int f = 0; f < 3; f++)
			do
				fav[f] = bk_rand() % n_t1;
			while (cnt[fav[f]] == 0);
		for (uint32_t e = 0; e < n_events; e++) {
			/* Events interleaved across users, as waves of a batch are. */
			struct update_event *x = &ev[(size_t)e * n_users + u];
			uint32_t j = fav[bk_rand() % 3];
			/* Skewed towards a node's first items: popular items recur. */
			uint32_t r = bk_rand() % cnt[j];

			x->us = us[u];
			x->item = by_t1[j][r % (1 + bk_rand() % cnt[j])];
			x->type = 0;
			x->ts_ms = 1700000000000LL + (int64_t)e * 1000;
			x->partition = -1;
		}
	}
	for (size_t off = 0; off < n_users * n_events; off += n_users)
		if (updater_apply(up, ev + off, n_users) != 0)
			goto fail;
	updater_free(up);
	for (uint32_t j = 0; j < n_t1; j++)
		free(by_t1[j]);
	free(by_t1);
	free(cnt);
	free(ev);
	return us;
fail:
	fprintf(stderr, "bench-kernel: out of memory or updater refused the events\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	const char *model_path = NULL;
	size_t n_users = 2048, top_n = 50;
	uint32_t n_events = 40;
	int reps = 5, calibrate = 0;
	const char *only = "all";
	uint32_t probes[16];
	size_t n_probes = 0;
	char err[512], cpu[256];

	bk_rng = 0x9e3779b97f4a7c15ULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--model") == 0)
			model_path = argv[i + 1];
		else if (strcmp(argv[i], "--users") == 0)
			n_users = strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--events") == 0)
			n_events = (uint32_t)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--top-n") == 0)
			top_n = strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--kernels") == 0)
			only = argv[i + 1];
		else if (strcmp(argv[i], "--calibrate") == 0)
			calibrate = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--probe-items") == 0) {
			char *p = argv[i + 1];

			while (*p != '\0' && n_probes < 16) {
				probes[n_probes++] = (uint32_t)strtoul(p, &p, 10);
				p += *p == ',';
			}
		} else if (strcmp(argv[i], "--reps") == 0)
			reps = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--seed") == 0)
			bk_rng ^= strtoull(argv[i + 1], NULL, 10) * 0x2545f4914f6cdd1dULL;
		else {
			fprintf(stderr, "bench-kernel: unknown flag %s\n", argv[i]);
			return 2;
		}
	}
	if (n_probes == 0) {
		probes[n_probes++] = 2048;
		probes[n_probes++] = 8192;
	}
	if (model_path == NULL || n_users == 0 || n_events == 0 || top_n == 0 || reps < 1 ||
	    reps > BK_MAX_REPS) {
		fprintf(stderr, "usage: bench-kernel --model M.imdl [--users N] [--events N] "
		                "[--top-n N] [--calibrate 0|1] [--probe-items N,N..] [--reps 1..%d] "
		                "[--seed S]\n",
		    BK_MAX_REPS);
		return 2;
	}
	struct model *m = model_load(model_path, err, sizeof(err));
	if (m == NULL) {
		fprintf(stderr, "bench-kernel: %s: %s\n", model_path, err);
		return 1;
	}
	struct scorer *sc = scorer_new(m);
	struct user_state **us = bk_users(m, n_users, n_events);
	uint32_t dim = model_dim(m);
	float *U = malloc(n_users * dim * sizeof(float));
	uint32_t *items = malloc(n_users * top_n * sizeof(uint32_t));
	float *scores = malloc(n_users * top_n * sizeof(float));
	size_t *counts = malloc(n_users * sizeof(size_t));
	uint32_t *ref = malloc(n_users * top_n * sizeof(uint32_t));
	size_t *ref_counts = malloc(n_users * sizeof(size_t));

	if (sc == NULL || U == NULL || items == NULL || scores == NULL || counts == NULL ||
	    ref == NULL) {
		fprintf(stderr, "bench-kernel: out of memory\n");
		return 1;
	}
	for (size_t u = 0; u < n_users; u++)
		scorer_interest(m, us[u], U + u * dim);

	__builtin_cpu_init();
	int has_avx2 = !!__builtin_cpu_supports("avx2"), has_fma = !!__builtin_cpu_supports("fma");
	int has_avx512 = !!__builtin_cpu_supports("avx512f");
	double peak_muladd = 0, peak_fma = 0, peak512 = 0;

	bk_cpu_name(cpu, sizeof(cpu));
	if (has_avx2)
		peak_muladd = bk_peak(bk_peak_avx2_muladd, reps);
	if (has_avx2 && has_fma)
		peak_fma = bk_peak(bk_peak_avx2_fma, reps);
	if (has_avx512)
		peak512 = bk_peak(bk_peak_avx512_fma, reps);
	fprintf(stderr, "bench-kernel: %s (avx2 %s, fma %s, avx512f %s); %zu users, %u items, d %u\n",
	    cpu, has_avx2 ? "yes" : "no", has_fma ? "yes" : "no", has_avx512 ? "yes" : "no",
	    n_users, model_n_items(m), dim);
	fprintf(stderr, "  peak AVX2 multiply+add %.2f G/s, AVX2 FMA %.2f G/s, AVX-512 FMA %s%.2f G/s\n",
	    peak_muladd / 1e9, peak_fma / 1e9, has_avx512 ? "" : "(not on this CPU) ",
	    peak512 / 1e9);

	printf("{\"cpu\":\"%s\",\"avx2\":%d,\"fma\":%d,\"avx512f\":%d,\"users\":%zu,\"items\":%u,"
	       "\"dim\":%u,\"top_n\":%zu,\"peak_avx2_muladd\":%.4g,\"peak_avx2_fma\":%.4g,"
	       "\"peak_avx512_fma\":%.4g,\"default_kernel\":\"%s\",\"kernels\":{",
	    cpu, has_avx2, has_fma, has_avx512, n_users, model_n_items(m), dim, top_n, peak_muladd,
	    peak_fma, peak512, scorer_kernel_name(sc));
	static const char *names[] = { "avx512", "avx2", "sse2" };
	const char *best = scorer_kernel_name(sc);
	double t_ref = clock_mono_s();

	/* The reference: exact top-N on the best kernel. */
	scorer_topn_batch(sc, (const struct user_state *const *)us, U, n_users, top_n, calibrate,
	    ref, scores, ref_counts);
	double exact_topn = clock_mono_s() - t_ref;
	int first = 1, status = 0;

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		double t_topn[BK_MAX_REPS], t_pass[BK_MAX_REPS], share[BK_MAX_REPS];
		int rc = scorer_set_kernel(sc, names[k]);
		double peak_of = 0;

		if (strcmp(only, "all") != 0 && strstr(only, names[k]) == NULL)
			continue;
		if (rc != 0) {
			fprintf(stderr, "  kernel %-7s skipped: this CPU lacks its instructions\n",
			    names[k]);
			printf("%s\"%s\":{\"skipped\":\"cpu lacks %s\"}", first ? "" : ",", names[k],
			    names[k]);
			first = 0;
			continue;
		}
		/*
		 * Each repetition measures the CPU's peak (the FMA loop of the kernel's
		 * registers; AVX2 FMA for sse2, the widest it can use on this CPU)
		 * right before the kernel, so a busy neighbour slows both: the share
		 * is taken inside a repetition, then the median.
		 */
		for (int r = 0; r < reps; r++) {
			double peak_r = strcmp(names[k], "avx512") == 0 ? bk_peak_avx512_fma()
			    : has_avx2 && has_fma                       ? bk_peak_avx2_fma()
			                                                : 0;
			double t0 = clock_mono_s();

			scorer_kernel_pass(sc, U, n_users);
			t_pass[r] = clock_mono_s() - t0;
			share[r] = peak_r > 0 ? (double)n_users * model_n_items(m) * dim / t_pass[r] /
			        peak_r
			                      : 0;
			t0 = clock_mono_s();
			scorer_topn_batch(sc, (const struct user_state *const *)us, U, n_users, top_n,
			    calibrate, items, scores, counts);
			t_topn[r] = clock_mono_s() - t0;
		}
		/*
		 * The fused kernels (avx512, avx2) compute the same bits, so they must
		 * pick the same items; sse2 (no FMA) may swap items at near-ties.
		 */
		int same = 1;

		same = memcmp(ref, items, n_users * top_n * sizeof(uint32_t)) == 0 &&
		    memcmp(ref_counts, counts, n_users * sizeof(size_t)) == 0;
		double pass = bk_median(t_pass, reps), topn = bk_median(t_topn, reps);

		if (strcmp(names[k], best) == 0)
			exact_topn = topn;
		double madd = (double)n_users * model_n_items(m) * dim / pass;

		peak_of = bk_median(share, reps);
		fprintf(stderr,
		    "  kernel %-7s pass %.4f s: %.2f G multiply-adds/s, %.0f%% of the peak; "
		    "top-%zu %.4f s, %.0f users/s%s\n",
		    names[k], pass, madd / 1e9, 100 * peak_of, top_n, topn, (double)n_users / topn,
		    same ? "" : " (picks differ from the best kernel's)");
		printf("%s\"%s\":{\"pass_seconds\":%.6f,\"madd_per_s\":%.4g,\"share_of_peak\":%.4f,"
		       "\"topn_seconds\":%.6f,\"topn_users_per_s\":%.1f,\"same_picks\":%d}",
		    first ? "" : ",", names[k], pass, madd, peak_of, topn, (double)n_users / topn,
		    same);
		first = 0;
		if (!same && (strcmp(names[k], "sse2") == 0) == (strcmp(best, "sse2") == 0))
			status = 1;
	}
	printf("}");
	/* Tiered search at each probe budget, on the best kernel: speed and recall@N. */
	scorer_set_kernel(sc, NULL);
	printf(",\"tiered\":[");
	for (size_t q = 0; q < n_probes; q++) {
		double t[BK_MAX_REPS], *rec = malloc(n_users * sizeof(double)), sum = 0;
		uint64_t u0, i0, u1, i1;

		scorer_set_search(sc, 1, probes[q]);
		scorer_stats(sc, &u0, &i0);
		for (int r = 0; r < reps; r++) {
			double t0 = clock_mono_s();

			scorer_topn_batch(sc, (const struct user_state *const *)us, U, n_users, top_n,
			    calibrate, items, scores, counts);
			t[r] = clock_mono_s() - t0;
		}
		scorer_stats(sc, &u1, &i1);
		for (size_t u = 0; u < n_users; u++) {
			size_t hit = 0;

			for (size_t a = 0; a < ref_counts[u]; a++)
				for (size_t b = 0; b < counts[u]; b++)
					hit += ref[u * top_n + a] == items[u * top_n + b];
			rec[u] = ref_counts[u] ? (double)hit / (double)ref_counts[u] : 1.0;
			sum += rec[u];
		}
		qsort(rec, n_users, sizeof(double), bk_cmp_double);
		double sec = bk_median(t, reps), mean = sum / (double)n_users;
		double p5 = rec[n_users / 20], scored = (double)(i1 - i0) / (double)(u1 - u0);

		fprintf(stderr,
		    "  tiered probe_items %-7u %.4f s: %.0f users/s (%.2fx exact), %.0f items scored "
		    "per user (%.1f%%), recall@%zu mean %.4f p5 %.4f\n",
		    probes[q], sec, (double)n_users / sec, exact_topn / sec, scored,
		    100 * scored / model_n_items(m), top_n, mean, p5);
		printf("%s{\"probe_items\":%u,\"topn_seconds\":%.6f,\"topn_users_per_s\":%.1f,"
		       "\"speedup_vs_exact\":%.4f,\"items_scored_per_user\":%.1f,"
		       "\"recall_mean\":%.5f,\"recall_p5\":%.5f}",
		    q ? "," : "", probes[q], sec, (double)n_users / sec, exact_topn / sec, scored,
		    mean, p5);
		free(rec);
	}
	printf("]}\n");
	for (size_t u = 0; u < n_users; u++)
		state_free(us[u]);
	free(us);
	free(U);
	free(items);
	free(scores);
	free(counts);
	free(ref);
	free(ref_counts);
	scorer_free(sc);
	model_free(m);
	return status;
}
