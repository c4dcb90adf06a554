"""A run's summary holds the saved model's top-5, per-class precision/recall/F1, macro-F1 and ECE, from the
logits it scores for its test accuracy: the same figures ``resdense evaluate --json`` gives for the run."""

from __future__ import annotations

import json

import pytest

from resdense.rundir import RunDir

from .conftest import main_quiet, train_args, write_learnable_set


def test_summary_metrics_are_what_evaluate_reports(tmp_path):
    data = write_learnable_set(tmp_path / "idx", n_train=128, n_test=64, seed=3)
    code, out = main_quiet(train_args(data, tmp_path / "run", epochs=1))
    assert code == 0, out
    summary = RunDir(tmp_path / "run").read_summary()
    code, out = main_quiet(["evaluate", str(tmp_path / "run"), "--json"])
    assert code == 0, out
    evaluated = json.loads(out)
    assert summary["test_accuracy"] == evaluated["accuracy"]
    for key in ("top5_accuracy", "macro_f1", "per_class"):
        assert (key in summary) == (key in evaluated)
        if key in summary:
            assert summary[key] == evaluated[key]
    assert summary["macro_f1"] == evaluated["macro_f1"]
    assert summary["ece"] == pytest.approx(evaluated["ece"], abs=1e-9)  # sums of confidences, in other orders
    assert [b["count"] for b in summary["calibration"]["reliability"]] == [
        b["count"] for b in evaluated["calibration"]["reliability"]
    ]
    assert sum(v["support"] for v in summary["per_class"].values()) == 64
    # evaluate draws the reliability diagram beside the confusion matrix
    assert (tmp_path / "run" / RunDir.RELIABILITY).read_bytes()[:4] == b"\x89PNG"
