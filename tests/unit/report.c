/*
 * ctl/report.c: the SVG of a fixture user is well-formed (balanced tags,
 * quoted attributes, entities), draws one arc per weighted tier node in each
 * sunburst, names the tiers, has one timeline point and one marker per ring
 * event, ends the timeline at the current weights, escapes hostile ids, and
 * handles an empty state, HTML output and a catalog without weights.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "modelfile.h"
#include "report.h"
#include "state.h"

#define T0_MS     1700000000000LL
#define HOUR_MS   3600000LL
#define N_EVENTS  20
#define MAX_DEPTH 64

/*
 * 1 when doc is well-formed as far as this writer can go wrong: every tag
 * closed in order, attribute values quoted, '&' only in entities, one root.
 */
static int
balanced(const char *doc, char *why, size_t why_size)
{
	char stack[MAX_DEPTH][32];
	int depth = 0, roots = 0;
	const char *p = doc;

	while (*p != '\0') {
		if (*p == '&') {
			const char *semi = strchr(p, ';');
			if (semi == NULL || semi - p > 8 || semi - p < 3) {
				snprintf(why, why_size, "bare '&' at %td", p - doc);
				return 0;
			}
			p = semi + 1;
			continue;
		}
		if (*p == '>') {
			snprintf(why, why_size, "bare '>' at %td", p - doc);
			return 0;
		}
		if (*p != '<') {
			p++;
			continue;
		}
		if (strncmp(p, "<?", 2) == 0 || strncmp(p, "<!--", 4) == 0 ||
		    strncmp(p, "<!", 2) == 0) {
			const char *end =
			    strncmp(p, "<!--", 4) == 0 ? strstr(p, "-->") : strchr(p, '>');
			if (end == NULL) {
				snprintf(why, why_size, "unterminated declaration");
				return 0;
			}
			p = end + 1;
			continue;
		}
		{
			int closing = p[1] == '/', quotes = 0;
			const char *q = p + 1 + closing, *name = q;
			size_t len;

			while (*q != '\0' && *q != ' ' && *q != '>' && *q != '/' && *q != '\n')
				q++;
			len = (size_t)(q - name);
			if (len == 0 || len >= sizeof(stack[0])) {
				snprintf(why, why_size, "bad tag name at %td", p - doc);
				return 0;
			}
			while (*q != '\0' && (*q != '>' || quotes % 2)) {
				if (*q == '"')
					quotes++;
				else if (*q == '<' && quotes % 2 == 0) {
					snprintf(why, why_size, "'<' inside a tag at %td", q - doc);
					return 0;
				}
				q++;
			}
			if (*q == '\0') {
				snprintf(why, why_size, "unterminated tag at %td", p - doc);
				return 0;
			}
			if (closing) {
				if (depth == 0 || strlen(stack[depth - 1]) != len ||
				    strncmp(stack[depth - 1], name, len) != 0) {
					snprintf(why, why_size,
					    "</%.*s> does not close <%s> at %td", (int)len, name,
					    depth ? stack[depth - 1] : "(none)", p - doc);
					return 0;
				}
				depth--;
			} else if (q[-1] != '/') {
				if (depth == MAX_DEPTH) {
					snprintf(why, why_size, "too deep");
					return 0;
				}
				if (depth == 0)
					roots++;
				memcpy(stack[depth], name, len);
				stack[depth++][len] = '\0';
			} else if (depth == 0) {
				roots++;
			}
			p = q + 1;
		}
	}
	if (depth != 0 || roots != 1) {
		snprintf(why, why_size, "depth %d at the end, %d roots", depth, roots);
		return 0;
	}
	return 1;
}

/* Occurrences of needle in [from, to). */
static int
count_in(const char *from, const char *to, const char *needle)
{
	int n = 0;
	size_t len = strlen(needle);

	for (const char *p = from; (p = strstr(p, needle)) != NULL && p + len <= to; p += len)
		n++;
	return n;
}

/* Renders in into a malloc'd string; NULL on failure (reason printed). */
static char *
render(const struct report_input *in)
{
	char *buf = NULL, err[256];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return NULL;
	if (report_write_svg(f, in, err, sizeof(err)) < 0) {
		printf("FAIL render: %s\n", err);
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	return buf;
}

/* The [start, end) of the sunburst group of kind in svg. */
static int
sunburst(const char *svg, const char *kind, const char **start, const char **end)
{
	char id[64];

	snprintf(id, sizeof(id), "id=\"sunburst-%s\"", kind);
	*start = strstr(svg, id);
	*end = *start ? strstr(*start, "</g>") : NULL;
	return *start != NULL && *end != NULL;
}

/* Checks one sunburst: an arc-1/arc-2 per tier node of that level with weight > 0. */
static int
check_arcs(const char *svg, const struct model *m, const struct user_state *us, int long_term)
{
	const char *s, *e;
	int fails = 0, want1 = 0, want2 = 0;
	const char *kind = long_term ? "long-term" : "short-term";

	CHECK(sunburst(svg, kind, &s, &e), "%s sunburst present", kind);
	if (fails)
		return fails;
	for (uint16_t i = 0; i < us->n_tiers; i++) {
		float w = long_term ? us->tiers[i].w_long : us->tiers[i].w_short;
		char label[32], needle[64];

		if (!(w > 0))
			continue;
		if (model_node_level(m, us->tiers[i].node) == 1)
			want1++;
		else
			want2++;
		model_node_label(m, us->tiers[i].node, label, sizeof(label));
		snprintf(needle, sizeof(needle), "data-node=\"%s\" ", label);
		CHECK(count_in(s, e, needle) == 1, "%s: one arc for node %s (weight %g)", kind,
		    label, (double)w);
	}
	CHECK(count_in(s, e, "class=\"arc-1\"") == want1, "%s: %d tier-1 arcs (want %d)", kind,
	    count_in(s, e, "class=\"arc-1\""), want1);
	CHECK(count_in(s, e, "class=\"arc-2\"") == want2, "%s: %d tier-2 arcs (want %d)", kind,
	    count_in(s, e, "class=\"arc-2\""), want2);
	return fails;
}

/* Pairs in each tl-line's points attribute: one per ring event. */
static int
check_timeline(const char *svg, const struct report_timeline *tl)
{
	int fails = 0, lines = 0;

	for (const char *p = svg; (p = strstr(p, "class=\"tl-line\"")) != NULL; p++) {
		const char *pts = strstr(p, "points=\""), *end;
		int pairs = 0;

		if (pts == NULL)
			break;
		pts += 8;
		end = strchr(pts, '"');
		for (const char *q = pts; q < end; q++)
			pairs += *q == ',';
		CHECK(pairs == (int)tl->n_events, "timeline line %d: %d points for %u ring events",
		    lines, pairs, tl->n_events);
		lines++;
	}
	CHECK(lines == (int)tl->n_lines && tl->n_lines > 0, "%d timeline lines (want %u)", lines,
	    tl->n_lines);
	CHECK(count_in(svg, svg + strlen(svg), "class=\"tl-event\"") == (int)tl->n_events,
	    "one event marker per ring event (%u)", tl->n_events);
	return fails;
}

int
main(void)
{
	char dir[64], cpath[128], mpath[128], err[512], why[256];
	struct fixture_cat fc = { .n_items = 48, .dim = 8, .n_tier1 = 4, .k2 = 3, .seed = 11 };
	static const uint8_t types[4] = { MODEL_EV_VIEW, MODEL_EV_CLICK, MODEL_EV_LIKE,
		MODEL_EV_PURCHASE };
	struct report_timeline tl;
	struct report_input in;
	struct user_state *us = NULL, *empty = NULL;
	struct model *m = NULL, *cat = NULL;
	char *svg = NULL;
	int fails = 0;

	if (fixture_tmpdir(dir, sizeof(dir)) != 0) {
		printf("FAIL tmpdir\n");
		return 1;
	}
	snprintf(cpath, sizeof(cpath), "%s/r.icat", dir);
	snprintf(mpath, sizeof(mpath), "%s/r.imdl", dir);
	m = fixture_model(cpath, mpath, &fc, 8, err, sizeof(err));
	cat = model_load(cpath, err, sizeof(err));
	if (m == NULL || cat == NULL) {
		printf("FAIL fixture: %s\n", err);
		return 1;
	}
	us = state_new(model_hparams(m));
	empty = state_new(model_hparams(m));
	if (us == NULL || empty == NULL) {
		printf("FAIL state_new\n");
		return 1;
	}
	/* Mostly tier 1 (items 1, 5, 9, ...), some of the others; the ring keeps the last 8. */
	for (int k = 0; k < N_EVENTS; k++) {
		uint32_t item = (uint32_t)(k % 3 ? 1 + 4 * (k % 12) : (k * 7) % 48);
		int64_t ts = T0_MS + k * HOUR_MS;

		state_tiers_apply(us, m, item, types[k % 4], ts);
		state_ring_push(us, model_item_hash(m, item), ts, types[k % 4]);
		us->events_applied++;
	}
	/* An event of an item the model does not have: a ring entry, no weight. */
	state_ring_push(
	    us, model_id_hash("not-in-model", 12), T0_MS + N_EVENTS * HOUR_MS, MODEL_EV_VIEW);

	memset(&in, 0, sizeof(in));
	in.user_id = "fixture-user";
	in.us = us;
	in.m = m;
	in.updated_at_ms = T0_MS + 30 * HOUR_MS;
	svg = render(&in);
	CHECK(svg != NULL, "report rendered");
	if (svg == NULL)
		return 1;
	CHECK(strncmp(svg, "<?xml", 5) == 0 &&
		strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"") != NULL,
	    "an SVG document");
	CHECK(balanced(svg, why, sizeof(why)), "well-formed: %s",
	    balanced(svg, why, sizeof(why)) ? "yes" : why);
	fails += check_arcs(svg, m, us, 1);
	fails += check_arcs(svg, m, us, 0);
	for (uint16_t i = 0; i < us->n_tiers; i++) {
		char needle[64];
		size_t len;
		const char *name = model_node_name(m, us->tiers[i].node, &len);

		if (model_node_level(m, us->tiers[i].node) != 1 || !(us->tiers[i].w_long > 0))
			continue;
		snprintf(needle, sizeof(needle), ">%.*s</text>", (int)len, name);
		CHECK(
		    strstr(svg, needle) != NULL, "tier name '%.*s' in the legend", (int)len, name);
	}
	CHECK(strstr(svg, ">fixture-user</tspan>") != NULL, "user id shown");

	CHECK(report_timeline(m, us, &tl, err, sizeof(err)) == 0, "timeline computed");
	CHECK(tl.n_events == model_hparams(m)->ring_len && tl.n_events == us->ring_count,
	    "timeline over the whole ring (%u events)", tl.n_events);
	CHECK(tl.item[tl.n_events - 1] == -1, "the unknown item is a point without an item");
	CHECK(tl.with_history == 1, "older events added back");
	for (uint32_t l = 0; l < tl.n_lines; l++) {
		double now = state_tier_long(us, m, tl.node[l], us->t_ref_ms);
		double last = tl.w[l][tl.n_events - 1];

		CHECK(fabs(last - now) <= 1e-4 * now,
		    "line %u (node %u) ends at the current weight "
		    "(%.6g vs %.6g)",
		    l, tl.node[l], last, now);
		if (l > 0)
			CHECK(state_tier_long(us, m, tl.node[l - 1], us->t_ref_ms) >= now,
			    "lines ordered by long-term weight");
	}
	/* Tier 1 (node 1) got most events: it is the top line and rose over the ring. */
	CHECK(tl.n_lines > 0 && tl.node[0] == 1, "top line is node 1 (got %u)", tl.node[0]);
	CHECK(tl.w[0][0] < tl.w[0][tl.n_events - 1], "node 1 rose over the ring (%.4g -> %.4g)",
	    (double)tl.w[0][0], (double)tl.w[0][tl.n_events - 1]);
	fails += check_timeline(svg, &tl);
	free(svg);

	/* Hostile id: escaped, invalid UTF-8 replaced. */
	in.user_id = "a<b&\"c'\xff";
	svg = render(&in);
	CHECK(svg != NULL && strstr(svg, "a&lt;b&amp;&quot;c&#39;\xEF\xBF\xBD") != NULL &&
		strstr(svg, "a<b") == NULL,
	    "user id escaped");
	CHECK(svg != NULL && balanced(svg, why, sizeof(why)), "still well-formed");
	free(svg);

	/* HTML page. */
	in.user_id = "fixture-user";
	in.html = 1;
	svg = render(&in);
	CHECK(svg != NULL && strncmp(svg, "<!DOCTYPE html>", 15) == 0 &&
		strstr(svg, "<svg ") != NULL && strstr(svg, "<?xml") == NULL &&
		balanced(strstr(svg, "<html"), why, sizeof(why)),
	    "HTML page holding the SVG");
	free(svg);

	/* A user with nothing yet. */
	in.html = 0;
	in.us = empty;
	svg = render(&in);
	CHECK(svg != NULL && balanced(svg, why, sizeof(why)) && strstr(svg, "no weight") != NULL &&
		strstr(svg, "no recent events") != NULL && strstr(svg, "class=\"arc-") == NULL,
	    "empty state: drawn, no arcs");
	free(svg);

	/* A catalog has no hyper-parameters: refused with a reason. */
	{
		FILE *f = fopen("/dev/null", "w");

		in.m = cat;
		CHECK(f != NULL && report_write_svg(f, &in, err, sizeof(err)) == -1 &&
			strstr(err, "catalog") != NULL,
		    "catalog refused: %s", err);
		if (f != NULL)
			fclose(f);
	}

	state_free(us);
	state_free(empty);
	model_free(m);
	model_free(cat);
	unlink(cpath);
	unlink(mpath);
	rmdir(dir);
	printf("%s: %d failure(s)\n", fails ? "FAIL" : "ok", fails);
	return fails ? 1 : 0;
}
