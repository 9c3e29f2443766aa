"""`scripts/catalog`: builds the LLM catalog file (`build`) and prints a summary
of a catalog or model file (`info`). Format: schemas/modelfile.md."""

import os
import sys
import time

from . import cli, container, embedders, items as items_mod, kmeans, naming


def log(msg):
    sys.stderr.write("catalog: %s\n" % msg)
    sys.stderr.flush()


def make_embedder(a):
    if a.embedder == "wordllama":
        return embedders.WordLlamaEmbedder(a.dim if a.dim is not None else 256)
    if a.embedder == "openai":
        return embedders.OpenAIEmbedder(a.url, a.model, a.dim)
    return embedders.STEmbedder(a.st_path, a.dim)


def build(a):
    if not 1 <= a.k1 <= 256:
        raise SystemExit("catalog: --k1 must be in 1..256")
    if a.k2 is not None and not 1 <= a.k2 <= kmeans.K2_MAX:
        raise SystemExit("catalog: --k2 must be in 1..%d" % kmeans.K2_MAX)
    if not 0 <= a.seed < 1 << 64:
        raise SystemExit("catalog: --seed must be in 0..2^64-1")
    if a.namer == "openai" and not a.chat_url:
        raise SystemExit("catalog: --namer openai needs --chat-url")
    t0 = time.monotonic()
    items = items_mod.read_items(a.items)
    emb_model = make_embedder(a)
    t1 = time.monotonic()
    x = embedders.normalise(emb_model.embed([it.embed_text() for it in items]))
    if x.shape[0] != len(items):
        raise embedders.EmbedError("embedder returned %d rows for %d items"
                                   % (x.shape[0], len(items)))
    if x.shape[1] > 4096:
        raise embedders.EmbedError("dimension %d > 4096: pass --dim" % x.shape[1])
    t2 = time.monotonic()
    k2 = a.k2
    tree = kmeans.build_tree(x, a.k1, k2, a.seed)
    t3 = time.monotonic()
    names = naming.name_tree(tree, items)
    if a.namer == "openai":
        names = naming.chat_names(tree, items, names, a.chat_url, a.chat_model or a.model)
    t4 = time.monotonic()
    cat = container.Catalog(
        item_ids=[it.item_id for it in items], titles=[it.title for it in items], emb=x,
        tnod=tree.tnod, tcen=tree.tcen, names=names, itir=tree.itir, n_tier1=tree.n_tier1,
        seed=a.seed, k1=a.k1, k2=k2, embedder=emb_model.name)
    container.write_catalog(a.out, cat)
    t5 = time.monotonic()
    log("%d items, dim %d (%s), %d level-1 and %d level-2 tiers (k1 %d, k2 %d%s) -> %s"
        % (len(items), x.shape[1], emb_model.name, tree.n_tier1,
           len(names) - tree.n_tier1, a.k1, k2, "", a.out))
    log("timings: load %.2fs, embed %.2fs, k-means %.2fs, names %.2fs, write %.2fs, total %.2fs"
        % (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0))
    return 0


def info(a):
    cat = container.load(a.file)
    kind = "catalog" if cat.kind == container.KIND_CATALOG else "model"
    print("%s: %s, %d items, dim %d, embedder %s" % (a.file, kind, cat.n_items, cat.dim,
                                                    cat.embedder))
    print("tiers: %d level-1, %d level-2 (k1 %d, k2 %d, seed %d)"
          % (cat.n_tier1, cat.n_nodes - cat.n_tier1, cat.k1, cat.k2, cat.seed))
    if cat.hpar:
        hp = cat.hpar
        print("model: hidden %d, type_dim %d, ring_len %d, model_version %d, train_seed %d"
              % (hp["hidden"], hp["type_dim"], hp["ring_len"], hp["model_version"],
                 hp["train_seed"]))
    children = {}
    for i in range(cat.n_tier1, cat.n_nodes):
        children.setdefault(int(cat.tnod[i][0]), []).append(i)
    for t in range(cat.n_tier1):
        print("  %-6s %5d items  %s" % (cat.node_label(t), cat.tnod[t][3], cat.names[t]))
        if a.level2:
            for c in children.get(t, []):
                print("    %-6s %5d items  %s" % (cat.node_label(c), cat.tnod[c][3],
                                                  cat.names[c]))
    return 0


def parse_args(argv):
    p = cli.ArgumentParser(prog="catalog", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="embed items, build and name the tier tree, write FILE.icat")
    b.add_argument("--items", required=True, help="items file, CSV or JSONL (schemas/items.md)")
    b.add_argument("--out", required=True, help="catalog file to write (.icat)")
    b.add_argument("--k1", type=int, default=16, help="level-1 tiers (default 16)")
    b.add_argument("--k2", type=int, default=8,
                   help="level-2 tiers per level-1 tier, 1..255 (default 8 at every catalog "
                        "size: interestd's tiered top-N cuts each leaf into cells by item bias, "
                        "more as the leaf grows, and runs faster on 16 x 8 than on finer trees; "
                        "docs/BENCH.md \"Tiered search\")")
    b.add_argument("--seed", type=int, default=1, help="k-means seed (default 1)")
    b.add_argument("--dim", type=int, default=None,
                   help="embedding dimensions kept (wordllama: 64, 128 or 256, default 256; "
                        "others: the model's own unless given)")
    b.add_argument("--embedder", choices=("wordllama", "openai", "st"), default="wordllama",
                   help="embedding backend (default: the bundled offline WordLlama)")
    b.add_argument("--url", help="OpenAI-compatible base URL for --embedder openai, "
                                 "e.g. http://127.0.0.1:8000/v1")
    b.add_argument("--model", help="model name sent to the endpoints")
    b.add_argument("--st-path", help="local sentence-transformers model directory")
    b.add_argument("--namer", choices=("ctfidf", "openai"), default="ctfidf",
                   help="node names: c-TF-IDF keywords (default) or a chat endpoint's label")
    b.add_argument("--chat-url", help="OpenAI-compatible base URL for --namer openai")
    b.add_argument("--chat-model", help="model name for the chat endpoint (default: --model)")
    i = sub.add_parser("info", help="summary of a catalog or model file")
    i.add_argument("file")
    i.add_argument("--level2", action="store_true", help="list level-2 tiers too")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return build(a) if a.cmd == "build" else info(a)
    except BrokenPipeError:
        # `catalog info | head`: the reader has all it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (items_mod.ItemsError, embedders.EmbedError, container.FormatError, OSError,
            ValueError) as e:
        log("error: %s" % e)
        return 1
