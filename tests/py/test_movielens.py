"""scripts/convert-movielens on the real ML-100K and on a MovieLens-CSV fixture."""

import csv
import os

from helpers import run_script
from interestd_py.items import read_items


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_ml100k(ml100k, tmp_path):
    d = ml100k
    r = run_script("convert-movielens", "--in", d, "--out", tmp_path)
    assert "ml-100k: 1682 items, 100000 interactions" in r.stderr
    inter = read_rows(tmp_path / "interactions.csv")
    assert inter[0] == ["user_id", "item_id", "type", "ts", "value"]
    assert len(inter) == 100001
    # u.data's first line is "196\t242\t3\t881250949"
    assert inter[1] == ["196", "242", "VIEW", "881250949000", "3"]
    with open(os.path.join(d, "u.data")) as f:
        last = f.read().splitlines()[-1].split("\t")
    assert inter[-1] == [last[0], last[1], "VIEW", last[3] + "000", last[2]]
    assert {row[2] for row in inter[1:]} == {"VIEW"}
    items = read_items(str(tmp_path / "items.csv"))
    assert len(items) == 1682
    assert items[0].item_id == "1" and items[0].title == "Toy Story (1995)"
    assert items[0].categories == ["Animation", "Children's", "Comedy"]
    assert items[0].embed_text() == "Toy Story (1995). Animation, Children's, Comedy"
    by_id = {it.item_id: it for it in items}
    assert by_id["543"].title == "Misérables, Les (1995)"      # Latin-1 decoded, comma quoted
    assert by_id["1633"].title.startswith("Á köldum klaka")
    assert by_id["2"].categories == ["Action", "Adventure", "Thriller"]
    assert by_id["267"].categories == []                        # only the "unknown" genre


MOVIES_CSV = '''movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
11,"American President, The (1995)",Comedy|Drama|Romance
29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama|Fantasy|Mystery|Sci-Fi
182715,Quién te cantará (2018),(no genres listed)
'''
RATINGS_CSV = '''userId,movieId,rating,timestamp
1,29,3.5,1112484676
1,1,4.0,1112484819
2,11,0.5,974820889
1,182715,5.0,1112484580
'''


def test_csv_layout(tmp_path):
    src = tmp_path / "ml-latest-small"
    src.mkdir()
    (src / "movies.csv").write_text(MOVIES_CSV, encoding="utf-8")
    (src / "ratings.csv").write_text(RATINGS_CSV, encoding="utf-8")
    out = tmp_path / "out"
    r = run_script("convert-movielens", "--in", src, "--out", out)
    assert "csv: 4 items, 4 interactions" in r.stderr
    items = read_items(str(out / "items.csv"))
    assert [it.item_id for it in items] == ["1", "11", "29", "182715"]
    assert items[1].title == "American President, The (1995)"
    assert items[2].title == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert items[2].categories == ["Adventure", "Drama", "Fantasy", "Mystery", "Sci-Fi"]
    assert items[3].categories == []
    assert items[1].embed_text() == "American President, The (1995). Comedy, Drama, Romance"
    inter = read_rows(out / "interactions.csv")
    assert inter[1:] == [  # file order kept (not time order)
        ["1", "29", "VIEW", "1112484676000", "3.5"],
        ["1", "1", "VIEW", "1112484819000", "4"],
        ["2", "11", "VIEW", "974820889000", "0.5"],
        ["1", "182715", "VIEW", "1112484580000", "5"],
    ]


def test_errors_are_named(tmp_path):
    r = run_script("convert-movielens", "--in", tmp_path, "--out", tmp_path / "o", check=False)
    assert r.returncode == 1 and "no MovieLens layout" in r.stderr
    (tmp_path / "movies.csv").write_text(MOVIES_CSV, encoding="utf-8")
    (tmp_path / "ratings.csv").write_text(RATINGS_CSV + "3,999,4.0,1\n", encoding="utf-8")
    r = run_script("convert-movielens", "--in", tmp_path, "--out", tmp_path / "o", check=False)
    assert r.returncode == 1 and "ratings.csv:6: movie 999 is not in the movies file" in r.stderr
