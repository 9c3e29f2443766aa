"""The generic items and interactions files (schemas/items.md): reading items
(CSV or JSONL), writing both, and the text each item is embedded by."""

import csv
import json
import os
from dataclasses import dataclass, field

EVENT_TYPES = ("IMPRESSION", "VIEW", "CLICK", "LIKE", "ADD_TO_CART", "PURCHASE", "SHARE",
               "DISLIKE")
ITEM_COLUMNS = ("item_id", "title", "text", "categories")
INTERACTION_HEADER = "user_id,item_id,type,ts,value"
MAX_ID_BYTES = 255


class ItemsError(Exception):
    """A malformed items file; the message names the file and line."""


@dataclass
class Item:
    item_id: str
    title: str = ""
    text: str = ""
    categories: list = field(default_factory=list)

    def embed_text(self):
        """"title. text. categories" with empty parts left out; the item id when
        all are empty (an item is never embedded from nothing)."""
        parts = [p.strip() for p in (self.title, self.text, ", ".join(self.categories))]
        parts = [p.rstrip(".") if i < 2 else p for i, p in enumerate(parts)]
        s = ". ".join(p for p in parts if p)
        return s if s else self.item_id


def _split_categories(s):
    return [c.strip() for c in s.split("|") if c.strip()]


def _check(items, path):
    seen = {}
    for ln, it in items:
        if not it.item_id:
            raise ItemsError("%s:%d: empty item_id" % (path, ln))
        if len(it.item_id.encode("utf-8")) > MAX_ID_BYTES:
            raise ItemsError("%s:%d: item_id longer than %d bytes" % (path, ln, MAX_ID_BYTES))
        if it.item_id in seen:
            raise ItemsError("%s:%d: duplicate item_id %r (first on line %d)"
                             % (path, ln, it.item_id, seen[it.item_id]))
        seen[it.item_id] = ln
    if not items:
        raise ItemsError("%s: no items" % path)
    return [it for _, it in items]


def read_items(path):
    """Items of a CSV (header with item_id; title, text, categories optional,
    categories '|'-separated) or JSONL file (one object per line, categories a
    list or a '|'-separated string), chosen by the extension .jsonl/.ndjson or
    a first character '{'. Raises ItemsError naming the file and line."""
    with open(path, encoding="utf-8", newline="") as f:
        head = f.read(1)
        f.seek(0)
        if path.endswith((".jsonl", ".ndjson")) or head == "{":
            return _read_jsonl(f, path)
        return _read_csv(f, path)


def _read_csv(f, path):
    r = csv.reader(f)
    try:
        header = [h.strip() for h in next(r)]
    except StopIteration:
        raise ItemsError("%s: empty file" % path) from None
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    if "item_id" not in header:
        raise ItemsError("%s:1: header has no item_id column" % path)
    col = {c: header.index(c) for c in ITEM_COLUMNS if c in header}
    out = []
    for row in r:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        ln = r.line_num
        if len(row) != len(header):
            raise ItemsError("%s:%d: %d fields, header has %d" % (path, ln, len(row), len(header)))
        get = lambda c: row[col[c]] if c in col else ""  # noqa: E731
        out.append((ln, Item(get("item_id").strip(), get("title"), get("text"),
                             _split_categories(get("categories")))))
    return _check(out, path)


def _read_jsonl(f, path):
    out = []
    for ln, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
        except json.JSONDecodeError as e:
            raise ItemsError("%s:%d: %s" % (path, ln, e)) from None
        if not isinstance(o, dict) or "item_id" not in o:
            raise ItemsError("%s:%d: not an object with item_id" % (path, ln))
        cats = o.get("categories") or []
        if isinstance(cats, str):
            cats = _split_categories(cats)
        elif not isinstance(cats, list):
            raise ItemsError("%s:%d: categories must be a list or a string" % (path, ln))
        out.append((ln, Item(str(o["item_id"]).strip(), str(o.get("title") or ""),
                             str(o.get("text") or ""), [str(c) for c in cats])))
    return _check(out, path)


def write_items_csv(path, items):
    """items.csv with header item_id,title,text,categories ('|'-joined)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(ITEM_COLUMNS)
        for it in items:
            w.writerow([it.item_id, it.title, it.text, "|".join(it.categories)])


def format_value(v):
    """A rating or other value as the shortest decimal that reads back the same."""
    if v is None:
        return ""
    f = float(v)
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


class InteractionsWriter:
    """Writes interactions.csv rows (user_id,item_id,type,ts,value) in the order
    given. Ids must not contain commas, quotes or newlines (checked)."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "w", encoding="utf-8", newline="")
        self.f.write(INTERACTION_HEADER + "\n")
        self.count = 0

    def write(self, user_id, item_id, type_, ts_ms, value=None):
        if type_ not in EVENT_TYPES:
            raise ValueError("unknown event type %r" % type_)
        for s in (user_id, item_id):
            if not s or any(c in s for c in ',"\n\r'):
                raise ValueError("id %r empty or has a comma, quote or newline" % s)
        self.f.write("%s,%s,%s,%d,%s\n" % (user_id, item_id, type_, ts_ms, format_value(value)))
        self.count += 1

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def atomic_dir(path):
    os.makedirs(path, exist_ok=True)
    return path
