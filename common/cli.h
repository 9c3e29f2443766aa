/*
 * The command-line conventions every tool keeps (README "Command lines"): the
 * usage-error exit status, --version, and the --key value command lines of
 * interest-train and interest-eval, walked the same way, written once.
 */
#ifndef INTERESTD_CLI_H
#define INTERESTD_CLI_H

#include <stdio.h>

#define CLI_EXIT_USAGE  64 /* EX_USAGE of sysexits(3): a bad option, mode or argument */
#define CLI_EXIT_CONFIG 78 /* EX_CONFIG: a bad configuration (or OPENBLAS_CORETYPE) */

/* Prints "PROG VERSION" (the file VERSION, common/version.h) on stdout. */
void cli_version(const char *prog);

/*
 * The next option of argv from *i (start at 1): *k its name and *v its value,
 * or *v NULL for a flag named in flags (NULL-terminated; may be NULL); *i
 * moves past both. -h / --help prints usage to stdout and exits 0, --version
 * prints cli_version(prog) and exits 0. Returns 1
 * for an option, 0 at the end, -1 after printing that KEY, the last argument,
 * has no value (or is no option).
 */
int cli_next(int argc, char **argv, int *i, const char *prog, const char *const *flags,
    void (*usage)(FILE *), const char **k, const char **v);

#endif
