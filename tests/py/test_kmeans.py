"""Spherical k-means and the two-level tier tree."""

import numpy as np

from interestd_py import kmeans


def blobs(n_per, centres, noise, seed):
    rng = np.random.default_rng(seed)
    x, y = [], []
    for k, cen in enumerate(centres):
        pts = cen + noise * rng.normal(size=(n_per, len(cen)))
        x.append(pts)
        y += [k] * n_per
    x = np.vstack(x)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.array(y)


def test_recovers_separated_clusters():
    centres = np.eye(6, 16) * 3
    x, y = blobs(40, centres, 0.3, 1)
    labels = kmeans.spherical_kmeans(x, 6, seed=5)
    # Every true cluster maps to exactly one label and vice versa.
    pairs = set(zip(y.tolist(), labels.tolist()))
    assert len(pairs) == 6 and len({p[0] for p in pairs}) == 6 and len({p[1] for p in pairs}) == 6


def test_labels_numbered_by_size():
    x, _ = blobs(10, np.eye(3, 8), 0.05, 2)
    x = np.vstack([x, x[:5]])  # cluster of the first blob gets 15 points
    labels = kmeans.spherical_kmeans(x, 3, seed=1)
    sizes = np.bincount(labels)
    assert sizes.tolist() == sorted(sizes.tolist(), reverse=True)
    assert sizes[0] == 15


def test_more_clusters_than_distinct_points():
    x = np.repeat(np.eye(2, 4), 5, axis=0)  # 10 points, 2 distinct
    labels = kmeans.spherical_kmeans(x, 5, seed=3)
    # Clusters left empty are dropped; numbering stays dense.
    assert sorted(set(labels.tolist())) == list(range(labels.max() + 1))
    assert labels.max() + 1 <= 5
    assert len(set(zip(labels.tolist(), x[:, 0].tolist()))) == labels.max() + 1


def test_tree_sizes_and_parents():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 24))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = kmeans.build_tree(x, 7, 5, seed=9)
    tnod, itir = t.tnod, t.itir
    assert t.n_tier1 == 7
    lv1 = tnod[:t.n_tier1]
    assert (lv1[:, 3].sum()) == 500                       # level-1 sizes sum to n_items
    assert (tnod[t.n_tier1:, 3].sum()) == 500             # and so do level-2 sizes
    assert all(tnod[i, 0] == 0xFFFFFFFF and tnod[i, 2] == i for i in range(t.n_tier1))
    for i in range(500):
        p = tnod[itir[i, 1]]
        assert p[1] == 2 and p[0] == itir[i, 0]           # the leaf's parent is the item's tier 1
    for parent in range(t.n_tier1):
        kids = [i for i in range(t.n_tier1, len(tnod)) if tnod[i, 0] == parent]
        assert kids == list(range(kids[0], kids[0] + len(kids)))  # grouped
        assert [int(tnod[k, 2]) for k in kids] == list(range(len(kids)))
        assert 1 <= len(kids) <= 5
        assert sum(int(tnod[k, 3]) for k in kids) == tnod[parent, 3]
    np.testing.assert_allclose(np.linalg.norm(t.tcen, axis=1), 1.0, rtol=1e-5)


def test_small_clusters_get_fewer_children():
    assert kmeans.level2_k(2, 8) == 1
    assert kmeans.level2_k(9, 8) == 3
    assert kmeans.level2_k(1000, 8) == 8
    x = np.eye(4, 8)[[0, 0, 1, 1, 2, 3]].astype(float)
    t = kmeans.build_tree(x, 4, 8, seed=1)
    assert len(t.tnod) - t.n_tier1 == t.n_tier1           # each tiny cluster has one child


def test_deterministic_and_seed_dependent():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a = kmeans.build_tree(x, 8, 4, seed=1)
    b = kmeans.build_tree(x, 8, 4, seed=1)
    c = kmeans.build_tree(x, 8, 4, seed=2)
    assert np.array_equal(a.itir, b.itir) and np.array_equal(a.tcen, b.tcen)
    assert not np.array_equal(a.itir, c.itir)


def test_cluster_sums_equal_add_at():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 7))
    labels = rng.integers(0, 5, size=1000)
    want = np.zeros((6, 7))
    np.add.at(want, labels, x)
    assert np.array_equal(kmeans._cluster_sums(x, labels, 6), want)


def test_large_clusterings_sample_the_start_and_stop_early(monkeypatch):
    # LARGE_N lowered so a small input takes the large path: still deterministic,
    # still a valid clustering of every point.
    monkeypatch.setattr(kmeans, "LARGE_N", 100)
    x, y = blobs(100, np.eye(4, 12) * 3, 0.3, 7)
    a = kmeans.spherical_kmeans(x, 4, seed=2)
    b = kmeans.spherical_kmeans(x, 4, seed=2)
    assert np.array_equal(a, b) and len(a) == 400
    assert len(set(zip(y.tolist(), a.tolist()))) == 4
