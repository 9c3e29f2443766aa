"""The container of schemas/modelfile.md: round trip, layout, and rejection of
damaged files by name; kind 2 model files split into HPAR and WGHT blocks."""

import os
import struct
import subprocess
import zlib

import numpy as np
import pytest

from conftest import built
from interestd_py import container as c


def small_catalog(n=10, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # two level-1 nodes, each with two children
    t1 = np.array([i % 2 for i in range(n)])
    t2 = np.array([2 + 2 * (i % 2) + (i // 2) % 2 for i in range(n)])
    itir = np.stack([t1, t2], axis=1).astype(np.uint32)
    counts = np.bincount(t1, minlength=6) + np.bincount(t2, minlength=6)
    tnod = np.array([[c.NODE_NONE, 1, 0, 0], [c.NODE_NONE, 1, 1, 0], [0, 2, 0, 0], [0, 2, 1, 0],
                     [1, 2, 0, 0], [1, 2, 1, 0]], dtype=np.uint32)
    tnod[:, 3] = counts
    tcen = rng.normal(size=(6, dim)).astype(np.float32)
    return c.Catalog([("it%d" % i) for i in range(n)], ["Título %d" % i for i in range(n)], emb,
                     tnod, tcen, ["a", "b", "a/0", "a/1", "b/0", "b/1"], itir, 2, 42, 2, 2,
                     "test:embedder:8")


def test_round_trip_and_layout(tmp_path):
    cat = small_catalog()
    p = tmp_path / "x.icat"
    c.write_catalog(str(p), cat)
    data = p.read_bytes()
    assert data[:8] == b"INTRSTv1"
    version, kind, n, _, size, table_crc = struct.unpack_from("<IIIIQI", data, 8)
    assert (version, kind, n, size) == (1, 1, 8, len(data))
    assert zlib.crc32(data[64:64 + 32 * n]) == table_crc
    ct = c.decode_container(data)
    assert ct.order == list(c.CATALOG_TAGS)
    for tag, off in ct.offsets.items():
        assert off % 64 == 0, tag
    assert len(ct.sections["CATM"]) == 128
    back = c.load(str(p))
    assert back.item_ids == cat.item_ids and back.titles == cat.titles
    assert back.names == cat.names and back.embedder == "test:embedder:8"
    assert (back.seed, back.k1, back.k2, back.n_tier1) == (42, 2, 2, 2)
    np.testing.assert_array_equal(back.emb, cat.emb)
    np.testing.assert_array_equal(back.tcen, cat.tcen)
    np.testing.assert_array_equal(back.tnod, cat.tnod)
    np.testing.assert_array_equal(back.itir, cat.itir)
    assert back.node_label(5) == "1/1" and back.node_label(1) == "1"


@pytest.mark.parametrize("where,message", [
    ("EMBD", "section EMBD: bad checksum"),
    ("table", "section table: bad checksum"),
    ("magic", "bad magic"),
    ("truncate", "file_size"),
])
def test_damage_is_named(where, message):
    data = bytearray(c.encode_container(c.KIND_CATALOG, c.catalog_sections(small_catalog())))
    ct = c.decode_container(bytes(data))
    if where == "EMBD":
        data[ct.offsets["EMBD"] + 5] ^= 0x40
    elif where == "table":
        data[64 + 32 + 8] ^= 1  # IIDS offset
    elif where == "magic":
        data[0] = ord("X")
    else:
        data = data[:-1]
    with pytest.raises(c.FormatError, match=message):
        c.decode_container(bytes(data))


def test_inconsistent_tree_is_rejected():
    cat = small_catalog()
    cat.itir = cat.itir.copy()
    cat.itir[0, 1] = 4  # item 0 is in level-1 node 0 but node 4's parent is 1
    data = c.encode_container(c.KIND_CATALOG, c.catalog_sections(cat))
    with pytest.raises(c.FormatError, match="section ITIR"):
        c.decode_catalog(c.decode_container(data))


def hpar_bytes(hidden, type_dim):
    b = struct.pack(c.HPAR_FMT, hidden, type_dim, 8, 16, 123, 9, 3600.0, 86400.0,
                    *[float(i) for i in range(8)], 32)
    return b + b"\0" * (128 - len(b))


def test_model_kind2_split(tmp_path):
    cat = small_catalog(n=6, dim=4)
    cat.itir = cat.itir[:6]
    t1, t2 = cat.itir[:, 0].astype(int), cat.itir[:, 1].astype(int)
    cat.tnod[:, 3] = np.bincount(t1, minlength=6) + np.bincount(t2, minlength=6)
    cat.item_ids, cat.titles = cat.item_ids[:6], cat.titles[:6]
    h, e, dim, n = 3, 2, 4, 6
    hp = c.decode_hpar(hpar_bytes(h, e))
    sizes = [4 * h * (dim + e + 1 + h), 4 * h, dim * h, dim, 8 * e, n * dim, n, 4]
    w = np.arange(sum(sizes), dtype=np.float32)
    p = tmp_path / "m.imdl"
    c.write_container(str(p), c.KIND_MODEL, c.catalog_sections(cat) +
                      [("HPAR", hpar_bytes(h, e)), ("WGHT", w.tobytes())])
    m = c.load(str(p))
    assert m.kind == 2 and m.hpar["hidden"] == 3 and m.hpar["model_version"] == 123
    assert m.hpar["type_weight"] == [float(i) for i in range(8)] and hp["max_tiers"] == 32
    assert m.weights["W"].shape == (12, 10) and m.weights["W"][0, 0] == 0.0
    assert m.weights["b"][0] == sizes[0]
    assert m.weights["alpha"].tolist() == w[-4:].tolist()
    assert m.weights["R"].shape == (6, 4) and m.weights["T"].shape == (8, 2)
    # WGHT one float short: named
    c.write_container(str(p), c.KIND_MODEL, c.catalog_sections(cat) +
                      [("HPAR", hpar_bytes(h, e)), ("WGHT", w[:-1].tobytes())])
    with pytest.raises(c.FormatError, match="section WGHT: length"):
        c.load(str(p))


def test_reads_a_model_written_by_interest_train(tmp_path):
    """Cross-check with the C writer: a model trained by interest-train on the
    sample is read back with its catalog sections verbatim."""
    train = built("interest-train")
    from helpers import run_script
    run_script("make-sample", "--out", tmp_path, "--users", 30, "--items", 60, "--events", 900)
    run_script("catalog", "build", "--items", tmp_path / "items.csv", "--out",
               tmp_path / "c.icat", "--k1", 4, "--k2", 3, "--dim", 64)
    subprocess.run(["nice", train, "--catalog", tmp_path / "c.icat", "--interactions",
                    tmp_path / "interactions.csv", "--out", tmp_path / "m.imdl", "--epochs", "1",
                    "--hidden", "8", "--type-dim", "4", "--threads", "1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    cat = c.load(str(tmp_path / "c.icat"))
    m = c.load(str(tmp_path / "m.imdl"))
    assert m.kind == 2 and m.hpar["hidden"] == 8 and m.hpar["type_dim"] == 4
    assert m.item_ids == cat.item_ids and m.names == cat.names
    np.testing.assert_array_equal(m.emb, cat.emb)
    assert m.weights["W"].shape == (32, 64 + 4 + 1 + 8)
    assert m.weights["R"].shape == (60, 64)
    assert all(np.all(np.isfinite(v)) for v in m.weights.values())
