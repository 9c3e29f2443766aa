/*
 * OpenBLAS kernel choice and check by run-time CPU detection (see blas.h).
 */
#include "blas.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

char *openblas_get_corename(void);

#define BLAS_REEXEC_ENV "INTERESTD_BLAS_REEXEC"

/* The x86-64 instructions the OpenBLAS cores need, as bits. */
enum {
	CPU_SSE3 = 1 << 0,
	CPU_SSSE3 = 1 << 1,
	CPU_SSE41 = 1 << 2,
	CPU_SSE42 = 1 << 3,
	CPU_SSE4A = 1 << 4,
	CPU_AVX = 1 << 5,
	CPU_AVX2 = 1 << 6,
	CPU_FMA = 1 << 7,
	CPU_FMA4 = 1 << 8,
	CPU_AVX512 = 1 << 9, /* F, CD, BW, DQ and VL: what OpenBLAS's SkylakeX kernels use */
	CPU_BF16 = 1 << 10,  /* AVX512_BF16 */
};

static const struct {
	unsigned bit;
	const char *name; /* as /proc/cpuinfo spells it (sse3 there is "pni") */
} cpu_feature_names[] = {
	{ CPU_SSE3, "sse3" },
	{ CPU_SSSE3, "ssse3" },
	{ CPU_SSE41, "sse4_1" },
	{ CPU_SSE42, "sse4_2" },
	{ CPU_SSE4A, "sse4a" },
	{ CPU_AVX, "avx" },
	{ CPU_AVX2, "avx2" },
	{ CPU_FMA, "fma" },
	{ CPU_FMA4, "fma4" },
	{ CPU_AVX512, "avx512f/cd/bw/dq/vl" },
	{ CPU_BF16, "avx512_bf16" },
};

#define HASWELL_NEEDS  (CPU_AVX | CPU_AVX2 | CPU_FMA)
#define SKYLAKEX_NEEDS (HASWELL_NEEDS | CPU_AVX512)

/*
 * The core names OpenBLAS 0.3.x accepts in OPENBLAS_CORETYPE on x86-64 (it
 * compares them ignoring case) and the instructions their kernels use. On a
 * 64-bit build the 32-bit-era names run the Prescott kernels. generic: a
 * fallback without AVX kernels, which blas_choose_kernel replaces.
 */
static const struct blas_core {
	const char *name;
	unsigned needs;
	int generic;
} blas_cores[] = {
	{ "Katmai", CPU_SSE3, 1 },
	{ "Coppermine", CPU_SSE3, 1 },
	{ "Northwood", CPU_SSE3, 1 },
	{ "Prescott", CPU_SSE3, 1 },
	{ "Banias", CPU_SSE3, 1 },
	{ "Atom", CPU_SSSE3, 1 },
	{ "Core2", CPU_SSSE3, 1 },
	{ "Penryn", CPU_SSSE3 | CPU_SSE41, 1 },
	{ "Dunnington", CPU_SSSE3 | CPU_SSE41, 1 },
	{ "Nehalem", CPU_SSSE3 | CPU_SSE41 | CPU_SSE42, 1 },
	{ "Athlon", CPU_SSE3, 1 },
	{ "Opteron_SSE3", CPU_SSE3, 1 },
	{ "Opteron(SSE3)", CPU_SSE3, 1 }, /* what openblas_get_corename() reports */
	{ "Opteron", 0, 1 },
	{ "Barcelona", CPU_SSE3 | CPU_SSE4A, 1 },
	{ "Nano", CPU_SSSE3, 0 },
	{ "Sandybridge", CPU_AVX, 0 },
	{ "Bobcat", CPU_SSSE3 | CPU_SSE4A, 0 },
	{ "Bulldozer", CPU_AVX | CPU_FMA4, 0 },
	{ "Piledriver", CPU_AVX | CPU_FMA | CPU_FMA4, 0 },
	{ "Haswell", HASWELL_NEEDS, 0 },
	{ "Steamroller", CPU_AVX | CPU_FMA | CPU_FMA4, 0 },
	{ "Excavator", HASWELL_NEEDS | CPU_FMA4, 0 },
	{ "Zen", HASWELL_NEEDS, 0 },
	{ "SkylakeX", SKYLAKEX_NEEDS, 0 },
	{ "Cooperlake", SKYLAKEX_NEEDS | CPU_BF16, 0 },
	{ "SapphireRapids", SKYLAKEX_NEEDS | CPU_BF16, 0 },
};
#define N_BLAS_CORES (sizeof(blas_cores) / sizeof(blas_cores[0]))

/* The instructions of blas_cores this CPU has (__builtin_cpu_supports takes literals). */
static unsigned
cpu_features(void)
{
	unsigned f = 0;

#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	f |= __builtin_cpu_supports("sse3") ? CPU_SSE3 : 0;
	f |= __builtin_cpu_supports("ssse3") ? CPU_SSSE3 : 0;
	f |= __builtin_cpu_supports("sse4.1") ? CPU_SSE41 : 0;
	f |= __builtin_cpu_supports("sse4.2") ? CPU_SSE42 : 0;
	f |= __builtin_cpu_supports("sse4a") ? CPU_SSE4A : 0;
	f |= __builtin_cpu_supports("avx") ? CPU_AVX : 0;
	f |= __builtin_cpu_supports("avx2") ? CPU_AVX2 : 0;
	f |= __builtin_cpu_supports("fma") ? CPU_FMA : 0;
	f |= __builtin_cpu_supports("fma4") ? CPU_FMA4 : 0;
	f |= __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
		__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
		__builtin_cpu_supports("avx512vl")
	    ? CPU_AVX512
	    : 0;
	f |= __builtin_cpu_supports("avx512bf16") ? CPU_BF16 : 0;
#endif
	return f;
}

static const struct blas_core *
blas_core_find(const char *name)
{
	for (size_t i = 0; i < N_BLAS_CORES; i++)
		if (strcasecmp(name, blas_cores[i].name) == 0)
			return &blas_cores[i];
	return NULL;
}

/* Appends word to the space-separated list buf[0..*o), within size. */
static void
append_word(char *buf, size_t size, size_t *o, const char *word)
{
	int n;

	if (*o >= size)
		return;
	n = snprintf(buf + *o, size - *o, "%s%s", *o > 0 ? " " : "", word);
	*o += n > 0 ? (size_t)n : 0;
}

int
blas_coretype_check(const char *tool)
{
	const char *want = getenv("OPENBLAS_CORETYPE");
	const struct blas_core *core;
	unsigned have;
	char lacks[128] = "", can[512] = "";
	size_t o = 0;

#if !defined(__x86_64__)
	return 0;
#endif
	if (want == NULL || *want == '\0')
		return 0;
	have = cpu_features();
	core = blas_core_find(want);
	if (core != NULL && (core->needs & ~have) == 0)
		return 0;
	for (size_t i = 0; i < N_BLAS_CORES; i++)
		if ((blas_cores[i].needs & ~have) == 0 && !blas_cores[i].generic)
			append_word(can, sizeof(can), &o, blas_cores[i].name);
	if (core == NULL) {
		fprintf(stderr,
		    "%s: OPENBLAS_CORETYPE=%s is not an OpenBLAS x86-64 core name; unset it or "
		    "name one this CPU can run: %s or a generic one (Prescott)\n",
		    tool, want, can);
		return -1;
	}
	o = 0;
	for (size_t i = 0; i < sizeof(cpu_feature_names) / sizeof(cpu_feature_names[0]); i++)
		if (core->needs & ~have & cpu_feature_names[i].bit)
			append_word(lacks, sizeof(lacks), &o, cpu_feature_names[i].name);
	fprintf(stderr,
	    "%s: OPENBLAS_CORETYPE=%s names a core this CPU cannot run (it lacks %s; OpenBLAS "
	    "would die with SIGILL); unset it or name one it can run: %s or a generic one "
	    "(Prescott)\n",
	    tool, want, lacks, can);
	return -1;
}

int
blas_choose_kernel(const char *tool, char **argv)
{
	const char *corename = openblas_get_corename(), *want = NULL;
	const struct blas_core *core = corename != NULL ? blas_core_find(corename) : NULL;
	unsigned have;

	if (blas_coretype_check(tool) != 0)
		return -1;
	if (getenv("OPENBLAS_CORETYPE") != NULL || getenv(BLAS_REEXEC_ENV) != NULL ||
	    core == NULL || !core->generic)
		return 0;
	have = cpu_features();
	if ((SKYLAKEX_NEEDS & ~have) == 0)
		want = "SkylakeX";
	else if ((HASWELL_NEEDS & ~have) == 0)
		want = "Haswell";
	if (want == NULL)
		return 0;
	fprintf(stderr,
	    "%s: OpenBLAS chose its generic %s kernel on this CPU; the CPU has %s, so "
	    "re-running with OPENBLAS_CORETYPE=%s (set OPENBLAS_CORETYPE to override)\n",
	    tool, corename, strcmp(want, "SkylakeX") == 0 ? "AVX-512" : "AVX2 and FMA", want);
	fflush(stderr);
	if (setenv("OPENBLAS_CORETYPE", want, 1) != 0 || setenv(BLAS_REEXEC_ENV, "1", 1) != 0)
		return 0;
	execv("/proc/self/exe", argv);
	fprintf(stderr, "%s: re-execution failed; keeping the %s kernel\n", tool, corename);
	unsetenv("OPENBLAS_CORETYPE");
	return 0;
}
