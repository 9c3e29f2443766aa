"""The model/catalog container of schemas/modelfile.md: writer, reader with the
same checks as model/container.c, and the catalog and model sections decoded
into numpy arrays."""

import os
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"INTRSTv1"
FORMAT_VERSION = 1
KIND_CATALOG = 1
KIND_MODEL = 2
HEADER_SIZE = 64
ENTRY_SIZE = 32
ALIGN = 64
MAX_SECTIONS = 64
CATM_SIZE = 128
HPAR_SIZE = 128
EMBEDDER_LEN = 64
NODE_NONE = 0xFFFFFFFF
N_TYPES = 8

CATALOG_TAGS = ("CATM", "IIDS", "ITTL", "EMBD", "TNOD", "TCEN", "TNAM", "ITIR")
MODEL_TAGS = CATALOG_TAGS + ("HPAR", "WGHT")


class FormatError(Exception):
    """A file that does not follow schemas/modelfile.md; the message names the
    section at fault, as the C reader does."""


def _pad(n):
    return (ALIGN - n % ALIGN) % ALIGN


def encode_container(kind, sections):
    """Returns the bytes of a container of `kind` holding `sections`, a list of
    (tag, bytes) in file order: header, section table, then each section on a
    64-byte boundary with zero padding between (none after the last)."""
    if kind not in (KIND_CATALOG, KIND_MODEL):
        raise ValueError("unknown kind %r" % kind)
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise ValueError("section count %d out of range 1..%d" % (len(sections), MAX_SECTIONS))
    pos = HEADER_SIZE + ENTRY_SIZE * len(sections)
    body = []
    table = bytearray()
    for tag, data in sections:
        tb = tag.encode("ascii")
        if len(tb) != 4:
            raise ValueError("section tag %r is not four ASCII characters" % tag)
        pad = _pad(pos)
        body.append(b"\0" * pad)
        pos += pad
        table += tb + struct.pack("<IQQII", 0, pos, len(data), zlib.crc32(data), 0)
        body.append(bytes(data))
        pos += len(data)
    head = MAGIC + struct.pack("<IIIIQI", FORMAT_VERSION, kind, len(sections), 0, pos,
                               zlib.crc32(bytes(table)))
    head += b"\0" * (HEADER_SIZE - len(head))
    return head + bytes(table) + b"".join(body)


def write_container(path, kind, sections):
    """Writes the container atomically: a temporary file in the same directory,
    fsynced, renamed over `path`, directory fsynced."""
    data = encode_container(kind, sections)
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp%d" % (os.path.basename(path), os.getpid()))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Container:
    kind: int
    sections: dict  # tag -> bytes
    order: list     # tags in section-table order
    offsets: dict   # tag -> file offset


def decode_container(data):
    """Parses and checks a container (magic, version, kind, file size, table
    checksum, alignment, overlaps, section checksums, duplicates). Raises
    FormatError naming what is wrong."""
    size = len(data)
    if size < HEADER_SIZE:
        raise FormatError("file too short for the header (%d bytes)" % size)
    if data[:8] != MAGIC:
        raise FormatError("bad magic")
    version, kind, n, reserved, file_size, table_crc = struct.unpack_from("<IIIIQI", data, 8)
    if version != FORMAT_VERSION:
        raise FormatError("unknown format_version %d" % version)
    if kind not in (KIND_CATALOG, KIND_MODEL):
        raise FormatError("unknown kind %d" % kind)
    if not 1 <= n <= MAX_SECTIONS:
        raise FormatError("section_count %d out of range 1..%d" % (n, MAX_SECTIONS))
    if reserved != 0 or any(data[36:64]):
        raise FormatError("header reserved bytes not zero")
    if file_size != size:
        raise FormatError("file_size %d != file size %d" % (file_size, size))
    table_end = HEADER_SIZE + ENTRY_SIZE * n
    if table_end > size:
        raise FormatError("section table extends past end of file")
    if zlib.crc32(data[HEADER_SIZE:table_end]) != table_crc:
        raise FormatError("section table: bad checksum")
    entries = []
    for i in range(n):
        e = HEADER_SIZE + ENTRY_SIZE * i
        tb = bytes(data[e:e + 4])
        try:
            tag = tb.decode("ascii")
        except UnicodeDecodeError:
            raise FormatError("section %d: tag %r not ASCII" % (i, tb)) from None
        flags, off, length, crc, res = struct.unpack_from("<IQQII", data, e + 4)
        if flags != 0 or res != 0:
            raise FormatError("section %s: flags or reserved not zero" % tag)
        if any(t == tag for t, _, _, _ in entries):
            raise FormatError("section %s: duplicate" % tag)
        if off % ALIGN != 0:
            raise FormatError("section %s: offset %d not a multiple of %d" % (tag, off, ALIGN))
        if off < table_end:
            raise FormatError("section %s: overlaps the section table" % tag)
        if off > size or length > size - off:
            raise FormatError("section %s: extends past end of file" % tag)
        entries.append((tag, off, length, crc))
    by_off = sorted(entries, key=lambda x: x[1])
    for a, b in zip(by_off, by_off[1:]):
        if a[1] + a[2] > b[1]:
            raise FormatError("section %s: overlaps section %s" % (b[0], a[0]))
    sections, offsets = {}, {}
    for tag, off, length, crc in entries:
        blob = bytes(data[off:off + length])
        if zlib.crc32(blob) != crc:
            raise FormatError("section %s: bad checksum" % tag)
        sections[tag] = blob
        offsets[tag] = off
    return Container(kind, sections, [e[0] for e in entries], offsets)


def read_container(path):
    with open(path, "rb") as f:
        return decode_container(f.read())


# ---- string tables (IIDS, ITTL, TNAM) -------------------------------------

def encode_strings(strings):
    """u32 off[n+1] then the UTF-8 bytes (schemas/modelfile.md, IIDS)."""
    blobs = [s.encode("utf-8") for s in strings]
    offs = [0]
    for b in blobs:
        offs.append(offs[-1] + len(b))
    return np.asarray(offs, dtype="<u4").tobytes() + b"".join(blobs)


def decode_strings(tag, blob, n):
    if len(blob) < 4 * (n + 1):
        raise FormatError("section %s: length %d too short for %d offsets" % (tag, len(blob), n + 1))
    offs = np.frombuffer(blob, dtype="<u4", count=n + 1)
    base = 4 * (n + 1)
    if offs[0] != 0 or np.any(np.diff(offs.astype(np.int64)) < 0) or base + int(offs[-1]) != len(blob):
        raise FormatError("section %s: offsets inconsistent with its length" % tag)
    try:
        return [blob[base + int(offs[i]):base + int(offs[i + 1])].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError:
        raise FormatError("section %s: not UTF-8" % tag) from None


# ---- catalog ----------------------------------------------------------------

@dataclass
class Catalog:
    item_ids: list
    titles: list
    emb: np.ndarray          # float32 [n_items][dim], L2-normalised
    tnod: np.ndarray         # uint32 [n_nodes][4]: parent, level, index, n_items
    tcen: np.ndarray         # float32 [n_nodes][dim]
    names: list              # n_nodes strings
    itir: np.ndarray         # uint32 [n_items][2]: level-1 node, level-2 node
    n_tier1: int
    seed: int
    k1: int
    k2: int
    embedder: str
    kind: int = KIND_CATALOG
    hpar: dict = field(default_factory=dict)    # kind 2 only
    weights: dict = field(default_factory=dict)  # kind 2 only

    @property
    def n_items(self):
        return len(self.item_ids)

    @property
    def dim(self):
        return self.emb.shape[1]

    @property
    def n_nodes(self):
        return self.tnod.shape[0]

    def node_label(self, node):
        """The wire name of a node: "<tier1 index>" or "<tier1 index>/<tier2 index>"."""
        parent, level, index, _ = (int(x) for x in self.tnod[node])
        if level == 1:
            return str(index)
        return "%d/%d" % (int(self.tnod[parent][2]), index)


def encode_catm(n_items, dim, n_tier1, n_nodes, seed, k1, k2, embedder):
    name = embedder.encode("utf-8")[:EMBEDDER_LEN]
    while True:  # never cut a UTF-8 sequence in half
        try:
            name.decode("utf-8")
            break
        except UnicodeDecodeError:
            name = name[:-1]
    b = struct.pack("<IIIIQII", n_items, dim, n_tier1, n_nodes, seed, k1, k2)
    b += name.ljust(EMBEDDER_LEN, b"\0") + b"\0" * 32
    assert len(b) == CATM_SIZE
    return b


def catalog_sections(cat):
    """The eight catalog sections of `cat`, in file order."""
    n, dim = cat.emb.shape
    return [
        ("CATM", encode_catm(n, dim, cat.n_tier1, cat.n_nodes, cat.seed, cat.k1, cat.k2,
                             cat.embedder)),
        ("IIDS", encode_strings(cat.item_ids)),
        ("ITTL", encode_strings(cat.titles)),
        ("EMBD", np.ascontiguousarray(cat.emb, dtype="<f4").tobytes()),
        ("TNOD", np.ascontiguousarray(cat.tnod, dtype="<u4").tobytes()),
        ("TCEN", np.ascontiguousarray(cat.tcen, dtype="<f4").tobytes()),
        ("TNAM", encode_strings(cat.names)),
        ("ITIR", np.ascontiguousarray(cat.itir, dtype="<u4").tobytes()),
    ]


def _need(ct, tags):
    for t in tags:
        if t not in ct.sections:
            raise FormatError("section %s: missing" % t)


def _array(ct, tag, dtype, shape, what):
    blob = ct.sections[tag]
    want = int(np.prod(shape)) * 4
    if len(blob) != want:
        raise FormatError("section %s: length %d != %s = %d" % (tag, len(blob), what, want))
    return np.frombuffer(blob, dtype=dtype).reshape(shape).copy()


def decode_catalog(ct):
    """The catalog sections of a kind 1 or kind 2 container, checked against
    CATM and the tree rules of schemas/modelfile.md."""
    _need(ct, CATALOG_TAGS)
    catm = ct.sections["CATM"]
    if len(catm) != CATM_SIZE:
        raise FormatError("section CATM: length %d != %d" % (len(catm), CATM_SIZE))
    n, dim, n_tier1, n_nodes, seed, k1, k2 = struct.unpack_from("<IIIIQII", catm, 0)
    embedder = catm[32:32 + EMBEDDER_LEN].split(b"\0", 1)[0].decode("utf-8", "replace")
    if not 1 <= n <= 1 << 24:
        raise FormatError("section CATM: n_items %d out of range" % n)
    if not 1 <= dim <= 4096:
        raise FormatError("section CATM: dim %d out of range" % dim)
    if not 1 <= n_tier1 <= 256:
        raise FormatError("section CATM: n_tier1 %d out of range" % n_tier1)
    if not n_tier1 <= n_nodes <= 65535:
        raise FormatError("section CATM: n_nodes %d out of range" % n_nodes)
    ids = decode_strings("IIDS", ct.sections["IIDS"], n)
    if len(set(ids)) != n or any(not i or len(i.encode()) > 255 for i in ids):
        raise FormatError("section IIDS: ids must be non-empty, at most 255 bytes, unique")
    titles = decode_strings("ITTL", ct.sections["ITTL"], n)
    emb = _array(ct, "EMBD", "<f4", (n, dim), "n_items*dim*4")
    tnod = _array(ct, "TNOD", "<u4", (n_nodes, 4), "n_nodes*16")
    tcen = _array(ct, "TCEN", "<f4", (n_nodes, dim), "n_nodes*dim*4")
    names = decode_strings("TNAM", ct.sections["TNAM"], n_nodes)
    itir = _array(ct, "ITIR", "<u4", (n, 2), "n_items*8")
    if not np.all(np.isfinite(emb)):
        raise FormatError("section EMBD: not finite")
    if not np.all(np.isfinite(tcen)):
        raise FormatError("section TCEN: not finite")
    _check_tree(tnod, itir, n_tier1)
    cat = Catalog(ids, titles, emb, tnod, tcen, names, itir, n_tier1, seed, k1, k2, embedder,
                  kind=ct.kind)
    return cat


def _check_tree(tnod, itir, n_tier1):
    n_nodes = tnod.shape[0]
    prev, nxt, done = None, 0, set()
    for i in range(n_nodes):
        parent, level, index, _ = (int(x) for x in tnod[i])
        if i < n_tier1:
            if parent != NODE_NONE or level != 1 or index != i:
                raise FormatError("section TNOD: node %d must be level 1 with no parent and index %d"
                                  % (i, i))
            continue
        if level != 2 or parent >= n_tier1:
            raise FormatError("section TNOD: node %d must be level 2 with a level-1 parent" % i)
        if parent != prev:
            if parent in done:
                raise FormatError("section TNOD: node %d: children of parent %d not grouped"
                                  % (i, parent))
            done.add(parent)
            prev, nxt = parent, 0
        if index != nxt:
            raise FormatError("section TNOD: node %d: index %d, expected %d" % (i, index, nxt))
        nxt += 1
    t1 = itir[:, 0].astype(np.int64)
    t2 = itir[:, 1].astype(np.int64)
    if np.any(t1 >= n_tier1):
        raise FormatError("section ITIR: level-1 node out of range")
    if np.any(t2 < n_tier1) or np.any(t2 >= n_nodes) or np.any(tnod[np.minimum(t2, n_nodes - 1), 0] != t1):
        raise FormatError("section ITIR: level-2 node not a child of the item's level-1 node")
    count = np.bincount(t1, minlength=n_nodes) + np.bincount(t2, minlength=n_nodes)
    bad = np.nonzero(count != tnod[:, 3])[0]
    if len(bad):
        raise FormatError("section TNOD: node %d: n_items %d, but ITIR places %d items there"
                          % (bad[0], tnod[bad[0], 3], count[bad[0]]))


# ---- model (kind 2) ----------------------------------------------------------

HPAR_FMT = "<IIIIQQff8fI"


def decode_hpar(blob):
    if len(blob) != HPAR_SIZE:
        raise FormatError("section HPAR: length %d != %d" % (len(blob), HPAR_SIZE))
    v = struct.unpack_from(HPAR_FMT, blob, 0)
    hp = {
        "hidden": v[0], "type_dim": v[1], "n_types": v[2], "ring_len": v[3],
        "model_version": v[4], "train_seed": v[5],
        "half_life_short_s": v[6], "half_life_long_s": v[7],
        "type_weight": list(v[8:16]), "max_tiers": v[16],
    }
    if not 1 <= hp["hidden"] <= 1024:
        raise FormatError("section HPAR: hidden %d out of range 1..1024" % hp["hidden"])
    if not 1 <= hp["type_dim"] <= 64:
        raise FormatError("section HPAR: type_dim %d out of range 1..64" % hp["type_dim"])
    if hp["n_types"] != N_TYPES:
        raise FormatError("section HPAR: n_types %d != %d" % (hp["n_types"], N_TYPES))
    if not 1 <= hp["ring_len"] <= 64:
        raise FormatError("section HPAR: ring_len %d out of range 1..64" % hp["ring_len"])
    if not 1 <= hp["max_tiers"] <= 1024:
        raise FormatError("section HPAR: max_tiers %d out of range 1..1024" % hp["max_tiers"])
    return hp


def weight_shapes(hp, n_items, dim):
    """(name, shape) of each WGHT block in file order (schemas/modelfile.md)."""
    h, e, nt = hp["hidden"], hp["type_dim"], hp["n_types"]
    din = dim + e + 1
    return [("W", (4 * h, din + h)), ("b", (4 * h,)), ("P", (dim, h)), ("pb", (dim,)),
            ("T", (nt, e)), ("R", (n_items, dim)), ("ib", (n_items,)), ("alpha", (4,))]


def split_weights(blob, hp, n_items, dim):
    shapes = weight_shapes(hp, n_items, dim)
    total = sum(int(np.prod(s)) for _, s in shapes)
    if len(blob) != total * 4:
        raise FormatError("section WGHT: length %d != %d floats * 4 (from CATM and HPAR)"
                          % (len(blob), total))
    flat = np.frombuffer(blob, dtype="<f4")
    out, pos = {}, 0
    for name, shape in shapes:
        k = int(np.prod(shape))
        out[name] = flat[pos:pos + k].reshape(shape).copy()
        pos += k
    return out


def load(path):
    """Reads a catalog (kind 1) or model (kind 2) file. For a model, `hpar` is
    the decoded HPAR and `weights` the WGHT blocks by name (W, b, P, pb, T, R,
    ib, alpha) as float32 arrays."""
    ct = read_container(path)
    cat = decode_catalog(ct)
    if ct.kind == KIND_MODEL:
        _need(ct, ("HPAR", "WGHT"))
        cat.hpar = decode_hpar(ct.sections["HPAR"])
        cat.weights = split_weights(ct.sections["WGHT"], cat.hpar, cat.n_items, cat.dim)
    return cat


def write_catalog(path, cat):
    write_container(path, KIND_CATALOG, catalog_sections(cat))
