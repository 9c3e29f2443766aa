/* Command-line walking: common/cli.h. */
#include "cli.h"
#include "version.h"

#include <stdlib.h>
#include <string.h>

void
cli_version(const char *prog)
{
	printf("%s %s\n", prog, interestd_version);
}

int
cli_next(int argc, char **argv, int *i, const char *prog, const char *const *flags,
    void (*usage)(FILE *), const char **k, const char **v)
{
	if (*i >= argc)
		return 0;
	*k = argv[(*i)++];
	*v = NULL;
	if (strcmp(*k, "-h") == 0 || strcmp(*k, "--help") == 0) {
		usage(stdout);
		exit(0);
	}
	if (strcmp(*k, "--version") == 0) {
		cli_version(prog);
		exit(0);
	}
	for (size_t f = 0; flags != NULL && flags[f] != NULL; f++)
		if (strcmp(*k, flags[f]) == 0)
			return 1;
	if (*i >= argc) {
		/* The options are the caller's: this one either takes a value or is unknown. */
		fprintf(stderr, "%s: %s: no value follows it, or it is not an option (%s --help)\n",
		    prog, *k, prog);
		return -1;
	}
	*v = argv[(*i)++];
	return 1;
}
