"""The per-image augmentations keyed on (seed, epoch, image): Random Erasing, RandAugment/TrivialAugment,
MixUp/CutMix; the same draws for an image in any batch, on both data paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resdense.data.augment import ERASING_MIN_AREA, BatchAugment, erasing_boxes, keyed_erasing
from resdense.data.autoaugment import OPS, auto_augment
from resdense.data.keyed import betas, image_keys, uniforms
from resdense.data.mix import Mix, smoothed_one_hot
from resdense.data.stream import load_folder
from resdense.preprocess import Preprocess

from .test_stream import photo_folder

pytest.importorskip("torchvision")  # the auto-augment ops are torchvision's (a dev dependency)


def test_keys_depend_on_seed_epoch_and_image_only() -> None:
    idx = torch.arange(50)
    k = image_keys(3, 1, idx)
    assert torch.equal(k, image_keys(3, 1, idx))
    assert torch.equal(image_keys(3, 1, idx[[7, 2]]), k[[7, 2]])  # whatever batch an image is in
    assert len(set(k.tolist())) == 50
    for other in (image_keys(4, 1, idx), image_keys(3, 2, idx)):
        assert (other != k).all()
    u = uniforms(image_keys(0, 0, torch.arange(20000)), 2, purpose=1)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.01
    assert abs(torch.corrcoef(u.T)[0, 1].item()) < 0.03  # the columns are independent draws


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_betas_have_beta_moments(alpha: float) -> None:
    b = betas(image_keys(0, 0, torch.arange(40000)), alpha, purpose=5)
    assert ((b >= 0) & (b <= 1)).all()
    var = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2
    assert abs(b.mean().item() - 0.5) < 0.01 and abs(b.var().item() - var) < 0.1 * var


def test_erasing_boxes_lie_inside_the_image_with_their_area_in_the_scale() -> None:
    h, w, scale = 20, 28, (ERASING_MIN_AREA, 0.4)
    u = uniforms(image_keys(0, 0, torch.arange(3000)), 22, purpose=9)
    top, left, eh, ew = erasing_boxes(u, h, w, scale, 3.3).unbind(1)
    found = eh > 0
    assert found.float().mean() > 0.95
    assert (top >= 0).all() and (left >= 0).all() and (top + eh <= h).all() and (left + ew <= w).all()
    frac = (eh * ew).float()[found] / (h * w)
    assert frac.min() >= scale[0] and frac.max() <= scale[1]
    aspect = (eh.float() / ew.float())[found]
    assert aspect.min() >= 1 / 3.3 - 0.15 and aspect.max() <= 3.3 + 0.5  # rounding of small boxes


def test_keyed_erasing_zeroes_one_box_per_erased_image_and_repeats_with_the_key() -> None:
    x = torch.rand(400, 2, 16, 16) + 1  # nothing is 0 before
    keys = image_keys(1, 0, torch.arange(400))
    out = keyed_erasing(x, keys, 0.5, (ERASING_MIN_AREA, 0.4), 3.3)
    zero = (out == 0).all(1)  # (N, H, W): erased pixels, on every channel
    erased = zero.flatten(1).any(1)
    assert 0.4 < erased.float().mean() < 0.6  # p = 0.5, drawn per image
    for z in zero[erased][:50]:  # one rectangle: its bounding box is all erased
        rows, cols = z.any(1).nonzero().view(-1), z.any(0).nonzero().view(-1)
        box = z[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all() and box.numel() == z.sum()
        assert ERASING_MIN_AREA <= box.numel() / z.numel() <= 0.4
    assert torch.equal(out, keyed_erasing(x, keys, 0.5, (ERASING_MIN_AREA, 0.4), 3.3))
    other = keyed_erasing(x, image_keys(1, 1, torch.arange(400)), 0.5, (ERASING_MIN_AREA, 0.4), 3.3)
    assert not torch.equal(out, other)  # another epoch, other boxes


@pytest.mark.parametrize("policy", ["rand", "trivial"])
def test_auto_augment_draws_per_image_and_repeats_per_image(policy: str) -> None:
    g = torch.Generator().manual_seed(0)
    same = torch.randint(0, 256, (1, 3, 24, 24), generator=g, dtype=torch.uint8).expand(64, -1, -1, -1)
    keys = image_keys(0, 0, torch.arange(64))
    out = auto_augment(same.contiguous(), policy, keys)
    assert out.dtype == torch.uint8 and out.shape == same.shape
    # one image, 64 draws: many different results (one draw per batch would give one)
    assert len({o.numpy().tobytes() for o in out}) > 10
    again = auto_augment(same[[5, 9]].contiguous(), policy, keys[[5, 9]])  # another batch, same images
    assert torch.equal(again, out[[5, 9]])
    later = auto_augment(same.contiguous(), policy, image_keys(0, 1, torch.arange(64)))
    assert not torch.equal(later, out)


def test_trivial_augment_uses_every_operation_of_its_space() -> None:
    from resdense.data.autoaugment import AUTO_AUGMENT_DRAWS

    u = uniforms(image_keys(0, 0, torch.arange(2000)), 3, AUTO_AUGMENT_DRAWS)
    drawn = (u[:, 0] * len(OPS)).long()
    assert set(drawn.tolist()) == set(range(len(OPS)))


def test_mixup_targets_are_the_mix_of_the_smoothed_one_hots() -> None:
    n, k, s = 64, 5, 0.1
    x = torch.rand(n, 1, 8, 8)
    y = torch.arange(n) % k
    keys = image_keys(0, 0, torch.arange(n))
    out, t = Mix(mixup=0.4, cutmix=0.0, switch_prob=0.5, num_classes=k, smoothing=s)(x, y, keys)
    assert torch.allclose(t.sum(1), torch.ones(n))
    # lambda recovered from the pixels: out = lam * x + (1 - lam) * x_partner
    lam = ((out - x.flip(0)) / (x - x.flip(0))).flatten(1).median(1).values
    one = smoothed_one_hot(y, k, s)
    assert torch.allclose(t, lam.view(n, 1) * one + (1 - lam.view(n, 1)) * one.flip(0), atol=1e-4)
    assert lam.unique().numel() > n // 2  # drawn per image
    assert torch.allclose(smoothed_one_hot(y, k, s).sum(1), torch.ones(n))
    assert torch.allclose(one.max(1).values, torch.full((n,), 1 - s + s / k))


def test_cutmix_pastes_a_box_and_weights_the_targets_by_its_area() -> None:
    n, k = 200, 4
    x = torch.rand(n, 1, 16, 16)
    y = torch.arange(n) % k
    keys = image_keys(2, 0, torch.arange(n))
    out, t = Mix(mixup=0.0, cutmix=1.0, switch_prob=0.5, num_classes=k)(x, y, keys)
    kept = (out == x).float().flatten(1).mean(1)  # the share of the image not pasted over
    one = smoothed_one_hot(y, k, 0.0)
    assert torch.allclose(t, kept.view(n, 1) * one + (1 - kept.view(n, 1)) * one.flip(0), atol=1e-5)
    assert torch.allclose(t.sum(1), torch.ones(n))
    assert ((out == x) | (out == x.flip(0))).all()  # pixels of one image or the other, nothing blended


def test_the_switch_probability_picks_cutmix_per_image() -> None:
    n = 4000
    x = torch.rand(n, 1, 8, 8)
    y = torch.zeros(n, dtype=torch.long)
    out, _ = Mix(mixup=1.0, cutmix=1.0, switch_prob=0.3, num_classes=2)(
        x, y, image_keys(0, 0, torch.arange(n))
    )
    only_two = ((out == x) | (out == x.flip(0))).flatten(1).all(1)  # cut, not blended
    assert abs(only_two.float().mean().item() - 0.3) < 0.04


def test_streamed_batches_are_augmented_as_the_in_memory_ones(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "r", n_per_class=8)
    memory = load_folder(root, in_memory="yes", image_size=16)[0].train
    data, _ = load_folder(root, in_memory="no")
    stream = data.streams(size=16, augment="none", workers=0)[0]
    pre = Preprocess(16, (0.5,) * 3, (0.25,) * 3, 3)
    aug = BatchAugment("flip", pre, auto_augment="trivial", erasing=0.5, seed=4)
    for epoch in (0, 1):
        got = []
        for split in (memory, stream):
            gen = torch.Generator().manual_seed(epoch)
            got.append(
                [
                    aug.keyed_call(x, idx, gen, epoch)
                    for x, _, idx in split.train_batches(6, seed=4, epoch=epoch, indices=True)
                ]
            )
        assert len(got[0]) == len(got[1]) == 4
        for a, b in zip(*got):
            assert torch.equal(a, b)


def test_alternating_flips_keep_their_phase_under_auto_augment() -> None:
    from resdense.data.augment import alternate_flips, flip_where

    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (32, 1, 12, 12), generator=g, dtype=torch.uint8)
    idx = torch.arange(32)
    pre = Preprocess(12, (0.0,), (1.0,), 1)
    aug = BatchAugment("flip", pre, alt_flip=True, auto_augment="trivial", seed=1)
    for epoch in (0, 1):
        changed = auto_augment(x, "trivial", image_keys(1, epoch, idx))
        # the phase is the original image's, whatever auto-augment did to its pixels this epoch
        expected = flip_where(pre(changed), alternate_flips(x, epoch))
        assert torch.equal(aug.keyed_call(x, idx, None, epoch), expected)
