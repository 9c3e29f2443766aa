"""MovieLens to the generic items/interactions files (schemas/items.md).

Layouts detected in the input directory:
- ML-100K: u.item (Latin-1, '|'-separated, 19 genre flags in u.genre order) and
  u.data (user, item, rating, unix seconds; tab-separated);
- ML-1M: movies.dat and ratings.dat ('::'-separated, Latin-1);
- MovieLens CSV (ml-latest, ml-25m, ...): movies.csv (movieId,title,genres with
  '|' genres) and ratings.csv (userId,movieId,rating,timestamp), UTF-8.
Each rating is one VIEW interaction (a rating means the user watched the
movie) with value = rating and ts = timestamp * 1000, in the input's line order.
"""

import csv
import os

from .items import InteractionsWriter, Item, write_items_csv

# u.genre of ML-100K, used when the file is absent.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
NO_GENRE = ("unknown", "(no genres listed)")


class ConvertError(Exception):
    """Input that is not a MovieLens layout we know; names the file and line."""


def detect(d):
    if os.path.isfile(os.path.join(d, "u.data")) and os.path.isfile(os.path.join(d, "u.item")):
        return "ml-100k"
    if os.path.isfile(os.path.join(d, "ratings.dat")) and os.path.isfile(os.path.join(d, "movies.dat")):
        return "ml-1m"
    if os.path.isfile(os.path.join(d, "ratings.csv")) and os.path.isfile(os.path.join(d, "movies.csv")):
        return "csv"
    raise ConvertError("%s: no MovieLens layout found (want u.data+u.item, "
                       "ratings.dat+movies.dat or ratings.csv+movies.csv)" % d)


def _genres(names):
    return [g for g in names if g and g not in NO_GENRE]


def _read_100k_genres(d):
    p = os.path.join(d, "u.genre")
    if not os.path.isfile(p):
        return list(ML100K_GENRES)
    out = {}
    with open(p, encoding="latin-1") as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            name, _, idx = line.rpartition("|")
            if not name or not idx.isdigit():
                raise ConvertError("%s:%d: expected name|index" % (p, ln))
            out[int(idx)] = name
    if sorted(out) != list(range(len(out))):
        raise ConvertError("%s: genre indices are not 0..%d" % (p, len(out) - 1))
    return [out[i] for i in range(len(out))]


def read_items_100k(d):
    genres = _read_100k_genres(d)
    p = os.path.join(d, "u.item")
    items = []
    with open(p, encoding="latin-1") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fl = line.split("|")
            if len(fl) != 5 + len(genres) or not fl[0]:
                raise ConvertError("%s:%d: %d fields, expected %d" % (p, ln, len(fl), 5 + len(genres)))
            flags = fl[5:]
            if any(x not in ("0", "1") for x in flags):
                raise ConvertError("%s:%d: genre flags must be 0 or 1" % (p, ln))
            items.append(Item(fl[0], fl[1].strip(), "",
                              _genres(g for g, x in zip(genres, flags) if x == "1")))
    return items


def read_items_1m(d):
    p = os.path.join(d, "movies.dat")
    items = []
    with open(p, encoding="latin-1") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fl = line.split("::")
            if len(fl) != 3 or not fl[0]:
                raise ConvertError("%s:%d: expected movieId::title::genres" % (p, ln))
            items.append(Item(fl[0], fl[1].strip(), "", _genres(fl[2].split("|"))))
    return items


def read_items_csv(d):
    p = os.path.join(d, "movies.csv")
    items = []
    with open(p, encoding="utf-8", newline="") as f:
        r = csv.reader(f)
        header = next(r, None)
        if header is None or [h.strip().lstrip("\ufeff") for h in header[:3]] != \
                ["movieId", "title", "genres"]:
            raise ConvertError("%s:1: header must be movieId,title,genres" % p)
        for row in r:
            if not row:
                continue
            if len(row) != 3 or not row[0]:
                raise ConvertError("%s:%d: expected 3 fields" % (p, r.line_num))
            items.append(Item(row[0], row[1].strip(), "", _genres(row[2].split("|"))))
    return items


def _rating(p, ln, s):
    try:
        v = float(s)
    except ValueError:
        raise ConvertError("%s:%d: bad rating %r" % (p, ln, s)) from None
    return v


def _ts(p, ln, s):
    if not s.strip().lstrip("-").isdigit():
        raise ConvertError("%s:%d: bad timestamp %r" % (p, ln, s))
    return int(s) * 1000


def convert_ratings(d, layout, w, known):
    """Streams the ratings file into w (InteractionsWriter) in line order."""
    if layout == "csv":
        p = os.path.join(d, "ratings.csv")
        with open(p, encoding="utf-8", newline="") as f:
            head = f.readline().strip().lstrip("\ufeff")
            if not head.startswith("userId,movieId,rating,timestamp"):
                raise ConvertError("%s:1: header must be userId,movieId,rating,timestamp" % p)
            for ln, line in enumerate(f, 2):
                fl = line.rstrip("\r\n").split(",")
                if fl == [""]:
                    continue
                _one(p, ln, fl, w, known)
        return
    p, sep = (os.path.join(d, "u.data"), "\t") if layout == "ml-100k" else \
        (os.path.join(d, "ratings.dat"), "::")
    with open(p, encoding="latin-1") as f:
        for ln, line in enumerate(f, 1):
            fl = line.rstrip("\r\n").split(sep)
            if fl == [""]:
                continue
            _one(p, ln, fl, w, known)


def _one(p, ln, fl, w, known):
    if len(fl) != 4 or not fl[0] or not fl[1]:
        raise ConvertError("%s:%d: expected user, movie, rating, timestamp" % (p, ln))
    if fl[1] not in known:
        raise ConvertError("%s:%d: movie %s is not in the movies file" % (p, ln, fl[1]))
    w.write(fl[0], fl[1], "VIEW", _ts(p, ln, fl[3]), _rating(p, ln, fl[2]))


def convert(in_dir, out_dir):
    """Writes out_dir/items.csv and out_dir/interactions.csv. Returns
    (layout, n_items, n_interactions)."""
    layout = detect(in_dir)
    reader = {"ml-100k": read_items_100k, "ml-1m": read_items_1m, "csv": read_items_csv}[layout]
    items = reader(in_dir)
    ids = set()
    for it in items:
        if it.item_id in ids:
            raise ConvertError("%s: duplicate movie id %s" % (in_dir, it.item_id))
        ids.add(it.item_id)
    os.makedirs(out_dir, exist_ok=True)
    items_path = os.path.join(out_dir, "items.csv")
    inter_path = os.path.join(out_dir, "interactions.csv")
    write_items_csv(items_path + ".tmp", items)
    with InteractionsWriter(inter_path + ".tmp") as w:
        convert_ratings(in_dir, layout, w, ids)
        n = w.count
    os.replace(items_path + ".tmp", items_path)
    os.replace(inter_path + ".tmp", inter_path)
    return layout, len(items), n
