"""resdense lr-find: the exponential sweep, the smoothed loss, divergence, fastai's valley, the model and the
optimizer restored, the figure."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from resdense.cli import main
from resdense.train import Trainer, lr_find
from resdense.train.lr_find import range_test, valley

from .conftest import TINY, tiny_config


def test_the_valley_lies_early_in_the_longest_descent() -> None:
    flat, fall, rise = [1.0] * 10, [1.0 - 0.03 * i for i in range(1, 31)], [0.2 + 0.2 * i for i in range(10)]
    losses = flat + fall + rise  # falls over indices 10..39, then rises
    i = valley(losses)
    assert 10 <= i < 25  # on the way down, in the first half of the descent
    noisy = [v + (0.05 if k % 2 else 0.0) for k, v in enumerate(losses)]
    assert 5 <= valley(noisy) < 30


def test_the_sweep_restores_the_model_and_optimizer(idx_dir: Path) -> None:
    trainer = Trainer(tiny_config(None, idx_dir, optimizer="nesterov", momentum=0.9), progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    result = range_test(trainer, 1e-5, 1e4, num_it=40)
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in before.items())
    assert trainer.optimizer.state_dict()["state"] == {}  # no momentum left behind
    assert torch.equal(torch.get_rng_state(), rng)
    # exponential: a constant ratio between successive rates, from start_lr
    assert math.isclose(result.lrs[0], 1e-5)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert max(ratios) - min(ratios) < 1e-9 and math.isclose(ratios[0], (1e4 / 1e-5) ** (1 / 39))
    # an lr of 1e4 blows the loss up: the sweep stopped there, before its 40 iterations
    assert result.diverged and len(result.lrs) < 40
    assert result.valley in result.lrs and len(result.losses) == len(result.lrs) == len(result.raw_losses)
    # the smoothed loss is the debiased moving average of the raw one
    avg = 0.0
    for i, (raw, smooth) in enumerate(zip(result.raw_losses, result.losses)):
        avg = 0.98 * avg + 0.02 * raw
        assert math.isclose(smooth, avg / (1 - 0.98 ** (i + 1)), rel_tol=1e-9)


def test_lr_find_python_and_command(idx_dir: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "sweep.png"
    result = lr_find(tiny_config(None, idx_dir), num_it=12, end_lr=1.0, plot=png)
    assert png.stat().st_size > 0 and len(result.lrs) == 12 and not result.diverged
    argv = ["lr-find", *TINY, "--dataset", "idx", "--data-dir", str(idx_dir), "--device", "cpu"]
    code = main(
        [*argv, "--batch-size", "32", "--num-it", "12", "--plot", str(tmp_path / "cli.png"), "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "suggested learning rate (valley):" in out and (tmp_path / "cli.png").exists()
    code = main([*argv, "--num-it", "1", "--no-progress"])
    assert code == 2 and "--num-it must be at least 2" in capsys.readouterr().err
