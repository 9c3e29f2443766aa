/*
 * daemon/sink_redis.c, the ui:{u}:top JSON text (schemas/redis.md): what
 * sink_redis_top_json writes, sink_redis_top_parse (interestctl user) reads
 * back; \u escapes, a surrogate pair among them, come back as their UTF-8
 * bytes (interestctl's old reader cut each escape to one byte), \u0000 is
 * kept with the length, and malformed texts are refused.
 */
#include "fixture.h"
#include "modelfile.h"
#include "sink_redis.h"

#define TOP_MAX_PAIRS 16
#define TOP_MAX_ID    64

/* The pairs sink_redis_top_parse handed over. */
struct pairs {
	size_t n;
	char id[TOP_MAX_PAIRS][TOP_MAX_ID];
	size_t id_len[TOP_MAX_PAIRS];
	double score[TOP_MAX_PAIRS];
};

static void
collect(void *arg, const char *id, size_t id_len, double score)
{
	struct pairs *p = arg;

	if (p->n == TOP_MAX_PAIRS || id_len > TOP_MAX_ID)
		return;
	memcpy(p->id[p->n], id, id_len);
	p->id_len[p->n] = id_len;
	p->score[p->n] = score;
	p->n++;
}

/* Parses text into p; returns sink_redis_top_parse's result. */
static int
parse(const char *text, struct pairs *p, char *err, size_t err_size)
{
	memset(p, 0, sizeof(*p));
	return sink_redis_top_parse(text, strlen(text), collect, p, err, err_size);
}

static int
id_is(const struct pairs *p, size_t i, const char *want, size_t want_len)
{
	return i < p->n && p->id_len[i] == want_len && memcmp(p->id[i], want, want_len) == 0;
}

static int
check_escapes(void)
{
	struct pairs p;
	char err[256];
	int rc, fails = 0;

	rc = parse("[[\"caf\\u00e9\",0.5],[\"\\ud83d\\ude00-x\",null],[\"a\\\"b\\\\c\\/d\",1e-3],"
		   "[\"\\u20ac\",-2]]",
	    &p, err, sizeof(err));
	CHECK(rc == 0 && p.n == 4, "four pairs read%s%s", rc == 0 ? "" : ": ", rc == 0 ? "" : err);
	CHECK(id_is(&p, 0, "caf\xc3\xa9", 5), "\\u00e9 is UTF-8 c3 a9, not the byte e9");
	CHECK(id_is(&p, 1, "\xf0\x9f\x98\x80-x", 6),
	    "surrogate pair \\ud83d\\ude00 is U+1F600, UTF-8 f0 9f 98 80");
	CHECK(id_is(&p, 2, "a\"b\\c/d", 7), "\\\" \\\\ \\/ unescaped");
	CHECK(id_is(&p, 3, "\xe2\x82\xac", 3), "\\u20ac is UTF-8 e2 82 ac");
	CHECK(p.score[0] == 0.5 && isnan(p.score[1]) && p.score[2] == 1e-3 && p.score[3] == -2.0,
	    "scores 0.5, null as NAN, 1e-3, integer -2");

	rc = parse("[[\"a\\u0000b\",1]]", &p, err, sizeof(err));
	CHECK(rc == 0 && id_is(&p, 0, "a\0b", 3), "\\u0000 kept inside an id of length 3");
	rc = parse("[]", &p, err, sizeof(err));
	CHECK(rc == 0 && p.n == 0, "an empty top-N is no pair");
	return fails;
}

static int
check_malformed(void)
{
	static const char *const bad[] = {
		"[[\"a\",1]",        /* truncated */
		"{\"a\":1}",         /* not an array */
		"[[\"\\ud83d\",1]]", /* lone surrogate */
		"[[\"a\",1]] junk",  /* trailing text */
	};
	struct pairs p;
	char err[256];
	int fails = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(parse(bad[i], &p, err, sizeof(err)) == -1 && p.n == 0,
		    "refused before any pair: %s (%s)", bad[i], err);
	CHECK(parse("[[\"a\",1],[\"b\"],[\"c\",2]]", &p, err, sizeof(err)) == -1 && p.n == 1 &&
		id_is(&p, 0, "a", 1),
	    "a bad second element stops after the first pair (%s)", err);
	CHECK(parse("[[\"a\",\"1\"]]", &p, err, sizeof(err)) == -1 && p.n == 0,
	    "a string score is refused (%s)", err);
	return fails;
}

/* What the sink writes for a fixture model's items, read back. */
static int
check_round_trip(void)
{
	struct fixture_cat fc = { 12, 8, 3, 2, 7 };
	uint32_t items[] = { 3, 0, 11, 5 };
	float scores[] = { 1.5f, 0.25f, NAN, -0.125f };
	char dir[64], path[128], err[256];
	struct model *m;
	struct pairs p;
	size_t len;
	char *text;
	int same = 1, fails = 0;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0) {
		CHECK(0, "temporary directory");
		return fails;
	}
	snprintf(path, sizeof(path), "%s/c.icat", dir);
	m = fixture_write_catalog(path, &fc, err, sizeof(err)) == 0
	    ? model_load(path, err, sizeof(err))
	    : NULL;
	CHECK(m != NULL, "fixture catalog%s%s", m != NULL ? "" : ": ", m != NULL ? "" : err);
	if (m == NULL)
		goto done;
	text = sink_redis_top_json(m, items, scores, 4, &len);
	CHECK(text != NULL && parse(text, &p, err, sizeof(err)) == 0 && p.n == 4,
	    "sink_redis_top_json's text reads back: %s", text != NULL ? text : "(ENOMEM)");
	for (size_t i = 0; i < 4 && i < p.n; i++) {
		size_t id_len;
		const char *id = model_item_id(m, items[i], &id_len);

		same = same && id_is(&p, i, id, id_len) &&
		    (isnan(scores[i]) ? isnan(p.score[i]) : p.score[i] == (double)scores[i]);
	}
	CHECK(same, "same ids, same scores (exact in %%.6g), non-finite as null");
	free(text);
	model_free(m);
done:
	unlink(path);
	rmdir(dir);
	return fails;
}

int
main(void)
{
	int fails = check_escapes() + check_malformed() + check_round_trip();

	printf("%s: %d failed\n", fails ? "FAIL" : "PASS", fails);
	return fails ? 1 : 0;
}
