"""scripts/catalog end to end with the bundled WordLlama model: determinism,
the file the C library reads, info, items file formats, ML-100K."""

import json
import os
import subprocess
import time

import numpy as np
import pytest

from conftest import ROOT, built
from helpers import TOY, run_script, write_items
from interestd_py import container

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    run_script("make-sample", "--out", d, "--users", 20, "--items", 120, "--events", 400)
    return d


def test_byte_identical_for_same_seed(sample, tmp_path):
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        p = tmp_path / (name + ".icat")
        run_script("catalog", "build", "--items", sample / "items.csv", "--out", p, "--seed", seed,
                   "--k1", 6, "--k2", 4)
        outs.append(p.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    cat = container.load(str(tmp_path / "a.icat"))
    assert cat.n_items == 120 and cat.dim == 256 and cat.n_tier1 == 6 and cat.seed == 3
    assert cat.embedder == "wordllama:l2_supercat:256"
    np.testing.assert_allclose(np.linalg.norm(cat.emb, axis=1), 1.0, rtol=1e-5)
    assert int(cat.tnod[:6, 3].sum()) == 120


def test_the_c_library_reads_it(sample, tmp_path):
    ctl = built("interestctl")
    p = tmp_path / "x.icat"
    run_script("catalog", "build", "--items", sample / "items.csv", "--out", p, "--dim", 128)
    r = subprocess.run([ctl, "model", str(p)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    assert "checksum OK" in r.stdout and "wordllama:l2_supercat:128" in r.stdout
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines()[:5] if " " in line)
    assert fields.get("items", "").strip() == "120", r.stdout
    assert fields.get("dim", "").strip() == "128", r.stdout


def test_toy_tiers_follow_content_and_info(tmp_path):
    items = tmp_path / "toy.csv"
    write_items(str(items), TOY)
    out = tmp_path / "toy.icat"
    run_script("catalog", "build", "--items", items, "--out", out, "--k1", 3, "--k2", 2)
    cat = container.load(str(out))
    groups = {}
    for i, t1 in enumerate(cat.itir[:, 0]):
        groups.setdefault(int(t1), set()).add(TOY[i][0])
    assert sorted(map(sorted, groups.values())) == [["m1", "m2", "m3"], ["m4", "m5", "m6"],
                                                  ["m7", "m8", "m9"]]
    jazz = cat.names[int(cat.itir[6, 0])]
    assert "jazz" in jazz.split(", ")
    r = run_script("catalog", "info", out, "--level2")
    assert "9 items, dim 256, embedder wordllama:l2_supercat:256" in r.stdout
    assert "3 level-1" in r.stdout and jazz in r.stdout


def test_jsonl_items_and_matryoshka_dim(tmp_path):
    items = tmp_path / "toy.jsonl"
    with open(items, "w") as f:
        for i, t, x, c in TOY:
            f.write(json.dumps({"item_id": i, "title": t, "text": x, "categories": c}) + "\n")
    out = tmp_path / "toy64.icat"
    run_script("catalog", "build", "--items", items, "--out", out, "--k1", 3, "--k2", 2,
               "--dim", 64)
    cat = container.load(str(out))
    assert cat.dim == 64 and cat.embedder == "wordllama:l2_supercat:64"
    assert cat.item_ids == [t[0] for t in TOY] and cat.titles[3] == "Notting Hill"


def test_bad_items_named(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("item_id,title\na,x\nb,y\na,z\n")
    r = run_script("catalog", "build", "--items", p, "--out", tmp_path / "x.icat", check=False)
    assert r.returncode == 1 and "dup.csv:4: duplicate item_id 'a'" in r.stderr
    assert not (tmp_path / "x.icat").exists()


def test_reexecs_into_the_venv(tmp_path):
    """Run with the system python3: the script re-executes with the venv's."""
    sys_py = "/usr/bin/python3"
    if not os.path.exists(sys_py):
        pytest.skip("no /usr/bin/python3")
    r = subprocess.run([sys_py, os.path.join(ROOT, "scripts", "catalog"), "info", "/nonexistent"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 1 and "No such file" in r.stderr, r.stderr


def test_ml100k_catalog_speed_and_names(ml100k, tmp_path):
    d = ml100k
    run_script("convert-movielens", "--in", d, "--out", tmp_path)
    t0 = time.monotonic()
    run_script("catalog", "build", "--items", tmp_path / "items.csv", "--out",
               tmp_path / "c.icat", "--seed", 1)
    elapsed = time.monotonic() - t0
    assert elapsed < 30, "ML-100K catalog took %.1fs" % elapsed
    cat = container.load(str(tmp_path / "c.icat"))
    assert cat.n_items == 1682 and cat.n_tier1 == 16
    words = {w for n in cat.names[:16] for w in n.split(", ")}
    assert {"drama", "comedy", "thriller", "action"} <= words
