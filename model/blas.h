/*
 * OpenBLAS kernel choice for the offline tools. Debian's OpenBLAS picks its
 * kernels by CPU model at load time; on a CPU model it does not know (a
 * virtual machine's "Intel Xeon Processor", a newer EPYC) it falls back to
 * its generic SSE3 kernels ("Prescott"), 3-4x slower at SGEMM than the
 * AVX2/AVX-512 ones the same CPU runs. The choice can only be made through
 * OPENBLAS_CORETYPE before the library loads, so the tool re-executes itself.
 */
#ifndef MODEL_BLAS_H
#define MODEL_BLAS_H

#include <stddef.h>

/*
 * If OPENBLAS_CORETYPE is unset and OpenBLAS fell back to a generic kernel
 * while the CPU (detected at run time) has AVX-512 (F, BW, DQ, VL, CD:
 * "SkylakeX") or AVX2 + FMA ("Haswell"), sets OPENBLAS_CORETYPE to that and
 * re-executes the program with argv; a line on stderr says so. An operator's
 * OPENBLAS_CORETYPE is kept when this CPU can run it (blas_coretype_check);
 * when it cannot, prints that on stderr, after "tool: ", and returns -1 (exit
 * 78). Returns 0 otherwise (no re-execution needed, or exec failed: then the
 * generic kernel stays).
 */
int blas_choose_kernel(const char *tool, char **argv);

/*
 * Whether this CPU can run the OpenBLAS core that OPENBLAS_CORETYPE names.
 * OpenBLAS takes the name as an order and runs that core's kernels whatever
 * the CPU: a core whose instructions the CPU lacks (SkylakeX without
 * AVX-512) dies with SIGILL at the first matrix product. Returns 0 when the
 * variable is unset or names a core whose instructions the CPU has (checked
 * at run time) or the machine is not x86-64 (no table for it); -1 after one
 * line on stderr, "tool: " then the value, what the CPU lacks and the
 * cores it can run, when the name is unknown or the CPU lacks an instruction.
 */
int blas_coretype_check(const char *tool);

#endif
