/*
 * OpenBLAS kernel choice by run-time CPU detection (see blas.h).
 */
#include "blas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);

#define BLAS_REEXEC_ENV "INTERESTD_BLAS_REEXEC"

/* OpenBLAS's names for its generic x86-64 fallbacks (no AVX kernels). */
static int
blas_generic_core(const char *name)
{
	static const char *const generic[] = { "Prescott", "Core2", "Penryn", "Dunnington",
		"Nehalem", "Atom", "Barcelona", "Opteron", "Opteron(SSE3)" };

	for (size_t i = 0; i < sizeof(generic) / sizeof(generic[0]); i++)
		if (strcmp(name, generic[i]) == 0)
			return 1;
	return 0;
}

void
blas_choose_kernel(const char *tool, char **argv)
{
	const char *core = openblas_get_corename(), *want = NULL;

	if (getenv("OPENBLAS_CORETYPE") != NULL || getenv(BLAS_REEXEC_ENV) != NULL ||
	    core == NULL || !blas_generic_core(core))
		return;
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512cd"))
		want = "SkylakeX";
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		want = "Haswell";
#endif
	if (want == NULL)
		return;
	fprintf(stderr,
	    "%s: OpenBLAS chose its generic %s kernel on this CPU; the CPU has %s, so "
	    "re-running with OPENBLAS_CORETYPE=%s (set OPENBLAS_CORETYPE to override)\n",
	    tool, core, strcmp(want, "SkylakeX") == 0 ? "AVX-512" : "AVX2 and FMA", want);
	fflush(stderr);
	if (setenv("OPENBLAS_CORETYPE", want, 1) != 0 || setenv(BLAS_REEXEC_ENV, "1", 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	fprintf(stderr, "%s: re-execution failed; keeping the %s kernel\n", tool, core);
	unsetenv("OPENBLAS_CORETYPE");
}
