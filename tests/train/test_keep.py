"""--keep best|last and --patience: chosen on the validation split, the kept weights saved and scored, both
carried by the checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from resdense.cli import main
from resdense.record import EpochRecord
from resdense.rundir import load_checkpoint
from resdense.train import train
from resdense.train.keep import Keeper

from .conftest import assert_one_line_error, tiny_config, train_args


def row(epoch: int, val: float | None) -> EpochRecord:
    return EpochRecord(epoch, 1.0, 0.5, 0.1, 1.0, 100.0, val_acc=val)


def test_the_keeper_keeps_the_best_validation_epoch_and_stops_after_its_patience() -> None:
    model = nn.Linear(2, 1)
    keeper = Keeper("best", patience=2)
    at_best = None
    for epoch, val in enumerate([0.5, 0.7, None, 0.7, 0.6], 1):  # None: not scored; 0.7 again: no better
        with torch.no_grad():
            model.weight.fill_(epoch)
        stop = keeper.update(model, row(epoch, val))
        if epoch == 2:
            at_best = {k: v.clone() for k, v in model.state_dict().items()}
        assert stop == (epoch == 5)
    assert (keeper.best_epoch, keeper.best_score, keeper.bad_epochs) == (2, 0.7, 2)
    keeper.restore(model)
    assert all(torch.equal(model.state_dict()[k], at_best[k]) for k in at_best)
    again = Keeper("best", 2)
    again.load_state_dict(keeper.state_dict())  # what a checkpoint carries
    assert again.state_dict()["best_epoch"] == 2 and again.stopped
    summary = keeper.summary(last_epoch=5)
    assert summary["kept_epoch"] == 2 and "best validation accuracy" in summary["kept_because"]
    assert "stopped early after epoch 5" in summary["kept_because"]


def test_keep_best_without_a_validation_split_is_one_line(idx_dir: Path, tmp_path: Path, capsys) -> None:
    for flag in (["--keep", "best"], ["--patience", "2"]):
        code = main(train_args(idx_dir, tmp_path / "run", *flag, epochs=1))
        assert_one_line_error(code, capsys.readouterr().err, flag[0], "validation split", "--val-split")


def test_the_saved_model_is_the_kept_one_and_a_resume_after_the_stop_trains_no_more(
    idx_dir: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from resdense.serve.evaluate import evaluate_source

    out = tmp_path / "run"
    cfg = tiny_config(
        out, idx_dir, epochs=5, val_split=48, keep="best", patience=2, lr=2.0, seed=1, train_subset=0
    )  # a run whose validation accuracy peaks early (here: epoch 2 of 4, then it stops)
    result = train(cfg, progress=False)
    vals = [r["val_acc"] for r in result.history]
    best = vals.index(max(vals)) + 1  # the first epoch with the best validation accuracy
    s = result.summary
    assert s["kept_epoch"] == best == s["best_val_epoch"]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    kept = ckpt["keeper"]["weights"]
    saved = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(saved[k], kept[k]) for k in saved)  # the file holds the kept weights
    if best != len(vals):
        assert any(not torch.equal(saved[k], ckpt["model"][k]) for k in saved)  # not the last ones
    # the figure the run reports is the saved model's (issue 34)
    assert s["test_accuracy"] == evaluate_source(out, device="cpu").result.accuracy
    stopped = s["stopped_early"]
    assert stopped == (len(vals) < 5)
    if stopped:
        assert s["epochs"] == len(vals) and "--patience 2" in s["kept_because"]
    resumed = train(cfg, resume=out, progress=False)  # after the stop: nothing left to train
    assert len(resumed.history) == len(vals)
    assert resumed.summary["test_accuracy"] == s["test_accuracy"]
    assert resumed.summary["kept_epoch"] == best
