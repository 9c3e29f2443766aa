/*
 * interestd: flags, configuration, model and decoder, then the consumer
 * loop (daemon/consumer.c); signals only set flags here and the loop acts.
 *
 *   interestd [-c FILE] [-o key=value]... [-v]      run (-c: also --config)
 *   interestd -n|--check-config [-c FILE] [-o ...]  validate config + model, exit 0 or 78
 *   interestd --dump-config [-c FILE] [-o ...]      print the effective config
 *   interestd --help-config[=mdoc]                  the key table (Markdown, or mdoc)
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blas.h"
#include "cli.h"
#include "config.h"
#include "consumer.h"
#include "decode.h"
#include "file.h"
#include "log.h"
#include "modelfile.h"

#define INTERESTD_ERR_MAX    8192
#define INTERESTD_SCHEMA_MAX (1 << 20) /* largest .avsc we read */

/* The only globals: what the signal handlers set (STYLE.md "Signals and shutdown"). */
static volatile sig_atomic_t interestd_stop;
static volatile sig_atomic_t interestd_reload;

static void
interestd_on_stop(int sig)
{
	(void)sig;
	if (interestd_stop)
		_exit(1); /* a second signal: leave at once */
	interestd_stop = 1;
}

static void
interestd_on_hup(int sig)
{
	(void)sig;
	interestd_reload = 1;
}

/* What a reload needs to rebuild the config exactly as at start-up. */
struct interestd_args {
	const char *config_path; /* NULL: defaults only */
	char **overrides;        /* -o key=value, in order */
	int n_overrides;
};

/* Defaults, then the file, then the overrides, then the cross-key checks. */
static struct config *
interestd_config(const struct interestd_args *a, char *errstr, size_t errstr_size)
{
	struct config *cfg = config_new();
	size_t o;
	int bad = 0;

	if (cfg == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	errstr[0] = '\0';
	if (a->config_path != NULL &&
	    config_load_file(cfg, a->config_path, errstr, errstr_size) != 0)
		bad = 1;
	for (int i = 0; i < a->n_overrides; i++) {
		o = strlen(errstr);
		if (config_set_kv(cfg, a->overrides[i], errstr + o + (o ? 1 : 0),
			errstr_size - o - (o ? 1 : 0)) != 0) {
			if (o)
				errstr[o] = '\n';
			bad = 1;
		}
	}
	if (!bad) {
		if (config_check(cfg, errstr, errstr_size) != 0)
			bad = 1;
	}
	if (bad) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static struct config *
interestd_reload_config(void *opaque, char *errstr, size_t errstr_size)
{
	return interestd_config(opaque, errstr, errstr_size);
}

/* Reads a whole small text file into a NUL-terminated buffer (caller frees). */
/* The decoder for schema.reader with every schema.writers entry and schema.plain_writer. */
static struct decoder *
interestd_decoder(const struct config *cfg, char *errstr, size_t errstr_size)
{
	char err[INTERESTD_ERR_MAX / 2];
	struct decoder *dec = decoder_new(cfg->schema_reader, err, sizeof(err));
	char *json = NULL;
	size_t json_len;

	if (dec == NULL) {
		snprintf(errstr, errstr_size, "schema.reader %s: %s", cfg->schema_reader, err);
		return NULL;
	}
	for (size_t i = 0; i < cfg->n_writers; i++) {
		json = file_read_all(
		    cfg->writers[i].path, INTERESTD_SCHEMA_MAX, &json_len, err, sizeof(err));
		if (json == NULL ||
		    decoder_add_writer(dec, json, cfg->writers[i].confluent_id, err, sizeof(err)) !=
			0) {
			snprintf(errstr, errstr_size, "schema.writers %s: %s", cfg->writers[i].path,
			    err);
			goto fail;
		}
		free(json);
		json = NULL;
	}
	if (cfg->schema_plain_writer != NULL) {
		json = file_read_all(
		    cfg->schema_plain_writer, INTERESTD_SCHEMA_MAX, &json_len, err, sizeof(err));
		if (json == NULL || decoder_set_plain_writer(dec, json, err, sizeof(err)) != 0) {
			snprintf(errstr, errstr_size, "schema.plain_writer %s: %s",
			    cfg->schema_plain_writer, err);
			goto fail;
		}
		free(json);
	}
	return dec;
fail:
	free(json);
	decoder_free(dec);
	return NULL;
}

/* The model file, which must carry weights (a catalog alone cannot serve). */
static struct model *
interestd_model(const struct config *cfg, char *errstr, size_t errstr_size)
{
	char err[INTERESTD_ERR_MAX / 2];
	struct model *m = model_load(cfg->model_path, err, sizeof(err));

	if (m == NULL) {
		snprintf(errstr, errstr_size, "model.path: %s", err); /* err names the file */
		return NULL;
	}
	if (!model_has_weights(m)) {
		snprintf(errstr, errstr_size,
		    "model.path %s: a catalog, not a model (no HPAR/WGHT)", cfg->model_path);
		model_free(m);
		return NULL;
	}
	return m;
}

static void
interestd_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: interestd [-c FILE] [-o key=value]... [-v] [-n|--check-config] "
	    "[--dump-config]\n"
	    "       interestd -h|--help | --help-config | --version\n"
	    "  -c, --config FILE  configuration file (key = value lines)\n"
	    "  -o key=value     override one key (repeatable, applied after the file)\n"
	    "  -n, --check-config  validate the configuration and the model file, print\n"
	    "                   \"configuration OK\", open no socket; exit 0 or 78\n"
	    "  --dump-config    print the effective configuration and exit\n"
	    "  --help-config[=mdoc]  print the table of configuration keys (Markdown, or\n"
	    "                   mdoc for the interestd.conf(5) man page)\n"
	    "  -v               debug logging (overrides log.level)\n");
}

int
main(int argc, char **argv)
{
	enum { OPT_DUMP = 256, OPT_HELP_CONFIG, OPT_VERSION };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'n' },
		{ "dump-config", no_argument, NULL, OPT_DUMP },
		{ "help-config", optional_argument, NULL, OPT_HELP_CONFIG },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct interestd_args args = { NULL, NULL, 0 };
	char errstr[INTERESTD_ERR_MAX];
	struct config *cfg = NULL;
	struct model *m = NULL;
	struct decoder *dec = NULL;
	struct consumer *c = NULL;
	struct sigaction sa;
	struct timespec t0, t1;
	int opt, check = 0, dump = 0, verbose = 0, ret = 1;

	/*
	 * One OpenBLAS thread: the matrices here are small (an LSTM wave, a
	 * 64-user scoring chunk) and a second thread only spins in sched_yield
	 * on a core the machine needs for librdkafka and Redis (docs/BENCH.md).
	 */
	openblas_set_num_threads(1);
	args.overrides = calloc((size_t)argc, sizeof(char *));
	if (args.overrides == NULL)
		return 1;
	while ((opt = getopt_long(argc, argv, "c:o:nvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			args.config_path = optarg;
			break;
		case 'o':
			args.overrides[args.n_overrides++] = optarg;
			break;
		case 'n':
			check = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case OPT_DUMP:
			dump = 1;
			break;
		case OPT_HELP_CONFIG:
			if (optarg != NULL && strcmp(optarg, "mdoc") != 0) {
				fprintf(stderr,
				    "interestd: --help-config=%s: the formats are "
				    "Markdown (no value) and mdoc\n",
				    optarg);
				ret = CLI_EXIT_USAGE;
				goto done;
			}
			if (optarg != NULL)
				config_help_mdoc(stdout);
			else
				config_help_table(stdout);
			ret = 0;
			goto done;
		case OPT_VERSION:
			cli_version("interestd");
			ret = 0;
			goto done;
		case 'h':
			interestd_usage(stdout);
			ret = 0;
			goto done;
		default:
			interestd_usage(stderr);
			ret = CLI_EXIT_USAGE;
			goto done;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "interestd: unexpected argument '%s'\n", argv[optind]);
		interestd_usage(stderr);
		ret = CLI_EXIT_USAGE;
		goto done;
	}

	/* Before OpenBLAS runs a kernel: a core the CPU cannot run would die with SIGILL. */
	if (blas_coretype_check("interestd") != 0) {
		ret = CONFIG_EXIT_BAD;
		goto done;
	}
	cfg = interestd_config(&args, errstr, sizeof(errstr));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", errstr);
		ret = CONFIG_EXIT_BAD;
		goto done;
	}
	if (dump) {
		config_dump(cfg, stdout);
		ret = 0;
		goto done;
	}
	log_init(verbose ? LOG_LEVEL_DEBUG : (enum log_level)cfg->log_level);

	/* Model and schemas are part of the configuration: bad ones exit 78 too. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	m = interestd_model(cfg, errstr, sizeof(errstr));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (m != NULL)
		dec = interestd_decoder(cfg, errstr, sizeof(errstr));
	if (m == NULL || dec == NULL) {
		if (check)
			fprintf(stderr, "%s\n", errstr);
		else
			log_error("event=startup_failed error=\"%s\"", errstr);
		ret = CONFIG_EXIT_BAD;
		goto done;
	}
	if (check) {
		printf("configuration OK\n");
		ret = 0;
		goto done;
	}

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = interestd_on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = interestd_on_hup;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	/* The consumer owns cfg, m and dec from here on, also on failure. */
	c = consumer_new(cfg, m, dec,
	    args.config_path != NULL || args.n_overrides > 0 ? interestd_reload_config : NULL,
	    &args, errstr, sizeof(errstr));
	cfg = NULL;
	m = NULL;
	dec = NULL;
	if (c == NULL) {
		log_error("event=startup_failed error=\"%s\"", errstr);
		ret = 1;
		goto done;
	}
	consumer_set_model_load_seconds(
	    c, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
	ret = consumer_run(c, &interestd_stop, &interestd_reload);
done:
	consumer_free(c);
	decoder_free(dec);
	model_free(m);
	config_free(cfg);
	free(args.overrides);
	return ret;
}
