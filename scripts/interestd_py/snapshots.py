"""The snapshot topic as training data (scripts/snapshots, docs/RETRAINING.md):
decoding of single-object encoded InterestSnapshot values with the fingerprint
checked, collection of their events (deduplicated, per user, erasable by a
tombstone) and the interactions CSV they are written to (schemas/items.md)."""

import csv
import io
import json
import os

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SCHEMA = os.path.join(ROOT, "schemas", "interest_snapshot.avsc")
MAGIC = b"\xc3\x01"
HEADER_LEN = 10  # magic + 8-byte fingerprint


class DumpError(Exception):
    pass


def _plain(x):
    """The schema without logicalType: timestamps stay integer milliseconds."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if k != "logicalType"}
    return [_plain(v) for v in x] if isinstance(x, list) else x


class Decoder:
    """Decodes single-object encoded InterestSnapshot values, checking the fingerprint."""

    def __init__(self, schema_path=SCHEMA):
        import fastavro
        from fastavro.schema import fingerprint, to_parsing_canonical_form
        with open(schema_path) as f:
            raw = json.load(f)
        self._fastavro = fastavro
        self.schema = fastavro.parse_schema(_plain(raw))
        pcf = to_parsing_canonical_form(fastavro.parse_schema(raw))
        self.header = MAGIC + bytes.fromhex(fingerprint(pcf, "CRC-64-AVRO"))

    def decode(self, value):
        """The record of one message value; raises DumpError naming what is wrong."""
        if len(value) < HEADER_LEN or value[:2] != MAGIC:
            raise DumpError("not Avro single-object encoding (no C3 01 header)")
        if value[:HEADER_LEN] != self.header:
            raise DumpError(f"unknown schema fingerprint {value[2:HEADER_LEN].hex()} "
                            f"(want {self.header[2:].hex()})")
        buf = io.BytesIO(value[HEADER_LEN:])
        try:
            rec = self._fastavro.schemaless_reader(buf, self.schema)
        except Exception as e:  # fastavro raises several types on bad bytes
            raise DumpError(f"malformed body: {e}") from None
        if buf.tell() != len(value) - HEADER_LEN:
            raise DumpError(f"{len(value) - HEADER_LEN - buf.tell()} trailing bytes")
        return rec


class Collector:
    """Events of decoded snapshots: deduplicated, per user, erasable."""

    def __init__(self):
        self.users = {}  # user -> [(ts, seq, item, type)], dict keeps first appearance
        self.seen = {}   # user -> {(ts, item, type)}
        self.seq = 0
        self.snapshots = self.tombstones = self.events = self.duplicates = 0
        self.erased_events = 0

    def add(self, rec):
        user = rec["user_id"]
        evs = self.users.setdefault(user, [])
        seen = self.seen.setdefault(user, set())
        self.snapshots += 1
        for e in rec["events"]:
            key = (int(e["ts"]), e["item_id"], e["type"])
            if key in seen:
                self.duplicates += 1
                continue
            seen.add(key)
            evs.append((key[0], self.seq, key[1], key[2]))
            self.seq += 1
            self.events += 1

    def erase(self, user):
        """A tombstone: the user's events so far are forgotten."""
        self.tombstones += 1
        gone = self.users.pop(user, [])
        self.seen.pop(user, None)
        self.events -= len(gone)
        self.erased_events += len(gone)

    def rows(self):
        """(user, item, type, ts) in user first-appearance order, each user's by time."""
        for user, evs in self.users.items():
            for ts, _seq, item, typ in sorted(evs):
                yield user, item, typ, ts


def write_csv(path, rows):
    tmp = f"{path}.tmp{os.getpid()}"
    n = 0
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user_id", "item_id", "type", "ts"])
        for row in rows:
            w.writerow(row)
            n += 1
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    return n
