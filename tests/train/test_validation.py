"""``--val-split N``: N training images held out, scored every epoch, never trained on."""

from __future__ import annotations

import json

import torch

from resdense.cli import main
from resdense.data import load_dataset
from resdense.data.split import holdout
from resdense.rundir import read_metrics
from resdense.serve.load import load_trained
from resdense.train import TrainConfig, Trainer

from .conftest import assert_one_line_error, train_args


def test_val_split_holds_images_out_and_reports_their_accuracy(idx_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(idx_dir, out, "--val-split", "64", epochs=2)) == 0
    printed = capsys.readouterr().out
    rows = read_metrics(out / "metrics.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert [set(r) >= {"val_acc", "test_acc"} for r in rows] == [True, True]
    assert summary["val_accuracy"] == rows[-1]["val_acc"] and summary["val_images"] == 64
    assert summary["test_accuracy"] == rows[-1]["test_acc"]  # the test figure is still reported
    assert f"val acc {rows[-1]['val_acc']:.4f}" in printed

    # the reported figure is the saved model's accuracy on exactly the held-out images
    dataset = load_dataset("idx", idx_dir)
    _, val = holdout(dataset.train, 64)
    model, spec = load_trained(out / "model.safetensors")
    with torch.no_grad():
        pred = model.eval()(spec.preprocess(val.images)).argmax(1)
    assert (pred == val.labels).float().mean().item() == rows[-1]["val_acc"]


def test_val_images_are_not_trained_on(idx_dir, tmp_path):
    dataset = load_dataset("idx", idx_dir)
    cfg = TrainConfig(
        model="resnet20",
        model_options={"widths": (4, 8, 16)},
        device="cpu",
        batch_size=32,
        val_split=64,
        train_subset=100,
    )
    trainer = Trainer(cfg, dataset, tmp_path, progress=False)
    train_imgs = {bytes(x.numpy()) for x in trainer.train_set.images}
    val_imgs = {bytes(x.numpy()) for x in trainer.val_set.images}
    assert len(trainer.train_set) == 100 and len(trainer.val_set) == 64
    assert not train_imgs & val_imgs
    # the split is taken before --train-subset: the same images are held out with or without it
    full = Trainer(cfg.with_overrides(train_subset=0), dataset, tmp_path, progress=False)
    assert torch.equal(full.val_set.images, trainer.val_set.images)
    assert len(full.train_set) == len(dataset.train) - 64


def test_val_split_too_large_is_one_line_error(idx_dir, tmp_path, capsys):
    code = main(train_args(idx_dir, tmp_path / "run", "--val-split", "256"))
    assert_one_line_error(code, capsys.readouterr().err, "--val-split 256", "256 images")
    code = main(train_args(idx_dir, tmp_path / "run2", "--val-split", "-3"))
    assert_one_line_error(code, capsys.readouterr().err, "--val-split")
