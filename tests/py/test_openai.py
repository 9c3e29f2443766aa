"""The OpenAI-compatible embedder and chat namer against a real local HTTP
server (conftest.FakeOpenAI), and the sentence-transformers backend's errors."""

import numpy as np
import pytest

from conftest import FAKE_DIM, fake_embedding, free_port
from helpers import run_script
from interestd_py import container, embedders


def toy_items(path, n=70):
    from helpers import write_items
    kinds = [("jazz", "Jazz|Music"), ("tent", "Outdoor|Camping"), ("novel", "Books|Sci-Fi")]
    rows = []
    for i in range(n):
        k, cats = kinds[i % 3]
        rows.append(("i%03d" % i, "%s item %d" % (k.title(), i), "A fine %s." % k, cats.split("|")))
    write_items(str(path), rows)
    return rows


def test_openai_embedder(fake_openai, tmp_path):
    rows = toy_items(tmp_path / "items.csv")
    out = tmp_path / "o.icat"
    run_script("catalog", "build", "--items", tmp_path / "items.csv", "--out", out,
               "--embedder", "openai", "--url", fake_openai.url, "--model", "fake-embed",
               "--k1", 3, "--k2", 2)
    emb_reqs = [b for p, b in fake_openai.requests if p == "/v1/embeddings"]
    assert [len(b["input"]) for b in emb_reqs] == [64, 6]          # batched
    assert all(b["model"] == "fake-embed" for b in emb_reqs)
    cat = container.load(str(out))
    assert cat.dim == FAKE_DIM and cat.embedder == "openai:fake-embed:%d" % FAKE_DIM
    from interestd_py.items import Item
    want = np.array([fake_embedding(Item(i, t, x, c).embed_text()) for i, t, x, c in rows])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(cat.emb, want, rtol=1e-6, atol=1e-6)   # index order honoured
    # the three kinds share words, so they are the three level-1 tiers
    assert len({(int(cat.itir[i, 0]), i % 3) for i in range(len(rows))}) == 3


def test_openai_embedder_truncates_dim(fake_openai, tmp_path):
    toy_items(tmp_path / "items.csv", n=12)
    out = tmp_path / "o.icat"
    run_script("catalog", "build", "--items", tmp_path / "items.csv", "--out", out,
               "--embedder", "openai", "--url", fake_openai.url + "/embeddings", "--dim", 16,
               "--k1", 2, "--k2", 2)
    cat = container.load(str(out))
    assert cat.dim == 16 and cat.embedder == "openai:default:16"


def test_openai_unreachable_is_a_clear_error(tmp_path):
    toy_items(tmp_path / "items.csv", n=5)
    url = "http://127.0.0.1:%d/v1" % free_port()
    r = run_script("catalog", "build", "--items", tmp_path / "items.csv", "--out",
                   tmp_path / "o.icat", "--embedder", "openai", "--url", url, check=False)
    assert r.returncode == 1
    assert "cannot reach %s/embeddings" % url in r.stderr
    assert not (tmp_path / "o.icat").exists()


def test_chat_namer(fake_openai, tmp_path):
    toy_items(tmp_path / "items.csv", n=30)
    out = tmp_path / "n.icat"
    run_script("catalog", "build", "--items", tmp_path / "items.csv", "--out", out,
               "--namer", "openai", "--chat-url", fake_openai.url, "--chat-model", "fake-chat",
               "--k1", 3, "--k2", 2)
    chats = [b for p, b in fake_openai.requests if p == "/v1/chat/completions"]
    cat = container.load(str(out))
    assert len(chats) == cat.n_nodes
    assert all(b["model"] == "fake-chat" for b in chats)
    # The fake answers '"Fans of <first keyword>"\n'; quotes and newline are cleaned.
    assert all(n.startswith("Fans of ") and '"' not in n for n in cat.names)
    assert {n.split()[-1].lower() for n in cat.names[:3]} <= {"jazz", "tent", "novel", "music",
                                                              "outdoor", "camping", "books",
                                                              "sci-fi", "fine", "item"}
    # Level-2 prompts name their parent's label.
    assert any('sub-group of the broader group "Fans of' in b["messages"][-1]["content"]
               for b in chats)


def test_sentence_transformers_backend_errors(tmp_path):
    with pytest.raises(embedders.EmbedError, match="--st-path"):
        embedders.STEmbedder(str(tmp_path / "missing"))
    try:
        import sentence_transformers  # noqa: F401
        pytest.skip("sentence-transformers is installed here")
    except ImportError:
        pass
    with pytest.raises(embedders.EmbedError, match="sentence-transformers package is not installed"):
        embedders.STEmbedder(str(tmp_path))
