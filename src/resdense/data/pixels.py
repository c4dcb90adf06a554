"""What every image reader does to a decoded Pillow image, written once: wide modes scaled to 8 bits by their
real bit depth, the image reduced right after decoding to what the preprocessing needs, and the decoded-pixel
cap read from the header before any pixel is decoded.

``data.photo`` (predict, serve, explain, embed, the streamed folders) and ``data.folder`` (the in-memory
folders) both go through here, so a 16-bit PNG gives the same answer on every path.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image

from ..errors import UserError

# Pillow's own limit (about 89 million pixels, a 9459 x 9459 image): the most one image may decode to. A
# caller with a tighter budget (the HTTP service, per request) passes its own to check_pixels.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

# Keep at least this many times the side the preprocessing resizes to. Box-averaging first widens the final
# antialiased resize's filter a little: at 2x a 6000 px PNG of random 100 px blocks fitted to 28 px moved by
# up to 46 grey levels, at 8x by 3 (0.4 on average); natural photos move less. The memory is then at most
# (8 x side)^2 pixels an image, and predict fits each image to the input size as soon as it is read.
REDUCE_MARGIN = 8

_GREY_WIDE = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def to_channels(im: Image.Image, channels: int) -> Image.Image:
    """A decoded Pillow image as 8-bit grey (``channels`` 1) or RGB (3).

    Wide grey modes are scaled by their bit depth, never clipped (Pillow's ``convert("L")`` clips every
    value over 255, so a 16-bit image turned mostly white): ``I;16*`` by 65535, ``I`` by 65535 when its
    values fit 16 bits (what 16-bit PNGs and TIFFs become) and by 2**31 - 1 otherwise, ``F`` by 1.0 when its
    values lie in [0, 1] (float images' usual range) and as 0..255 otherwise. 16-bit RGB(A) PNGs arrive from
    Pillow as their top 8 bits already. Palette, CMYK, alpha and 1-bit images convert as Pillow does."""
    mode = "L" if channels == 1 else "RGB"
    if im.mode in _GREY_WIDE:
        im = Image.fromarray(wide_to_uint8(np.asarray(im), im.mode), mode="L")
    if im.mode == mode:
        return im
    if mode == "RGB" and im.mode in ("1", "LA"):
        im = im.convert("L")  # grey stays grey: each channel the same level
    return im.convert(mode)


def wide_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """A wide grey array (Pillow ``mode``: I;16*, I or F) scaled to uint8 by its bit depth, rounded."""
    if mode == "F":
        a = arr.astype(np.float64)
        finite = a[np.isfinite(a)]
        top = 1.0 if finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1) else 255.0
        a = np.nan_to_num(a, nan=0.0, posinf=top, neginf=0.0)
        return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
    if arr.size == 0 or mode != "I" or (arr.min() >= 0 and arr.max() <= 65535):
        # 4 bytes a pixel at most while scaling: rounds v / 257, so an 8-bit level x stored as x * 257
        # comes back as x exactly
        a = np.clip(arr, 0, 65535).astype(np.uint32)
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    a = np.clip(arr.astype(np.float64), 0, 2**31 - 1)
    return np.rint(a * (255 / (2**31 - 1))).astype(np.uint8)


def reduce_factor(width: int, height: int, need: int | None) -> int:
    """The integer factor an image of ``width`` x ``height`` may shrink by and still keep its shorter side
    at least ``REDUCE_MARGIN`` times ``need`` (the side the preprocessing resizes to); 1 when ``need`` is None."""
    if not need or need <= 0:
        return 1
    return max(1, min(width, height) // (REDUCE_MARGIN * need))


def draft_for(im: Image.Image, channels: int, need: int | None) -> None:
    """Before ``load``: a JPEG asked to decode at the smallest DCT scale (1/2, 1/4, 1/8) that still keeps
    the reduction margin (Pillow's draft mode: the decoder does the shrinking, memory never holds the
    full-size image). Other formats are left alone."""
    if im.format != "JPEG":
        return
    f = reduce_factor(*im.size, need)
    if f >= 2:
        w, h = im.size
        im.draft("L" if channels == 1 else "RGB", (math.ceil(w / f), math.ceil(h / f)))


def reduce_to(im: Image.Image, need: int | None) -> Image.Image:
    """Right after decoding: the image shrunk by whole-pixel box averaging (Pillow's ``reduce``) to what the
    preprocessing needs times the margin, so a batch keeps model-sized images, not file-sized ones."""
    f = reduce_factor(*im.size, need)
    if f < 2:
        return im
    if im.mode not in ("L", "RGB", "LA", "RGBA", "I", "F"):
        return im  # modes reduce cannot take; to_channels runs first on every path, so rare
    return im.reduce(f)


def image_size(data: bytes | str | os.PathLike) -> tuple[int, int]:
    """(width, height) from an image's header alone (bytes or a path), no pixel decoded: for a caller that
    caps decoded pixels per request or per batch before decoding any. Raises what Pillow raises for bytes
    that are no image (``UnidentifiedImageError``, an ``OSError``)."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    with Image.open(src) as im:
        return im.size


def check_pixels(name: str, width: int, height: int, limit: int = MAX_PIXELS) -> None:
    """A one-line UserError naming ``name`` when ``width`` x ``height`` is over ``limit`` decoded pixels."""
    if width * height > limit:
        raise UserError(
            f"{name}: {width} x {height} = {width * height:,} pixels, over the limit of {limit:,} "
            "decoded pixels per image"
        )
