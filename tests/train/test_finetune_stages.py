"""The staged fine-tune (--freeze-epochs): the body stays as loaded while the classifier trains alone, then
the whole network trains at the lower rate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import resdense
from resdense.errors import UserError
from resdense.train import train
from resdense.train.config import TrainConfig, validate
from resdense.train.finetune import set_stage
from resdense.train.optim import FrozenBatchNorm2d

from .conftest import idx_dir  # noqa: F401  (the shared learnable set)


def test_set_stage_freezes_then_unfreezes() -> None:
    net = resdense.create_model("resnet20", num_classes=4, in_chans=1, widths=(4, 8, 16))
    cfg = TrainConfig(epochs=3, freeze_epochs=1, unfreeze_lr_mult=0.25)
    assert set_stage(net, cfg, 0) == 1.0
    assert not net.conv1.weight.requires_grad and net.fc.weight.requires_grad
    assert type(net.bn1) is FrozenBatchNorm2d and not net.train().bn1.training
    assert set_stage(net, cfg, 1) == 0.25 and set_stage(net, cfg, 2) == 0.25
    assert net.conv1.weight.requires_grad and type(net.bn1) is nn.BatchNorm2d and net.train().bn1.training
    assert set_stage(net, TrainConfig(), 0) == 1.0  # off: nothing touched
    with pytest.raises(UserError, match="--freeze-epochs must be between 0 and --epochs - 1"):
        validate(TrainConfig(epochs=2, freeze_epochs=2))
    with pytest.raises(UserError, match="drop --freeze backbone"):
        validate(TrainConfig(epochs=2, freeze_epochs=1, freeze="backbone"))


def test_body_unchanged_in_the_frozen_epochs(idx_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    snapshots = []

    class Snap:
        def on_train_start(self, trainer):
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

        def on_epoch_end(self, trainer, row):
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

        def on_train_end(self, trainer, summary):
            pass

    cfg = TrainConfig(
        model="resnet20",
        model_options={"widths": [4, 8, 16]},
        dataset="idx",
        data_dir=str(idx_dir),
        epochs=2,
        batch_size=32,
        lr=0.05,
        freeze_epochs=1,
        device="cpu",
        out=str(tmp_path / "r"),
        channels_last=False,
        train_subset=64,
    )
    train(cfg, progress=False, callbacks=[Snap()])
    start, after1, after2 = snapshots
    body = [k for k in start if not k.startswith("fc.")]
    assert all(torch.equal(start[k], after1[k]) for k in body)  # weights and BN statistics as they were
    assert not torch.equal(start["fc.weight"], after1["fc.weight"])
    assert not torch.equal(after1["conv1.weight"], after2["conv1.weight"])
