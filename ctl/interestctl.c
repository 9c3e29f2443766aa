/*
 * interestctl: inspect a user's keys in Redis, summarise a model or catalog
 * file, and run the offline replay the equivalence tests compare the daemon
 * against. Each mode is one function; main() parses the common options and
 * dispatches.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

#include "blas.h"
#include "cli.h"
#include "json.h"
#include "config.h"
#include "container.h"
#include "ctl_report.h"
#include "dataset.h"
#include "hmac.h"
#include "modelfile.h"
#include "online.h"
#include "scorer.h"
#include "sink_redis.h"
#include "state.h"
#include "updater.h"
#include "userview.h"

#define CTL_EXIT_OK             0
#define CTL_EXIT_FAIL           1
#define CTL_ERR_MAX             1024
#define CTL_REPLAY_BATCH        1000 /* events per updater_apply, as a daemon batch */
#define CTL_REPLAY_VIEW         256  /* users per userview_fill_batch */
#define CTL_DEFAULT_TOP_N       50
#define CTL_DELIVERY_TIMEOUT_MS 30000 /* erase: wait this long for the tombstone's ack */
#define CTL_ERASE_WAIT_S        60    /* erase --wait: for the daemon's erasure marker */

static const char ctl_usage[] =
    "usage: interestctl [-c CONF] [-H HOST] [-p PORT] [-P PREFIX] [-o KEY=VALUE]... MODE ...\n"
    "       interestctl -h|--help | --version;  interestctl MODE --help\n"
    "  user ID [--model FILE] [--hmac-key-file FILE] [--pseudonym]\n"
    "                             print a user's tiers, top-N, vector norm and meta from Redis;\n"
    "                             ID is pseudonymised with ids.hmac_key_file when one is set\n"
    "                             (--pseudonym: ID is already the pseudonym)\n"
    "  erase ID [--wait]          erase request: a tombstone keyed ID on topic.events (ordered\n"
    "                             with the user's events); --wait: until interestd erased it\n"
    "  model FILE                 summarise a model or catalog file\n" CTL_REPORT_USAGE
    "  replay --model FILE --interactions CSV --out FILE.jsonl [--top-n N] [--calibrate 0|1]\n"
    "         [--online FILE.json]\n"
    "                             apply an interactions CSV offline (libinterest), one JSON line\n"
    "                             per user as the daemon would publish it (--events: the same\n"
    "                             as --interactions); --online: the daemon's online metrics of\n"
    "                             the events as if each user's top-N were written after each\n"
    "                             of its events, as JSON into FILE.json\n"
    "  -c, --config CONF          interestd config file (Redis address, prefix, model.path)\n"
    "  -H, --redis-host HOST, -p, --redis-port PORT, -P, --redis-prefix PREFIX\n"
    "                             redis.host, redis.port, redis.prefix\n"
    "  -o KEY=VALUE               any config key (after the file, in order)\n"
    "exit status: 0, 1 failure, 64 usage error, 78 bad configuration\n";

/* --- user ------------------------------------------------------------ */

struct ctl_tier {
	char label[32];
	float w_short, w_long;
};

static int
tier_cmp(const void *a, const void *b)
{
	const struct ctl_tier *x = a, *y = b;

	if (x->w_long != y->w_long)
		return x->w_long > y->w_long ? -1 : 1;
	return strcmp(x->label, y->label);
}

/* A reply to one command with a key built from the prefix; NULL on connection error. */
static redisReply *
ctl_get(redisContext *rc, const char *verb, const char *prefix, const char *id, const char *sfx)
{
	char key[1024];
	const char *argv[2] = { verb, key };
	size_t argvlen[2];

	if (id != NULL)
		snprintf(key, sizeof(key), "%s{%s}:%s", prefix, id, sfx);
	else
		snprintf(key, sizeof(key), "%s%s", prefix, sfx);
	argvlen[0] = strlen(verb);
	argvlen[1] = strlen(key);
	return redisCommandArgv(rc, 2, argv, argvlen);
}

/* Value of field in an HGETALL reply, or NULL. */
static const char *
hash_field(const redisReply *r, const char *field)
{
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < r->elements; i += 2)
		if (strcmp(r->element[i]->str, field) == 0)
			return r->element[i + 1]->str;
	return NULL;
}

/* As hash_field, "?" when absent. */
static const char *
hash_field_or(const redisReply *r, const char *field)
{
	const char *v = hash_field(r, field);

	return v != NULL ? v : "?";
}

/* Formats ms since the epoch as "YYYY-MM-DD HH:MM:SS.mmm UTC". */
static void
fmt_utc(int64_t ms, char *buf, size_t size)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&s, &tm) == NULL) {
		snprintf(buf, size, "?");
		return;
	}
	snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d.%03d UTC", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* One top-N row: rank, id, score, the item's tier and title (from the model). */
static void
print_top_row(const struct model *m, const redisReply *names, size_t rank, const char *id,
    size_t id_len, double score)
{
	int32_t item = m ? model_item_lookup(m, id, id_len) : -1;
	char label[32] = "-";
	const char *title = "", *tname = NULL;
	size_t tlen = 0;

	if (item >= 0) {
		uint32_t node = model_item_tier2(m, (uint32_t)item);
		if (node == MODEL_NODE_NONE)
			node = model_item_tier1(m, (uint32_t)item);
		model_node_label(m, node, label, sizeof(label));
		title = model_item_title(m, (uint32_t)item, &tlen);
		tname = hash_field(names, label);
	}
	printf("  %3zu  %-20s %10.4f  %-6s %-28.28s %.*s\n", rank, id, score, label,
	    tname ? tname : "", (int)tlen, title);
}

/* The rows of a top JSON text, numbered as sink_redis_top_parse hands them over. */
struct ctl_top_rows {
	const struct model *m;
	const redisReply *names;
	size_t rank;
};

static void
ctl_top_json_row(void *arg, const char *id, size_t id_len, double score)
{
	struct ctl_top_rows *tr = arg;

	print_top_row(tr->m, tr->names, ++tr->rank, id, id_len, score);
}

static int
ctl_user(struct config *cfg, int argc, char **argv)
{
	const char *id = NULL, *model_path = cfg->model_path;
	redisReply *vec = NULL, *top = NULL, *tiers = NULL, *meta = NULL, *names = NULL,
		   *type = NULL;
	struct ctl_tier *tv = NULL;
	struct model *m = NULL;
	redisContext *rc = NULL, *rcn = NULL;
	char err[CTL_ERR_MAX], when[64], key[1024];
	int ret = CTL_EXIT_FAIL, model_given = 0, is_pseudonym = 0;
	size_t n_tv = 0;
	char pseudo[HMAC_PSEUDONYM_LEN + 1];

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
			model_path = argv[++i];
			model_given = 1;
		} else if (strcmp(argv[i], "--hmac-key-file") == 0 && i + 1 < argc) {
			/* Same checks as the daemon's key (mode, length). */
			if (config_set(cfg, "ids.hmac_key_file", argv[++i], err, sizeof(err)) < 0) {
				fprintf(stderr, "interestctl: %s\n", err);
				return CTL_EXIT_FAIL;
			}
		} else if (strcmp(argv[i], "--pseudonym") == 0) {
			is_pseudonym = 1;
		} else if (id == NULL && argv[i][0] != '-') {
			id = argv[i];
		} else {
			fputs(ctl_usage, stderr);
			return CLI_EXIT_USAGE;
		}
	}
	if (id == NULL) {
		fputs(ctl_usage, stderr);
		return CLI_EXIT_USAGE;
	}
	if (cfg->ids_hmac_key != NULL && !is_pseudonym) {
		if (hmac_pseudonym_once(cfg->ids_hmac_key, id, pseudo, err, sizeof(err)) != 0) {
			fprintf(stderr, "interestctl: %s\n", err);
			return CTL_EXIT_FAIL;
		}
		printf("pseudonym %s\n", pseudo);
		id = pseudo;
	}
	m = model_load(model_path, err, sizeof(err));
	if (m == NULL) {
		fprintf(stderr, "interestctl: model %s: %s%s\n", model_path, err,
		    model_given ? "" : " (titles and item tiers not shown; use --model FILE)");
		if (model_given)
			return CTL_EXIT_FAIL;
	}
	/* In a cluster the user's keys and the tier names live in two slots. */
	snprintf(key, sizeof(key), "%s{%s}:vec", cfg->redis_prefix, id);
	rc = sink_redis_connect(cfg, key, err, sizeof(err));
	snprintf(key, sizeof(key), "%stiers", cfg->redis_prefix);
	if (rc == NULL || (rcn = sink_redis_connect(cfg, key, err, sizeof(err))) == NULL) {
		fprintf(stderr, "interestctl: %s\n", err);
		goto done;
	}
	vec = ctl_get(rc, "GET", cfg->redis_prefix, id, "vec");
	type = ctl_get(rc, "TYPE", cfg->redis_prefix, id, "top");
	tiers = ctl_get(rc, "HGETALL", cfg->redis_prefix, id, "tiers");
	meta = ctl_get(rc, "HGETALL", cfg->redis_prefix, id, "meta");
	names = ctl_get(rcn, "HGETALL", cfg->redis_prefix, NULL, "tiers");
	if (vec == NULL || type == NULL || tiers == NULL || meta == NULL || names == NULL) {
		fprintf(
		    stderr, "interestctl: redis: %s\n", names == NULL ? rcn->errstr : rc->errstr);
		goto done;
	}
	if (meta->type != REDIS_REPLY_ARRAY || meta->elements == 0) {
		fprintf(stderr,
		    "interestctl: user %s: no keys under prefix '%s' (never seen, or expired)\n",
		    id, cfg->redis_prefix);
		goto done;
	}
	if (type->type == REDIS_REPLY_STATUS && strcmp(type->str, "zset") == 0) {
		const char *zargv[5] = { "ZREVRANGE", key, "0", "-1", "WITHSCORES" };
		size_t zlen[5] = { 9, 0, 1, 2, 10 };

		snprintf(key, sizeof(key), "%s{%s}:top", cfg->redis_prefix, id);
		zlen[1] = strlen(key);
		top = redisCommandArgv(rc, 5, zargv, zlen);
	} else
		top = ctl_get(rc, "GET", cfg->redis_prefix, id, "top");

	printf("user %s (prefix %s)\n", id, cfg->redis_prefix);
	{
		const char *ua = hash_field(meta, "updated_at"),
			   *wa = hash_field(meta, "weights_at");
		int64_t ums = ua ? strtoll(ua, NULL, 10) : 0;

		fmt_utc(ums, when, sizeof(when));
		printf("updated_at      %s (%s)\n", ua ? ua : "?", when);
		if (wa != NULL) {
			fmt_utc(strtoll(wa, NULL, 10), when, sizeof(when));
			printf("weights_at      %s (%s)\n", wa, when);
		}
		const char *mv = hash_field_or(meta, "model_version");

		printf("model_version   %s%s\n", mv,
		    m && model_has_weights(m) &&
			    strtoull(mv, NULL, 10) != model_hparams(m)->model_version
			? "  (differs from the model file's)"
			: "");
		printf("events_applied  %s\n", hash_field_or(meta, "events_applied"));
		printf("marker          partition %s offset %s (owner epoch %s)\n",
		    hash_field_or(meta, "partition"), hash_field_or(meta, "offset"),
		    hash_field_or(meta, "epoch"));
	}
	if (vec->type == REDIS_REPLY_STRING && vec->len % 4 == 0) {
		double sum = 0;
		for (size_t i = 0; i < vec->len / 4; i++) {
			const unsigned char *p = (const unsigned char *)vec->str + 4 * i;
			uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
			    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
			float f;
			memcpy(&f, &bits, 4);
			sum += (double)f * (double)f;
		}
		printf("vector          dim %zu, norm %.6g\n", vec->len / 4, sqrt(sum));
	} else {
		printf("vector          missing or malformed\n");
	}

	if (tiers->type == REDIS_REPLY_ARRAY && tiers->elements > 0) {
		tv = calloc(tiers->elements / 2, sizeof(*tv));
		if (tv == NULL)
			goto done;
		for (size_t i = 0; i + 1 < tiers->elements; i += 2) {
			struct ctl_tier *t = &tv[n_tv];
			snprintf(t->label, sizeof(t->label), "%s", tiers->element[i]->str);
			if (sscanf(tiers->element[i + 1]->str, "%f %f", &t->w_short, &t->w_long) ==
			    2)
				n_tv++;
		}
		qsort(tv, n_tv, sizeof(*tv), tier_cmp);
	}
	printf("\ntiers (%zu, by long-term weight)\n  %-8s %10s %10s  name\n", n_tv, "node",
	    "short", "long");
	for (size_t i = 0; i < n_tv; i++) {
		const char *name = hash_field(names, tv[i].label);
		printf("  %-8s %10.4f %10.4f  %s\n", tv[i].label, (double)tv[i].w_short,
		    (double)tv[i].w_long, name ? name : "");
	}

	printf("\ntop-N\n  %3s  %-20s %10s  %-6s %-28s %s\n", "#", "item", "score", "tier",
	    "tier name", "title");
	if (top != NULL && top->type == REDIS_REPLY_STRING) {
		struct ctl_top_rows tr = { m, names, 0 };

		if (sink_redis_top_parse(
			top->str, top->len, ctl_top_json_row, &tr, err, sizeof(err)) != 0)
			printf("  (malformed top JSON after %zu items)\n", tr.rank);
	} else if (top != NULL && top->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i + 1 < top->elements; i += 2)
			print_top_row(m, names, i / 2 + 1, top->element[i]->str,
			    top->element[i]->len, strtod(top->element[i + 1]->str, NULL));
	} else {
		printf("  (none)\n");
	}
	ret = CTL_EXIT_OK;
done:
	freeReplyObject(vec);
	freeReplyObject(top);
	freeReplyObject(type);
	freeReplyObject(tiers);
	freeReplyObject(meta);
	freeReplyObject(names);
	free(tv);
	if (rc != NULL)
		redisFree(rc);
	if (rcn != NULL)
		redisFree(rcn);
	model_free(m);
	return ret;
}

/* --- model ----------------------------------------------------------- */

static const char *const ctl_sections[] = {
	"CATM",
	"IIDS",
	"ITTL",
	"EMBD",
	"TNOD",
	"TCEN",
	"TNAM",
	"ITIR",
	"HPAR",
	"WGHT",
	"TRCH",
};

/* The trainer's settings search as recorded in the model file (TRCH), indented. */
static void
ctl_print_choice(const struct model *m)
{
	size_t len;
	const char *p = model_choice(m, &len);

	if (p == NULL) {
		printf(
		    "training    (no record of the settings: trained before the search existed)\n");
		return;
	}
	printf("training    settings search (interest-train):\n");
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t n = nl != NULL ? (size_t)(nl - p) : len;
		printf("  %.*s\n", (int)n, p);
		if (nl == NULL)
			break;
		len -= n + 1;
		p = nl + 1;
	}
}

static int
ctl_model(int argc, char **argv)
{
	struct container *ct = NULL;
	struct model *m = NULL;
	uint32_t *count = NULL;
	char err[CTL_ERR_MAX], label[32];
	int ret = CTL_EXIT_FAIL;

	if (argc != 1) {
		fputs(ctl_usage, stderr);
		return CLI_EXIT_USAGE;
	}
	m = model_load(argv[0], err, sizeof(err));
	if (m == NULL) {
		fprintf(stderr, "interestctl: %s: %s\n", argv[0], err);
		return CTL_EXIT_FAIL;
	}
	ct = container_open(argv[0], err, sizeof(err));
	if (ct == NULL) {
		fprintf(stderr, "interestctl: %s: %s\n", argv[0], err);
		goto done;
	}
	printf("file        %s\n", argv[0]);
	printf("kind        %s\n", model_has_weights(m) ? "model" : "catalog");
	printf("items       %" PRIu32 "\n", model_n_items(m));
	printf("dim         %" PRIu32 "\n", model_dim(m));
	printf("embedder    %s\n", model_embedder(m));
	printf("sections    (header, table and every section checksum OK)\n");
	for (size_t i = 0; i < sizeof(ctl_sections) / sizeof(ctl_sections[0]); i++) {
		size_t len;
		const uint8_t *p = container_section(ct, ctl_sections[i], &len);
		if (p != NULL)
			printf("  %s  %12zu bytes  crc32 %08" PRIx32 "\n", ctl_sections[i], len,
			    container_crc32(0, p, len));
	}
	if (model_has_weights(m)) {
		const struct model_hparams *hp = model_hparams(m);
		uint64_t h = hp->hidden, dim = model_dim(m), n = model_n_items(m);
		uint64_t n_w = 4 * h * (model_din(m) + h) + 4 * h + dim * h + dim +
		    (uint64_t)hp->n_types * hp->type_dim + n * dim + n + 4;

		printf("model_version %" PRIu64 "\n", hp->model_version);
		printf("hparams     hidden %" PRIu32 ", type_dim %" PRIu32 ", ring_len %" PRIu32
		       ", max_tiers %" PRIu32 ", train_seed %" PRIu64 "\n",
		    hp->hidden, hp->type_dim, hp->ring_len, hp->max_tiers, hp->train_seed);
		printf("half-lives  short %.6g s, long %.6g s\n", (double)hp->half_life_short_s,
		    (double)hp->half_life_long_s);
		printf("type weights");
		for (int t = 0; t < MODEL_N_TYPES; t++)
			printf(" %s=%.3g", model_event_type_name(t), (double)hp->type_weight[t]);
		printf("\nweights     %" PRIu64 " floats (%.1f MiB)\n", n_w,
		    (double)n_w * 4 / (1024.0 * 1024.0));
		ctl_print_choice(m);
	}
	count = calloc(model_n_nodes(m), sizeof(*count));
	if (count == NULL)
		goto done;
	for (uint32_t i = 0; i < model_n_items(m); i++) {
		uint32_t t1 = model_item_tier1(m, i), t2 = model_item_tier2(m, i);
		if (t1 < model_n_nodes(m))
			count[t1]++;
		if (t2 < model_n_nodes(m))
			count[t2]++;
	}
	printf("tiers       %" PRIu32 " level-1, %" PRIu32 " nodes\n", model_n_tier1(m),
	    model_n_nodes(m));
	for (uint32_t t1 = 0; t1 < model_n_tier1(m); t1++) {
		size_t len;
		const char *name = model_node_name(m, t1, &len);
		model_node_label(m, t1, label, sizeof(label));
		printf("  %-7s %6" PRIu32 " items  %.*s\n", label, count[t1], (int)len, name);
		for (uint32_t node = model_n_tier1(m); node < model_n_nodes(m); node++) {
			if (model_node_parent(m, node) != t1)
				continue;
			name = model_node_name(m, node, &len);
			model_node_label(m, node, label, sizeof(label));
			printf("    %-7s %6" PRIu32 " items  %.*s\n", label, count[node], (int)len,
			    name);
		}
	}
	ret = CTL_EXIT_OK;
done:
	free(count);
	container_close(ct);
	model_free(m);
	return ret;
}

/* --- replay ---------------------------------------------------------- */

/*
 * Applies ds's events as if each user's top-N were written after each of its
 * events: the k-th events of all users are applied together (in chunks of
 * CTL_REPLAY_BATCH), each measured against its user's list after its
 * previous event (online_count, as the daemon), then those users' lists
 * are computed again. Counts per event type into oc, events of users with
 * no list yet into *unmeasured. Returns 0, or -1 on ENOMEM.
 */
static int
replay_online(const struct dataset *ds, struct user_state **states, struct updater *up,
    struct userview *uv, size_t top_n, struct update_event *batch, struct sink_user *su,
    struct online_counts *oc, uint64_t *unmeasured)
{
	uint32_t *lists = calloc((size_t)ds->n_users * top_n, sizeof(*lists));
	size_t *n_list = calloc(ds->n_users ? ds->n_users : 1, sizeof(*n_list));
	uint32_t *who = calloc(CTL_REPLAY_BATCH, sizeof(*who));
	size_t max_len = 0;
	int64_t seq = 0;
	int ret = -1;

	if ((lists == NULL && ds->n_users > 0) || n_list == NULL || who == NULL)
		goto done;
	for (uint32_t u = 0; u < ds->n_users; u++)
		if (ds->user_off[u + 1] - ds->user_off[u] > max_len)
			max_len = ds->user_off[u + 1] - ds->user_off[u];
	for (size_t k = 0; k < max_len; k++) {
		for (uint32_t u = 0; u < ds->n_users;) {
			const uint8_t *repeat;
			size_t nb = 0;

			for (; u < ds->n_users && nb < CTL_REPLAY_BATCH; u++) {
				size_t n;
				const struct dataset_event *ev = dataset_user(ds, u, &n);

				if (k >= n)
					continue;
				batch[nb] = (struct update_event){ states[u], ev[k].item,
					ev[k].type, ev[k].ts_ms, -1, seq++ };
				who[nb++] = u;
			}
			if (nb == 0)
				continue;
			if (updater_apply(up, batch, nb) != 0)
				goto done;
			repeat = updater_consumed_before(up);
			for (size_t i = 0; i < nb; i++) {
				uint32_t w = who[i];

				if (n_list[w] == 0)
					(*unmeasured)++;
				else
					online_count(&oc[batch[i].type],
					    online_rank(lists + (size_t)w * top_n, n_list[w],
						batch[i].item),
					    repeat[i]);
			}
			/* Their lists as a flush after these events would write them. */
			for (size_t i = 0; i < nb; i += CTL_REPLAY_VIEW) {
				size_t nv = nb - i < CTL_REPLAY_VIEW ? nb - i : CTL_REPLAY_VIEW;

				for (size_t j = 0; j < nv; j++)
					su[j].us = states[who[i + j]];
				userview_fill_batch(uv, su, nv);
				for (size_t j = 0; j < nv; j++) {
					uint32_t w = who[i + j];

					memcpy(lists + (size_t)w * top_n, su[j].top_items,
					    su[j].n_top * sizeof(*lists));
					n_list[w] = su[j].n_top;
				}
			}
		}
	}
	ret = 0;
done:
	free(lists);
	free(n_list);
	free(who);
	return ret;
}

/* Writes the counters of replay_online as JSON (README "Online metrics"). */
static int
replay_write_online(
    const char *path, uint64_t model_version, const struct online_counts *oc, uint64_t unmeasured)
{
	FILE *f = fopen(path, "w");
	int first = 1;

	if (f == NULL) {
		fprintf(stderr, "interestctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\"unmeasured\":%" PRIu64 ",\"counters\":[", unmeasured);
	for (uint32_t t = 0; t < MODEL_N_TYPES; t++) {
		if (oc[t].events == 0 && oc[t].repeats == 0)
			continue;
		fprintf(f,
		    "%s\n{\"model_version\":%" PRIu64 ",\"type\":\"%s\",\"events\":%" PRIu64
		    ",\"repeats\":%" PRIu64 ",\"hits_10\":%" PRIu64 ",\"hits_n\":%" PRIu64
		    ",\"reciprocal_rank_sum\":%.17g,\"ndcg10_sum\":%.17g}",
		    first ? "" : ",", model_version, model_event_type_name(t), oc[t].events,
		    oc[t].repeats, oc[t].hits_k, oc[t].hits_n, oc[t].rr_sum, oc[t].ndcg_sum);
		first = 0;
	}
	fputs("]}\n", f);
	if (fclose(f) != 0) {
		fprintf(stderr, "interestctl: %s: write failed: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Writes one user's line: {"user":..,"vec":[..],"top":[..],"tiers":{..},"events_applied":N}. */
static int
replay_write_user(FILE *out, const struct model *m, const struct sink_user *su)
{
	char label[32], val[64];
	size_t top_len;
	char *top;

	fputs("{\"user\":", out);
	json_write_string(out, su->user_id, su->user_id_len);
	fputs(",\"vec\":[", out);
	for (uint32_t i = 0; i < model_dim(m); i++)
		fprintf(out, "%s%.9g", i ? "," : "", (double)su->vec[i]);
	top = sink_redis_top_json(m, su->top_items, su->top_scores, su->n_top, &top_len);
	if (top == NULL)
		return -1;
	fprintf(out, "],\"top\":%s,\"tiers\":{", top);
	free(top);
	for (uint16_t i = 0; i < su->us->n_tiers; i++) {
		const struct tier_weight *tw = &su->us->tiers[i];
		model_node_label(m, tw->node, label, sizeof(label));
		sink_redis_tier_value(tw->w_short, tw->w_long, val, sizeof(val));
		fprintf(out, "%s\"%s\":\"%s\"", i ? "," : "", label, val);
	}
	fprintf(out, "},\"events_applied\":%" PRIu64 "}\n", su->us->events_applied);
	return ferror(out) ? -1 : 0;
}

static int
ctl_replay(const struct config *cfg, int argc, char **argv)
{
	const char *model_path = NULL, *events_path = NULL, *out_path = NULL, *online_path = NULL;
	long top_n = cfg->redis_top_n, calibrate = cfg->tiers_calibrate;
	struct online_counts oc[MODEL_N_TYPES] = { 0 };
	uint64_t unmeasured = 0;
	struct model *m = NULL;
	struct dataset *ds = NULL;
	struct updater *up = NULL;
	struct userview *uv = NULL;
	struct user_state **states = NULL;
	struct update_event *batch = NULL;
	struct sink_user *su = NULL;
	FILE *out = NULL;
	char err[CTL_ERR_MAX];
	int ret = CTL_EXIT_FAIL;
	size_t nb = 0;
	int64_t seq = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end = NULL;

		if (v == NULL)
			goto usage;
		if (strcmp(a, "--model") == 0)
			model_path = v;
		else if (strcmp(a, "--interactions") == 0 || strcmp(a, "--events") == 0)
			events_path = v;
		else if (strcmp(a, "--out") == 0)
			out_path = v;
		else if (strcmp(a, "--online") == 0)
			online_path = v;
		else if (strcmp(a, "--top-n") == 0)
			top_n = strtol(v, &end, 10);
		else if (strcmp(a, "--calibrate") == 0)
			calibrate = strtol(v, &end, 10);
		else
			goto usage;
		if (end != NULL && (*end != '\0' || end == v))
			goto usage;
		i++;
	}
	if (model_path == NULL || events_path == NULL || out_path == NULL || top_n < 1 ||
	    top_n > 100000 || (calibrate != 0 && calibrate != 1))
		goto usage;

	m = model_load(model_path, err, sizeof(err));
	if (m == NULL) {
		fprintf(stderr, "interestctl: %s: %s\n", model_path, err);
		goto done;
	}
	if (!model_has_weights(m)) {
		fprintf(
		    stderr, "interestctl: %s: a catalog, not a model (no weights)\n", model_path);
		goto done;
	}
	ds = dataset_load_order(events_path, m, DATASET_FILE_ORDER, err, sizeof(err));
	if (ds == NULL) {
		fprintf(stderr, "interestctl: %s\n", err);
		goto done;
	}
	up = updater_new(m, CTL_REPLAY_BATCH);
	uv = userview_new(m, CTL_REPLAY_VIEW, (size_t)top_n, (int)calibrate);
	su = calloc(CTL_REPLAY_VIEW, sizeof(*su));
	states = calloc(ds->n_users ? ds->n_users : 1, sizeof(*states));
	batch = calloc(CTL_REPLAY_BATCH, sizeof(*batch));
	if (up == NULL || uv == NULL || su == NULL || states == NULL || batch == NULL)
		goto nomem;
	for (uint32_t u = 0; u < ds->n_users; u++)
		if ((states[u] = state_new(model_hparams(m))) == NULL)
			goto nomem;

	if (online_path != NULL) {
		if (replay_online(ds, states, up, uv, (size_t)top_n, batch, su, oc, &unmeasured) !=
		    0)
			goto nomem;
		if (replay_write_online(
			online_path, model_hparams(m)->model_version, oc, unmeasured) != 0)
			goto done;
	}
	/*
	 * Each user's events in file (arrival) order, as the daemon applies them,
	 * cut into batches like the daemon's; offsets number the events
	 * (partition -1: offline). With --online they are applied already.
	 */
	for (uint32_t u = 0; u < ds->n_users && online_path == NULL; u++) {
		size_t n;
		const struct dataset_event *ev = dataset_user(ds, u, &n);

		for (size_t k = 0; k < n; k++) {
			batch[nb].us = states[u];
			batch[nb].item = ev[k].item;
			batch[nb].type = ev[k].type;
			batch[nb].ts_ms = ev[k].ts_ms;
			batch[nb].partition = -1;
			batch[nb].offset = seq++;
			if (++nb == CTL_REPLAY_BATCH) {
				updater_apply(up, batch, nb);
				nb = 0;
			}
		}
	}
	if (nb > 0)
		updater_apply(up, batch, nb);

	out = fopen(out_path, "w");
	if (out == NULL) {
		fprintf(stderr, "interestctl: %s: %s\n", out_path, strerror(errno));
		goto done;
	}
	/* The daemon's flush computes its users' views by the same batched call. */
	for (uint32_t u = 0; u < ds->n_users;) {
		size_t k = 0, i = 0;

		for (; u < ds->n_users && k < CTL_REPLAY_VIEW; u++) {
			if (states[u]->events_applied == 0)
				continue;
			su[k].user_id = ds->user_ids[u];
			su[k].user_id_len = strlen(ds->user_ids[u]);
			su[k++].us = states[u];
		}
		userview_fill_batch(uv, su, k);
		for (; i < k; i++)
			if (replay_write_user(out, m, &su[i]) < 0)
				break;
		if (i < k)
			break;
	}
	if (fclose(out) != 0 || ferror(stdout)) {
		out = NULL;
		fprintf(stderr, "interestctl: %s: write failed: %s\n", out_path, strerror(errno));
		goto done;
	}
	out = NULL;
	fprintf(stderr,
	    "interestctl: replay: %zu events, %" PRIu32 " users, %zu rows with unknown items "
	    "skipped -> %s\n",
	    ds->n_events, ds->n_users, ds->n_unknown_items, out_path);
	ret = CTL_EXIT_OK;
	goto done;
nomem:
	fprintf(stderr, "interestctl: replay: out of memory\n");
	goto done;
usage:
	fputs(ctl_usage, stderr);
	ret = CLI_EXIT_USAGE;
done:
	if (out != NULL)
		fclose(out);
	if (states != NULL && ds != NULL)
		for (uint32_t u = 0; u < ds->n_users; u++)
			state_free(states[u]);
	free(states);
	free(batch);
	free(su);
	userview_free(uv);
	updater_free(up);
	dataset_free(ds);
	model_free(m);
	return ret;
}

/* --- erase ----------------------------------------------------------- */

/* Delivery report of the tombstone: where it landed. */
static void
ctl_erase_dr(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
	rd_kafka_message_t *out = opaque;

	(void)rk;
	out->err = rkm->err;
	out->partition = rkm->partition;
	out->offset = rkm->offset;
}

/*
 * erase ID: produces a tombstone (null value) keyed by ID to topic.events,
 * so the request is ordered with the user's events on their partition;
 * interestd deletes the user's keys and records the erasure marker
 * (schemas/redis.md "Erasure"). --wait polls Redis until the marker holds
 * this tombstone's offset.
 */
static int
ctl_erase(const struct config *cfg, int argc, char **argv)
{
	const char *id = NULL;
	char err[CTL_ERR_MAX], pseudo[HMAC_PSEUDONYM_LEN + 1], key[1024];
	rd_kafka_conf_t *conf;
	rd_kafka_message_t dr = { .err = RD_KAFKA_RESP_ERR__TIMED_OUT, .offset = -1 };
	rd_kafka_resp_err_t kerr;
	rd_kafka_t *rk = NULL;
	redisContext *rc = NULL;
	int wait = 0, ret = CTL_EXIT_FAIL;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0)
			wait = 1;
		else if (id == NULL && argv[i][0] != '-')
			id = argv[i];
		else
			id = NULL, i = argc;
	}
	if (id == NULL || *id == '\0') {
		fputs(ctl_usage, stderr);
		return CLI_EXIT_USAGE;
	}
	if ((conf = config_kafka_conf(cfg, CONFIG_KAFKA_CTL_PRODUCER, err, sizeof(err))) == NULL) {
		fprintf(stderr, "interestctl: %s\n", err);
		return CTL_EXIT_FAIL;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, ctl_erase_dr);
	rd_kafka_conf_set_opaque(conf, &dr);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		fprintf(stderr, "interestctl: kafka producer: %s\n", err);
		return CTL_EXIT_FAIL;
	}
	kerr = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(cfg->topic_events),
	    RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE(NULL, 0),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
	if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_flush(rk, CTL_DELIVERY_TIMEOUT_MS);
	else
		dr.err = kerr;
	if (dr.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "interestctl: erase request for %s not delivered to %s: %s\n", id,
		    cfg->topic_events, rd_kafka_err2str(dr.err));
		goto done;
	}
	printf("erase request for %s: topic %s partition %" PRId32 " offset %" PRId64 "\n", id,
	    cfg->topic_events, dr.partition, dr.offset);
	if (!wait) {
		ret = CTL_EXIT_OK;
		goto done;
	}
	if (cfg->ids_hmac_key != NULL) {
		if (hmac_pseudonym_once(cfg->ids_hmac_key, id, pseudo, err, sizeof(err)) != 0) {
			fprintf(stderr, "interestctl: %s\n", err);
			goto done;
		}
		id = pseudo;
	}
	snprintf(key, sizeof(key), "%s{%s}:erased", cfg->redis_prefix, id);
	if ((rc = sink_redis_connect(cfg, key, err, sizeof(err))) == NULL) {
		fprintf(stderr, "interestctl: %s\n", err);
		goto done;
	}
	for (int t = 0; t < CTL_ERASE_WAIT_S * 10; t++) {
		redisReply *r =
		    redisCommand(rc, "HMGET %s{%s}:erased partition offset", cfg->redis_prefix, id);

		if (r == NULL) {
			fprintf(stderr, "interestctl: redis: %s\n", rc->errstr);
			goto done;
		}
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
		    r->element[0]->type == REDIS_REPLY_STRING &&
		    r->element[1]->type == REDIS_REPLY_STRING &&
		    strtoll(r->element[0]->str, NULL, 10) == dr.partition &&
		    strtoll(r->element[1]->str, NULL, 10) >= dr.offset) {
			freeReplyObject(r);
			printf("erased: %s{%s}:erased holds the request\n", cfg->redis_prefix, id);
			ret = CTL_EXIT_OK;
			goto done;
		}
		freeReplyObject(r);
		nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
	}
	fprintf(stderr,
	    "interestctl: no erasure marker for %s within %d s (is interestd running?)\n", id,
	    CTL_ERASE_WAIT_S);
done:
	if (rc != NULL)
		redisFree(rc);
	rd_kafka_destroy(rk);
	return ret;
}

/* --- main ------------------------------------------------------------ */

/* A command-line setting applied over the config file, in the order given. */
struct ctl_setting {
	const char *key; /* NULL: value is a -o KEY=VALUE */
	const char *value;
};

/* 1 when a mode's arguments ask for help (the mode's own usage is ctl_usage). */
static int
ctl_wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return 1;
	return 0;
}

/*
 * Loads the file of -c, then applies the other options in their order. Returns 0,
 * or -1 after printing the error, which names the key (main exits 78).
 */
static int
ctl_configure(struct config *cfg, const char *path, const struct ctl_setting *set, int n_set)
{
	char err[CTL_ERR_MAX];

	if (path != NULL && config_load_file(cfg, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "interestctl: %s\n", err);
		return -1;
	}
	for (int i = 0; i < n_set; i++) {
		int rc = set[i].key != NULL
		    ? config_set(cfg, set[i].key, set[i].value, err, sizeof(err))
		    : config_set_kv(cfg, set[i].value, err, sizeof(err));

		if (rc < 0) {
			fprintf(stderr, "interestctl: %s\n", err);
			return -1;
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	enum { OPT_VERSION = 256 };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "redis-host", required_argument, NULL, 'H' },
		{ "redis-port", required_argument, NULL, 'p' },
		{ "redis-prefix", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct config *cfg = NULL;
	struct ctl_setting *set = calloc((size_t)argc, sizeof(*set));
	const char *mode, *config_path = NULL;
	int opt, n_set = 0, ret = CTL_EXIT_FAIL;

	if (set == NULL || (cfg = config_new()) == NULL) {
		fprintf(stderr, "interestctl: out of memory\n");
		goto done;
	}
	while ((opt = getopt_long(argc, argv, "+c:H:p:P:o:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'H':
			set[n_set++] = (struct ctl_setting){ "redis.host", optarg };
			break;
		case 'p':
			set[n_set++] = (struct ctl_setting){ "redis.port", optarg };
			break;
		case 'P':
			set[n_set++] = (struct ctl_setting){ "redis.prefix", optarg };
			break;
		case 'o':
			set[n_set++] = (struct ctl_setting){ NULL, optarg };
			break;
		case 'h':
			fputs(ctl_usage, stdout);
			ret = CTL_EXIT_OK;
			goto done;
		case OPT_VERSION:
			cli_version("interestctl");
			ret = CTL_EXIT_OK;
			goto done;
		default:
			fputs(ctl_usage, stderr);
			ret = CLI_EXIT_USAGE;
			goto done;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "interestctl: no MODE given\n");
		fputs(ctl_usage, stderr);
		ret = CLI_EXIT_USAGE;
		goto done;
	}
	mode = argv[optind];
	argc -= optind + 1;
	argv += optind + 1;
	if (ctl_wants_help(argc, argv)) {
		fputs(ctl_usage, stdout);
		ret = CTL_EXIT_OK;
		goto done;
	}
	/* Before OpenBLAS runs a kernel: a core the CPU cannot run would die with SIGILL. */
	if (blas_coretype_check("interestctl") != 0) {
		ret = CONFIG_EXIT_BAD;
		goto done;
	}
	/* -c first, so -H/-p/-P/-o override the file whatever their order. */
	if (ctl_configure(cfg, config_path, set, n_set) < 0) {
		ret = CONFIG_EXIT_BAD;
		goto done;
	}
	if (strcmp(mode, "user") == 0)
		ret = ctl_user(cfg, argc, argv);
	else if (strcmp(mode, "model") == 0)
		ret = ctl_model(argc, argv);
	else if (strcmp(mode, "replay") == 0)
		ret = ctl_replay(cfg, argc, argv);
	else if (strcmp(mode, "erase") == 0)
		ret = ctl_erase(cfg, argc, argv);
	else if (strcmp(mode, "report") == 0)
		ret = ctl_report_run(cfg, argc, argv);
	else {
		fprintf(stderr, "interestctl: unknown mode '%s'\n", mode);
		fputs(ctl_usage, stderr);
		ret = CLI_EXIT_USAGE;
	}
done:
	config_free(cfg);
	free(set);
	return ret;
}
