"""benchmarks/bn_stats.py: --bn-recalibrate's effect on finished runs, paired, on their validation split too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_a_toy_ema_run_is_scored_as_saved_and_recalibrated_for_both_weights(tmp_path):
    from resdense.cli import main

    run, js = tmp_path / "run", tmp_path / "bn.json"
    code = main(["train", "--model", "resnet20", "--model-options", '{"widths": [4, 8, 16]}', "--device", "cpu",
                 "--no-progress", "--train-subset", "512", "--val-split", "300",
                 "--epochs", "1", "--batch-size", "64", "--ema", "0.9", "--out", str(run)])  # fmt: skip
    assert code == 0
    done = subprocess.run([sys.executable, str(BENCH / "bn_stats.py"), str(run), "--images", "256",
                           "--json", str(js)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(js.read_text())["rows"]
    assert [r["weights"] for r in rows] == ["ema (saved)", "live"]
    summary = json.loads((run / "summary.json").read_text())
    saved = rows[0]["as_saved"]
    assert saved["test"] == pytest.approx(summary["test_accuracy"])  # scored as the run scored itself
    assert saved["val"] == pytest.approx(summary["val_accuracy"])
    for r in rows:
        assert set(r["recalibrated"]) == {"test", "val"}
    # one epoch of EMA at decay 0.9 sits away from the live weights: their scores differ somewhere
    assert rows[0]["as_saved"] != rows[1]["as_saved"] or rows[0]["recalibrated"] != rows[1]["recalibrated"]
