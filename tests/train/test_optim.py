"""Parameter groups, freezing and the head learning-rate multiplier (train/optim.py), alone and in a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from resdense.errors import UserError
from resdense.models import create_model
from resdense.train import TrainConfig, train
from resdense.train.optim import FrozenBatchNorm2d, freeze, make_optimizer, param_groups, stages

from .conftest import NUM_CLASSES, tiny_config


def tiny(**kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=4, in_chans=1, widths=(4, 8, 16), **kw)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def steps(model: nn.Module, opt: torch.optim.Optimizer, n: int = 3) -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        model.train()  # as the loop does every epoch
        x = torch.randn(8, 1, 28, 28, generator=g)
        y = torch.randint(0, 4, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"lr": 0.1, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, **kw})


def test_backbone_frozen_params_and_bn_statistics_unchanged_while_head_moves() -> None:
    model = tiny()
    before = snapshot(model)
    trainable = freeze(model, "backbone")
    assert trainable == sum(p.numel() for p in model.fc.parameters())
    steps(model, make_optimizer(cfg(), model))
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"fc.weight", "fc.bias"}  # running means/vars and num_batches_tracked included
    assert all(
        isinstance(m, FrozenBatchNorm2d) and not m.training
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )


def test_stages_frozen_up_to_n() -> None:
    model = tiny()
    before = snapshot(model)
    freeze(model, "stages:2")
    steps(model, make_optimizer(cfg(), model))
    after = model.state_dict()
    for k in before:
        same = torch.equal(before[k], after[k])
        frozen = k.split(".")[0] in ("conv1", "bn1", "layer1", "layer2")
        assert same == frozen or k.endswith("num_batches_tracked") and frozen, k
    assert len(stages(model)) == 4  # stem + three stages


def test_densenet_and_d2l_stages() -> None:
    dn = create_model("densenet_bc_100", num_classes=3, in_chans=1)
    groups = stages(dn)
    assert len(groups) == 4 and len(groups[1]) == 2  # stem; block+transition, block+transition, block+norm
    d2l = create_model("d2l_resnet18")
    assert len(stages(d2l)) == 5
    freeze(d2l, "stages:4")
    assert [p.requires_grad for p in d2l[-1].parameters()] == [True, True]
    assert not any(p.requires_grad for p in d2l[1].parameters())


def test_bad_freeze_specs() -> None:
    for spec, needle in (("stages:9", "3 stages"), ("layers", "stages:N"), ("stages:x", "stages:N")):
        with pytest.raises(UserError, match=needle):
            freeze(tiny(), spec)


def test_param_groups_weight_decay_and_head_lr() -> None:
    model = tiny()
    groups = param_groups(model, 5e-4, head_lr_mult=10)
    by = {(g["lr_mult"], g["weight_decay"]): g["params"] for g in groups}
    assert set(by) == {(1.0, 5e-4), (1.0, 0.0), (10, 5e-4), (10, 0.0)}
    assert by[(10, 5e-4)] == [model.fc.weight] and by[(10, 0.0)] == [model.fc.bias]
    assert all(p.ndim == 1 for p in by[(1.0, 0.0)])
    opt = make_optimizer(cfg(head_lr_mult=10.0), model)
    assert sorted({g["lr"] for g in opt.param_groups}) == [0.1, pytest.approx(1.0)]
    # without a multiplier: the two groups of before (decay, no decay)
    assert [g["weight_decay"] for g in param_groups(model, 5e-4)] == [5e-4, 0.0]


def test_finetune_run_freezes_and_scales_the_head_lr(idx_dir: Path, tmp_path: Path) -> None:
    """A run from another run's weights: new classes said, the body frozen (BN statistics too), head at 10x."""
    src = train(tiny_config(tmp_path / "src", idx_dir), progress=False)
    from safetensors.torch import load_file

    w0 = load_file(str(src.out_dir / "model.safetensors"))
    run = train(
        tiny_config(tmp_path / "ft", idx_dir, weights=str(src.out_dir), freeze="backbone", head_lr_mult=10.0),
        progress=False,
    )
    w1 = load_file(str(run.out_dir / "model.safetensors"))
    changed = {k for k in w0 if not torch.equal(w0[k], w1[k])}
    assert changed == {"fc.weight", "fc.bias"}
    from resdense.rundir import load_checkpoint

    lrs = sorted(
        {g["lr"] for g in load_checkpoint(run.out_dir / "checkpoint.pt")["optimizer"]["param_groups"]}
    )
    assert lrs == [pytest.approx(0.5)]  # only the head trains, at 10 x 0.05 (the loop applies lr_mult)
    assert run.summary["test_accuracy"] >= 1 / NUM_CLASSES
