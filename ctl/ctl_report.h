/*
 * `interestctl report`: fetches one user's state from Redis and writes the
 * picture ctl/report.c draws (SVG, or HTML for a .html file).
 */
#ifndef DAEMON_CTL_REPORT_H
#define DAEMON_CTL_REPORT_H

struct config;

#define CTL_REPORT_USAGE                                                                           \
	"  report ID --out FILE.svg|FILE.html [--model FILE] [--pseudonym]\n"                      \
	"                             draw the user's tiers (sunbursts, long- and short-term)\n"   \
	"                             and how they moved over the recent events (-o: --out)\n"

/*
 * Runs the mode with the arguments after "report": loads the model
 * (cfg->model_path or --model), reads <prefix>{ID}:state and :meta from
 * Redis (ID pseudonymised with ids.hmac_key_file unless --pseudonym), writes
 * FILE atomically (temporary name, fsync, rename). Returns the process exit
 * code: 0, 1 on failure (message on stderr), CLI_EXIT_USAGE (64) on bad usage.
 */
int ctl_report_run(struct config *cfg, int argc, char **argv);

#endif
