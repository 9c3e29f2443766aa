"""Small helpers shared by the tests (imported, not a fixture module)."""

import json
import os
import struct
import subprocess
import sys

from conftest import ROOT

PY = sys.executable


# Nine items in three themes (science fiction, romantic comedy, jazz): (id, title, text, categories).
TOY = [
    ("m1", "Alien", "A crew in deep space meets a deadly creature.", ["Sci-Fi", "Horror"]),
    ("m2", "Star Wars", "Rebels fight a galactic empire in space.", ["Sci-Fi", "Adventure"]),
    ("m3", "Interstellar", "Astronauts travel through a wormhole in space.", ["Sci-Fi", "Drama"]),
    ("m4", "Notting Hill", "A bookseller falls in love with a film star.", ["Comedy", "Romance"]),
    ("m5", "Love Actually", "Love stories in London at Christmas.", ["Comedy", "Romance"]),
    ("m6", "When Harry Met Sally", "Friends who fall in love.", ["Comedy", "Romance"]),
    ("m7", "Blue Train", "Hard bop jazz record with trumpet and saxophone.", ["Jazz", "Music"]),
    ("m8", "Kind of Blue", "Modal jazz classic with trumpet.", ["Jazz", "Music"]),
    ("m9", "Time Out", "Cool jazz with piano and sax.", ["Jazz", "Music"]),
]


def run_script(name, *args, check=True):
    """Runs scripts/<name> with this (the venv's) Python; returns the result."""
    r = subprocess.run([PY, os.path.join(ROOT, "scripts", name)] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError("%s %s exited %d:\n%s%s" % (name, args, r.returncode, r.stdout,
                                                        r.stderr))
    return r


def write_items(path, rows):
    """rows: (item_id, title, text, categories list)."""
    from interestd_py.items import Item, write_items_csv
    write_items_csv(path, [Item(i, t, x, list(c)) for i, t, x, c in rows])


def crc64_avro(data):
    """CRC-64-AVRO, the Avro specification's Rabin fingerprint ("Schema Fingerprints"),
    written out here independently of fastavro and of the daemon."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def single_object_header(schema_file):
    """C3 01 + the CRC-64-AVRO of schemas/<schema_file>'s Parsing Canonical Form, little-endian."""
    from fastavro.schema import parse_schema, to_parsing_canonical_form
    with open(os.path.join(ROOT, "schemas", schema_file)) as f:
        pcf = to_parsing_canonical_form(parse_schema(json.load(f)))
    return b"\xc3\x01" + struct.pack("<Q", crc64_avro(pcf.encode()))
