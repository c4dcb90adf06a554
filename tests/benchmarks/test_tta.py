"""benchmarks/tta.py: a run folder that is not one is named in one line, before any data is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tta.py"


def test_a_wrong_run_folder_is_one_line_and_a_non_zero_exit(tmp_path):
    not_a_run = tmp_path / "empty-run"
    not_a_run.mkdir()
    proc = subprocess.run([sys.executable, str(SCRIPT), str(not_a_run)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert str(not_a_run) in last and "not a resdense run folder" in last
