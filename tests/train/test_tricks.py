"""The speed records' tricks (train/tricks.py, optim's bn_bias_lr_mult, augment's alt_flip): each does what
it says, and a run with all of them on trains, records its amp decision and saves the folded classifier."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from resdense.data.augment import BatchAugment, alternate_flips, flip_where, random_crop
from resdense.data.fashion_mnist import TRAIN_IMAGES
from resdense.data.idx import read_idx_images
from resdense.models import create_model
from resdense.preprocess import Preprocess
from resdense.rundir import load_checkpoint
from resdense.serve.load import load_trained
from resdense.train import TrainConfig
from resdense.train.optim import FrozenBatchNorm2d, make_optimizer, param_groups
from resdense.train.tricks import (
    Lookahead,
    dirac_convs,
    first_conv,
    recalibrate_bn,
    scaled_model,
    set_bn_momentum,
    whiten_conv,
)

from .conftest import assert_one_line_error, main_quiet, train_args


def tiny():
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=4, in_chans=1, widths=(4, 8, 16))


def test_whitening_init_decorrelates_the_first_convs_outputs():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 1, 20, 20, generator=g)
    images = base + 0.8 * base.roll(1, -1) + 0.5 * base.roll(1, -2)  # neighbouring pixels correlated
    conv = nn.Conv2d(1, 20, 3, padding=1, bias=False)
    untouched = conv.weight[-2:].clone()
    n = whiten_conv(conv, images, eps=1e-8)
    assert n == 9  # 9 patch dimensions, 20 filters: all 9 and their negatives, 2 left as they were
    out = F.conv2d(images, conv.weight).transpose(0, 1).reshape(20, -1).double()
    cov = torch.cov(out[:n])
    torch.testing.assert_close(cov, torch.eye(n, dtype=cov.dtype), atol=1e-3, rtol=0)
    torch.testing.assert_close(conv.weight[n : 2 * n], -conv.weight[:n])
    assert torch.equal(conv.weight[-2:], untouched)


def test_dirac_init_makes_every_conv_but_the_first_an_identity():
    model = tiny()
    stem = first_conv(model).weight.clone()
    assert dirac_convs(model) == 18  # resnet20: 9 blocks of 2 convs after the stem (option A shortcuts)
    conv = model.layer1[0].conv1  # 4 -> 4 channels, 3x3, padding 1
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(conv(x), x)
    wide = model.layer2[0].conv1  # 4 -> 8, stride 2: the first 4 filters pass the input through
    x = torch.randn(2, 4, 10, 10)
    torch.testing.assert_close(wide(x)[:, :4], x[:, :, ::2, ::2])
    assert torch.equal(first_conv(model).weight, stem)


def test_bn_momentum_sets_the_weight_of_each_new_batch():
    model = tiny()
    assert set_bn_momentum(model, 0.4) == 19
    bn = model.bn1
    x = torch.randn(8, 4, 6, 6) + 3.0
    bn.train()(x)
    torch.testing.assert_close(bn.running_mean, 0.4 * x.mean((0, 2, 3)))


def test_bn_bias_lr_mult_moves_the_batch_norm_biases_that_much_faster():
    model = tiny()
    cfg = TrainConfig(lr=0.1, optimizer="sgd", momentum=0.0, bn_bias_lr_mult=64.0)
    groups = param_groups(model, 5e-4, bn_bias_lr_mult=64.0)
    bn_bias = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    for g in groups:
        assert (g["lr_mult"] == 64.0) == all(id(p) in bn_bias for p in g["params"])
    opt = make_optimizer(cfg, model)
    before = model.bn1.bias.detach().clone(), model.bn1.weight.detach().clone()
    model(torch.randn(4, 1, 28, 28)).square().mean().backward()
    grads = model.bn1.bias.grad.clone(), model.bn1.weight.grad.clone()
    opt.step()
    torch.testing.assert_close(model.bn1.bias.detach(), before[0] - 6.4 * grads[0])
    torch.testing.assert_close(model.bn1.weight.detach(), before[1] - 0.1 * grads[1])


def test_lookahead_pulls_the_fast_weights_halfway_back_every_n_steps():
    p = nn.Parameter(torch.zeros(3))
    model = nn.Module()
    model.p = p
    la = Lookahead(model, every=2, alpha=0.5)
    with torch.no_grad():
        p.add_(1.0)
    la.step(0)  # step 1 of 2: nothing yet
    assert torch.equal(p.detach(), torch.ones(3))
    with torch.no_grad():
        p.add_(1.0)
    la.step(1)  # slow 0 -> halfway to 2, and the fast weights restart there
    assert torch.equal(p.detach(), torch.ones(3)) and torch.equal(la.slow[0], torch.ones(3))
    with torch.no_grad():
        p.add_(5.0)
    la.finish()  # the run ends on the slow weights
    assert torch.equal(p.detach(), torch.ones(3))
    again = Lookahead(model, 2, 0.5)
    again.load_state_dict(la.state_dict())
    assert torch.equal(again.slow[0], la.slow[0])


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    images = torch.randint(
        0, 256, (400, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    e0, e1, e2 = (alternate_flips(images, e) for e in range(3))
    assert torch.equal(e0, ~e1) and torch.equal(e0, e2)
    assert 0.4 < e0.float().mean() < 0.6  # about half start mirrored
    pre = Preprocess(8, (100.0 / 255,), (0.3,), 1)
    out = BatchAugment("flip", pre, alt_flip=True)(images, torch.Generator().manual_seed(0), epoch=1)
    torch.testing.assert_close(out, flip_where(pre(images), e1))
    # the same image, in any batch, any order: the same decision
    perm = torch.randperm(400)
    assert torch.equal(alternate_flips(images[perm], 1), e1[perm])


def test_translate_is_the_crop_policy_a_shift_by_up_to_the_padding():
    x = torch.arange(1.0, 1 + 2 * 36).view(2, 1, 6, 6)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    for i in range(2):
        padded = F.pad(x[i], (2,) * 4)
        shifts = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[:, dy : dy + 6, dx : dx + 6], out[i])
        ]
        assert len(shifts) == 1


def test_bn_recalibration_replaces_the_momentum_average_with_the_plain_one_and_spares_frozen_norms():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 3, 5, 5, generator=g) * (1 + i) + i for i in range(4)]  # drifting data
    norm, frozen = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    frozen.__class__ = FrozenBatchNorm2d
    frozen.running_mean.fill_(7.0)
    model = nn.Sequential(norm, frozen).eval()
    for x in batches:  # the momentum average of train mode: weighted towards the last batches
        norm.train()(x)
    assert not torch.allclose(norm.running_mean, torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0))
    assert recalibrate_bn(model, batches) == 1
    torch.testing.assert_close(norm.running_mean, torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0))
    var = torch.stack([x.transpose(0, 1).reshape(3, -1).var(1) for x in batches]).mean(0)  # unbiased, as BN's
    torch.testing.assert_close(norm.running_var, var)
    assert norm.momentum == 0.1 and not model.training and not norm.training  # put back as they were
    assert torch.equal(frozen.running_mean, torch.full((3,), 7.0))


def test_a_run_with_bn_recalibration_saves_statistics_of_evenly_spread_training_images(idx_dir, tmp_path):
    runs = {}
    for n in (0, 96):
        out = tmp_path / f"run{n}"
        code, _ = main_quiet(train_args(idx_dir, out, "--bn-recalibrate", str(n), epochs=1))
        assert code == 0
        runs[n] = load_trained(out)
    model, spec = runs[96]
    # the stem's batch norm sees the stem convolution's outputs (no other statistics come before it); 96
    # images in three batches of 32 (the run's batch size): the batches' average is the images' average
    images = read_idx_images(idx_dir / f"{TRAIN_IMAGES}.gz")
    picks = torch.linspace(0, len(images) - 1, 96).round().long()
    with torch.no_grad():
        seen = first_conv(model)(spec.preprocess(images[picks]))
    stem_norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    torch.testing.assert_close(stem_norm.running_mean, seen.mean((0, 2, 3)), atol=1e-5, rtol=1e-4)
    plain = next(m for m in runs[0][0].modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.allclose(plain.running_mean, seen.mean((0, 2, 3)), atol=1e-3)  # the momentum average
    assert json.loads((tmp_path / "run96" / "config.json").read_text())["bn_recalibrate"] == 96


def test_logit_scale_scales_the_loss_input_and_is_folded_into_the_saved_classifier():
    model = tiny().eval()
    x = torch.randn(3, 1, 28, 28)
    folded = scaled_model(model, 1 / 9)
    torch.testing.assert_close(folded(x), model(x) / 9, atol=1e-6, rtol=1e-5)
    assert scaled_model(model, 1.0) is model


def test_a_run_with_every_trick_records_its_choices_and_saves_the_scaled_model(
    idx_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("RESDENSE_AMP", "bf16")  # what --amp auto decides here, without a probe
    out = tmp_path / "run"
    code, stdout = main_quiet(
        train_args(
            idx_dir,
            out,
            "--augment",
            "flip-crop",
            "--alt-flip",
            "--whiten-init",
            "--dirac-init",
            "--bn-bias-lr-mult",
            "8",
            "--bn-momentum",
            "0.4",
            "--lookahead",
            "3",
            "--logit-scale",
            "0.5",
            epochs=2,
        )
    )
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert config["amp"] == "yes" and summary["amp"] == "bf16" and "RESDENSE_AMP" in summary["amp_reason"]
    assert config["whiten_init"] and config["lookahead"] == 3 and config["logit_scale"] == 0.5
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert len(ckpt["lookahead"]) == len(
        [p for p in ckpt["model"] if not p.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    )
    # the saved model answers with the logits training's loss saw: the checkpoint's, halved
    served, _ = load_trained(out)
    raw = create_model("resnet20", num_classes=4, in_chans=1, widths=(4, 8, 16))
    raw.load_state_dict(ckpt["model"])
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(served(x), raw.eval()(x) * 0.5, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--bn-momentum", "1.5"], "--bn-momentum must be in (0, 1]"),
        (["--lookahead", "-1"], "--lookahead must be >= 0"),
        (["--alt-flip"], "--augment none flips none"),
        (["--logit-scale", "0"], "--logit-scale must be positive"),
        (["--bn-bias-lr-mult", "-2"], "--bn-bias-lr-mult must be positive"),
        (["--bn-recalibrate", "-5"], "--bn-recalibrate must be >= 0"),
    ],
)
def test_bad_trick_settings_are_one_line_errors(idx_dir, tmp_path, capsys, option, fragment):
    from resdense.cli import main

    code = main(train_args(idx_dir, tmp_path / "r", *option))
    assert_one_line_error(code, capsys.readouterr().err, fragment)
