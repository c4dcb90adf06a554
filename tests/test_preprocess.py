"""``Preprocess``: how uint8 images become network input, and the functions it is made of."""

import json
import math

import pytest
import torch

from resdense.preprocess import (
    CROP_PCT,
    Preprocess,
    center_crop,
    channel_stats,
    normalize,
    resize,
    resize_shorter,
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
