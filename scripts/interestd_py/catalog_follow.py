"""`scripts/catalog follow`: live catalog updates (schemas/items.md, "Items
topic"). Reads an items file as rows are appended (like tail -f; `-` is
stdin), embeds each new item with the catalog's embedder (bundled WordLlama
by default, the text rule of `catalog build`), places it in the catalog's
tier tree by nearest centroid and publishes an ItemUpdate
(schemas/item_update.avsc, Avro single-object encoding) keyed by item id to
the compacted items topic, which interestd adds to its model without a
restart."""

import csv
import hashlib
import io
import os
import select
import sys
import time

import numpy as np

from . import cli, container, embedders, items as items_mod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_PATH = os.path.join(ROOT, "schemas", "item_update.avsc")
DEFAULT_TOPIC = "interest-items"
MAX_TITLE_BYTES = 4096
MAGIC = b"\xc3\x01"


def log(msg):
    sys.stderr.write("catalog follow: %s\n" % msg)
    sys.stderr.flush()


class FollowError(Exception):
    """A catalog, items file or broker problem; the message names it."""


# ---- the catalog side -------------------------------------------------------

def tree_fingerprint(ct):
    """Lower-case hex SHA-256 of the TNOD section bytes followed by the TCEN
    section bytes, as stored in the file (a Container)."""
    for tag in ("TNOD", "TCEN"):
        if tag not in ct.sections:
            raise FollowError("catalog has no %s section" % tag)
    return hashlib.sha256(ct.sections["TNOD"] + ct.sections["TCEN"]).hexdigest()


def place(x, tcen, tnod, n_tier1):
    """(tier1, tier2) node ids of the L2-normalised embedding x: the level-1
    node of the highest cosine to its centroid, then the best of that node's
    level-2 children."""
    c = np.asarray(tcen, dtype=np.float64)
    norms = np.linalg.norm(c, axis=1)
    norms[norms == 0] = 1.0
    cos = c @ np.asarray(x, dtype=np.float64) / norms
    t1 = int(np.argmax(cos[:n_tier1]))
    kids = [i for i in range(n_tier1, len(tnod)) if int(tnod[i][0]) == t1]
    if not kids:
        raise FollowError("tier-1 node %d has no level-2 children" % t1)
    t2 = kids[int(np.argmax(cos[kids]))]
    return t1, t2


def embedder_for(cat, a):
    """The embedder that made the catalog: WordLlama from its name, others from
    the flags (their name must match the catalog's)."""
    name = cat.embedder
    if name.startswith("wordllama:") and a.embedder in (None, "wordllama"):
        try:
            dim = int(name.rsplit(":", 1)[1])
        except ValueError:
            raise FollowError("catalog embedder %r: no dimension" % name) from None
        emb = embedders.WordLlamaEmbedder(dim)
    elif a.embedder == "openai":
        emb = embedders.OpenAIEmbedder(a.url, a.model, cat.dim)
    elif a.embedder == "st":
        emb = embedders.STEmbedder(a.st_path, cat.dim)
    else:
        raise FollowError("catalog embedder %r is not WordLlama: pass --embedder openai|st "
                          "with the endpoint or model that built it" % name)
    if emb.name != name:
        raise FollowError("embedder %r is not the catalog's %r" % (emb.name, name))
    return emb


# ---- the wire -------------------------------------------------------------

class Encoder:
    """ItemUpdate values: C3 01 + CRC-64-AVRO fingerprint + Avro binary."""

    def __init__(self, schema_path=SCHEMA_PATH):
        import fastavro
        from fastavro.schema import fingerprint, to_parsing_canonical_form
        self.schema = fastavro.schema.load_schema(schema_path)
        self.header = MAGIC + bytes.fromhex(
            fingerprint(to_parsing_canonical_form(self.schema), "CRC-64-AVRO"))
        self._write = fastavro.schemaless_writer

    def encode(self, rec):
        buf = io.BytesIO()
        buf.write(self.header)
        self._write(buf, self.schema, rec)
        return buf.getvalue()

    def decode(self, value):
        import fastavro
        if value[:10] != self.header:
            raise FollowError("not an ItemUpdate in single-object encoding")
        return fastavro.schemaless_reader(io.BytesIO(value[10:]), self.schema, self.schema)


def update_record(item, x, tier1, tier2, embedder, tree, ts_ms):
    title = item.title
    while len(title.encode("utf-8")) > MAX_TITLE_BYTES:
        title = title[:-1]
    x = np.ascontiguousarray(x, dtype="<f4")
    return {"item_id": item.item_id, "title": title, "embedder": embedder,
            "dim": int(x.shape[0]), "embedding": x.tobytes(), "tier1": int(tier1),
            "tier2": int(tier2), "tree": tree, "ts": int(ts_ms)}


# ---- the items file, followed ------------------------------------------------

def _record_end(text):
    """Length of the longest prefix of text made of whole CSV/JSONL lines: up to a
    newline outside any quoted CSV field (quote count even)."""
    quotes, end = 0, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quotes += 1
        elif ch == "\n" and quotes % 2 == 0:
            end = i + 1
    return end


class ItemsFollower:
    """New rows of an items file (CSV or JSONL, schemas/items.md) as they are
    appended; `-` reads stdin. read() returns the Items of every complete row
    since the last call (a row still being written waits for its newline)."""

    def __init__(self, path):
        self.path = path
        self.stdin = path == "-"
        self.f = sys.stdin.buffer if self.stdin else open(path, "rb")
        self.pending = ""
        self.header = None
        self.jsonl = path.endswith((".jsonl", ".ndjson"))
        self.kind_known = self.jsonl
        self.line = 0
        self.eof = False

    def _read_bytes(self, wait_s):
        if self.stdin:
            r, _, _ = select.select([self.f], [], [], wait_s)
            if not r:
                return b""
            data = os.read(self.f.fileno(), 1 << 16)
            if not data:
                self.eof = True
            return data
        data = self.f.read()
        if not data:
            # Truncated or replaced (log rotation): start again from the top.
            try:
                if os.stat(self.path).st_size < self.f.tell():
                    self.f.seek(0)
                    self.pending, self.header = "", None
            except OSError:
                pass
        return data

    def read(self, wait_s=0.0):
        data = self._read_bytes(wait_s)
        if data:
            self.pending += data.decode("utf-8", errors="strict")
        if self.eof and self.pending and not self.pending.endswith("\n"):
            self.pending += "\n"  # the last row of a finished stream
        end = _record_end(self.pending)
        chunk, self.pending = self.pending[:end], self.pending[end:]
        if not chunk:
            return []
        if not self.kind_known:
            self.jsonl = chunk.lstrip().startswith("{")
            self.kind_known = True
        if self.jsonl:
            return self._parse(chunk, items_mod._read_jsonl)
        if self.header is None:
            nl = _record_end(chunk.split("\n", 1)[0] + "\n")
            self.header, chunk = chunk[:nl], chunk[nl:]
            self.line += 1
        return self._parse(self.header + chunk, items_mod._read_csv, header=True)

    def _parse(self, text, reader, header=False):
        body = text.split("\n", 1)[1] if header else text
        if not body.strip():
            self.line += body.count("\n")
            return []
        where = "%s (from line %d)" % (self.path, self.line + 1)
        try:
            out = reader(io.StringIO(text, newline=""), where)
        except items_mod.ItemsError as e:
            raise FollowError(str(e)) from None
        self.line += body.count("\n")
        return out

    def close(self):
        if not self.stdin:
            self.f.close()


# ---- Kafka ------------------------------------------------------------------

def ensure_topic(bootstrap, topic, partitions, timeout_s=30):
    """Creates topic (cleanup.policy=compact) when the broker does not have it."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=timeout_s)
    if topic in md.topics and md.topics[topic].error is None:
        return False
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                        replication_factor=-1,
                                        config={"cleanup.policy": "compact"})])[topic]
    try:
        fut.result(timeout_s)
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise FollowError("creating topic %s: %s" % (topic, e)) from None
    return True


class Publisher:
    def __init__(self, bootstrap, topic):
        from confluent_kafka import Producer
        self.topic = topic
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                           "enable.idempotence": True, "client.id": "catalog-follow"})
        self.errors = []

    def _done(self, err, _msg):
        if err is not None:
            self.errors.append(str(err))

    def send(self, key, value):
        while True:
            try:
                self.p.produce(self.topic, key=key.encode("utf-8"), value=value,
                               on_delivery=self._done)
                break
            except BufferError:
                self.p.poll(0.1)
        self.p.poll(0)

    def flush(self, timeout_s=60):
        left = self.p.flush(timeout_s)
        if left or self.errors:
            raise FollowError("%d messages undelivered, errors: %s"
                              % (left, "; ".join(self.errors[:3]) or "none"))


# ---- the command --------------------------------------------------------------

class Follower:
    """Embeds, places and publishes what the items file adds, one batch at a time."""

    def __init__(self, cat, ct, emb, publisher, encoder):
        self.cat = cat
        self.tree = tree_fingerprint(ct)
        self.emb = emb
        self.pub = publisher
        self.enc = encoder
        self.known = set(cat.item_ids)
        self.sent = set()
        self.total = 0
        self.batch = 0

    def publish(self, new_items):
        """One batch; returns (published, in_catalog, repeated)."""
        fresh, in_cat, again = [], 0, 0
        for it in new_items:
            if it.item_id in self.known:
                in_cat += 1
            elif it.item_id in self.sent:
                again += 1
            else:
                fresh.append(it)
                self.sent.add(it.item_id)
        if fresh:
            x = embedders.normalise(self.emb.embed([it.embed_text() for it in fresh]))
            if x.shape != (len(fresh), self.cat.dim):
                raise FollowError("embedder returned shape %s for %d items of dim %d"
                                  % (x.shape, len(fresh), self.cat.dim))
            now = int(time.time() * 1000)
            for it, row in zip(fresh, x):
                t1, t2 = place(row, self.cat.tcen, self.cat.tnod, self.cat.n_tier1)
                rec = update_record(it, row, t1, t2, self.cat.embedder, self.tree, now)
                self.pub.send(it.item_id, self.enc.encode(rec))
            self.pub.flush()
        self.total += len(fresh)
        self.batch += 1
        print("batch %d: %d rows, %d published, %d already in the catalog, %d already "
              "published; %d published in all -> %s"
              % (self.batch, len(new_items), len(fresh), in_cat, again, self.total,
                 self.pub.topic), flush=True)
        return len(fresh), in_cat, again


def parse_args(argv):
    p = cli.ArgumentParser(prog="catalog follow", description=__doc__)
    p.add_argument("--catalog", required=True,
                   help="catalog or model file: embedder, dim, tier tree and centroids")
    p.add_argument("--items", required=True,
                   help="items file (CSV or JSONL, schemas/items.md) followed as rows are "
                        "appended; - reads stdin")
    p.add_argument("--bootstrap", "--bootstrap-servers", dest="bootstrap_servers",
                   default="localhost:9092",
                   help="Kafka bootstrap servers (default localhost:9092)")
    p.add_argument("--topic", default=DEFAULT_TOPIC,
                   help="items topic, created compacted when missing (default %s)"
                        % DEFAULT_TOPIC)
    p.add_argument("--partitions", type=int, default=1,
                   help="partitions of the topic when it is created (default 1)")
    p.add_argument("--once", action="store_true",
                   help="publish what the file holds now, then exit")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between looks at the file (default 1)")
    p.add_argument("--withdraw", action="append", default=[], metavar="ITEM_ID",
                   help="publish a tombstone for a live item (repeatable), then go on")
    p.add_argument("--embedder", choices=("wordllama", "openai", "st"), default=None,
                   help="backend for a catalog not built with WordLlama")
    p.add_argument("--url", help="OpenAI-compatible base URL for --embedder openai")
    p.add_argument("--model", help="model name sent to the endpoint")
    p.add_argument("--st-path", help="local sentence-transformers model directory")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    follower = src = None
    try:
        if a.partitions < 1:
            raise FollowError("--partitions must be at least 1")
        if a.interval <= 0:
            raise FollowError("--interval must be > 0")
        ct = container.read_container(a.catalog)
        cat = container.load(a.catalog)
        emb = embedder_for(cat, a)
        created = ensure_topic(a.bootstrap_servers, a.topic, a.partitions)
        if created:
            log("created topic %s (%d partitions, cleanup.policy=compact)"
                % (a.topic, a.partitions))
        pub = Publisher(a.bootstrap_servers, a.topic)
        for item_id in a.withdraw:
            pub.send(item_id, None)
        if a.withdraw:
            pub.flush()
            print("withdrew %d items -> %s" % (len(a.withdraw), a.topic), flush=True)
        follower = Follower(cat, ct, emb, pub, Encoder())
        src = ItemsFollower(a.items)
        wait = a.interval if src.stdin else 0
        if a.once:
            rows = []
            while True:
                got = src.read(wait)
                rows += got
                if (src.stdin and src.eof) or (not src.stdin and not got):
                    break
            follower.publish(rows)
            return 0
        while not (src.stdin and src.eof):
            rows = src.read(wait)
            if rows:
                follower.publish(rows)
            if not src.stdin:
                time.sleep(a.interval)
        return 0
    except KeyboardInterrupt:
        return 0
    except (FollowError, items_mod.ItemsError, embedders.EmbedError, container.FormatError,
            OSError, ValueError) as e:
        log("error: %s" % e)
        return 1
    finally:
        if src is not None:
            src.close()
