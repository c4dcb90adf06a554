"""timm's data contract, checked against timm itself: ``timm.data.resolve_model_data_config(model)`` and
``timm.data.create_transform(**cfg)`` on a PIL photo give the tensor resdense feeds the same model (its
``pretrained_cfg.preprocess`` applied to the same pixels), within bf16 rounding, for the fits and
interpolations resdense's weights use: torchvision's (the shorter side, bilinear), timm's Hub weights
(bicubic, a crop_pct of 0.95, a larger test size), and the shipped 1-channel 28x28 squashed models.

Before this contract was kept the two differed by 3.75 normalised units on a 450x300 photo (timm fed resdense's
models bicubic centre crops where resdense squashed bilinearly)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resdense
from resdense.data.photo import PhotoTransform
from resdense.models.hf_hub import timm_cfg
from resdense.preprocess import crop_pct_for, normalize, scale_size

timm_data = pytest.importorskip("timm.data")  # the dev extra installs timm: CI has it

# bf16 keeps 8 significant bits: 0.05 in normalised units is ~3 grey levels at ImageNet's std, and about
# what bf16 rounds a value near 2 by; one grey level is 0.017
TOLERANCE = 0.05
SIZES = [(450, 300), (300, 451), (61, 37)]  # (width, height): landscape, portrait, one to be upsampled


def photo(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A photo-like uint8 picture: smooth light, soft shapes, sensor noise; every value kept off 0 and 255
    (see test_saturated_hard_edges for pictures that are not)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    blob = torch.exp(-((xx - 0.6) ** 2 + (yy - 0.4) ** 2) / 0.02)
    rgb = torch.stack(
        [60 + 120 * xx + 50 * blob, 60 + 120 * yy, 140 - 60 * xx * yy + 40 * torch.sin(12 * xx)]
    )
    rgb = rgb + torch.randn(3, height, width, generator=g) * 6
    arr = rgb.clamp(10, 245).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr).convert(mode)


def as_uint8(image: Image.Image) -> torch.Tensor:
    """(1, C, H, W) uint8, the layout resdense's readers hand to ``Preprocess``."""
    arr = torch.from_numpy(np.array(image))
    return arr[None, None] if arr.ndim == 2 else arr.permute(2, 0, 1)[None].contiguous()


def timm_input(model, image: Image.Image, **kw) -> torch.Tensor:
    cfg = timm_data.resolve_model_data_config(model, **kw)
    return timm_data.create_transform(**cfg)(image)


def resdense_input(model, image: Image.Image) -> torch.Tensor:
    return model.pretrained_cfg.preprocess(as_uint8(image))[0]


def assert_same_input(model, mode: str = "RGB", **kw) -> None:
    for width, height in SIZES:
        image = photo(width, height, mode)
        ours, theirs = resdense_input(model, image), timm_input(model, image, **kw)
        assert ours.shape == theirs.shape, (width, height)
        diff = float((ours - theirs).abs().max())
        assert diff <= TOLERANCE, f"{width}x{height}: max difference {diff:.3f}"


def with_cfg(net, /, **changes):
    net.pretrained_cfg = replace(net.pretrained_cfg, **changes)
    return net


def test_torchvision_style_resnet18_shorter_side_bilinear():
    model = with_cfg(resdense.create_model("resnet18"), resize=256, fit="shorter", interpolation="bilinear")
    cfg = timm_data.resolve_model_data_config(model)
    assert cfg["crop_mode"] == "center" and cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 0.875
    assert_same_input(model)


def test_fresh_resnet18_as_created():
    """Whatever the architecture's defaults are, timm reads them as resdense applies them."""
    assert_same_input(resdense.create_model("resnet18"))


@pytest.mark.parametrize("fit", ["shorter", "squash"])
def test_bicubic_cfgs(fit: str):
    model = with_cfg(resdense.create_model("resnet18"), resize=248, fit=fit, interpolation="bicubic")
    assert timm_data.resolve_model_data_config(model)["interpolation"] == "bicubic"
    assert_same_input(model)


def test_nearest():
    assert_same_input(
        with_cfg(resdense.create_model("resnet18"), resize=256, fit="shorter", interpolation="nearest")
    )


def test_timm_hub_cfg_at_train_and_test_size():
    """A timm Hub config (bicubic, crop_pct 0.95, a larger test size): timm's train-size view matches the cfg's
    input_size, and its test-size view (use_test_size=True) is what resdense serves the weights with."""
    config = {
        "architecture": "resnet18",
        "num_classes": 1000,
        "pretrained_cfg": {
            "input_size": [3, 224, 224],
            "test_input_size": [3, 288, 288],
            "crop_pct": 0.95,
            "test_crop_pct": 1.0,
            "interpolation": "bicubic",
            "crop_mode": "center",
        },
    }
    model = resdense.create_model("resnet18")
    model.pretrained_cfg = timm_cfg(config, "hf-hub:timm/resnet18.test")
    cfg = model.pretrained_cfg
    assert cfg["test_input_size"] == (3, 288, 288) and cfg.preprocess.input_size == 288
    assert_same_input(model, use_test_size=True)
    train_view = with_cfg(resdense.create_model("resnet18"), **{**_fields(cfg), "test_input_size": None})
    assert train_view.pretrained_cfg.preprocess.input_size == 224
    assert_same_input(train_view)


def _fields(cfg) -> dict:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


def test_shipped_fashion_mnist_one_channel_squashed():
    model = resdense.create_model("resnet20", weights="fashion-mnist")
    cfg = timm_data.resolve_model_data_config(model)
    assert cfg["input_size"] == (1, 28, 28) and cfg["crop_mode"] == "squash" and cfg["crop_pct"] == 1.0
    assert_same_input(model, mode="L")


def test_crop_pct_round_trips_through_timms_floor():
    """timm turns crop_pct back into the resize side by floor(size / crop_pct): every (size, resize) pair
    resdense can hold comes back exactly, float rounding included."""
    for size in range(8, 520):
        for resize in (size, size + 1, round(size / 0.875), round(size / 0.95), 2 * size + 3):
            assert scale_size(size, crop_pct_for(size, resize)) == resize, (size, resize)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_evaluation_of_files_matches_timm(interpolation: str, tmp_path: Path):
    """``resdense evaluate`` reads a folder of photos file by file (PhotoTransform.evaluating): the same
    window, size and interpolation as timm's transform of the decoded file, taken in one resample of the
    window instead of a resize then a crop (the streamed evaluation's speed, tests/data/test_stream.py):
    close, not equal."""
    model = with_cfg(
        resdense.create_model("resnet18"), resize=256, fit="shorter", interpolation=interpolation
    )
    pre = model.pretrained_cfg.preprocess
    for width, height in SIZES[:2]:
        path = tmp_path / f"{width}x{height}.png"
        photo(width, height).save(path)
        fitted = torch.from_numpy(np.array(PhotoTransform.evaluating(pre)(path))).permute(2, 0, 1)[None]
        ours = normalize(fitted, pre.mean, pre.std)[0]
        with Image.open(path) as image:
            theirs = timm_input(model, image.convert("RGB"))
        diff = (ours - theirs).abs()
        assert float(diff.mean()) <= 0.02 and float(diff.max()) <= 0.15, (
            float(diff.mean()),
            float(diff.max()),
        )


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_squashed_files_match_timm(interpolation: str, tmp_path: Path):
    """A file squashed by PhotoTransform (one resample of the whole picture, as PIL's) is timm's squash."""
    model = with_cfg(
        resdense.create_model("resnet18"), resize=None, fit="squash", interpolation=interpolation
    )
    pre = model.pretrained_cfg.preprocess
    for width, height in SIZES:
        path = tmp_path / f"{width}x{height}.png"
        photo(width, height).save(path)
        t = PhotoTransform(pre.input_size, 3, crop="squash", interpolation=interpolation)
        ours = normalize(torch.from_numpy(np.array(t(path))).permute(2, 0, 1)[None], pre.mean, pre.std)[0]
        with Image.open(path) as image:
            theirs = timm_input(model, image.convert("RGB"))
        assert float((ours - theirs).abs().max()) <= TOLERANCE


def test_saturated_hard_edges():
    """Where bicubic overshoots 0 or 255 (a saturated hard edge), PIL clips between its row and column passes;
    resdense does the same passes, so the picture stays PIL's: most pixels within a level, the rest only at
    such edges, where Pillow 13 sometimes takes the passes in the other order."""
    model = with_cfg(resdense.create_model("resnet18"), resize=256, fit="shorter", interpolation="bicubic")
    g = torch.Generator().manual_seed(0)
    arr = ((torch.rand(300, 450, 3, generator=g) > 0.5) * 255).byte().numpy()
    image = Image.fromarray(arr)
    diff = (resdense_input(model, image) - timm_input(model, image)).abs()
    assert float(diff.max()) <= TOLERANCE  # landscape: the same pass order as PIL


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_jpeg_fast_path_keeps_the_interpolation(interpolation: str, tmp_path: Path, monkeypatch):
    """A plain JPEG is decoded by libjpeg-turbo and resized by torch (data/photo.py's fast path), anything else
    by Pillow: both resample the window with the model's interpolation, so they agree."""
    from resdense.data import photo as photo_module

    if photo_module._simplejpeg is None:
        pytest.skip("simplejpeg is not installed: there is no fast path")
    path = tmp_path / "x.jpg"
    photo(450, 300).save(path, quality=95)
    model = with_cfg(
        resdense.create_model("resnet18"), resize=256, fit="shorter", interpolation=interpolation
    )
    t = PhotoTransform.evaluating(model.pretrained_cfg.preprocess)
    fast = torch.from_numpy(np.array(t(path))).int()
    monkeypatch.setattr(photo_module, "_simplejpeg", None)
    slow = torch.from_numpy(np.array(t(path))).int()
    other = replace(t, interpolation="nearest" if interpolation != "nearest" else "bicubic")
    # nearest picks whole pixels: where the fast path's window lands a fraction of a pixel from Pillow's box,
    # a neighbour is picked (sensor noise of 6 levels: about a level on average)
    assert float((fast - slow).abs().float().mean()) < (2.0 if interpolation == "nearest" else 1.0)
    # and the interpolation shows: another one gives another picture
    assert float((torch.from_numpy(np.array(other(path))).int() - slow).abs().float().mean()) > 1.0
