"""The command-line conventions every script keeps (README "Command lines"), written
once: -h/--help prints the usage on stdout and exits 0, --version prints
"<tool> <version>" (the file VERSION at the top of the tree) and exits 0, a usage
error exits 64 (EX_USAGE) with the message on stderr, where argparse exits 2.

Standard library only: scripts/sasrec runs on the system Python, and the other
scripts build their parser before or after entering the venv.
"""

import argparse
import os
import sys

EX_USAGE = 64  # sysexits(3): a bad option or argument
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def version():
    """The release version, one line in ROOT/VERSION."""
    with open(os.path.join(ROOT, "VERSION"), encoding="utf-8") as f:
        return f.read().strip()


def tool_name(prog):
    """The tool's name in the --version line: "scripts/stack" -> "stack",
    "catalog follow" -> "catalog"."""
    return os.path.basename(prog.split()[0])


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with --version and exit 64 on a usage error; its
    subcommands' parsers (add_subparsers) exit 64 too, without a --version of
    their own."""

    def __init__(self, *args, add_version=True, **kwargs):
        super().__init__(*args, **kwargs)
        if add_version:
            self.add_argument("--version", action="version",
                              version=f"{tool_name(self.prog)} {version()}",
                              help="print the version and exit")

    def add_subparsers(self, **kwargs):
        kwargs.setdefault("parser_class", _SubcommandParser)
        return super().add_subparsers(**kwargs)

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


class _SubcommandParser(ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, add_version=False, **kwargs)
