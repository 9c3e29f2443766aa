"""Small helpers shared by the tests (imported, not a fixture module)."""

import os
import subprocess
import sys

from conftest import ROOT

PY = sys.executable


def run_script(name, *args, check=True):
    """Runs scripts/<name> with this (the venv's) Python; returns the result."""
    r = subprocess.run([PY, os.path.join(ROOT, "scripts", name)] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError("%s %s exited %d:\n%s%s" % (name, args, r.returncode, r.stdout,
                                                        r.stderr))
    return r


def write_items(path, rows):
    """rows: (item_id, title, text, categories list)."""
    from interestd_py.items import Item, write_items_csv
    write_items_csv(path, [Item(i, t, x, list(c)) for i, t, x, c in rows])
