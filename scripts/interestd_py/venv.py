"""Makes the entry scripts run inside the project's virtual environment.

Standard library only: it runs before numpy and friends can be imported.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The project venv (built by scripts/bootstrap) first; the temporary one the
# project was started with as a fallback.
CANDIDATES = (
    os.path.join(ROOT, ".cache", "venv", "bin", "python"),
    "/tmp/venvtest/bin/python",
)


def _venv_dir(python):
    return os.path.dirname(os.path.dirname(python))


def ensure_venv(script):
    """Re-executes `script` with the first venv of CANDIDATES that exists,
    unless already running in it. Returns when no re-exec is needed (or no venv
    exists: then the imports that follow name what is missing)."""
    if os.environ.pop("INTERESTD_VENV_REEXEC", None):
        return  # already re-executed once: do not loop
    here = os.path.realpath(sys.prefix)
    for py in CANDIDATES:
        if not os.path.exists(py):
            continue
        if os.path.realpath(_venv_dir(py)) == here:
            return
        os.environ["INTERESTD_VENV_REEXEC"] = "1"
        os.execv(py, [py, os.path.abspath(script)] + sys.argv[1:])
    sys.stderr.write("warning: no project venv (run `make deps`); using %s\n" % sys.executable)
