"""mypy over the public API (pyproject's [tool.mypy]: the five namespaces' __init__ and a user's program that
calls every export), so the reference's signatures and a user's editor agree with the code."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import ROOT


def test_public_api_type_checks(tmp_path):
    env = dict(os.environ, MYPYPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_ships_its_annotations():
    assert (ROOT / "src" / "resdense" / "py.typed").is_file()
    assert '"resdense" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()
