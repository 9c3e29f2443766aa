"""c-TF-IDF node names."""

from interestd_py import naming


def test_tokens():
    assert naming.tokens("The Children's Film-Noir (1995) of Misérables") == \
        ["children", "film-noir", "misérables"]


def test_genre_words_name_their_clusters():
    comedy = ["Wedding Crashers. Comedy, Romance", "Love Actually. Comedy, Romance",
              "Notting Hill. Comedy, Romance, Love", "Four Weddings. Comedy, Romance, Love"]
    horror = ["The Shining. Horror, Thriller", "Scream. Horror, Mystery",
              "Halloween. Horror, Thriller", "It Follows. Horror"]
    scifi = ["Alien. Sci-Fi, Horror, Space", "Star Wars. Sci-Fi, Space, Adventure",
             "Interstellar. Sci-Fi, Space", "Gravity. Sci-Fi, Space, Thriller"]
    docs = [[w for t in g for w in naming.tokens(t)] for g in (comedy, horror, scifi)]
    names = naming.keyword_names(docs)
    assert len(names) == 3
    first = [n.split(", ") for n in names]
    assert all(len(f) == 3 for f in first)
    assert {"comedy", "romance"} <= set(first[0])
    assert "horror" in first[1] and "thriller" in first[1]
    assert {"sci-fi", "space"} <= set(first[2])
    # a word common to every cluster says nothing about one
    docs2 = [d + ["movie", "movie"] for d in docs]
    assert all("movie" not in n for n in naming.keyword_names(docs2))


def test_identical_clusters_get_distinct_names():
    d = ["jazz", "vinyl", "bebop", "trumpet", "sax"]
    names = naming.keyword_names([d, list(d)])
    assert names[0] != names[1]


def test_ctfidf_weights():
    s = naming.ctfidf([["a", "a", "b"], ["b", "c"]])
    assert s[0]["a"] > s[0]["b"]  # b appears in both classes
    assert set(s[1]) == {"b", "c"}
