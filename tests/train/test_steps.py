"""The step's options: gradient accumulation gives the whole batch's step, clipping bounds the norm, MixUp's
soft targets go through the loss once smoothed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from resdense.data.augment import BatchAugment
from resdense.preprocess import Preprocess
from resdense.train.steps import step_options

from .conftest import tiny_config


def options(tmp_path: Path, **kw):
    cfg = tiny_config(None, tmp_path, **kw)
    return step_options(cfg, BatchAugment("none", Preprocess(8, (0.0,), (1.0,), 1)), 4)


def no_bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 4))


def bn_model_in_eval() -> nn.Module:
    from resdense.models import create_model

    torch.manual_seed(0)
    m = create_model("resnet20", num_classes=4, in_chans=1, widths=(4, 8, 16))
    m.eval()  # batch norm's batch statistics differ by definition between a batch and its parts
    return m


def test_plain_runs_take_the_plain_step(tmp_path: Path) -> None:
    assert options(tmp_path) is None
    assert options(tmp_path, accum_steps=2) is not None and options(tmp_path, clip_grad=1.0) is not None


@pytest.mark.parametrize("make", [no_bn_model, bn_model_in_eval])
def test_accumulated_micro_batches_make_the_whole_batch_step(tmp_path: Path, make) -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    weights, losses = [], []
    for k in (1, 4):
        model = make()
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        steps = options(tmp_path, accum_steps=k, clip_grad=1e9)  # clip_grad: a step object even for k = 1
        for _ in range(3):
            opt.zero_grad()
            _, loss = steps.backward(model, x, y, loss_fn, "cpu", False)
            opt.step()
        weights.append(copy.deepcopy(model.state_dict()))
        losses.append(loss)
    assert torch.allclose(losses[0], losses[1], atol=1e-5)  # the batch's mean loss, from its parts
    for name in weights[0]:
        assert torch.allclose(weights[0][name].float(), weights[1][name].float(), atol=1e-5), name


def test_clipping_bounds_the_global_gradient_norm(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 1, 8, 8, generator=g) * 50, torch.randint(0, 4, (16,), generator=g)
    model = no_bn_model()
    reference = copy.deepcopy(model)
    options(tmp_path, clip_grad=0.01).backward(model, x, y, nn.CrossEntropyLoss(), "cpu", False)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm <= 0.01 + 1e-6
    nn.CrossEntropyLoss()(reference(x), y).backward()
    raw = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()]))
    assert raw > 0.01  # it did clip
    for p, q in zip(model.parameters(), reference.parameters()):  # the same direction, scaled
        assert torch.allclose(p.grad, q.grad * (0.01 / raw), atol=1e-6)


def test_soft_targets_are_not_smoothed_again(tmp_path: Path) -> None:
    from resdense.data.mix import smoothed_one_hot
    from resdense.train import Trainer

    from .conftest import write_learnable_set

    data = write_learnable_set(tmp_path / "idx", n_train=64, n_test=16)
    trainer = Trainer(tiny_config(None, data, label_smoothing=0.2, mixup=0.2), progress=False)
    logits = torch.randn(8, 4)
    y = torch.arange(8) % 4
    soft = smoothed_one_hot(y, 4, 0.2)
    # the smoothed one-hots as soft targets give the loss the labels give with smoothing
    assert torch.allclose(trainer.loss(logits, soft), trainer.loss(logits, y), atol=1e-6)
