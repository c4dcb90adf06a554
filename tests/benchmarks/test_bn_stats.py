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
    code = main(
        [
            "train",
            "--model",
            "resnet20",
            "--model-options",
            '{"widths": [4, 8, 16]}',
            "--device",
            "cpu",
            "--no-progress",
            "--train-subset",
            "512",
            "--val-split",
            "300",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--ema",
            "0.9",
            "--out",
            str(run),
        ]
    )
    assert code == 0
    done = subprocess.run(
        [sys.executable, str(BENCH / "bn_stats.py"), str(run), "--images", "256", "--json", str(js)],
        capture_output=True,
        text=True,
        timeout=300,
    )
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


def test_the_bf16_check_continues_a_toy_d2l_run_three_ways_and_refuses_other_recipes(tmp_path):
    from resdense.cli import main

    run, js = tmp_path / "d2l", tmp_path / "bf16.json"
    code = main(
        [
            "train",
            "--recipe",
            "d2l-densenet",
            "--device",
            "cpu",
            "--no-progress",
            "--train-subset",
            "256",
            "--test-subset",
            "64",
            "--resize",
            "32",
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--out",
            str(run),
        ]
    )
    assert code == 0
    cmd = [
        sys.executable,
        str(BENCH / "bn_bf16.py"),
        str(run),
        "--steps",
        "20",
        "--images",
        "64",
        "--test-images",
        "64",
        "--json",
        str(js),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(js.read_text())["rows"]
    assert set(row["reestimated"]) == {"fp32", "bf16"}
    assert list(row["continued"]) == ["fp32", "bf16", "bf16, batch norm in fp32"]
    assert all(len(v["scores"]) == 1 for v in row["continued"].values())  # step 20
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "schedule": "onecycle"}))
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "not a constant-lr plain-SGD run" in refused.stderr


def test_batch_norm_in_fp32_under_autocast_and_only_while_asked():
    import torch

    sys.path.insert(0, str(BENCH))
    from bn_bf16 import batch_norm_in_fp32

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    x = torch.randn(2, 1, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
        with batch_norm_in_fp32(model, True):
            assert model(x).dtype == torch.float32
        assert model(x).dtype == torch.bfloat16


@pytest.mark.parametrize("script", ["bn_stats.py", "bn_bf16.py"])
def test_a_folder_that_is_not_a_run_and_a_bad_image_count_are_one_line_errors(tmp_path, script):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    cases = (
        ([str(tmp_path)], "not a run folder (no config.json"),
        ([str(run), "--images", "0"], "'0': must be"),
    )
    for args, says in cases:
        done = subprocess.run(
            [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
