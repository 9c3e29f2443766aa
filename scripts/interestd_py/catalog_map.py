"""`scripts/catalog map FILE -o MAP.svg`: the items of a catalog or model file
drawn in 2-D, coloured by their tier-1 node, with the tier names at the
cluster centres and in a legend. The projection is linear and seeded-free
(deterministic): the two principal axes of the size-weighted tier-1
centroids (the directions that separate the broad interests most), onto
which every item's LLM embedding is projected. The SVG is written by hand."""

import sys
from xml.sax.saxutils import escape

import numpy as np

from . import cli, container

# Tier-1 colours by node index (wrapping); ctl/report.c uses the same list.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#393b79", "#e7ba52", "#637939", "#ad494a", "#7b4173",
           "#6b6ecf", "#525252")

WIDTH, HEIGHT = 1200, 820
PLOT = (30.0, 80.0, 770.0, 790.0)   # x0, y0, x1, y1 of the scatter
LEGEND_X = 800.0
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
CHAR_EM = 0.6                        # average glyph width / font size, for truncation
DEFAULT_MAX_ITEMS = 5000


def color(t1):
    return PALETTE[t1 % len(PALETTE)]


def _fit(text, width_px, font_px):
    n = max(2, int(width_px / (CHAR_EM * font_px)))
    return text if len(text) <= n else text[:n - 1] + "\u2026"


def _attr(s):
    return escape(s, {'"': "&quot;", "'": "&#39;"})


def project(emb, t1, n_tier1):
    """2-D coordinates [n][2] of the rows of emb: onto the two principal axes of
    the tier-1 centroids weighted by their item counts (PCA of all items when
    there are fewer than three tiers). Signs fixed so each axis's largest
    loading is positive: the same input gives the same picture."""
    x = np.asarray(emb, dtype=np.float64)
    x = x - x.mean(axis=0)
    counts = np.bincount(t1, minlength=n_tier1).astype(np.float64)
    present = np.nonzero(counts)[0]
    if len(present) >= 3:
        cen = np.stack([x[t1 == t].mean(axis=0) for t in present])
        basis = cen * np.sqrt(counts[present])[:, None]
    else:
        basis = x
    _, _, vt = np.linalg.svd(basis, full_matrices=False)
    axes = vt[:2]
    if axes.shape[0] < 2:  # a one-dimensional input: second axis all zero
        axes = np.vstack([axes, np.zeros_like(axes[0])])
    for k in range(2):
        i = int(np.argmax(np.abs(axes[k])))
        if axes[k, i] < 0:
            axes[k] = -axes[k]
    return x @ axes.T


def _place_labels(boxes, bounds, rounds=200):
    """Moves label boxes [x, y, w, h] (centre x, baseline-centre y) apart
    vertically, then horizontally, until none overlap (or rounds run out);
    keeps them inside bounds (x0, y0, x1, y1)."""
    b = [list(v) for v in boxes]
    x0, y0, x1, y1 = bounds
    for _ in range(rounds):
        moved = False
        for i in range(len(b)):
            for j in range(i + 1, len(b)):
                dx = abs(b[i][0] - b[j][0]) - (b[i][2] + b[j][2]) / 2
                dy = abs(b[i][1] - b[j][1]) - (b[i][3] + b[j][3]) / 2
                if dx < 0 and dy < 0:
                    push = (-dy) / 2 + 0.5
                    up, down = (i, j) if b[i][1] <= b[j][1] else (j, i)
                    b[up][1] -= push
                    b[down][1] += push
                    moved = True
        for v in b:
            v[0] = min(max(v[0], x0 + v[2] / 2), x1 - v[2] / 2)
            v[1] = min(max(v[1], y0 + v[3] / 2), y1 - v[3] / 2)
        if not moved:
            break
    return b


def render(cat, title=None, max_items=DEFAULT_MAX_ITEMS, seed=0):
    """The SVG text of the map of `cat` (a container.Catalog). At most
    max_items points are drawn (a seeded sample when the catalog is larger);
    the projection and the tier centres use every item."""
    n = cat.n_items
    t1 = cat.itir[:, 0].astype(np.int64)
    xy = project(cat.emb, t1, cat.n_tier1)
    shown = np.arange(n)
    if max_items and n > max_items:
        shown = np.sort(np.random.default_rng(seed).choice(n, size=max_items, replace=False))
    px0, py0, px1, py1 = PLOT
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    # One scale for both axes (distances mean the same across and up), centred.
    scale = min((px1 - px0 - 20) / span[0], (py1 - py0 - 20) / span[1])
    cx, cy = (px0 + px1) / 2, (py0 + py1) / 2
    mid = (lo + hi) / 2
    sx = cx + (xy[:, 0] - mid[0]) * scale
    sy = cy - (xy[:, 1] - mid[1]) * scale

    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="%s" fill="#1a1a1a">' % (WIDTH, HEIGHT, WIDTH, HEIGHT, FONT),
           '<rect width="100%" height="100%" fill="#ffffff"/>']
    heading = title or "Catalog map"
    out.append('<title>%s</title>' % escape(heading))
    out.append('<text x="24" y="36" font-size="22" font-weight="bold">%s</text>'
               % escape(_fit(heading, WIDTH - 48, 22)))
    sub = ("%d items%s \u00b7 %d tier-1 and %d tier-2 interests \u00b7 embedder %s \u00b7 "
           "projected onto the two main axes of the tier-1 centres"
           % (n, "" if len(shown) == n else " (%d drawn)" % len(shown), cat.n_tier1,
              cat.n_nodes - cat.n_tier1, cat.embedder))
    out.append('<text x="24" y="58" font-size="12.5" fill="#555">%s</text>'
               % escape(_fit(sub, WIDTH - 48, 12.5)))
    out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#ddd"/>'
               % (px0, py0, px1 - px0, py1 - py0))
    out.append('<g class="items" fill-opacity="0.8">')
    for i in shown:
        t = int(t1[i])
        out.append('<circle class="item" data-tier="%s" cx="%.1f" cy="%.1f" r="4" fill="%s">'
                   '<title>%s \u2013 %s</title></circle>'
                   % (cat.node_label(t), sx[i], sy[i], color(t), escape(cat.titles[i]),
                      escape(cat.node_label(int(cat.itir[i, 1])) + " "
                             + cat.names[int(cat.itir[i, 1])])))
    out.append('</g>')

    # Tier names at the centres of their items, nudged apart so none overlap.
    present = [t for t in range(cat.n_tier1) if np.any(t1 == t)]
    font = 12.0
    texts, boxes = [], []
    for t in present:
        words = cat.names[t].split(", ")
        text = "%s %s" % (cat.node_label(t), ", ".join(words[:2]))
        texts.append(text)
        w = len(text) * CHAR_EM * font + 6
        boxes.append([float(sx[t1 == t].mean()), float(sy[t1 == t].mean()), w, font + 6])
    placed = _place_labels(boxes, PLOT)
    out.append('<g class="tier-labels" font-size="%.0f" font-weight="bold" '
               'text-anchor="middle">' % font)
    for t, text, (x, y, _w, _h) in zip(present, texts, placed):
        out.append('<text class="tier-label" data-tier="%d" x="%.1f" y="%.1f" stroke="#fff" '
                   'stroke-width="4" stroke-linejoin="round" fill="#fff">%s</text>'
                   % (t, x, y + font / 2 - 2, escape(text)))
        out.append('<text class="tier-label" data-tier="%d" x="%.1f" y="%.1f" fill="%s">%s</text>'
                   % (t, x, y + font / 2 - 2, color(t), escape(text)))
    out.append('</g>')

    # Legend: every tier-1 node with its colour, item count and full name.
    out.append('<g class="legend">')
    out.append('<text x="%.1f" y="96" font-size="12" fill="#555">tier</text>'
               '<text x="%.1f" y="96" font-size="12" fill="#555">items</text>'
               '<text x="%.1f" y="96" font-size="12" fill="#555">name (c-TF-IDF keywords '
               'or LLM label)</text>' % (LEGEND_X, LEGEND_X + 38, LEGEND_X + 86))
    row = min(22.0, (PLOT[3] - 120) / max(1, cat.n_tier1))
    font_l = min(12.5, row - 3)
    for k, t in enumerate(range(cat.n_tier1)):
        y = 118 + k * row
        out.append('<g class="legend-row" data-tier="%d"><rect x="%.1f" y="%.1f" width="12" '
                   'height="12" rx="2" fill="%s"/><text x="%.1f" y="%.1f" font-size="%.1f" '
                   'font-weight="bold">%s</text><text x="%.1f" y="%.1f" font-size="%.1f" '
                   'text-anchor="end">%d</text><text class="tier-name" x="%.1f" y="%.1f" '
                   'font-size="%.1f">%s</text></g>'
                   % (t, LEGEND_X, y - 10, color(t), LEGEND_X + 17, y, font_l,
                      cat.node_label(t), LEGEND_X + 72, y, font_l, int(np.sum(t1 == t)),
                      LEGEND_X + 86, y, font_l,
                      escape(_fit(cat.names[t], WIDTH - 20 - LEGEND_X - 86, font_l))))
    out.append('</g>')
    out.append('</svg>')
    return "\n".join(out) + "\n"


def parse_args(argv):
    p = cli.ArgumentParser(prog="catalog map", description=__doc__)
    p.add_argument("file", help="catalog (.icat) or model (.imdl) file")
    p.add_argument("-o", "--out", required=True, help="SVG file to write")
    p.add_argument("--title", help="heading (default: the file name)")
    p.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS,
                   help="points drawn at most, a seeded sample beyond (default %d; 0: all)"
                        % DEFAULT_MAX_ITEMS)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.max_items < 0:
        sys.stderr.write("catalog map: --max-items must be >= 0\n")
        return cli.EX_USAGE
    try:
        cat = container.load(a.file)
        svg = render(cat, a.title or "Catalog map: %s" % a.file, a.max_items)
        tmp = a.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(svg)
        import os
        os.replace(tmp, a.out)
    except (container.FormatError, OSError) as e:
        sys.stderr.write("catalog map: error: %s\n" % e)
        return 1
    sys.stderr.write("catalog map: %d items, %d tier-1 interests -> %s\n"
                     % (cat.n_items, cat.n_tier1, a.out))
    return 0
