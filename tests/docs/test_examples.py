"""Every fenced block marked runnable in the docs (the line ``<!-- docs-test: run -->`` right above it; see
docs/contributing.md) runs as written, the generated command pages' examples included: the blocks of one page
in order, in one temporary folder. ``resdense ...`` lines run in-process (torch imported once), other shell
lines in bash, Python blocks with ``exec``."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from resdense.cli import main

from .conftest import ROOT

BLOCK = re.compile(r"^<!-- docs-test: run -->\n```(\w+)[^\n]*\n(.*?)^```", re.M | re.S)


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages() -> dict[str, str]:
    found = {
        str(p.relative_to(ROOT / "docs")): p.read_text(encoding="utf-8")
        for p in (ROOT / "docs").rglob("*.md")
    }
    hooks = _hooks()
    found |= {
        path: hooks.command_page(name, p)
        for name, p in hooks.commands().items()
        for path in [f"cli/{name}.md"]
    }
    return {path: text for path, text in sorted(found.items()) if BLOCK.search(text)}


def shell_lines(code: str) -> list[str]:
    return [
        line
        for line in code.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def run_shell(line: str, cwd: Path) -> None:
    argv = shlex.split(line, comments=True)
    if argv and argv[0] == "resdense":
        try:
            code = main(argv[1:])
        except SystemExit as e:  # --help
            code = e.code or 0
        assert code == 0, f"{line!r} exited with {code}"
        return
    env = dict(
        os.environ, PYTHONPATH=str(ROOT / "src"), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{line!r}:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("page", list(pages()))
def test_runnable_blocks_run_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text = pages()[page]
    for language, code in BLOCK.findall(text):
        if language in ("bash", "sh", "console"):
            for line in shell_lines(code):
                with contextlib.redirect_stdout(sys.stderr):
                    run_shell(line, tmp_path)
        elif language == "python":
            exec(compile(code, f"{page} block", "exec"), {"__name__": "__docs__"})
        else:
            pytest.fail(f"{page}: a runnable block in {language!r}, which the docs test cannot run")
