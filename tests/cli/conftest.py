"""Fixtures of the command tests: isolation from the user's data, and the shared tiny data set and run."""

from __future__ import annotations

from resdense.cli import main

# the training tests' own fixtures, one definition: isolation (autouse), the tiny IDX set, the finished run
from tests.train.conftest import finished_run, idx_dir, isolated  # noqa: F401


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``resdense ARGV...`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
