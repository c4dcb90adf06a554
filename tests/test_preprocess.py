"""``Preprocess``: how uint8 images become network input, and the functions it is made of."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from resdense.preprocess import (
    CROP_PCT,
    Preprocess,
    _resize_to,
    center_crop,
    channel_stats,
    crop_pct_for,
    fit_for,
    normalize,
    resize,
    resize_shorter,
    scale_size,
)


def stripes(h: int = 20, w: int = 40) -> torch.Tensor:
    """A (1, 1, h, w) uint8 image: black outer quarters left and right, white centre half."""
    x = torch.zeros(1, 1, h, w, dtype=torch.uint8)
    x[..., w // 4 : w - w // 4] = 255
    return x


def ramp(h: int, w: int, channels: int = 1) -> torch.Tensor:
    """A (1, C, h, w) uint8 image whose value grows along the rows and the columns."""
    v = (torch.arange(h).view(h, 1) * 7 + torch.arange(w).view(1, w) * 3) % 256
    return v.to(torch.uint8).expand(1, channels, h, w).contiguous()


# -- the dataclass -----------------------------------------------------------------------------------------


def test_defaults_and_input_size():
    p = Preprocess(32, (0.5,), (0.25,), 1)
    assert p.crop is None and p.fit == "squash"
    assert p.input_size == 32
    assert Preprocess(36, (0.5,), (0.25,), 1, crop=32).input_size == 32
    assert Preprocess(None, (0.5,), (0.25,), 1).input_size is None


def test_unknown_fit_is_refused():
    with pytest.raises(ValueError, match="bogus"):
        Preprocess(32, (0.5,), (0.25,), 1, fit="bogus")
    with pytest.raises(ValueError):
        Preprocess.from_dict({"size": 32, "mean": [0.5], "std": [0.25], "in_chans": 1, "fit": "bogus"})


def test_to_dict_writes_size_and_only_non_default_crop_and_fit():
    plain = Preprocess(32, (0.5,), (0.25,), 1)
    assert plain.to_dict() == {"size": 32, "mean": [0.5], "std": [0.25], "in_chans": 1}
    full = Preprocess(256, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 3, crop=224, fit="shorter")
    d = full.to_dict()
    assert d == {
        "size": 256,
        "mean": [0.1, 0.2, 0.3],
        "std": [0.4, 0.5, 0.6],
        "in_chans": 3,
        "crop": 224,
        "fit": "shorter",
    }
    assert "resize" not in d
    json.dumps(d)  # plain JSON data


@pytest.mark.parametrize(
    "p",
    [
        Preprocess(32, (0.5,), (0.25,), 1),
        Preprocess(None, (0.5,), (0.25,), 1),
        Preprocess(40, (0.5,), (0.25,), 1, crop=32),
        Preprocess(256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, crop=224, fit="shorter"),
    ],
)
def test_dict_round_trip(p):
    assert Preprocess.from_dict(p.to_dict()) == p
    assert Preprocess.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_from_dict_reads_size_or_resize():
    base = {"mean": [0.5], "std": [0.25], "in_chans": 1}
    assert Preprocess.from_dict({"size": 28, **base}).resize == 28
    assert Preprocess.from_dict({"resize": 28, **base}).resize == 28
    p = Preprocess.from_dict({"resize": 28, "crop": 24, "fit": "shorter", **base})
    assert p == Preprocess(28, (0.5,), (0.25,), 1, crop=24, fit="shorter")
    # types are normalised: tuples of floats, an int channel count
    q = Preprocess.from_dict({"size": 28, "mean": [1], "std": [2], "in_chans": "1"})
    assert q.mean == (1.0,) and q.std == (2.0,) and q.in_chans == 1
    assert isinstance(q.mean, tuple) and isinstance(q.mean[0], float)


def test_centre_is_shorter_side_then_centre_crop():
    p = Preprocess.centre(224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 3)
    assert p == Preprocess(256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, crop=224, fit="shorter")
    small = Preprocess.centre(32, (0.5,), (0.25,), 1)
    assert small.resize == math.floor(32 / CROP_PCT) == 36  # timm's floor(size / crop_pct)
    assert small.crop == 32 and small.fit == "shorter" and small.input_size == 32
    assert isinstance(small.mean, tuple)


def test_for_channels():
    grey = Preprocess(32, (0.5,), (0.25,), 1)
    assert grey.for_channels(1) is grey
    rgb = Preprocess(32, (0.1, 0.2, 0.6), (0.2, 0.3, 0.4), 3, crop=28, fit="shorter")
    assert rgb.for_channels(3) is rgb
    one = rgb.for_channels(1)
    assert one.in_chans == 1 and one.resize == 32 and one.crop == 28 and one.fit == "shorter"
    assert one.mean == pytest.approx((0.3,)) and one.std == pytest.approx((0.3,))
    three = grey.for_channels(3)
    assert three.in_chans == 3 and three.mean == (0.5,) * 3 and three.std == (0.25,) * 3


# -- the functions -----------------------------------------------------------------------------------------


def test_resize_shorter_keeps_the_aspect_ratio():
    wide = ramp(20, 40)
    assert resize_shorter(wide, 10).shape == (1, 1, 10, 20)
    tall = ramp(40, 20)
    assert resize_shorter(tall, 10).shape == (1, 1, 20, 10)
    assert resize_shorter(ramp(30, 45, 3), 20).shape == (1, 3, 20, 30)
    assert resize_shorter(wide, 20) is wide  # already fits: untouched
    assert resize_shorter(wide, None) is wide
    out = resize_shorter(wide, 10)
    assert out.dtype == torch.uint8
    # float input stays float
    assert resize_shorter(wide.float(), 10).dtype == torch.float32


def test_resize_squashes_to_a_square():
    x = ramp(20, 40)
    assert resize(x, 10).shape == (1, 1, 10, 10)
    assert resize(x, None) is x
    sq = ramp(16, 16)
    assert resize(sq, 16) is sq


def test_center_crop():
    x = torch.arange(6 * 8, dtype=torch.uint8).view(1, 1, 6, 8)
    c = center_crop(x, 4)
    assert c.shape == (1, 1, 4, 4)
    assert torch.equal(c, x[..., 1:5, 2:6])
    assert center_crop(x, None) is x
    assert torch.equal(center_crop(x, 6), x[..., :, 1:7])
    with pytest.raises(ValueError, match="centre-crop"):
        center_crop(x, 7)


def test_channel_stats():
    x = torch.zeros(4, 2, 3, 3, dtype=torch.uint8)
    x[:2, 0] = 255  # channel 0: half white, half black -> mean 0.5, std 0.5
    x[:, 1] = 51  # channel 1: constant 0.2 -> std 0 (its variance clamped, then rounded)
    mean, std = channel_stats(x)
    assert mean == pytest.approx((0.5, 0.2))
    assert std == pytest.approx((0.5, 0.0), abs=1e-4)
    assert isinstance(mean, tuple) and len(mean) == 2


# -- fitting and calling -----------------------------------------------------------------------------------


def test_shorter_keeps_the_aspect_before_the_crop_while_squash_squashes():
    img = stripes(20, 40)  # black | white | black, in quarters
    shorter = Preprocess(10, (0.5,), (0.25,), 1, crop=10, fit="shorter")
    squash = Preprocess(10, (0.5,), (0.25,), 1, crop=10)
    a = shorter.fit_images(img)
    b = squash.fit_images(img)
    assert a.shape == b.shape == (1, 1, 10, 10)
    assert a.dtype == b.dtype == torch.uint8
    assert torch.equal(a, center_crop(resize_shorter(img, 10), 10))
    assert torch.equal(b, center_crop(resize(img, 10), 10))
    # kept aspect: the centre 10 of 20 columns is the white half, bar the antialiased edges
    assert a[..., 2:-2].min() == 255
    # squashed: the black quarters are still at the left and right edges
    assert b[..., 0].max() < 60 and b[..., -1].max() < 60
    assert b[..., 4:6].min() == 255
    assert not torch.equal(a, b)


def test_fit_without_crop_keeps_the_shorter_side_shape():
    p = Preprocess(10, (0.5,), (0.25,), 1, fit="shorter")
    assert p.fit_images(ramp(20, 40)).shape == (1, 1, 10, 20)
    assert Preprocess(10, (0.5,), (0.25,), 1).fit_images(ramp(20, 40)).shape == (1, 1, 10, 10)


def test_images_of_any_size_come_out_alike():
    p = Preprocess.centre(16, (0.5,), (0.25,), 1)
    shapes = {p.fit_images(ramp(h, w)).shape for h, w in [(20, 30), (40, 24), (18, 18), (64, 19)]}
    assert shapes == {(1, 1, 16, 16)}


def test_fit_images_matches_channels():
    rgb = ramp(12, 12, 3)
    grey = Preprocess(12, (0.5,), (0.25,), 1).fit_images(rgb)
    assert grey.shape == (1, 1, 12, 12) and grey.dtype == torch.uint8
    # equal channels: the luma weights sum to one
    assert torch.equal(grey, rgb[:, :1])
    colour = Preprocess(12, (0.5,) * 3, (0.25,) * 3, 3).fit_images(ramp(12, 12, 1))
    assert colour.shape == (1, 3, 12, 12)
    assert torch.equal(colour[:, 0], colour[:, 2])
    with pytest.raises(ValueError):
        Preprocess(12, (0.5,) * 3, (0.25,) * 3, 3).fit_images(ramp(12, 12, 2))


def test_call_normalises():
    p = Preprocess(8, (0.5,), (0.25,), 1)
    x = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    x[1] = 255
    out = p(x)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 8, 8)
    assert torch.allclose(out[0], torch.full((1, 8, 8), -2.0))
    assert torch.allclose(out[1], torch.full((1, 8, 8), 2.0))
    assert p(x, dtype=torch.float64).dtype == torch.float64
    img = ramp(16, 24)
    expected = (p.fit_images(img).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(p(img), expected)


def test_call_is_the_same_for_channels_last_input():
    p = Preprocess(16, (0.1, 0.2, 0.3), (0.2, 0.3, 0.4), 3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 16, 16), generator=g).to(torch.uint8)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(p(cl), p(x))
    mean = torch.tensor(p.mean).view(1, 3, 1, 1)
    std = torch.tensor(p.std).view(1, 3, 1, 1)
    torch.testing.assert_close(p(x), (x.float() / 255 - mean) / std)


NORM_MEAN, NORM_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_normalize_is_the_formula_in_either_memory_layout(channels: int, channels_last: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, channels, 7, 5), dtype=torch.uint8, generator=g)
    if channels_last:  # how decoded photos arrive: (N, H, W, C) memory seen as (N, C, H, W)
        x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    mean, std = NORM_MEAN[:channels], NORM_STD[:channels]
    want = (x.double() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    got = normalize(x, mean, std)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    # each channel keeps its own statistics: a mix-up of the repeated pattern would shift these
    for c in range(channels):
        torch.testing.assert_close(got[:, c].double(), want[:, c], atol=1e-5, rtol=1e-5)


# -- interpolation and timm's crop modes --------------------------------------------------------------------


def test_interpolation_defaults_to_bilinear_and_is_checked():
    assert Preprocess(32, (0.5,), (0.25,), 1).interpolation == "bilinear"
    for name in ("bilinear", "bicubic", "nearest"):
        assert Preprocess(32, (0.5,), (0.25,), 1, interpolation=name).interpolation == name
    with pytest.raises(ValueError, match="lanczos"):
        Preprocess(32, (0.5,), (0.25,), 1, interpolation="lanczos")
    with pytest.raises(ValueError, match="interpolation"):
        resize(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 2, "area")


def test_interpolation_is_written_when_not_bilinear_and_old_dicts_read_as_bilinear():
    old = {"size": 256, "mean": [0.5], "std": [0.25], "in_chans": 1, "crop": 224, "fit": "shorter"}
    p = Preprocess.from_dict(old)
    assert p.interpolation == "bilinear" and p.to_dict() == old  # an old file reads, and writes, as it was
    bicubic = replace(p, interpolation="bicubic")
    assert bicubic.to_dict() == {**old, "interpolation": "bicubic"}
    assert Preprocess.from_dict(json.loads(json.dumps(bicubic.to_dict()))) == bicubic


def test_crop_modes_are_timms_names_for_fit():
    assert fit_for("center") == "shorter" and fit_for(None) == "shorter" and fit_for("squash") == "squash"
    with pytest.raises(ValueError, match="border"):
        fit_for("border")
    assert Preprocess(32, (0.5,), (0.25,), 1, crop=28, fit="shorter").crop_mode == "center"
    assert Preprocess(32, (0.5,), (0.25,), 1).crop_mode == "squash"


def test_crop_pct_is_timms():
    p = Preprocess.centre(224, (0.5,), (0.25,), 1, crop_pct=0.95)
    assert p.resize == scale_size(224, 0.95) == 235 and math.floor(224 / p.crop_pct) == 235
    assert Preprocess(32, (0.5,), (0.25,), 1).crop_pct == 1.0
    # 14 / (14 / 25) floors to 24 in floating point: crop_pct_for nudges it so timm's floor gives 25 back
    assert math.floor(14 / (14 / 25)) == 24 and scale_size(14, crop_pct_for(14, 25)) == 25


def pil_resize(img: torch.Tensor, hw: tuple[int, int], resample) -> torch.Tensor:
    from PIL import Image

    arr = img[0].permute(1, 2, 0).numpy()
    im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    out = torch.from_numpy(np.array(im.resize(hw[::-1], resample)))
    return (out[None, None] if out.ndim == 2 else out.permute(2, 0, 1)[None]).int()


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("hw", [(40, 25), (90, 140), (61, 37)])
def test_resize_is_pils_picture(interpolation: str, hw):
    """Each interpolation gives PIL's picture (what torchvision's Resize and so timm's transforms make of a PIL
    image) within one grey level, down and up, hard edges included."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    img = (torch.rand(1, 3, 60, 90, generator=g) * 255).round().byte()
    img[..., 20:40, 30:60] = 255  # a saturated block: bicubic overshoots at its edges
    ours = _resize_to(img, hw, interpolation).int()
    theirs = pil_resize(img, hw, getattr(Image.Resampling, interpolation.upper()))
    assert ours.shape == theirs.shape and int((ours - theirs).abs().max()) <= 1


def test_nearest_takes_the_pixel_under_each_centre():
    """PIL's nearest (and timm's, on PIL images): output pixel i shows input pixel floor((i + 0.5) * in / out).
    (Pillow's fixed-point arithmetic may pick the neighbour where that lands exactly on a pixel border.)"""
    rows, cols = torch.meshgrid(torch.arange(60), torch.arange(90), indexing="ij")
    img = torch.stack([rows, cols, rows]).byte()[None]
    out = _resize_to(img, (41, 25), "nearest")
    assert out.dtype == torch.uint8
    assert out[0, 0, :, 0].tolist() == [int((i + 0.5) * 60 / 41) for i in range(41)]
    assert out[0, 1, 0].tolist() == [int((i + 0.5) * 90 / 25) for i in range(25)]


def test_default_resize_is_unchanged_bilinear():
    """The in-memory training path calls resize(images, side): bilinear, one antialiased float pass, as before."""
    g = torch.Generator().manual_seed(1)
    img = (torch.rand(4, 3, 40, 40, generator=g) * 255).byte()
    ref = F.interpolate(img.float(), size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    assert torch.equal(resize(img, 28), ref.round().clamp(0, 255).to(torch.uint8))
    assert torch.equal(resize_shorter(img, 28), resize(img, 28))


def test_fit_images_uses_the_interpolation():
    g = torch.Generator().manual_seed(2)
    img = (torch.rand(1, 3, 50, 80, generator=g) * 255).byte()
    for fit, side in (("squash", (40, 40)), ("shorter", (40, 64))):
        for name in ("bilinear", "bicubic", "nearest"):
            p = Preprocess(40, (0.5,) * 3, (0.25,) * 3, 3, crop=32, fit=fit, interpolation=name)
            assert torch.equal(p.fit_images(img), center_crop(_resize_to(img, side, name), 32))
