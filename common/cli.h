/*
 * The --key value command lines of interest-train and interest-eval, walked
 * the same way, written once.
 */
#ifndef INTERESTD_CLI_H
#define INTERESTD_CLI_H

#include <stdio.h>

/*
 * The next option of argv from *i (start at 1): *k its name and *v its value,
 * or *v NULL for a flag named in flags (NULL-terminated; may be NULL); *i
 * moves past both. -h / --help prints usage to stdout and exits 0. Returns 1
 * for an option, 0 at the end, -1 after printing "PROG: KEY needs a value".
 */
int cli_next(int argc, char **argv, int *i, const char *prog, const char *const *flags,
    void (*usage)(FILE *), const char **k, const char **v);

#endif
