"""The figure a run reports is its saved model's: ``summary.json``'s test accuracy equals ``resdense evaluate
RUN`` exactly, whether the run trained in bf16 autocast or in fp32, fresh or resumed.

The suite pins ``RESDENSE_AMP=fp32`` (tests/conftest.py) for speed; these runs ask for bf16 with ``--amp yes``
where the CPU has it, so the path most users get (``--amp auto`` picks bf16 on CPUs with a bf16 unit) is
tested too. Tiny runs: 256 training and 256 test images of 28x28, one epoch of a 17k-parameter ResNet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resdense.rundir import RunDir
from resdense.utils.amp import onednn_bf16

from .conftest import main_quiet, train_args, write_learnable_set

# bf16 autocast on a CPU without bf16 support is emulated (and what the summary would be compared with is
# then fp32 in all but name): these runs need the real thing
needs_bf16 = pytest.mark.skipif(not onednn_bf16(), reason="this CPU has no bf16 (oneDNN reports none)")


@pytest.fixture(scope="module")
def data_256(tmp_path_factory) -> Path:
    return write_learnable_set(tmp_path_factory.mktemp("score") / "idx", n_train=256, n_test=256, seed=7)


def train(data: Path, out: Path, amp: str, *extra: str, epochs: int = 1) -> dict:
    code, stdout = main_quiet([*train_args(data, out, "--amp", amp, *extra, epochs=epochs)])
    assert code == 0, stdout
    summary = RunDir(out).read_summary()
    # what the run prints at the end is the saved model's figure
    assert f"done: test accuracy {summary['test_accuracy']:.4f}" in stdout
    return summary


def evaluated(run: Path) -> dict:
    code, stdout = main_quiet(["evaluate", str(run), "--json"])
    assert code == 0, stdout
    return json.loads(stdout)


def check_run(run: Path, summary: dict, precision: str) -> None:
    assert summary["amp"] == precision
    assert summary["test_accuracy_from"].startswith("saved model, fp32")
    assert precision in summary["epoch_scores"]
    result = evaluated(run)
    assert result["n"] == 256
    assert result["accuracy"] == summary["test_accuracy"]  # exactly: the same model, precision and views
    config = RunDir(run).read_config()
    assert config["amp"] == ("yes" if precision == "bf16" else "no")
    assert config["plan"]["precision"] == precision and config["plan"]["input_size"] == 28


@needs_bf16
def test_bf16_run_reports_what_evaluate_reports(data_256, tmp_path):
    # with the test-time flip: the views are the model file's, in fp32, as evaluate applies them
    out = tmp_path / "bf16"
    check_run(out, train(data_256, out, "yes", "--tta-flip"), "bf16")


def test_fp32_run_reports_what_evaluate_reports(data_256, tmp_path):
    out = tmp_path / "fp32"
    check_run(out, train(data_256, out, "no"), "fp32")


@needs_bf16
def test_resumed_bf16_run_reports_what_evaluate_reports(data_256, tmp_path):
    out = tmp_path / "resumed"
    train(data_256, out, "yes", epochs=1)
    code, stdout = main_quiet(["train", "--resume", str(out), "--epochs", "2", "--no-progress"])
    assert code == 0, stdout
    summary = RunDir(out).read_summary()
    assert summary["epochs"] == 2 and f"done: test accuracy {summary['test_accuracy']:.4f}" in stdout
    check_run(out, summary, "bf16")


@needs_bf16
def test_a_run_resumed_with_no_epoch_left_scores_its_saved_model(data_256, tmp_path):
    # killed after its last checkpoint, before its summary: the resume trains nothing and scores the model
    out = tmp_path / "no-epoch-left"
    first = train(data_256, out, "yes")
    (out / "summary.json").unlink()
    code, stdout = main_quiet(["train", "--resume", str(out), "--no-progress"])
    assert code == 0, stdout
    summary = RunDir(out).read_summary()
    assert summary["test_accuracy"] == first["test_accuracy"] == evaluated(out)["accuracy"]
