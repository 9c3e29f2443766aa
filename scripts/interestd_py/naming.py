"""Names of tier nodes: c-TF-IDF keywords (default) or a short label from an
OpenAI-compatible /v1/chat/completions endpoint."""

import math
import re
from collections import Counter

from .embedders import EmbedError, _post_json, endpoint

N_KEYWORDS = 3
MAX_LABEL_CHARS = 64
SAMPLE_TITLES = 12

STOP_WORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been
before being below between both but by can can't cannot could couldn't did didn't do does
doesn't doing don't down during each few for from further get gets got had hadn't has hasn't
have haven't having he her here hers herself him himself his how i if in into is isn't it
it's its itself just let's like made make makes me more most much must my myself new no nor
not now of off on once one only or other ought our ours ourselves out over own per same she
should so some such than that the their theirs them themselves then there these they this
those through to too two under until up us very was wasn't we were what when where which
while who whom why will with within without won't would you your yours yourself yourselves
around brings enough feature features featuring built
el la le les de der die das du des il lo los las une un et und
""".split())

_WORD = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*")


def tokens(text):
    """Lower-case words of at least 3 letters, stop words and possessive 's
    removed (numbers and years are not words)."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w.endswith("'s"):
            w = w[:-2]
        if len(w) >= 3 and w not in STOP_WORDS:
            out.append(w)
    return out


def ctfidf(class_docs):
    """c-TF-IDF scores: class_docs is a list (one per class) of token lists
    (or of Counters of tokens).
    W(t,c) = tf(t,c)/|c| * log(1 + A / f(t)), A the mean token count per class,
    f(t) the count of t over all classes. Returns one Counter-like dict per class."""
    tfs = [Counter(d) for d in class_docs]
    total = Counter()
    for tf in tfs:
        total.update(tf)
    a = sum(total.values()) / max(len(tfs), 1)
    out = []
    for tf in tfs:
        size = sum(tf.values()) or 1
        out.append({t: (c / size) * math.log(1.0 + a / total[t]) for t, c in tf.items()})
    return out


def keyword_names(class_docs, k=N_KEYWORDS, class_df=None):
    """k best c-TF-IDF words per class, comma-joined ("comedy, romance, love").
    With class_df (per class: word -> number of the class's items holding it),
    words shared by at least two items rank before words of a single item, so
    one odd title does not name a whole cluster. Ties go to the alphabetically
    first word; a name already given to an earlier class swaps its last word
    for the next best one, so siblings differ."""
    scores = ctfidf(class_docs)
    names, used = [], set()
    for ci, s in enumerate(scores):
        df = class_df[ci] if class_df is not None else {}
        ranked = [t for t, _ in sorted(s.items(),
                                       key=lambda kv: (df.get(kv[0], 2) < 2, -kv[1], kv[0]))]
        words = ranked[:k]
        j = k
        while frozenset(words) in used and j < len(ranked):
            words = ranked[:k - 1] + [ranked[j]]
            j += 1
        used.add(frozenset(words))
        names.append(", ".join(words) if words else "misc")
    return names


def _node_counts(members, items):
    """Word counts (tf) and per-word item counts (df) of the items `members`."""
    tf, df = Counter(), Counter()
    for m in members:
        words = tokens(items[m].embed_text())
        tf.update(words)
        df.update(set(words))
    return tf, df


def name_tree(tree, items):
    """c-TF-IDF names for every node: level-1 nodes scored against each other,
    level-2 nodes against all level-2 nodes. Each item is tokenized once, into
    its level-2 node's counts; a level-1 node whose children hold all its
    items sums theirs (the same counts as its items': a Counter per node, no
    token list per item, which took gigabytes at a million items)."""
    level = tree.tnod[:, 1]
    n_nodes = len(tree.members)
    counts = [None] * n_nodes
    children = {}
    for i in range(n_nodes):
        if level[i] == 2:
            counts[i] = _node_counts(tree.members[i], items)
            children.setdefault(int(tree.tnod[i][0]), []).append(i)
    for i in range(n_nodes):
        if level[i] != 1:
            continue
        kids = children.get(i, [])
        if sum(len(tree.members[c]) for c in kids) != len(tree.members[i]):
            counts[i] = _node_counts(tree.members[i], items)
            continue
        tf, df = Counter(), Counter()
        for c in kids:
            tf.update(counts[c][0])
            df.update(counts[c][1])
        counts[i] = (tf, df)
    names = [None] * n_nodes
    for lv in (1, 2):
        nodes = [i for i in range(n_nodes) if level[i] == lv]
        class_docs = [counts[i][0] for i in nodes]
        class_df = [counts[i][1] for i in nodes]
        for i, nm in zip(nodes, keyword_names(class_docs, class_df=class_df)):
            names[i] = nm
    return names


def _clean_label(s):
    s = (s or "").strip().splitlines()[0] if (s or "").strip() else ""
    s = s.strip().strip("\"'`*").strip()
    if s.lower().startswith("label:"):
        s = s[6:].strip()
    return s[:MAX_LABEL_CHARS].strip()


def chat_names(tree, items, keyword, url, model):
    """One short label per node from a chat endpoint, given the node's c-TF-IDF
    keywords, a few item titles and (for level 2) the parent's label. A node
    whose answer is empty keeps its keyword name."""
    url = endpoint(url, "/chat/completions")
    names = list(keyword)
    for i, members in enumerate(tree.members):
        titles = [items[m].title or items[m].item_id for m in members[:SAMPLE_TITLES]]
        parent = int(tree.tnod[i][0])
        ctx = "" if tree.tnod[i][1] == 1 else (
            "It is a sub-group of the broader group \"%s\".\n" % names[parent])
        prompt = ("These catalog items form one group of user interests.\n%s"
                  "Keywords: %s\nExample items:\n- %s\n"
                  "Reply with only a short label for the group (2 to 4 words)."
                  % (ctx, keyword[i], "\n- ".join(titles)))
        reply = _post_json(url, {
            "model": model or "default",
            "messages": [
                {"role": "system", "content": "You name groups of products and media for "
                                              "a recommender's operators. Be concise."},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
            "max_tokens": 16,
        }, "chat namer")
        try:
            label = _clean_label(reply["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise EmbedError("chat namer: %s: malformed answer" % url) from None
        if label:
            names[i] = label
    return names
