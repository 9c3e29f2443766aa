"""Shared fixtures of the Python tests: the scripts/ package on sys.path, the
repository paths, ML-100K's location (DATA_ROOT), the programs of the build
under test (BUILD_DIR), and a fake OpenAI-compatible server."""

import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
sys.path.insert(0, SCRIPTS)

FAKE_DIM = 32


def data_root():
    """The shared data folder: $DATA_ROOT (relative paths from the repository
    root, as `make` and the test runners use it), default ../shared/data beside
    the repository."""
    return os.path.join(ROOT, os.environ.get("DATA_ROOT") or os.path.join("..", "shared", "data"))


@pytest.fixture
def ml100k():
    """ML-100K's folder under data_root(). A test that asks for it fails, not
    skips, when it is missing: it is part of the test setup, like the build."""
    d = os.path.join(data_root(), "ml-100k")
    if not os.path.isfile(os.path.join(d, "u.data")):
        pytest.fail("ML-100K not found: no %s (set DATA_ROOT to the folder holding ml-100k/)"
                    % os.path.join(d, "u.data"), pytrace=False)
    return d


def built(name):
    """A program of the build under test: $BUILD_DIR (set by tests/run-unit),
    default build/. Fails the calling test when it is missing."""
    p = os.path.join(os.environ.get("BUILD_DIR") or os.path.join(ROOT, "build"), name)
    if not os.access(p, os.X_OK):
        pytest.fail("%s not built (make all)" % p, pytrace=False)
    return p


def fake_embedding(text):
    """Deterministic bag-of-words vector: each word adds a hash-chosen +-1 to
    one of FAKE_DIM coordinates (texts sharing words are close)."""
    v = np.zeros(FAKE_DIM)
    for w in text.lower().replace(",", " ").replace(".", " ").split():
        h = hashlib.sha256(w.encode()).digest()
        v[h[0] % FAKE_DIM] += 1.0 if h[1] & 1 else -1.0
    if not v.any():
        v[0] = 1.0
    return v


class FakeOpenAI:
    """A real HTTP server on 127.0.0.1 answering /v1/embeddings and
    /v1/chat/completions; records every request body."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, body))
                if self.path == "/v1/embeddings":
                    data = [{"object": "embedding", "index": i,
                             "embedding": fake_embedding(t).tolist()}
                            for i, t in enumerate(body["input"])]
                    data.reverse()  # index order must be honoured, not list order
                    reply = {"object": "list", "data": data, "model": body["model"]}
                elif self.path == "/v1/chat/completions":
                    prompt = body["messages"][-1]["content"]
                    kw = prompt.split("Keywords: ", 1)[1].split("\n", 1)[0]
                    label = "Fans of " + kw.split(", ")[0].title()
                    reply = {"choices": [{"index": 0, "message": {
                        "role": "assistant", "content": '"%s"\n' % label}}]}
                else:
                    self.send_error(404)
                    return
                out = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/v1" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def fake_openai():
    with FakeOpenAI() as srv:
        yield srv


def free_port():
    """A loopback port nobody listens on (bound then released)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
