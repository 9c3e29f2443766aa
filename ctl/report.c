/*
 * The user report as SVG, written by hand: two sunbursts of the tier
 * weights (long- and short-term), a legend with the tier names, and a line
 * chart of the top tier-1 long-term weights over the ring's events. Pure
 * code over a decoded user state and the model; interestctl does the I/O.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modelfile.h"
#include "report.h"
#include "state.h"

/* Canvas and layout, in SVG user units (pixels). */
#define RP_WIDTH           1200
#define RP_HEIGHT          960
#define RP_FONT            "DejaVu Sans, Helvetica, Arial, sans-serif"
#define RP_CHAR_EM         0.6   /* average glyph width / font size, for truncation */
#define RP_SUN_R           165.0 /* sunburst outer radius */
#define RP_SUN_HOLE        0.30  /* inner hole, fraction of the radius */
#define RP_SUN_MID         0.66  /* tier-1 / tier-2 boundary, fraction of the radius */
#define RP_SUN_Y           300.0
#define RP_SUN_LONG_X      195.0
#define RP_SUN_SHORT_X     565.0
#define RP_MAX_SPAN        (2.0 * M_PI - 1e-4) /* a full ring is drawn as an almost-full one */
#define RP_LEGEND_X        765.0
#define RP_LEGEND_Y        112.0
#define RP_LEGEND_BOTTOM   478.0
#define RP_LEGEND_ROW      17.0
#define RP_LEGEND_CHILDREN 3 /* tier-2 rows under each tier-1 row at most */
#define RP_PLOT_X0         70.0
#define RP_PLOT_X1         930.0
#define RP_PLOT_Y0         550.0
#define RP_PLOT_Y1         755.0
#define RP_MARK_Y          782.0
#define RP_MAX_BACK_DECAY  1e3 /* larger: history cannot be decayed back reliably */

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Categorical colours of tier-1 nodes (by index, wrapping); the catalog map uses the same. */
static const uint32_t rp_palette[16] = {
	0x1f77b4,
	0xff7f0e,
	0x2ca02c,
	0xd62728,
	0x9467bd,
	0x8c564b,
	0xe377c2,
	0x17becf,
	0xbcbd22,
	0x393b79,
	0xe7ba52,
	0x637939,
	0xad494a,
	0x7b4173,
	0x6b6ecf,
	0x525252,
};

static const char rp_type_letter[MODEL_N_TYPES] = { 'I', 'V', 'C', 'L', 'A', 'P', 'S', 'D' };
static const uint32_t rp_type_color[MODEL_N_TYPES] = {
	0xa0a0a0,
	0x6baed6,
	0x2171b5,
	0xe6550d,
	0xfd8d3c,
	0x31a354,
	0x756bb1,
	0x252525,
};

/* What the drawing code shares: the inputs and per-node weights. */
struct rp {
	FILE *out;
	const struct model *m;
	const struct user_state *us;
	uint32_t n_nodes, n_tier1;
	float *wl, *ws;  /* [n_nodes] current long/short weights, 0 when absent */
	uint8_t *has;    /* [n_nodes] 1 when the node is in the user's table */
	uint32_t *order; /* [n_tier1] tier-1 nodes, by long then short weight */
	uint32_t *kids;  /* [n_nodes] scratch: one node's children */
	uint32_t n_order;
	double sum_long, sum_short; /* of the tier-1 weights drawn */
};

/* --- text ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (XML-allowed character), 0 if invalid. */
static size_t
utf8_seq(const unsigned char *s, size_t len)
{
	size_t n;

	if (s[0] < 0x80)
		return (s[0] >= 0x20 || s[0] == '\t' || s[0] == '\n') ? 1 : 0;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		n = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		n = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		n = 4;
	else
		return 0;
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0) ||
	    (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))
		return 0; /* overlong, surrogate, beyond U+10FFFF */
	if (s[0] == 0xEF && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF))
		return 0; /* U+FFFE, U+FFFF: not XML characters */
	return n;
}

/* Characters in s[0..len) as xml_put counts them. */
static size_t
utf8_chars(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n = 0;

	while (i < len) {
		size_t k = utf8_seq(p + i, len - i);
		i += k ? k : 1;
		n++;
	}
	return n;
}

/*
 * Writes s[0..len) as XML text or attribute content: & < > " ' escaped,
 * invalid UTF-8 and control characters as U+FFFD, at most max_chars
 * characters with an ellipsis marking a cut (0: no limit).
 */
static void
xml_put(FILE *out, const char *s, size_t len, size_t max_chars)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, nch = 0, keep = SIZE_MAX;
	int cut = 0;

	if (s == NULL)
		return;
	if (max_chars > 0 && utf8_chars(s, len) > max_chars) {
		cut = 1;
		keep = max_chars > 1 ? max_chars - 1 : 0;
	}
	while (i < len && nch < keep) {
		size_t k = utf8_seq(p + i, len - i);

		if (k == 0) {
			fputs("\xEF\xBF\xBD", out);
			k = 1;
		} else if (k > 1) {
			fwrite(p + i, 1, k, out);
		} else {
			switch (p[i]) {
			case '&':
				fputs("&amp;", out);
				break;
			case '<':
				fputs("&lt;", out);
				break;
			case '>':
				fputs("&gt;", out);
				break;
			case '"':
				fputs("&quot;", out);
				break;
			case '\'':
				fputs("&#39;", out);
				break;
			default:
				fputc(p[i], out);
				break;
			}
		}
		i += k;
		nch++;
	}
	if (cut)
		fputs("\xE2\x80\xA6", out);
}

static void
xml_puts(FILE *out, const char *s, size_t max_chars)
{
	xml_put(out, s, s ? strlen(s) : 0, max_chars);
}

/* Characters of font_px text that fit width_px. */
static size_t
fit_chars(double width_px, double font_px)
{
	double n = width_px / (RP_CHAR_EM * font_px);

	return n < 2 ? 2 : (size_t)n;
}

/* "YYYY-MM-DD HH:MM UTC" of ms since the epoch. */
static void
fmt_time(int64_t ms, char *buf, size_t size)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	if (ms == STATE_NO_TIME || gmtime_r(&s, &tm) == NULL) {
		snprintf(buf, size, "?");
		return;
	}
	snprintf(buf, size, "%04d-%02d-%02d %02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min);
}

/* A half-life in the largest whole unit: "30 d", "1 d", "6 h", "90 s". */
static void
fmt_half_life(double s, char *buf, size_t size)
{
	if (s >= 86400 && fmod(s, 86400) < 1)
		snprintf(buf, size, "%.0f d", s / 86400);
	else if (s >= 3600)
		snprintf(buf, size, "%.3g h", s / 3600);
	else
		snprintf(buf, size, "%.3g s", s);
}

/* --- colours ------------------------------------------------------------- */

/* Colour of a node: its tier-1 colour, tier-2 nodes mixed with white by child index. */
static uint32_t
node_color(const struct model *m, uint32_t node)
{
	uint32_t t1 = model_node_level(m, node) == 1 ? node : model_node_parent(m, node);
	uint32_t c = rp_palette[model_node_index(m, t1) % 16], out = 0;
	double mix;

	if (node == t1)
		return c;
	mix = 0.28 + 0.16 * (double)(model_node_index(m, node) % 4);
	for (int sh = 16; sh >= 0; sh -= 8) {
		double v = (double)((c >> sh) & 0xff);
		out |= (uint32_t)lround(v + (255.0 - v) * mix) << sh;
	}
	return out;
}

/* Black or white text on background c. */
static const char *
text_on(uint32_t c)
{
	double lum = 0.299 * ((c >> 16) & 0xff) + 0.587 * ((c >> 8) & 0xff) + 0.114 * (c & 0xff);

	return lum > 150 ? "#1a1a1a" : "#ffffff";
}

/* --- weights ------------------------------------------------------------- */

static int
rp_order_cmp(const void *a, const void *b, const struct rp *rp)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	if (rp->wl[x] != rp->wl[y])
		return rp->wl[x] > rp->wl[y] ? -1 : 1;
	if (rp->ws[x] != rp->ws[y])
		return rp->ws[x] > rp->ws[y] ? -1 : 1;
	return x < y ? -1 : x > y;
}

/* Insertion sort by rp_order_cmp (qsort has no context argument in C11). */
static void
rp_sort(uint32_t *v, size_t n, const struct rp *rp)
{
	for (size_t i = 1; i < n; i++) {
		uint32_t x = v[i];
		size_t j = i;

		while (j > 0 && rp_order_cmp(&x, &v[j - 1], rp) < 0) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}

/* Weight of a tier-1 node for layout: its own or its children's sum, whichever is larger. */
static double
tier1_extent(const struct rp *rp, const float *w, uint32_t t1)
{
	double sum = 0;

	for (uint32_t node = rp->n_tier1; node < rp->n_nodes; node++)
		if (model_node_parent(rp->m, node) == t1 && w[node] > 0)
			sum += w[node];
	return w[t1] > sum ? w[t1] : sum;
}

static int
rp_init(struct rp *rp, FILE *out, const struct model *m, const struct user_state *us)
{
	memset(rp, 0, sizeof(*rp));
	rp->out = out;
	rp->m = m;
	rp->us = us;
	rp->n_nodes = model_n_nodes(m);
	rp->n_tier1 = model_n_tier1(m);
	rp->wl = calloc(rp->n_nodes, sizeof(float));
	rp->ws = calloc(rp->n_nodes, sizeof(float));
	rp->has = calloc(rp->n_nodes, 1);
	rp->order = calloc(rp->n_tier1, sizeof(uint32_t));
	rp->kids = calloc(rp->n_nodes, sizeof(uint32_t));
	if (rp->wl == NULL || rp->ws == NULL || rp->has == NULL || rp->order == NULL ||
	    rp->kids == NULL)
		return -1;
	for (uint16_t i = 0; i < us->n_tiers; i++) {
		const struct tier_weight *tw = &us->tiers[i];

		if (tw->node >= rp->n_nodes)
			continue; /* a state from another tier tree: nothing to draw for it */
		rp->wl[tw->node] = tw->w_long;
		rp->ws[tw->node] = tw->w_short;
		rp->has[tw->node] = 1;
	}
	for (uint32_t t1 = 0; t1 < rp->n_tier1; t1++) {
		double el = tier1_extent(rp, rp->wl, t1), es = tier1_extent(rp, rp->ws, t1);

		if (el > 0 || es > 0)
			rp->order[rp->n_order++] = t1;
		rp->sum_long += el > 0 ? el : 0;
		rp->sum_short += es > 0 ? es : 0;
	}
	rp_sort(rp->order, rp->n_order, rp);
	return 0;
}

static void
rp_fini(struct rp *rp)
{
	free(rp->wl);
	free(rp->ws);
	free(rp->has);
	free(rp->order);
	free(rp->kids);
}

/* --- timeline ------------------------------------------------------------ */

int
report_timeline(const struct model *m, const struct user_state *us, struct report_timeline *tl,
    char *errstr, size_t errstr_size)
{
	const struct model_hparams *hp = model_has_weights(m) ? model_hparams(m) : NULL;
	struct user_state *rs = NULL;
	int64_t t_at[REPORT_RING_MAX];
	float prior[REPORT_TOP_TIER1];
	uint32_t start, n_nodes = model_n_nodes(m);

	memset(tl, 0, sizeof(*tl));
	if (hp == NULL) {
		snprintf(
		    errstr, errstr_size, "report: the model has no hyper-parameters (a catalog?)");
		return -1;
	}
	/* The top tier-1 nodes by current long-term weight. */
	for (uint16_t i = 0; i < us->n_tiers; i++) {
		const struct tier_weight *tw = &us->tiers[i];
		uint32_t k;

		if (tw->node >= n_nodes || model_node_level(m, tw->node) != 1 || !(tw->w_long > 0))
			continue;
		for (k = tl->n_lines; k > 0; k--) {
			const struct tier_weight *prev = NULL;

			for (uint16_t j = 0; j < us->n_tiers; j++)
				if (us->tiers[j].node == tl->node[k - 1])
					prev = &us->tiers[j];
			if (prev->w_long >= tw->w_long)
				break;
			if (k < REPORT_TOP_TIER1)
				tl->node[k] = tl->node[k - 1];
		}
		if (k < REPORT_TOP_TIER1) {
			tl->node[k] = tw->node;
			if (tl->n_lines < REPORT_TOP_TIER1)
				tl->n_lines++;
		}
	}
	rs = state_new(hp);
	if (rs == NULL) {
		snprintf(errstr, errstr_size, "report: out of memory");
		return -1;
	}
	start = us->ring_count > REPORT_RING_MAX ? us->ring_count - REPORT_RING_MAX : 0;
	tl->n_events = us->ring_count - start;
	for (uint32_t j = 0; j < tl->n_events; j++) {
		const struct ring_event *re = state_ring_get(us, (uint16_t)(start + j));
		int32_t item = model_item_lookup_hash(m, re->item_hash);

		if (item >= 0)
			state_tiers_apply(rs, m, (uint32_t)item, re->type, re->ts_ms);
		tl->item[j] = item;
		tl->ts_ms[j] = re->ts_ms;
		tl->type[j] = re->type;
		t_at[j] = rs->t_ref_ms != STATE_NO_TIME ? rs->t_ref_ms : re->ts_ms;
		for (uint32_t l = 0; l < tl->n_lines; l++)
			tl->w[l][j] = state_tier_long(rs, m, tl->node[l], rs->t_ref_ms);
	}
	/*
	 * Events before the ring: what the current weight holds beyond the
	 * ring's replay, decayed back to each event (exact while no entry was
	 * evicted and events came in time order; clamped at 0 otherwise).
	 */
	tl->with_history =
	    tl->n_events > 0 && rs->t_ref_ms == us->t_ref_ms && us->t_ref_ms != STATE_NO_TIME;
	for (uint32_t l = 0; l < tl->n_lines && tl->with_history; l++) {
		double now = state_tier_long(us, m, tl->node[l], us->t_ref_ms);
		double p = now - (double)state_tier_long(rs, m, tl->node[l], rs->t_ref_ms);

		prior[l] = p > 1e-6 * now ? (float)p : 0.0f;
		for (uint32_t j = 0; j < tl->n_events; j++) {
			double age_s = ((double)us->t_ref_ms - (double)t_at[j]) / 1000.0;

			if (exp2(age_s / (double)hp->half_life_long_s) > RP_MAX_BACK_DECAY)
				tl->with_history = 0;
		}
	}
	for (uint32_t l = 0; l < tl->n_lines && tl->with_history; l++)
		for (uint32_t j = 0; j < tl->n_events; j++) {
			double age_s = ((double)us->t_ref_ms - (double)t_at[j]) / 1000.0;

			tl->w[l][j] +=
			    (float)(prior[l] * exp2(age_s / (double)hp->half_life_long_s));
		}
	state_free(rs);
	return 0;
}

/* --- drawing ------------------------------------------------------------- */

/* An annular sector from angle a0 to a1 (radians, clockwise from 12 o'clock). */
static void
put_sector(FILE *out, double cx, double cy, double r0, double r1, double a0, double a1)
{
	double s0 = sin(a0), c0 = -cos(a0), s1 = sin(a1), c1 = -cos(a1);
	int large = a1 - a0 > M_PI;

	fprintf(out, "M%.2f %.2fA%.2f %.2f 0 %d 1 %.2f %.2fL%.2f %.2fA%.2f %.2f 0 %d 0 %.2f %.2fZ",
	    cx + r1 * s0, cy + r1 * c0, r1, r1, large, cx + r1 * s1, cy + r1 * c1, cx + r0 * s1,
	    cy + r0 * c1, r0, r0, large, cx + r0 * s0, cy + r0 * c0);
}

/* One weighted arc with a tooltip: <path class=cls data-node data-weight>. */
static void
put_arc(const struct rp *rp, const char *cls, uint32_t node, float w, double share, double cx,
    double cy, double r0, double r1, double a0, double a1)
{
	char label[32];
	size_t len;
	const char *name = model_node_name(rp->m, node, &len);

	if (a1 - a0 > RP_MAX_SPAN)
		a1 = a0 + RP_MAX_SPAN;
	model_node_label(rp->m, node, label, sizeof(label));
	fprintf(rp->out,
	    "<path class=\"%s\" data-node=\"%s\" data-weight=\"%.6g\" fill=\"#%06x\" d=\"", cls,
	    label, (double)w, node_color(rp->m, node));
	put_sector(rp->out, cx, cy, r0, r1, a0, a1);
	fprintf(rp->out, "\"><title>%s ", label);
	xml_put(rp->out, name, len, 0);
	fprintf(rp->out, ": %.4g (%.1f%%)</title></path>\n", (double)w, 100.0 * share);
}

/* A label at the middle of a sector when the arc is long enough for it. */
static void
put_arc_label(const struct rp *rp, uint32_t node, double share, double cx, double cy, double r0,
    double r1, double a0, double a1, double font_px, int bold)
{
	double am = (a0 + a1) / 2, rm = (r0 + r1) / 2, arc_px = (a1 - a0) * rm;
	char label[32], text[48];
	size_t n;

	model_node_label(rp->m, node, label, sizeof(label));
	if (arc_px >= 6.5 * font_px && share >= 0.005)
		snprintf(text, sizeof(text), "%s \xC2\xB7 %.0f%%", label, 100.0 * share);
	else
		snprintf(text, sizeof(text), "%s", label);
	n = utf8_chars(text, strlen(text));
	if (arc_px < (double)n * RP_CHAR_EM * font_px + 4 || r1 - r0 < font_px + 2)
		return;
	fprintf(rp->out,
	    "<text class=\"arc-label\" x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" "
	    "text-anchor=\"middle\""
	    " dominant-baseline=\"central\" fill=\"%s\"%s>%s</text>\n",
	    cx + rm * sin(am), cy - rm * cos(am), font_px, text_on(node_color(rp->m, node)),
	    bold ? " font-weight=\"bold\"" : "", text);
}

/* The children of t1 with w > 0 into rp->kids, heaviest first; returns their count. */
static uint32_t
rp_children(const struct rp *rp, const float *w, uint32_t t1)
{
	uint32_t n = 0;

	for (uint32_t node = rp->n_tier1; node < rp->n_nodes; node++) {
		uint32_t j;

		if (model_node_parent(rp->m, node) != t1 || !(w[node] > 0))
			continue;
		for (j = n; j > 0 && w[rp->kids[j - 1]] < w[node]; j--)
			rp->kids[j] = rp->kids[j - 1];
		rp->kids[j] = node;
		n++;
	}
	return n;
}

/*
 * A sunburst of weights w (long or short): tier-1 nodes inside, in rp->order,
 * each spanning its share of total; its tier-2 nodes outside, within its span.
 */
static void
put_sunburst(const struct rp *rp, const float *w, double total, const char *kind, double cx,
    double cy, const char *caption, const char *hl)
{
	double r0 = RP_SUN_R * RP_SUN_HOLE, r1 = RP_SUN_R * RP_SUN_MID, r2 = RP_SUN_R, a = 0;
	FILE *out = rp->out;

	fprintf(out, "<g class=\"sunburst\" id=\"sunburst-%s\">\n", kind);
	fprintf(out,
	    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"16\" font-weight=\"bold\" "
	    "text-anchor=\"middle\">"
	    "%s</text>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#555\" "
	    "text-anchor=\"middle\">half-life %s, tier-1 total %.3g</text>\n",
	    cx, cy - r2 - 30, caption, cx, cy - r2 - 12, hl, total);
	if (!(total > 0)) {
		fprintf(out,
		    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"none\" stroke=\"#e4e4e4\" "
		    "stroke-width=\"%.1f\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" "
		    "fill=\"#777\" text-anchor=\"middle\">no weight</text>\n</g>\n",
		    cx, cy, (r0 + r2) / 2, r2 - r0, cx, cy + 4);
		return;
	}
	for (uint32_t i = 0; i < rp->n_order; i++) {
		uint32_t t1 = rp->order[i], n_kids;
		double ext = tier1_extent(rp, w, t1), span, b = a;

		if (!(ext > 0))
			continue;
		span = 2 * M_PI * ext / total;
		if (rp->has[t1] && w[t1] > 0) {
			put_arc(rp, "arc-1", t1, w[t1], w[t1] / total, cx, cy, r0, r1, a, a + span);
			put_arc_label(rp, t1, w[t1] / total, cx, cy, r0, r1, a, a + span, 12, 1);
		}
		n_kids = rp_children(rp, w, t1);
		for (uint32_t k = 0; k < n_kids; k++) {
			uint32_t node = rp->kids[k];
			double cs = span * w[node] / ext;

			put_arc(
			    rp, "arc-2", node, w[node], w[node] / total, cx, cy, r1, r2, b, b + cs);
			put_arc_label(rp, node, 0, cx, cy, r1, r2, b, b + cs, 10, 0);
			b += cs;
		}
		a += span;
	}
	fprintf(out,
	    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\">"
	    "tier 1 inside</text>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\" "
	    "text-anchor=\"middle\">tier 2 outside</text>\n</g>\n",
	    cx, cy - 3, cx, cy + 12);
}

/* One legend row: swatch, label, name, long and short share. */
static void
put_legend_row(const struct rp *rp, uint32_t node, double y, int indent)
{
	FILE *out = rp->out;
	double x = RP_LEGEND_X + (indent ? 16 : 0), font = indent ? 11 : 12.5;
	double name_x = RP_LEGEND_X + 70, name_w = RP_WIDTH - 130 - name_x;
	char label[32];
	size_t len;
	const char *name = model_node_name(rp->m, node, &len);

	model_node_label(rp->m, node, label, sizeof(label));
	fprintf(out,
	    "<g class=\"legend-row\" data-node=\"%s\"><rect x=\"%.1f\" y=\"%.1f\" width=\"12\" "
	    "height=\"12\" rx=\"2\" fill=\"#%06x\"/>",
	    label, x, y - 10, node_color(rp->m, node));
	fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.1f\"%s>%s</text>", x + 17, y, font,
	    indent ? " fill=\"#444\"" : " font-weight=\"bold\"", label);
	fprintf(out, "<text class=\"tier-name\" x=\"%.1f\" y=\"%.1f\" font-size=\"%.1f\"%s>",
	    name_x + (indent ? 12 : 0), y, font, indent ? " fill=\"#444\"" : "");
	xml_put(out, name, len, fit_chars(name_w - (indent ? 12 : 0), font));
	fprintf(out, "</text>");
	for (int k = 0; k < 2; k++) {
		const float *w = k == 0 ? rp->wl : rp->ws;
		double total = k == 0 ? rp->sum_long : rp->sum_short;

		fprintf(out,
		    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.1f\" text-anchor=\"end\"%s>",
		    RP_WIDTH - (k == 0 ? 80.0 : 20.0), y, font, indent ? " fill=\"#444\"" : "");
		if (rp->has[node] && total > 0 && w[node] > 0)
			fprintf(out, "%.1f%%", 100.0 * w[node] / total);
		else
			fprintf(out, "\xE2\x80\x93");
		fprintf(out, "</text>");
	}
	fprintf(out, "</g>\n");
}

static void
put_legend(const struct rp *rp)
{
	FILE *out = rp->out;
	double y = RP_LEGEND_Y;
	uint32_t i;

	fprintf(out,
	    "<g class=\"legend\">\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#555\">tier"
	    "</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#555\">name (model TNAM)"
	    "</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#555\" "
	    "text-anchor=\"end\">long</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" "
	    "fill=\"#555\" text-anchor=\"end\">short</text>\n"
	    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ccc\"/>\n",
	    RP_LEGEND_X, y - 22, RP_LEGEND_X + 70, y - 22, RP_WIDTH - 80.0, y - 22, RP_WIDTH - 20.0,
	    y - 22, RP_LEGEND_X, y - 16, RP_WIDTH - 20.0, y - 16);
	for (i = 0; i < rp->n_order && y <= RP_LEGEND_BOTTOM; i++) {
		uint32_t t1 = rp->order[i], n_kids = rp_children(rp, rp->wl, t1);

		put_legend_row(rp, t1, y, 0);
		y += RP_LEGEND_ROW + 1;
		for (uint32_t k = 0; k < n_kids && k < RP_LEGEND_CHILDREN; k++) {
			if (y > RP_LEGEND_BOTTOM)
				break;
			put_legend_row(rp, rp->kids[k], y, 1);
			y += RP_LEGEND_ROW - 1;
		}
		y += 4;
	}
	if (i < rp->n_order)
		fprintf(out,
		    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#777\">and %" PRIu32
		    " more tier-1 interests</text>\n",
		    RP_LEGEND_X, y, rp->n_order - i);
	fprintf(out, "</g>\n");
}

/* A step of 1, 2 or 5 times a power of ten giving about four intervals up to vmax. */
static double
nice_step(double vmax)
{
	double raw = vmax / 4, mag = pow(10, floor(log10(raw))), f = raw / mag;

	return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void
put_timeline(const struct rp *rp, const struct report_timeline *tl)
{
	const struct model_hparams *hp = model_hparams(rp->m);
	FILE *out = rp->out;
	double vmax = 0, step, top, dx;
	char t0[48], t1[48], hl[32];

	fmt_half_life(hp->half_life_long_s, hl, sizeof(hl));
	fprintf(out,
	    "<g class=\"timeline\">\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"16\" "
	    "font-weight=\"bold\">How it moved: long-term weight (half-life %s) of the top %" PRIu32
	    " tier-1 interests over the last %" PRIu32 " events</text>\n",
	    RP_PLOT_X0 - 46, RP_PLOT_Y0 - 40, hl, tl->n_lines, tl->n_events);
	if (tl->n_events == 0 || tl->n_lines == 0) {
		fprintf(out,
		    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" fill=\"#777\">no recent events "
		    "in "
		    "the user's ring</text>\n</g>\n",
		    RP_PLOT_X0, RP_PLOT_Y0 + 40);
		return;
	}
	fmt_time(tl->ts_ms[0], t0, sizeof(t0));
	fmt_time(tl->ts_ms[tl->n_events - 1], t1, sizeof(t1));
	fprintf(out,
	    "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#555\">events from %s to %s, in "
	    "arrival order; %s</text>\n",
	    RP_PLOT_X0 - 46, RP_PLOT_Y0 - 22, t0, t1,
	    tl->with_history ? "older events included, decayed to each point"
			     : "these events alone, replayed from an empty table");
	for (uint32_t l = 0; l < tl->n_lines; l++)
		for (uint32_t j = 0; j < tl->n_events; j++)
			if (tl->w[l][j] > vmax)
				vmax = tl->w[l][j];
	if (!(vmax > 0))
		vmax = 1;
	step = nice_step(vmax);
	top = ceil(vmax / step - 1e-9) * step;
	dx = (RP_PLOT_X1 - RP_PLOT_X0) / tl->n_events;
#define TL_X(j) (RP_PLOT_X0 + ((double)(j) + 0.5) * dx)
#define TL_Y(v) (RP_PLOT_Y1 - ((v) > 0 ? (double)(v) : 0.0) / top * (RP_PLOT_Y1 - RP_PLOT_Y0))
	for (double v = 0; v <= top + step / 2; v += step)
		fprintf(out,
		    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/><text "
		    "x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\" "
		    "text-anchor=\"end\">%g</text>\n",
		    RP_PLOT_X0, TL_Y(v), RP_PLOT_X1, TL_Y(v), v == 0 ? "#999" : "#e6e6e6",
		    RP_PLOT_X0 - 6, TL_Y(v) + 4, v);
	for (uint32_t j = 0; j < tl->n_events; j++)
		fprintf(out,
		    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>\n",
		    TL_X(j), RP_PLOT_Y0, TL_X(j), RP_MARK_Y - 10);
	for (uint32_t l = 0; l < tl->n_lines; l++) {
		char label[32];
		uint32_t c = node_color(rp->m, tl->node[l]);

		model_node_label(rp->m, tl->node[l], label, sizeof(label));
		fprintf(out,
		    "<polyline class=\"tl-line\" data-node=\"%s\" fill=\"none\" stroke=\"#%06x\" "
		    "stroke-width=\"2.5\" stroke-linejoin=\"round\" points=\"",
		    label, c);
		for (uint32_t j = 0; j < tl->n_events; j++)
			fprintf(out, "%s%.1f,%.1f", j ? " " : "", TL_X(j), TL_Y(tl->w[l][j]));
		fprintf(out, "\"/>\n");
		for (uint32_t j = 0; j < tl->n_events; j++) {
			int hit = tl->item[j] >= 0 &&
			    model_item_tier1(rp->m, (uint32_t)tl->item[j]) == tl->node[l];

			fprintf(out,
			    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"#%06x\"%s/>\n",
			    TL_X(j), TL_Y(tl->w[l][j]), hit ? "4.5" : "2", c,
			    hit ? " stroke=\"#fff\" stroke-width=\"1.5\"" : "");
		}
	}
	/* Event markers: type as a coloured letter, the item's title below. */
	for (uint32_t j = 0; j < tl->n_events; j++) {
		uint8_t ty = tl->type[j] < MODEL_N_TYPES ? tl->type[j] : 0;
		const char *title = NULL;
		size_t tlen = 0;
		char when[48];

		if (tl->item[j] >= 0)
			title = model_item_title(rp->m, (uint32_t)tl->item[j], &tlen);
		fmt_time(tl->ts_ms[j], when, sizeof(when));
		fprintf(out, "<g class=\"tl-event\" data-type=\"%s\"><title>%s ",
		    model_event_type_name(ty), model_event_type_name(ty));
		if (title != NULL)
			xml_put(out, title, tlen, 0);
		else
			fputs("(item not in the model)", out);
		fprintf(out,
		    ", %s</title><circle cx=\"%.1f\" cy=\"%.1f\" r=\"9\" fill=\"#%06x\"/><text "
		    "x=\"%.1f\" y=\"%.1f\" font-size=\"10\" font-weight=\"bold\" fill=\"#fff\" "
		    "text-anchor=\"middle\">%c</text></g>\n",
		    when, TL_X(j), RP_MARK_Y, rp_type_color[ty], TL_X(j), RP_MARK_Y + 3.5,
		    rp_type_letter[ty]);
		fprintf(out,
		    "<text class=\"tl-title\" font-size=\"10\" fill=\"#444\" "
		    "transform=\"translate(%.1f %.1f) rotate(35)\">",
		    TL_X(j) - 3, RP_MARK_Y + 17);
		if (title != NULL)
			xml_put(out, title, tlen, 22);
		else
			fputs("?", out);
		fprintf(out, "</text>\n");
	}
	/* Which line is which. */
	for (uint32_t l = 0; l < tl->n_lines; l++) {
		double y = RP_PLOT_Y0 + 8 + 34.0 * l, x = RP_PLOT_X1 + 22;
		char label[32];
		size_t len;
		const char *name = model_node_name(rp->m, tl->node[l], &len);

		model_node_label(rp->m, tl->node[l], label, sizeof(label));
		fprintf(out,
		    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#%06x\" "
		    "stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" "
		    "font-weight=\"bold\">%s</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" "
		    "fill=\"#555\" text-anchor=\"end\">%.3g</text><text class=\"tier-name\" "
		    "x=\"%.1f\" "
		    "y=\"%.1f\" font-size=\"11\" fill=\"#444\">",
		    x, y - 4, x + 18, y - 4, node_color(rp->m, tl->node[l]), x + 24, y, label,
		    RP_WIDTH - 20.0, y, (double)tl->w[l][tl->n_events - 1], x + 24, y + 15);
		xml_put(out, name, len, fit_chars(RP_WIDTH - 20.0 - (x + 24), 11));
		fprintf(out, "</text>\n");
	}
#undef TL_X
#undef TL_Y
	/* Event types. */
	for (int t = 0; t < MODEL_N_TYPES; t++) {
		double x = RP_PLOT_X0 - 40 + 138.0 * t, y = RP_HEIGHT - 26;

		fprintf(out,
		    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"7\" fill=\"#%06x\"/><text x=\"%.1f\" "
		    "y=\"%.1f\" font-size=\"8\" font-weight=\"bold\" fill=\"#fff\" "
		    "text-anchor=\"middle\">%c</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
		    "fill=\"#444\">%s (%.3g)</text>\n",
		    x, y, rp_type_color[t], x, y + 3, rp_type_letter[t], x + 11, y + 4,
		    model_event_type_name(t), (double)hp->type_weight[t]);
	}
	fprintf(out, "</g>\n");
}

int
report_write_svg(FILE *out, const struct report_input *in, char *errstr, size_t errstr_size)
{
	const struct model_hparams *hp = model_has_weights(in->m) ? model_hparams(in->m) : NULL;
	const struct user_state *us = in->us;
	struct report_timeline *tl = NULL;
	struct rp rp;
	char when[48], written[48], hl_long[32], hl_short[32];
	int ret = -1;

	memset(&rp, 0, sizeof(rp));
	if (hp == NULL) {
		snprintf(
		    errstr, errstr_size, "report: the model has no hyper-parameters (a catalog?)");
		goto done;
	}
	tl = malloc(sizeof(*tl));
	if (tl == NULL || rp_init(&rp, out, in->m, us) < 0) {
		snprintf(errstr, errstr_size, "report: out of memory");
		goto done;
	}
	if (report_timeline(in->m, us, tl, errstr, errstr_size) < 0)
		goto done;
	fmt_time(us->t_ref_ms, when, sizeof(when));
	fmt_time(
	    in->updated_at_ms > 0 ? in->updated_at_ms : STATE_NO_TIME, written, sizeof(written));
	fmt_half_life(hp->half_life_long_s, hl_long, sizeof(hl_long));
	fmt_half_life(hp->half_life_short_s, hl_short, sizeof(hl_short));

	if (in->html) {
		fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
		      "<title>interestd report: ",
		    out);
		xml_puts(out, in->user_id, 0);
		fputs("</title></head>\n<body style=\"margin:0;background:#fff\">\n", out);
	} else {
		fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", out);
	}
	fprintf(out,
	    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	    "viewBox=\"0 0 %d %d\" font-family=\"%s\" fill=\"#1a1a1a\">\n"
	    "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
	    RP_WIDTH, RP_HEIGHT, RP_WIDTH, RP_HEIGHT, RP_FONT);
	fputs("<title>interestd report: user ", out);
	xml_puts(out, in->user_id, 0);
	fputs("</title>\n<text id=\"user\" x=\"24\" y=\"38\" font-size=\"22\" "
	      "font-weight=\"bold\">Interests of user <tspan class=\"user-id\">",
	    out);
	xml_puts(out, in->user_id, 60);
	fprintf(out,
	    "</tspan></text>\n<text x=\"24\" y=\"60\" font-size=\"12.5\" fill=\"#555\">%" PRIu64
	    " events applied \xC2\xB7 weights as of %s \xC2\xB7 written %s \xC2\xB7 model version "
	    "%" PRIu64,
	    us->events_applied, when, written, hp->model_version);
	if (us->model_version != 0 && us->model_version != hp->model_version)
		fprintf(out, " (the state is from model version %" PRIu64 ")", us->model_version);
	fprintf(out, " \xC2\xB7 %" PRIu16 " tier nodes tracked (at most %" PRIu32 ")</text>\n",
	    us->n_tiers, hp->max_tiers);

	put_sunburst(
	    &rp, rp.wl, rp.sum_long, "long-term", RP_SUN_LONG_X, RP_SUN_Y, "Long-term", hl_long);
	put_sunburst(&rp, rp.ws, rp.sum_short, "short-term", RP_SUN_SHORT_X, RP_SUN_Y, "Short-term",
	    hl_short);
	put_legend(&rp);
	put_timeline(&rp, tl);
	fputs("</svg>\n", out);
	if (in->html)
		fputs("</body></html>\n", out);
	if (fflush(out) != 0 || ferror(out)) {
		snprintf(errstr, errstr_size, "report: write failed");
		goto done;
	}
	ret = 0;
done:
	rp_fini(&rp);
	free(tl);
	return ret;
}
