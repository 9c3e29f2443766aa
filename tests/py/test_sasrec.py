"""scripts/sasrec, the SASRec reference of `make eval`: on a synthetic split
whose sequences mostly step item i -> i+1 (mod N), the reference file it
writes must rank each user's test item in the top 10 for most users; a
malformed split must fail naming the line. Needs Debian's python3-torch
(`make deps-eval`); skipped, saying so, without it."""

import json
import os
import struct
import subprocess

import numpy as np
import pytest

from conftest import SCRIPTS

SASREC = os.path.join(SCRIPTS, "sasrec")
SYSTEM_PYTHON = "/usr/bin/python3"
N_ITEMS = 50
N_USERS = 200


def torch_available():
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import torch"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_torch = pytest.mark.skipif(not torch_available(),
                                 reason="%s cannot import torch: run `make deps-eval`" % SYSTEM_PYTHON)


def synthetic_split(path, seed=7):
    """Writes the split; returns the users' sequences. Each sequence starts
    anywhere and steps +1 mod N_ITEMS, with an occasional random jump inside
    the training part (never on the last three items, so validation and test
    follow the pattern)."""
    rng = np.random.RandomState(seed)
    seqs = []
    with open(path, "w") as f:
        f.write("# interestd eval split v1 n_items=%d n_users=%d\n" % (N_ITEMS, N_USERS))
        for u in range(N_USERS):
            n = rng.randint(8, 20)
            seq = [int(rng.randint(N_ITEMS))]
            for j in range(1, n):
                if j < n - 3 and rng.rand() < 0.1:
                    seq.append(int(rng.randint(N_ITEMS)))
                else:
                    seq.append((seq[-1] + 1) % N_ITEMS)
            seqs.append(seq)
            f.write("u%d\t%s\n" % (u, " ".join(map(str, seq))))
    return seqs


def run_sasrec(tmp_path, split, budget_s):
    out, js = tmp_path / "ref.bin", tmp_path / "rec.json"
    r = subprocess.run([SASREC, "--split", str(split), "--out", str(out), "--json", str(js),
                        "--seed", "3", "--threads", "1", "--budget-s", str(budget_s), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    return r, out, js


def read_ref(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"IREF0001"
    n_users, n_items, dim, zero = struct.unpack("<4I", data[8:24])
    assert zero == 0 and dim > 0
    assert len(data) == 24 + 4 * dim * (n_users + n_items)
    v = np.frombuffer(data[24:], dtype="<f4")
    return n_users, n_items, v[:n_users * dim].reshape(n_users, dim), v[n_users * dim:].reshape(n_items, dim)


@needs_torch
def test_sasrec_learns_the_pattern(tmp_path):
    split = tmp_path / "split.txt"
    seqs = synthetic_split(split)
    r, out, js = run_sasrec(tmp_path, split, 15)
    assert r.returncode == 0, r.stderr
    n_users, n_items, user, item = read_ref(out)
    assert (n_users, n_items) == (N_USERS, N_ITEMS)
    assert np.isfinite(user).all() and np.isfinite(item).all()
    rec = json.loads(js.read_text())
    for k in ("events_per_s_per_thread", "best_val_ndcg@10", "epochs", "seconds", "settings",
              "tried", "seed"):
        assert k in rec, k
    assert rec["seed"] == 3 and rec["events_per_s_per_thread"] > 0
    assert rec["tried"] and all("val_ndcg10" in t for t in rec["tried"])
    # Scored as interest-eval does: dot product, the history (all but the test item) excluded.
    hits = 0
    for k, seq in enumerate(seqs):
        s = item @ user[k]
        s[seq[:-1]] = -np.inf
        hits += int(np.sum(s > s[seq[-1]]) < 10)
    assert hits >= 0.8 * N_USERS, "test item in the top 10 for %d of %d users" % (hits, N_USERS)


@needs_torch
@pytest.mark.parametrize("lines,where", [
    (["# some other file n_items=5 n_users=1", "u0\t1 2 3"], "line 1"),
    (["# interestd eval split v1 n_items=5 n_users=2", "u0\t1 2 3", "u1\t1 x 3"], "line 3"),
    (["# interestd eval split v1 n_items=5 n_users=1", "u0\t1 2 7"], "line 2"),
])
def test_sasrec_rejects_a_malformed_split(tmp_path, lines, where):
    split = tmp_path / "bad.txt"
    split.write_text("\n".join(lines) + "\n")
    r, out, _ = run_sasrec(tmp_path, split, 5)
    assert r.returncode != 0
    assert str(split) in r.stderr and where in r.stderr, r.stderr
    assert not out.exists()
