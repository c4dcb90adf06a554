"""benchmarks/book_numbers.py: the rule that says whether bf16 keeps the book's numbers, and a toy run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import book_numbers as bn  # noqa: E402


def _run(amp: str, seed: int, loss: float, acc: float, test: float = 0.88) -> dict:
    return {"amp": amp, "seed": seed, "train_loss": loss, "train_acc": acc, "test_acc": test}


def test_bf16_within_the_seed_spread_keeps_the_numbers():
    runs = [_run("fp32", 0, 0.140, 0.948), _run("fp32", 1, 0.146, 0.946), _run("bf16", 0, 0.144, 0.947)]
    v = bn.verdict(runs)
    assert v["keeps"] is True
    assert v["figures"]["train_loss"]["spread"] == pytest.approx(0.006)
    assert v["figures"]["train_loss"]["bf16_minus_fp32"] == pytest.approx(0.001)


def test_bf16_beyond_the_spread_in_either_figure_does_not():
    fp32 = [_run("fp32", 0, 0.140, 0.948), _run("fp32", 1, 0.142, 0.947)]
    assert bn.verdict([*fp32, _run("bf16", 0, 0.160, 0.9475)])["keeps"] is False  # the loss moved
    assert bn.verdict([*fp32, _run("bf16", 0, 0.141, 0.940)])["keeps"] is False  # the accuracy moved


def test_without_two_seeds_or_both_precisions_it_cannot_tell():
    assert bn.verdict([_run("fp32", 0, 0.14, 0.948), _run("bf16", 0, 0.14, 0.948)])["keeps"] is None
    assert bn.verdict([_run("fp32", 0, 0.14, 0.948), _run("fp32", 1, 0.15, 0.946)])["keeps"] is None


def test_an_unfinished_run_is_resumed_with_its_own_settings(tmp_path):
    folder = bn.run_folder(tmp_path, "yes", 3)
    assert folder.name == "bf16-s3"
    fresh = bn.train_command("d2l-densenet", "yes", 3, folder, ["--epochs", "2"])
    assert (
        "--resume" not in fresh
        and fresh[fresh.index("--amp") + 1] == "yes"
        and fresh[-2:] == ["--epochs", "2"]
    )
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"")
    resumed = bn.train_command("d2l-densenet", "yes", 3, folder, ["--epochs", "2"])
    assert resumed[-3:] == ["--resume", str(folder), "--no-progress"] and "--amp" not in resumed


def test_a_toy_run_of_both_precisions_is_tabled_and_read_again_not_rerun(tmp_path):
    out, js = tmp_path / "book", tmp_path / "r.json"
    cmd = [
        sys.executable,
        str(BENCH / "book_numbers.py"),
        "--recipe",
        "d2l-densenet",
        "--seeds",
        "0",
        "--amp",
        "no,yes",
        "--out",
        str(out),
        "--json",
        str(js),
        "--extra",
        "--train-subset 32 --test-subset 32 --epochs 1 --resize 32 --batch-size 16",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "| the book | 10 | 0.140 | 0.948 | 0.885 |" in first.stdout
    assert "| fp32 seed 0 | 1 |" in first.stdout and "| bf16 seed 0 | 1 |" in first.stdout
    assert "verdict: cannot tell" in first.stdout  # one seed of each
    result = json.loads(js.read_text())
    assert [r["amp"] for r in result["runs"]] == ["fp32", "bf16"]
    stamp = (out / "bf16-s0" / "summary.json").stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and (out / "bf16-s0" / "summary.json").stat().st_mtime_ns == stamp
    assert json.loads(js.read_text())["runs"] == result["runs"]


def test_a_bad_runs_list_is_one_line_naming_it_and_makes_nothing(tmp_path):
    out = tmp_path / "book"
    cmd = [sys.executable, str(BENCH / "book_numbers.py"), "--runs", "no:0,maybe:1", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--runs" in r.stderr
    assert not out.exists()
