"""scripts/catalog follow (interestd_py/catalog_follow.py) without a broker:
the tree fingerprint, nearest-centroid placement, the ItemUpdate wire format
(its fingerprint by an independent CRC-64-AVRO of schemas/item_update.avsc, and
the daemon's), the items file followed as rows are appended, and one batch
embedded with the bundled WordLlama model. Publishing to a real broker is
tests/integration/45."""

import hashlib

import numpy as np
import pytest

from helpers import TOY, run_script, single_object_header, write_items
from interestd_py import catalog_follow as cf, container

@pytest.fixture(scope="module")
def toy_catalog(tmp_path_factory):
    d = tmp_path_factory.mktemp("follow")
    write_items(d / "items.csv", TOY)
    run_script("catalog", "build", "--items", d / "items.csv", "--out", d / "toy.icat",
               "--k1", 3, "--k2", 2, "--seed", 5)
    return d / "toy.icat"


# The ItemUpdate fingerprint the daemon takes from the compiled-in schemas/item_update.avsc
# (tests/unit/schemas.c pins the same bytes): the wire format, unchanged since the daemon
# held the schema as a C string.
DAEMON_FINGERPRINT = bytes.fromhex("4b4d4e775bb96bd1")


def test_wire_header_is_the_schema_files_and_the_daemons():
    header = cf.Encoder().header
    assert header == single_object_header("item_update.avsc")
    assert header[2:] == DAEMON_FINGERPRINT


def test_encode_decode_round_trip():
    enc = cf.Encoder()
    x = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    it = cf.items_mod.Item("n1", "T" * 5000, "text", [])
    rec = cf.update_record(it, x, 1, 4, "wordllama:l2_supercat:3", "ab" * 32, 123)
    value = enc.encode(rec)
    back = enc.decode(value)
    assert back["item_id"] == "n1" and back["dim"] == 3 and back["tier2"] == 4
    assert len(back["title"].encode()) == cf.MAX_TITLE_BYTES  # cut to the daemon's limit
    assert np.frombuffer(back["embedding"], dtype="<f4").tolist() == pytest.approx([0.6, 0.8, 0])
    with pytest.raises(cf.FollowError):
        enc.decode(b"\xc3\x01" + b"\0" * 8 + value[10:])


def test_tree_fingerprint_is_sha256_of_tnod_then_tcen(toy_catalog):
    ct = container.read_container(str(toy_catalog))
    want = hashlib.sha256(ct.sections["TNOD"] + ct.sections["TCEN"]).hexdigest()
    assert cf.tree_fingerprint(ct) == want and len(want) == 64
    ct.sections["TCEN"] = ct.sections["TCEN"][:-1] + bytes([ct.sections["TCEN"][-1] ^ 1])
    assert cf.tree_fingerprint(ct) != want
    del ct.sections["TNOD"]
    with pytest.raises(cf.FollowError):
        cf.tree_fingerprint(ct)


def test_place_tier2_only_among_the_tier1_children():
    # Level 1: nodes 0, 1; level 2: 2, 3 under 0 and 4, 5 under 1.
    tnod = np.array([[0xFFFFFFFF, 1, 0, 0], [0xFFFFFFFF, 1, 1, 0], [0, 2, 0, 0], [0, 2, 1, 0],
                     [1, 2, 0, 0], [1, 2, 1, 0]], dtype=np.uint32)
    tcen = np.array([[1, 0, 0], [0, 1, 0], [1, 0.2, 0], [1, -0.2, 0.3], [0, 1, 0],
                     [0.8, 0.6, 0]], dtype=np.float32)
    x = np.array([0.8, 0.6, 0], dtype=np.float32)  # closest centroid overall: node 5
    assert cf.place(x, tcen, tnod, 2) == (0, 2)
    assert cf.place(np.array([0, 1, 0.1], dtype=np.float32), tcen, tnod, 2) == (1, 4)
    # Centroid length does not matter (cosine).
    assert cf.place(x, tcen * np.array([[5], [1], [1], [1], [1], [1]]), tnod, 2) == (0, 2)
    with pytest.raises(cf.FollowError):
        cf.place(x, tcen[:2], tnod[:2], 2)


def test_follower_reads_appended_rows(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text("item_id,title,text,categories\nn1,One,,A|B\n")
    src = cf.ItemsFollower(str(p))
    got = src.read()
    assert [(i.item_id, i.categories) for i in got] == [("n1", ["A", "B"])]
    assert src.read() == []
    with open(p, "a") as f:
        f.write('n2,Two,"a text, with a\nnewline')  # a row still being written
    assert src.read() == []
    with open(p, "a") as f:
        f.write(' in it",C\nn3,Three,,\n')
    got = src.read()
    assert [(i.item_id, i.text) for i in got] == [("n2", "a text, with a\nnewline in it"),
                                                  ("n3", "")]
    with open(p, "a") as f:
        f.write("n4,Four\n")  # a bad row names the file
    with pytest.raises(cf.FollowError, match="items.csv"):
        src.read()
    src.close()


def test_follower_jsonl(tmp_path):
    p = tmp_path / "items.jsonl"
    p.write_text('{"item_id": "j1", "title": "J", "categories": ["X"]}\n{"item_id": "j2"')
    src = cf.ItemsFollower(str(p))
    assert [i.item_id for i in src.read()] == ["j1"]
    with open(p, "a") as f:
        f.write(', "title": "Two"}\n')
    assert [(i.item_id, i.title) for i in src.read()] == [("j2", "Two")]
    src.close()


class RecordingSink:
    """Stands in for the Kafka producer (tests/integration/45 uses the real one)."""

    topic = "interest-items"

    def __init__(self):
        self.sent = []
        self.flushes = 0

    def send(self, key, value):
        self.sent.append((key, value))

    def flush(self):
        self.flushes += 1


def test_batch_embeds_places_and_skips(toy_catalog, capsys):
    cat = container.load(str(toy_catalog))
    ct = container.read_container(str(toy_catalog))
    emb = cf.embedder_for(cat, cf.parse_args(["--catalog", "x", "--items", "y"]))
    sink, enc = RecordingSink(), cf.Encoder()
    f = cf.Follower(cat, ct, emb, sink, enc)
    new = [cf.items_mod.Item("m1", "Alien"),
           cf.items_mod.Item("n1", "So What", "Modal jazz with trumpet and saxophone.",
                             ["Jazz", "Music"]),
           cf.items_mod.Item("n1", "So What again")]
    assert f.publish(new) == (1, 1, 1)
    assert sink.flushes == 1 and [k for k, _ in sink.sent] == ["n1"]
    rec = enc.decode(sink.sent[0][1])
    x = np.frombuffer(rec["embedding"], dtype="<f4")
    assert rec["dim"] == cat.dim == x.shape[0] and rec["embedder"] == cat.embedder
    assert abs(np.linalg.norm(x) - 1) < 1e-5
    assert rec["tree"] == cf.tree_fingerprint(ct)
    assert (rec["tier1"], rec["tier2"]) == cf.place(x, cat.tcen, cat.tnod, cat.n_tier1)
    assert int(cat.tnod[rec["tier2"]][0]) == rec["tier1"]
    # Placed with the jazz records of the catalog.
    jazz = {int(cat.itir[cat.item_ids.index(i)][0]) for i in ("m7", "m8", "m9")}
    assert rec["tier1"] in jazz
    assert "batch 1: 3 rows, 1 published, 1 already in the catalog, 1 already published" \
        in capsys.readouterr().out
    assert f.publish([]) == (0, 0, 0) and sink.flushes == 1


def test_cli_errors(tmp_path, toy_catalog):
    r = run_script("catalog", "follow", "--catalog", tmp_path / "missing.icat", "--items",
                   tmp_path / "x.csv", "--once", check=False)
    assert r.returncode == 1 and "missing.icat" in r.stderr
    r = run_script("catalog", "--follow", "--catalog", toy_catalog, "--items", "x",
                   "--embedder", "st", "--once", check=False)
    assert r.returncode == 1 and "error" in r.stderr
    r = run_script("catalog", "follow", "--catalog", toy_catalog, "--items", "x",
                   "--interval", 0, check=False)
    assert r.returncode == 1 and "--interval" in r.stderr
