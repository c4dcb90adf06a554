"""Issue 19, case 8: --resume checks the checkpoint it reads (its keys, its settings, its epoch)."""

from __future__ import annotations

import pytest
import torch

from resdense.rundir import RunDir
from tests.cli.conftest import cli
from tests.train.conftest import assert_one_line_error


def _edit(run, change):
    ckpt = torch.load(RunDir(run).checkpoint, weights_only=True)
    change(ckpt)
    torch.save(ckpt, RunDir(run).checkpoint)


def _set(key, value):
    return lambda c: c.__setitem__(key, value)


CASES = {
    "no config": (lambda c: c.pop("config"), "no 'config'"),
    "config of another version": (lambda c: c["config"].update(frobnicate=1), "not this version's"),
    "config that cannot work": (lambda c: c["config"].update(lr=-1.0), "--lr must be positive"),
    "config of the wrong type": (lambda c: c["config"].update(epochs="3"), "--epochs: expected int"),
    "epoch 999": (_set("epoch", 999), "epoch 999"),
    "epoch 0": (_set("epoch", 0), "damaged checkpoint"),
    "history shorter than the epoch": (lambda c: c["history"].pop(), "damaged checkpoint"),
    "history row not an epoch's record": (lambda c: c["history"][0].pop("epoch"), "a row of its metrics"),
    "not a dict": (lambda c: c.clear(), "no 'epoch'"),
    "weights of another model": (lambda c: c["model"].pop("fc.weight"), "does not fit the run's model"),
    "weights not tensors": (_set("model", {"fc.weight": 1}), "not a state dict"),
    "optimizer of another kind": (_set("optimizer", {"state": {}}), "does not fit the run's model"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_case8_resume_checks_the_checkpoint(case, run_copy, capsys):
    change, fragment = CASES[case]
    (run_copy / RunDir.SUMMARY).unlink()
    _edit(run_copy, change)
    code, out, err = cli(capsys, "train", "--resume", run_copy, "--no-progress")
    assert_one_line_error(code, err, fragment)
    assert "epoch " not in out and not (run_copy / RunDir.SUMMARY).exists()  # no training, no "done"


def test_case8_a_sound_checkpoint_still_resumes(run_copy, capsys):
    code, out, err = cli(capsys, "train", "--resume", run_copy, "--epochs", "4", "--no-progress")
    assert code == 0, err
    assert "epoch 4/4" in out
