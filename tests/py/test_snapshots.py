"""scripts/snapshots' logic (interestd_py.snapshots): the single-object header and
its fingerprint, the body, and the collection of snapshot events into the
interactions CSV (deduplicated, per-user time order, erased by a tombstone)."""

import csv
import io
import os

import fastavro
import pytest

from conftest import ROOT
from helpers import single_object_header
from interestd_py.snapshots import MAGIC, SCHEMA, Collector, Decoder, DumpError, write_csv


def record(user, events, version=7):
    return {"user_id": user, "model_version": version, "ts": events[-1][2] if events else 0,
            "events": [{"item_id": i, "type": t, "ts": ts} for i, t, ts in events],
            "tiers": [{"node": "3", "short": 0.5, "long": 1.0}], "vector": [0.25, -1.0]}


def encode(rec, header):
    dec = Decoder()
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, dec.schema, rec)
    return header + buf.getvalue()


# The InterestSnapshot fingerprint the daemon writes, from the compiled-in
# schemas/interest_snapshot.avsc (tests/unit/schemas.c and snapshot.c pin the same bytes):
# the wire format, unchanged since the daemon held the canonical form as a C string.
DAEMON_FINGERPRINT = bytes.fromhex("d84f1460f243d5e5")


def test_header_is_the_schema_files_and_the_daemons():
    header = Decoder().header
    assert header == single_object_header("interest_snapshot.avsc")
    assert header == MAGIC + DAEMON_FINGERPRINT


def test_decode_round_trip_and_rejections():
    dec = Decoder()
    rec = record("u1", [("i1", "VIEW", 1000), ("i2", "PURCHASE", 2000)])
    got = dec.decode(encode(rec, dec.header))
    assert got["user_id"] == "u1" and got["model_version"] == 7
    assert [(e["item_id"], e["type"], e["ts"]) for e in got["events"]] == \
        [("i1", "VIEW", 1000), ("i2", "PURCHASE", 2000)]
    with pytest.raises(DumpError, match="fingerprint"):
        dec.decode(encode(rec, MAGIC + b"\x00" * 8))
    with pytest.raises(DumpError, match="single-object"):
        dec.decode(encode(rec, b""))
    with pytest.raises(DumpError, match="trailing"):
        dec.decode(encode(rec, dec.header) + b"\x00")
    with pytest.raises(DumpError, match="malformed"):
        dec.decode(encode(rec, dec.header)[:14])


def test_collect_dedup_order_and_erasure(tmp_path):
    col = Collector()
    col.add(record("b", [("x", "VIEW", 50), ("y", "CLICK", 40)]))
    col.add(record("a", [("p", "VIEW", 10), ("q", "VIEW", 10)]))  # a tie: arrival order
    col.add(record("b", [("x", "VIEW", 50), ("y", "CLICK", 40)]))  # re-sent
    col.add(record("a", [("r", "LIKE", 5)]))  # out of order: sorted by time
    col.add(record("c", [("z", "VIEW", 1)]))
    col.erase("c")  # tombstone: c's earlier events go
    col.add(record("c", [("w", "VIEW", 2)]))  # later events stay
    assert col.duplicates == 2 and col.snapshots == 6 and col.tombstones == 1
    assert col.erased_events == 1 and col.events == 6
    out = tmp_path / "dump.csv"
    assert write_csv(str(out), col.rows()) == 6
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["user_id", "item_id", "type", "ts"],
                    ["b", "y", "CLICK", "40"], ["b", "x", "VIEW", "50"],
                    ["a", "r", "LIKE", "5"], ["a", "p", "VIEW", "10"], ["a", "q", "VIEW", "10"],
                    ["c", "w", "VIEW", "2"]]
    assert not [p for p in os.listdir(tmp_path) if p != "dump.csv"], "temporary file left"


def test_schema_file_is_the_one_decoded():
    assert SCHEMA == os.path.join(ROOT, "schemas", "interest_snapshot.avsc")


def test_retrain_takes_kafka_topic_and_model_from_the_daemon_config(tmp_path):
    import importlib.util
    from importlib.machinery import SourceFileLoader
    loader = SourceFileLoader("retrain", os.path.join(ROOT, "scripts", "retrain"))
    retrain = importlib.util.module_from_spec(importlib.util.spec_from_loader("retrain", loader))
    loader.exec_module(retrain)
    conf = tmp_path / "interestd.conf"
    conf.write_text("# comment\nkafka.bootstrap.servers = k1:9093\ntopic.snapshots = snaps\n"
                    "model.path = /var/lib/interestd/model.imdl\nkafka.security.protocol = SSL\n"
                    "kafka.consumer.security.protocol = SASL_SSL\nkafka.producer.linger.ms = 5\n"
                    "redis.port = 6380\n")
    c = retrain.read_config(str(conf))
    assert c["topic.snapshots"] == "snaps" and c["model.path"].endswith("model.imdl")
    # kafka.consumer.* wins over kafka.*, producer keys and the bootstrap are not passed.
    assert retrain.consumer_props(c) == {"security.protocol": "SASL_SSL"}
    conf.write_text("no equals sign\n")
    with pytest.raises(ValueError, match=":1:"):
        retrain.read_config(str(conf))
