"""Seeded spherical k-means (k-means++ initialisation) and the two-level tier
tree of the catalog (schemas/modelfile.md: TNOD, TCEN, ITIR).

Deterministic: float64 arithmetic, a numpy PCG64 generator per clustering
seeded from (seed, level, parent), ties broken by the lowest index."""

from dataclasses import dataclass

import numpy as np

MAX_ITER = 100
TOL = 1e-7               # stop when the objective improves by less (relative)
LARGE_N = 50000          # a clustering of more points also stops when ...
LARGE_MOVED = 1e-3       # ... at most this share of them changed cluster: the long
                         # tail of Lloyd iterations on a large cluster moves ~0.1% of
                         # its points back and forth (62,000 points, k 62: 72
                         # iterations to TOL, the last 48 each moving < 0.2%)
MIN_ITEMS_PER_LEAF = 3   # a level-2 split keeps about this many items per cluster at least
K2_MAX = 255             # level-2 tiers per level-1 tier at most (schemas/modelfile.md, TNOD)


def _rng(seed, *path):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed)] + list(path))))


def _unit(c):
    n = np.linalg.norm(c, axis=-1, keepdims=True)
    return np.where(n > 0, c / np.where(n > 0, n, 1), c)


def _plusplus(x, k, rng):
    """k-means++ on the sphere: the next centre drawn with probability
    proportional to 1 - cos (half the squared distance for unit vectors)."""
    n = x.shape[0]
    chosen = [int(rng.integers(n))]
    best = 1.0 - x @ x[chosen[0]]
    for _ in range(1, k):
        d = np.maximum(best, 0.0)
        d[chosen] = 0.0
        tot = d.sum()
        if tot <= 0:  # every point coincides with a centre: take the next unused one
            free = np.setdiff1d(np.arange(n), chosen)
            if len(free) == 0:
                break
            nxt = int(free[0])
        else:
            nxt = int(np.searchsorted(np.cumsum(d), rng.random() * tot, side="right"))
            nxt = min(nxt, n - 1)
        chosen.append(nxt)
        best = np.minimum(best, 1.0 - x @ x[nxt])
    return x[chosen].copy()


def _cluster_sums(x, labels, k):
    """Per-cluster sums of the rows of x, [k][dim]: one bincount per column,
    which adds in row order as np.add.at does (the same bits), at a fraction
    of its cost (np.add.at took most of a large catalog's k-means)."""
    sums = np.empty((k, x.shape[1]), dtype=np.float64)
    for j in range(x.shape[1]):
        sums[:, j] = np.bincount(labels, weights=x[:, j], minlength=k)
    return sums


def spherical_kmeans(x, k, seed, *path):
    """Clusters the unit rows of x into at most k clusters. Returns labels
    0..k'-1 (k' <= k: clusters that stay empty are dropped), numbered by size,
    largest first (ties: the cluster holding the lowest item index first).
    Over LARGE_N points, k-means++ picks the first centres from a seeded
    sample of LARGE_N of them. Lloyd iterations run on all points until no
    label changes, the objective gains less than TOL, MAX_ITER, or (over
    LARGE_N points) at most LARGE_MOVED of them move."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    k = max(1, min(int(k), n))
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    rng = _rng(seed, *path)
    if n > LARGE_N:
        # k-means++ over a seeded sample: its k passes cost O(LARGE_N k), not O(n k).
        c = _plusplus(x[np.sort(rng.choice(n, LARGE_N, replace=False))], k, rng)
    else:
        c = _plusplus(x, k, rng)
    k = c.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    prev_obj = None
    for _ in range(MAX_ITER):
        sim = x @ c.T
        new = np.argmax(sim, axis=1)
        obj = float(sim[np.arange(n), new].sum())
        counts = np.bincount(new, minlength=k)
        # An empty cluster takes the point worst served by its own centre,
        # from a cluster that keeps at least one other point.
        for j in np.nonzero(counts == 0)[0]:
            fit = sim[np.arange(n), new]
            order = np.lexsort((np.arange(n), fit))
            for i in order:
                if counts[new[i]] > 1:
                    counts[new[i]] -= 1
                    new[i] = j
                    counts[j] = 1
                    sim[i, :] = -np.inf
                    sim[i, j] = 1.0
                    break
        moved = int(np.count_nonzero(new != labels))
        if moved == 0:
            break
        labels = new
        sums = _cluster_sums(x, labels, k)
        nc = _unit(sums)
        empty = np.linalg.norm(sums, axis=1) == 0
        nc[empty] = c[empty]
        c = nc
        if prev_obj is not None and abs(obj - prev_obj) <= TOL * max(abs(prev_obj), 1.0):
            break
        if n > LARGE_N and moved <= LARGE_MOVED * n:
            break
        prev_obj = obj
    return _renumber(labels)


def _renumber(labels):
    """Labels renumbered 0.. by decreasing size, then by first occurrence."""
    uniq, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    remap = np.empty(int(uniq.max()) + 1, dtype=np.int64)
    remap[uniq[order]] = np.arange(len(uniq))
    return remap[labels]


@dataclass
class Tree:
    tnod: np.ndarray   # uint32 [n_nodes][4]: parent, level, index, n_items
    tcen: np.ndarray   # float32 [n_nodes][dim]
    itir: np.ndarray   # uint32 [n_items][2]
    n_tier1: int
    members: list      # item indices of each node


def level2_k(n_members, k2):
    """Sub-interests for a level-1 cluster of n_members items: K2, fewer for
    small clusters (at least MIN_ITEMS_PER_LEAF items each), at least 1."""
    return max(1, min(int(k2), n_members // MIN_ITEMS_PER_LEAF))


def build_tree(emb, k1, k2, seed):
    """The tier tree of unit embeddings `emb`: level 1 = up to k1 clusters of
    all items, level 2 = up to k2 clusters inside each level-1 cluster."""
    x = np.asarray(emb, dtype=np.float64)
    n = x.shape[0]
    l1 = spherical_kmeans(x, k1, seed, 1)
    n_tier1 = int(l1.max()) + 1
    nodes = [(0xFFFFFFFF, 1, t, np.nonzero(l1 == t)[0]) for t in range(n_tier1)]
    itir = np.zeros((n, 2), dtype=np.uint32)
    itir[:, 0] = l1
    for t in range(n_tier1):
        idx = nodes[t][3]
        l2 = spherical_kmeans(x[idx], level2_k(len(idx), k2), seed, 2, t)
        for s in range(int(l2.max()) + 1):
            node = len(nodes)
            members = idx[l2 == s]
            nodes.append((t, 2, s, members))
            itir[members, 1] = node
    if len(nodes) > 65535:
        raise ValueError("%d tier nodes exceed 65535: lower --k1/--k2" % len(nodes))
    tnod = np.array([(p, lv, ix, len(m)) for p, lv, ix, m in nodes], dtype=np.uint32)
    tcen = np.zeros((len(nodes), x.shape[1]), dtype=np.float64)
    for i, (_, _, _, m) in enumerate(nodes):
        s = x[m].sum(axis=0)
        tcen[i] = _unit(s) if np.linalg.norm(s) > 0 else x[m[0]]
    return Tree(tnod, tcen.astype(np.float32), itir, n_tier1, [m for *_, m in nodes])
