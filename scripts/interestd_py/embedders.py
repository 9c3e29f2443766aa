"""Text embedders for the catalog: the bundled offline WordLlama model (default),
an OpenAI-compatible /v1/embeddings endpoint, a local sentence-transformers
model directory. Each returns float32 [n][dim] rows, not yet normalised, and a
name for CATM's embedder field."""

import json
import os
import urllib.error
import urllib.request

import numpy as np

WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIMS = (64, 128, 256)
HTTP_TIMEOUT_S = 120
BATCH = 64               # texts per request to an endpoint or sentence-transformers
WORDLLAMA_BATCH = 1024   # texts per WordLlama tokenizer call (the same vectors, ~20% faster)
NORM_ROWS = 65536        # rows normalised at a time


class EmbedError(Exception):
    """The embedder cannot run (missing model, unreachable endpoint, bad reply)."""


def _truncate(x, dim, name):
    if dim is None:
        return x
    if dim > x.shape[1]:
        raise EmbedError("%s gives %d dimensions, cannot keep --dim %d" % (name, x.shape[1], dim))
    return np.ascontiguousarray(x[:, :dim])


class WordLlamaEmbedder:
    """WordLlama l2_supercat (token embeddings of large LLMs, mean-pooled),
    loaded from the files inside the installed package: never the network.
    `dim` truncates the Matryoshka embedding (64, 128 or 256)."""

    def __init__(self, dim=256):
        if dim not in WORDLLAMA_DIMS:
            raise EmbedError("wordllama: --dim must be one of %s" % (WORDLLAMA_DIMS,))
        try:
            import wordllama
            from safetensors import safe_open
            from wordllama import WordLlama
            from wordllama.inference import WordLlamaInference
        except ImportError as e:
            raise EmbedError("wordllama is not installed in this Python (%s): run make deps" % e)
        pkg = os.path.dirname(os.path.abspath(wordllama.__file__))
        weights = os.path.join(pkg, "weights", "%s_256.safetensors" % WORDLLAMA_CONFIG)
        tok = os.path.join(pkg, "tokenizers", "%s_tokenizer_config.json" % WORDLLAMA_CONFIG)
        for p in (weights, tok):
            if not os.path.isfile(p):
                raise EmbedError("wordllama: bundled file %s is missing" % p)
        from pathlib import Path
        # hf_model_id=None: a missing file is an error, never a download.
        tokenizer = WordLlama.load_tokenizer(Path(tok), hf_model_id=None)
        with safe_open(weights, framework="np", device="cpu") as f:
            table = f.get_tensor("embedding.weight")[:, :dim]
        self.model = WordLlamaInference(np.ascontiguousarray(table), tokenizer, binary=False)
        self.dim = dim
        self.name = "wordllama:%s:%d" % (WORDLLAMA_CONFIG, dim)

    def embed(self, texts):
        x = self.model.embed(list(texts), norm=False, batch_size=WORDLLAMA_BATCH)
        return np.asarray(x, dtype=np.float32)


def _post_json(url, payload, what):
    body = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as r:
            data = r.read()
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode("utf-8", "replace")
        raise EmbedError("%s: %s answered HTTP %d: %s" % (what, url, e.code, detail)) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise EmbedError("%s: cannot reach %s: %s" % (what, url, reason)) from None
    try:
        return json.loads(data)
    except ValueError:
        raise EmbedError("%s: %s did not answer JSON" % (what, url)) from None


def endpoint(base, path):
    """`base` (e.g. http://host:8000/v1) joined with `path` (e.g. /embeddings),
    unless base already ends with it."""
    base = base.rstrip("/")
    return base if base.endswith(path) else base + path


class OpenAIEmbedder:
    """POSTs batches to an OpenAI-compatible /v1/embeddings endpoint (vLLM,
    llama.cpp server, Ollama). OPENAI_API_KEY, when set, is sent as a bearer
    token."""

    def __init__(self, url, model, dim=None):
        if not url:
            raise EmbedError("--embedder openai needs --url (e.g. http://127.0.0.1:8000/v1)")
        self.url = endpoint(url, "/embeddings")
        self.model = model or "default"
        self.dim = dim
        self.name = None  # known after the first answer

    def embed(self, texts):
        texts = list(texts)
        rows = []
        for i in range(0, len(texts), BATCH):
            chunk = texts[i:i + BATCH]
            reply = _post_json(self.url, {"model": self.model, "input": chunk}, "embeddings")
            data = reply.get("data") if isinstance(reply, dict) else None
            if not isinstance(data, list) or len(data) != len(chunk):
                raise EmbedError("embeddings: %s answered %s items for %d inputs"
                                 % (self.url, len(data) if isinstance(data, list) else "no",
                                    len(chunk)))
            try:
                data = sorted(data, key=lambda d: d.get("index", 0))
                rows.extend(np.asarray(d["embedding"], dtype=np.float64) for d in data)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise EmbedError("embeddings: %s: malformed data entry" % self.url) from None
        if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1 or rows[0].size == 0:
            raise EmbedError("embeddings: %s answered vectors of differing sizes" % self.url)
        x = _truncate(np.vstack(rows).astype(np.float32), self.dim, "embeddings endpoint")
        self.name = "openai:%s:%d" % (self.model, x.shape[1])
        return x


class STEmbedder:
    """A sentence-transformers model from a local directory (offline)."""

    def __init__(self, path, dim=None):
        if not path or not os.path.isdir(path):
            raise EmbedError("--embedder st needs --st-path DIR, a local model directory "
                             "(got %r)" % path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbedError("--embedder st: the sentence-transformers package is not installed "
                             "in this venv (pip install sentence-transformers)") from None
        self.model = SentenceTransformer(path, device="cpu")
        self.dim = dim
        self.name_base = "st:%s" % os.path.basename(os.path.normpath(path))
        self.name = None

    def embed(self, texts):
        x = self.model.encode(list(texts), batch_size=BATCH, convert_to_numpy=True,
                              normalize_embeddings=False, show_progress_bar=False)
        x = _truncate(np.asarray(x, dtype=np.float32), self.dim, self.name_base)
        self.name = "%s:%d" % (self.name_base, x.shape[1])
        return x


def normalise(x):
    """Rows scaled to unit L2 norm (float32). A zero row (nothing embeddable)
    becomes the uniform unit vector so it stays finite and deterministic.
    float64 arithmetic, NORM_ROWS rows at a time: a million-item catalog
    needs no float64 copy of the whole matrix."""
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=np.float32)
    for lo in range(0, x.shape[0], NORM_ROWS):
        c = np.array(x[lo:lo + NORM_ROWS], dtype=np.float64)
        if not np.all(np.isfinite(c)):
            raise EmbedError("the embedder returned non-finite values")
        n = np.linalg.norm(c, axis=1, keepdims=True)
        zero = n[:, 0] == 0
        if np.any(zero):
            c[zero] = 1.0
            n[zero] = np.sqrt(c.shape[1])
        out[lo:lo + NORM_ROWS] = c / n
    return out
