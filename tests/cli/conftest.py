"""Fixtures of the command tests: isolation from the user's data, and the shared tiny data set and run."""

from __future__ import annotations

from pathlib import Path

import pytest

from resdense.cli import main
from tests.train.conftest import isolation, shared_finished_run, shared_idx_dir


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    with isolation(tmp_path, monkeypatch):
        yield


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory) -> Path:
    return shared_idx_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> tuple[Path, str]:
    return shared_finished_run(tmp_path_factory)


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``resdense ARGV...`` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
