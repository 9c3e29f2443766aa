/*
 * `interestctl report`: the I/O around ctl/report.c. Reads the user's
 * state blob and meta from Redis, decodes the state for the model, and
 * writes the report file atomically.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cli.h"
#include "config.h"
#include "ctl_report.h"
#include "hmac.h"
#include "modelfile.h"
#include "report.h"
#include "sink_redis.h"
#include "state.h"

#define CTL_REPORT_EXIT_OK         0
#define CTL_REPORT_EXIT_FAIL       1
#define CTL_REPORT_ERR_MAX         1024
#define CTL_REPORT_KEY_MAX         1024
#define CTL_REPORT_STATE_MAX_BYTES (256 * 1024) /* as the daemon reads: GETRANGE bound */

/* GETRANGE of the user's state (bounded) and HGET of meta.updated_at, pipelined. */
static int
fetch_user(
    redisContext *rc, const char *prefix, const char *id, redisReply **state, redisReply **updated)
{
	char key[CTL_REPORT_KEY_MAX], end[32];
	const char *gargv[4] = { "GETRANGE", key, "0", end };
	const char *hargv[3] = { "HGET", key, "updated_at" };
	size_t glen[4], hlen[3];

	snprintf(end, sizeof(end), "%d", CTL_REPORT_STATE_MAX_BYTES);
	snprintf(key, sizeof(key), "%s{%s}:state", prefix, id);
	glen[0] = 8, glen[1] = strlen(key), glen[2] = 1, glen[3] = strlen(end);
	if (redisAppendCommandArgv(rc, 4, gargv, glen) != REDIS_OK)
		return -1;
	snprintf(key, sizeof(key), "%s{%s}:meta", prefix, id);
	hlen[0] = 4, hlen[1] = strlen(key), hlen[2] = strlen("updated_at");
	if (redisAppendCommandArgv(rc, 3, hargv, hlen) != REDIS_OK)
		return -1;
	if (redisGetReply(rc, (void **)state) != REDIS_OK)
		return -1;
	if (redisGetReply(rc, (void **)updated) != REDIS_OK)
		return -1;
	return 0;
}

/* Writes the report to path via a temporary file, fsynced and renamed. */
static int
write_report(const char *path, const struct report_input *in, char *err, size_t errsz)
{
	char tmp[4096];
	FILE *f = NULL;
	int fd = -1, ret = -1;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= sizeof(tmp)) {
		snprintf(err, errsz, "%s: path too long", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		snprintf(err, errsz, "%s (temporary file): %s", path, strerror(errno));
		goto done;
	}
	fd = -1;
	if (report_write_svg(f, in, err, errsz) < 0)
		goto done;
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		snprintf(err, errsz, "%s (temporary file): %s", path, strerror(errno));
		goto done;
	}
	if (fclose(f) != 0) {
		f = NULL;
		snprintf(err, errsz, "%s (temporary file): %s", path, strerror(errno));
		goto done;
	}
	f = NULL;
	if (rename(tmp, path) != 0) {
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		goto done;
	}
	ret = 0;
done:
	if (f != NULL)
		fclose(f);
	if (fd >= 0)
		close(fd);
	if (ret < 0)
		unlink(tmp);
	return ret;
}

/* 1 when path ends in .html or .htm. */
static int
is_html(const char *path)
{
	size_t n = strlen(path);

	return (n >= 5 && strcmp(path + n - 5, ".html") == 0) ||
	    (n >= 4 && strcmp(path + n - 4, ".htm") == 0);
}

int
ctl_report_run(struct config *cfg, int argc, char **argv)
{
	const char *id = NULL, *out_path = NULL, *model_path = cfg->model_path;
	char err[CTL_REPORT_ERR_MAX], pseudo[HMAC_PSEUDONYM_LEN + 1], key[CTL_REPORT_KEY_MAX];
	struct report_input in;
	struct model *m = NULL;
	struct user_state *us = NULL;
	redisContext *rc = NULL;
	redisReply *state = NULL, *updated = NULL;
	int ret = CTL_REPORT_EXIT_FAIL, is_pseudonym = 0;

	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc) {
			out_path = argv[++i];
		} else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
			model_path = argv[++i];
		} else if (strcmp(argv[i], "--pseudonym") == 0) {
			is_pseudonym = 1;
		} else if (id == NULL && argv[i][0] != '-') {
			id = argv[i];
		} else {
			id = NULL;
			break;
		}
	}
	if (id == NULL || *id == '\0' || out_path == NULL) {
		fputs(
		    "usage: interestctl [-c CONF] ... report ID --out FILE.svg|FILE.html [--model "
		    "FILE] [--pseudonym]\n",
		    stderr);
		return CLI_EXIT_USAGE;
	}
	if (cfg->ids_hmac_key != NULL && !is_pseudonym) {
		if (hmac_pseudonym_once(cfg->ids_hmac_key, id, pseudo, err, sizeof(err)) != 0) {
			fprintf(stderr, "interestctl: %s\n", err);
			return CTL_REPORT_EXIT_FAIL;
		}
		id = pseudo;
	}
	m = model_load(model_path, err, sizeof(err));
	if (m == NULL) {
		fprintf(stderr, "interestctl: model %s: %s\n", model_path, err);
		goto done;
	}
	if (!model_has_weights(m)) {
		fprintf(stderr, "interestctl: %s: a catalog, not a model (no hyper-parameters)\n",
		    model_path);
		goto done;
	}
	snprintf(key, sizeof(key), "%s{%s}:state", cfg->redis_prefix, id);
	rc = sink_redis_connect(cfg, key, err, sizeof(err));
	if (rc == NULL) {
		fprintf(stderr, "interestctl: %s\n", err);
		goto done;
	}
	if (fetch_user(rc, cfg->redis_prefix, id, &state, &updated) < 0) {
		fprintf(stderr, "interestctl: redis: %s\n", rc->errstr);
		goto done;
	}
	if (state->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "interestctl: redis GETRANGE state: %s\n", state->str);
		goto done;
	}
	if (state->type != REDIS_REPLY_STRING || state->len == 0) {
		fprintf(stderr,
		    "interestctl: user %s: no state under prefix '%s' (never seen, expired or "
		    "erased)\n",
		    id, cfg->redis_prefix);
		goto done;
	}
	us = state_new(model_hparams(m));
	if (us == NULL) {
		fprintf(stderr, "interestctl: out of memory\n");
		goto done;
	}
	if (state_decode(us, (const uint8_t *)state->str, state->len, err, sizeof(err)) < 0) {
		fprintf(stderr, "interestctl: user %s: state: %s\n", id, err);
		goto done;
	}
	if (us->model_version != 0 && us->model_version != model_hparams(m)->model_version)
		fprintf(stderr,
		    "interestctl: note: the state is from model version %" PRIu64
		    ", the model file "
		    "is %" PRIu64 ": tier nodes are read in the file's tree\n",
		    us->model_version, model_hparams(m)->model_version);
	memset(&in, 0, sizeof(in));
	in.user_id = id;
	in.us = us;
	in.m = m;
	in.updated_at_ms =
	    updated->type == REDIS_REPLY_STRING ? strtoll(updated->str, NULL, 10) : 0;
	in.html = is_html(out_path);
	if (write_report(out_path, &in, err, sizeof(err)) < 0) {
		fprintf(stderr, "interestctl: %s\n", err);
		goto done;
	}
	printf("report of user %s: %" PRIu16 " tier nodes, %" PRIu16 " recent events -> %s\n", id,
	    us->n_tiers, us->ring_count, out_path);
	ret = CTL_REPORT_EXIT_OK;
done:
	freeReplyObject(state);
	freeReplyObject(updated);
	if (rc != NULL)
		redisFree(rc);
	state_free(us);
	model_free(m);
	return ret;
}
