"""scripts/catalog map: the SVG parses, has one point per item coloured by its
tier-1 node, names every tier, separates well-separated tiers, is
deterministic, samples large catalogs, and reports a bad file."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from helpers import run_script
from interestd_py import catalog_map, container

NS = "{http://www.w3.org/2000/svg}"
K1, K2, PER, DIM = 3, 2, 20, 16


def synthetic_catalog():
    """K1 well-separated clusters in DIM dimensions, K2 children each; names with
    characters that need escaping."""
    rng = np.random.default_rng(5)
    centres = np.eye(DIM)[:K1] * 3.0
    emb, itir = [], []
    for t in range(K1):
        for j in range(PER):
            emb.append(centres[t] + rng.normal(scale=0.3, size=DIM))
            itir.append((t, K1 + t * K2 + j % K2))
    emb = np.asarray(emb, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    itir = np.asarray(itir, dtype=np.uint32)
    n_nodes = K1 * (1 + K2)
    tnod = np.zeros((n_nodes, 4), dtype=np.uint32)
    for t in range(K1):
        tnod[t] = (container.NODE_NONE, 1, t, PER)
        for c in range(K2):
            tnod[K1 + t * K2 + c] = (t, 2, c, PER // K2)
    tcen = np.zeros((n_nodes, DIM), dtype=np.float32)
    names = ["space, rockets", "love & romance", "jazz <live>, piano"] + \
        ["sub %d" % i for i in range(K1 * K2)]
    n = K1 * PER
    return container.Catalog(
        item_ids=["i%d" % i for i in range(n)], titles=["Title %d" % i for i in range(n)],
        emb=emb, tnod=tnod, tcen=tcen, names=names, itir=itir, n_tier1=K1, seed=1, k1=K1,
        k2=K2, embedder="test:synthetic")


@pytest.fixture
def cat_path(tmp_path):
    p = tmp_path / "syn.icat"
    container.write_catalog(str(p), synthetic_catalog())
    return p


def points(root):
    return [c for c in root.iter(NS + "circle") if c.get("class") == "item"]


def test_map_svg(cat_path, tmp_path):
    out = tmp_path / "map.svg"
    r = run_script("catalog", "map", cat_path, "-o", out)
    assert "60 items, 3 tier-1" in r.stderr
    root = ET.parse(str(out)).getroot()
    assert root.tag == NS + "svg"
    pts = points(root)
    assert len(pts) == K1 * PER
    cat = container.load(str(cat_path))
    for i, c in enumerate(pts):
        t = int(cat.itir[i, 0])
        assert c.get("data-tier") == str(t)
        assert c.get("fill") == catalog_map.PALETTE[t]
        assert c.find(NS + "title").text.startswith("Title %d" % i)
    texts = ["".join(t.itertext()) for t in root.iter(NS + "text")]
    for name in cat.names[:K1]:
        assert name in texts, name  # legend, unescaped by the parser
    labels = [t for t in root.iter(NS + "text") if t.get("class") == "tier-label"]
    assert {t.get("data-tier") for t in labels} == {"0", "1", "2"}

    # Well-separated tiers stay apart: each tier's spread is small next to the
    # distance between tier centres.
    xy = np.array([[float(c.get("cx")), float(c.get("cy"))] for c in pts])
    t1 = cat.itir[:, 0]
    cen = np.stack([xy[t1 == t].mean(axis=0) for t in range(K1)])
    spread = max(np.linalg.norm(xy[t1 == t] - cen[t], axis=1).max() for t in range(K1))
    gap = min(np.linalg.norm(cen[a] - cen[b]) for a in range(K1) for b in range(a + 1, K1))
    assert gap > 2 * spread, (gap, spread)


def test_deterministic_flag_form_and_sampling(cat_path, tmp_path):
    a, b, c = tmp_path / "a.svg", tmp_path / "b.svg", tmp_path / "c.svg"
    run_script("catalog", "map", cat_path, "-o", a)
    run_script("catalog", "--map", cat_path, "-o", b)
    assert a.read_bytes() == b.read_bytes()
    run_script("catalog", "map", cat_path, "-o", c, "--max-items", 10)
    root = ET.parse(str(c)).getroot()
    assert len(points(root)) == 10
    assert "(10 drawn)" in "".join(root.itertext())


def test_projection_signs_fixed():
    cat = synthetic_catalog()
    t1 = cat.itir[:, 0].astype(np.int64)
    xy = catalog_map.project(cat.emb, t1, K1)
    assert xy.shape == (K1 * PER, 2)
    # The picture depends on the items, not on their order or the SVD's sign choice.
    perm = np.random.default_rng(3).permutation(K1 * PER)
    np.testing.assert_allclose(catalog_map.project(cat.emb[perm], t1[perm], K1), xy[perm],
                               atol=1e-9)
    np.testing.assert_allclose(catalog_map.project(-cat.emb, t1, K1), -xy, atol=1e-9)


def test_bad_file(tmp_path):
    bad = tmp_path / "bad.icat"
    bad.write_bytes(b"not a catalog")
    r = run_script("catalog", "map", bad, "-o", tmp_path / "x.svg", check=False)
    assert r.returncode == 1
    assert "catalog map: error:" in r.stderr and "too short" in r.stderr
    assert not (tmp_path / "x.svg").exists()
