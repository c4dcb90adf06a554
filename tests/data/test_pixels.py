"""``resdense.data.pixels``, the one place every reader turns a decoded image into 8-bit grey or RGB: wide
modes (16-bit, 32-bit, float) scaled by their bit depth on every path (predict, upload, streamed folder,
in-memory folder), reduced right after decoding, and the decoded-pixel cap. Property tests (Hypothesis)
write random modes, sizes and depths to PNG, TIFF and JPEG and compare with the generated array, scaled."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from resdense.data.folder import load_image_folder
from resdense.data.photo import PhotoTransform, decode_image, read_image
from resdense.data.pixels import (
    MAX_PIXELS,
    REDUCE_MARGIN,
    check_pixels,
    image_size,
    reduce_factor,
    wide_to_uint8,
)
from resdense.errors import UserError

PROPS = settings(max_examples=25, deadline=None, derandomize=True)


def _as_uint8(arr: np.ndarray, depth: int) -> np.ndarray:
    """The reference: the generated array scaled from ``depth`` bits to 8, rounded."""
    top = 2**depth - 1
    return np.rint(arr.astype(np.float64) * 255 / top).astype(np.uint8)


def _write(arr: np.ndarray, mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)  # the mode follows the dtype and shape
    assert Image.open(buf).mode == mode
    return buf.getvalue()


def _sixteen(x: np.ndarray, rng) -> np.ndarray:
    """A 16-bit copy of uint8 ``x``: each level x as x * 257, plus noise under half a 16-bit step of 257."""
    return np.minimum(x.astype(np.int64) * 257 + rng.integers(0, 128, x.shape), 65535).astype(np.uint16)


def test_a_16_bit_copy_gives_the_8_bit_answer(tmp_path, real_fashion_mnist):
    """The probe: a 16-bit copy of a test image (an ankle boot) turned 34% of its pixels white and moved the
    shipped model's answer from 0.925 to 0.656. Each level x stored as x * 257 plus noise under half a step
    reads back as x, so every path gives the 8-bit original's answer."""
    from resdense.serve.load import load_predictor
    from resdense.serve.predict import predict_files

    img = real_fashion_mnist.test.images[0, 0].numpy()
    wide = _sixteen(img, np.random.default_rng(0))
    Image.fromarray(img).save(tmp_path / "boot8.png")
    Image.fromarray(wide).save(tmp_path / "boot16.png")  # Pillow writes I;16 as a 16-bit PNG
    Image.fromarray(wide).save(tmp_path / "boot16.tif")
    assert Image.open(tmp_path / "boot16.png").mode.startswith("I")
    for name in ("boot16.png", "boot16.tif"):
        assert torch.equal(read_image(tmp_path / name, 1), read_image(tmp_path / "boot8.png", 1))
        data = (tmp_path / name).read_bytes()
        assert torch.equal(decode_image(data, 1), read_image(tmp_path / "boot8.png", 1))
        streamed = PhotoTransform(28, 1, crop="squash")(tmp_path / name)
        assert np.array_equal(streamed, PhotoTransform(28, 1, crop="squash")(tmp_path / "boot8.png"))
    predictor = load_predictor("fashion-mnist", weights=True)
    p8, p16, ptif = predict_files(
        predictor, [str(tmp_path / n) for n in ("boot8.png", "boot16.png", "boot16.tif")]
    )
    assert p8.top[0][0] == p16.top[0][0] == ptif.top[0][0]
    assert p16.top[0][1] == pytest.approx(p8.top[0][1], abs=1e-6)
    assert ptif.top[0][1] == pytest.approx(p8.top[0][1], abs=1e-6)


def test_the_in_memory_folder_reads_16_bit_as_8_bit(tmp_path):
    """The in-memory training path decodes through the same conversion: a 16-bit copy of a folder gives the
    8-bit folder's tensors."""
    rng = np.random.default_rng(1)
    for root, wide in (("eight", False), ("sixteen", True)):
        for c in ("a", "b"):
            (tmp_path / root / c).mkdir(parents=True)
            for i in range(3):
                x = np.random.default_rng(i + (c == "b") * 10).integers(0, 256, (12, 12)).astype(np.uint8)
                arr = _sixteen(x, rng) if wide else x
                Image.fromarray(arr).save(tmp_path / root / c / f"{i}.png")
    eight = load_image_folder(tmp_path / "eight", seed=0)
    sixteen = load_image_folder(tmp_path / "sixteen", seed=0)
    assert torch.equal(eight.train.images, sixteen.train.images)
    assert torch.equal(eight.test.images, sixteen.test.images)


@PROPS
@given(
    depth=st.sampled_from([16, 12, 10]),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    fmt=st.sampled_from(["PNG", "TIFF"]),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
)
def test_wide_grey_files_read_as_their_scaled_values(depth, h, w, fmt, channels, seed):
    """Any 16-bit grey PNG or TIFF (values of any bit depth up to 16, stored in 16 bits as scanners and
    microscopes write them stretched to the full range) reads as round(v / 257) on every channel."""
    top = 2**depth - 1
    raw = np.random.default_rng(seed).integers(0, top + 1, (h, w))
    full = np.rint(raw * (65535 / top)).astype(np.uint16)  # stretched to 16 bits: the file's real depth
    got = decode_image(_write(full, "I;16", fmt), channels)
    ref = _as_uint8(full, 16)
    assert got.shape == (1, channels, h, w)
    for c in range(channels):
        assert np.array_equal(got[0, c].numpy(), ref)


@PROPS
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    kind=st.sampled_from(["F01", "F255", "I32", "I16"]),
    seed=st.integers(0, 2**16),
)
def test_float_and_32_bit_grey_read_by_their_range(h, w, kind, seed):
    """``F`` in [0, 1] scales by 1, ``F`` beyond by 255 (Pillow's reading), ``I`` within 16 bits by 65535,
    ``I`` beyond by 2**31 - 1; never clipped at 255."""
    rng = np.random.default_rng(seed)
    if kind == "F01":
        arr, ref = rng.random((h, w)).astype(np.float32), None
        ref = np.rint(arr.astype(np.float64) * 255).astype(np.uint8)
    elif kind == "F255":
        arr = (rng.random((h, w)) * 254 + 1.5).astype(np.float32)
        ref = np.rint(arr.astype(np.float64)).clip(0, 255).astype(np.uint8)
    elif kind == "I16":
        arr = rng.integers(0, 65536, (h, w)).astype(np.int32)
        ref = _as_uint8(arr, 16)
    else:
        arr = rng.integers(0, 2**31 - 1, (h, w)).astype(np.int32)
        arr.flat[0] = 2**31 - 1  # beyond 16 bits for sure
        ref = np.rint(arr.astype(np.float64) * 255 / (2**31 - 1)).astype(np.uint8)
    got = decode_image(_write(arr, "F" if kind.startswith("F") else "I", "TIFF"), 1)
    assert np.array_equal(got[0, 0].numpy(), ref)


@PROPS
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    alpha=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_16_bit_colour_pngs_read_within_one_level(h, w, alpha, seed):
    """16-bit RGB and RGBA PNGs (written here by hand: Pillow cannot write them) read within one level of the
    generated values scaled from 16 bits (Pillow keeps the top byte), alpha dropped."""
    import struct
    import zlib

    c = 4 if alpha else 3
    arr = np.random.default_rng(seed).integers(0, 65536, (h, w, c)).astype(np.uint16)
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = struct.pack(">IIBBBBB", w, h, 16, 6 if alpha else 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    got = decode_image(png, 3)[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - _as_uint8(arr[..., :3], 16).astype(int)).max() <= 1


@PROPS
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    mode=st.sampled_from(["L", "RGB", "LA", "RGBA", "P", "1"]),
    fmt=st.sampled_from(["PNG", "TIFF"]),
    seed=st.integers(0, 2**16),
)
def test_8_bit_modes_read_as_pillow_converts_them(h, w, mode, fmt, seed):
    """Ordinary 8-bit modes keep Pillow's conversion exactly (the answers existing models give stay put)."""
    rng = np.random.default_rng(seed)
    c = {"L": 1, "P": 1, "1": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (h, w, c) if c > 1 else (h, w)).astype(np.uint8)
    im = (
        Image.fromarray(arr > 127) if mode == "1" else Image.fromarray(arr, mode="L" if mode == "P" else mode)
    )
    if mode == "P":
        im = im.convert("P")
    buf = io.BytesIO()
    im.save(buf, fmt)
    back = Image.open(io.BytesIO(buf.getvalue()))
    for channels in (1, 3):
        ref = back.convert("L") if channels == 1 or back.mode in ("1", "LA", "L") else back.convert("RGB")
        ref = np.asarray(ref.convert("L" if channels == 1 else "RGB"))
        got = decode_image(buf.getvalue(), channels)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(got, ref.reshape(got.shape))


@PROPS
@given(side=st.integers(8, 64), channels=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_8_bit_jpegs_read_as_pillow_decodes_them(side, channels, seed):
    arr = np.random.default_rng(seed).integers(0, 256, (side, side + 3, 3)).astype(np.uint8)
    data = _write(arr, "RGB", "JPEG")
    ref = np.asarray(Image.open(io.BytesIO(data)).convert("L" if channels == 1 else "RGB"))
    got = decode_image(data, channels)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(got, ref.reshape(got.shape))


def test_wide_to_uint8_never_clips():
    """Pillow's own conversion clips every 16-bit value over 255 to white; the scaling keeps the order."""
    v = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    assert wide_to_uint8(v, "I;16").tolist() == [[0, 1, 128, 255]]
    assert np.asarray(Image.fromarray(v).convert("L")).tolist() == [[0, 255, 255, 255]]  # what it was


def test_images_are_reduced_right_after_decoding(tmp_path):
    """A big image comes back no bigger than 2 x REDUCE_MARGIN times the side the model's preprocessing
    resizes to (and no smaller than REDUCE_MARGIN times): a batch holds model-sized images. JPEGs shrink in the decoder (draft mode)."""
    arr = np.random.default_rng(0).integers(0, 256, (1200, 1000, 3)).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.png")
    Image.fromarray(arr).save(tmp_path / "big.jpg")
    for name in ("big.png", "big.jpg"):
        full = read_image(tmp_path / name, 3)
        small = read_image(tmp_path / name, 3, need=25)
        assert full.shape == (1, 3, 1200, 1000)
        assert REDUCE_MARGIN * 25 <= min(small.shape[2:]) < 2 * REDUCE_MARGIN * 25
        assert small.shape[2] > small.shape[3]
    assert reduce_factor(1000, 1200, 25) == 1000 // (REDUCE_MARGIN * 25) and reduce_factor(150, 150, 100) == 1
    assert reduce_factor(5000, 5000, None) == 1


def test_the_pixel_cap_is_one_line_naming_the_file(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "wide.png")
    assert image_size((tmp_path / "wide.png").read_bytes()) == (300, 200) == image_size(tmp_path / "wide.png")
    with pytest.raises(UserError, match=r"wide\.png: 300 x 200 = 60,000 pixels, over the limit of 50,000"):
        read_image(tmp_path / "wide.png", 1, max_pixels=50_000)
    with pytest.raises(UserError, match="upload.png: 300 x 200"):
        decode_image((tmp_path / "wide.png").read_bytes(), 1, name="upload.png", max_pixels=50_000)
    check_pixels("x", 300, 200, 60_000)  # at the limit: fine
    assert MAX_PIXELS > 80_000_000


def test_reducing_big_pngs_moves_the_fitted_image_a_few_levels(tmp_path, monkeypatch):
    """Both readers (predict's, the streamed evaluation's) reduce a big decoded image before the resample; the
    image the network sees stays within a few grey levels of the unreduced one."""
    import resdense.data.photo as photo
    from resdense.preprocess import Preprocess

    yy, xx = np.mgrid[0:1700, 0:1300]
    arr = ((np.sin(xx / 37.0) + np.cos(yy / 23.0)) * 60 + 128).astype(np.uint8)
    Image.fromarray(np.stack([arr, arr[::-1], arr[:, ::-1]], -1)).save(tmp_path / "big.png")
    pre = Preprocess.centre(32, (0.5,) * 3, (0.25,) * 3, 3, crop_pct=0.875)
    t = PhotoTransform.evaluating(pre)
    reduced = [t(tmp_path / "big.png"), pre.fit_images(read_image(tmp_path / "big.png", 3, need=pre.resize))]
    monkeypatch.setattr(photo, "REDUCE_MARGIN", 10**6)  # the streamed path without its reduction
    full = [t(tmp_path / "big.png"), pre.fit_images(read_image(tmp_path / "big.png", 3))]
    for a, b in zip(reduced, full):
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 4
