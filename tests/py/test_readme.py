"""README.md stays true: its configuration table is the daemon's own table."""

import os
import subprocess

import pytest

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_config_table_matches_interestd():
    build = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))
    binary = os.path.join(build, "interestd")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} not built (make all first)")
    table = subprocess.run([binary, "--help-config"], check=True, capture_output=True,
                           text=True).stdout.strip()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert table in readme, (
        "README.md's configuration table differs from `interestd --help-config`; "
        "paste the command's output into the Configuration section")
    header = table.splitlines()[0]
    assert readme.count(header) == 1, "README.md holds more than one configuration table"

