"""Photos, one file at a time: decoded as cheaply as the format allows, turned upright, cropped and resized
(in the streamed folders' DataLoader workers, and for ``predict``). Everything stays uint8 until the batch is
normalised on the training device.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import UserError
from ..preprocess import (
    CROP_PCT,
    DEFAULT_INTERPOLATION,
    INTERPOLATIONS,
    Preprocess,
    check_interpolation,
    scale_size,
)
from .augment import random_resized_crop_params
from .jpeg import plain_jpeg_header
from .jpeg import simplejpeg as _simplejpeg  # libjpeg-turbo to numpy; None without it: Pillow decodes
from .pixels import MAX_PIXELS, REDUCE_MARGIN, check_pixels, draft_for, reduce_to, to_channels


@dataclass(frozen=True)
class PhotoTransform:
    """One image file -> uint8 (size, size, channels) array, decoded as cheaply as the format allows.

    ``crop``: ``"random"`` (random-resized crop, training), ``"centre"`` (shorter side to
    ``size / crop_pct``, centre crop: evaluation) or ``"squash"`` (the whole image resized to a square, as
    the in-memory path stores folders). The window is chosen on the upright image's size from the header;
    a JPEG is then decoded straight at the smallest 1/2, 1/4 or 1/8 scale that still covers the window at
    ``size`` (Pillow's draft mode: the DCT does the shrinking), and the window is cut and resized in one
    antialiased resample by ``interpolation`` (bilinear unless the model's preprocessing says otherwise).
    Randomness comes from the ``generator`` given (a ``torch.Generator``), so a seeded caller repeats; the
    random crop is drawn by the batched path's sampler, the one both paths share.
    """

    size: int
    channels: int  # 1: grey, 3: RGB
    crop: str = "squash"
    flip: bool = False
    crop_pct: float = CROP_PCT
    interpolation: str = DEFAULT_INTERPOLATION

    def __post_init__(self) -> None:
        check_interpolation(self.interpolation)

    @classmethod
    def evaluating(cls, pre: Preprocess) -> PhotoTransform:
        """The centre crop a ``fit="shorter"`` :class:`~resdense.preprocess.Preprocess` takes, one file at a
        time: the same window, size and interpolation as the preprocessing applied to the decoded image."""
        return cls(
            pre.input_size,
            pre.in_chans,
            crop="centre",
            crop_pct=pre.crop_pct,
            interpolation=pre.interpolation,
        )

    def __call__(self, path, generator: torch.Generator | None = None):
        from PIL import Image, ImageOps

        from .folder import bombs_are_errors

        with open(path, "rb") as f:
            data = f.read()
        box = None
        if self.crop != "squash" and _simplejpeg is not None:
            head = plain_jpeg_header(data)
            if head is not None:
                w0, h0, orientation = head
                box, shrink = self._box(w0, h0, orientation, generator)
                try:
                    return self._fast_jpeg(data, w0, h0, orientation, box, shrink, generator)
                except ValueError:  # what libjpeg-turbo's strict mode refuses, Pillow may still read
                    pass  # with the window already drawn: the same crop as the fast path would take
        with bombs_are_errors(), Image.open(io.BytesIO(data)) as im:
            w0, h0 = im.size
            orientation = im.getexif().get(0x0112, 1) if im.format == "JPEG" else None
            if box is None:
                box, shrink = self._box(w0, h0, orientation, generator)
            width, height = _upright_size(w0, h0, orientation)
            if im.format == "JPEG" and shrink >= 2:
                im.draft(
                    "L" if self.channels == 1 else "RGB", (math.ceil(w0 / shrink), math.ceil(h0 / shrink))
                )
            im.load()
            if orientation != 1:  # upright by EXIF (PNG and WebP may carry it too); in place: no copy
                ImageOps.exif_transpose(im, in_place=True)
            # palette, CMYK, 16-bit, alpha: converted before resampling (Pillow resizes "P" by nearest)
            im = to_channels(im, self.channels)
            sx, sy = im.size[0] / width, im.size[1] / height
            left, top, w, h = box
            # reduced right after decoding to REDUCE_MARGIN times the output side (the factor predict's
            # reader takes for the same window): a big PNG's full size is not kept through the resample
            f = int(min(w * sx, h * sy) // (REDUCE_MARGIN * self.size))
            if f >= 2:
                im = im.reduce(f)
                sx, sy = im.size[0] / width, im.size[1] / height
            im = im.resize(
                (self.size, self.size),
                getattr(Image.Resampling, self.interpolation.upper()),  # PIL spells timm's names in capitals
                box=(left * sx, top * sy, (left + w) * sx, (top + h) * sy),
            )
        if self._flips(generator):
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(im, dtype=np.uint8)
        return arr[..., None] if arr.ndim == 2 else arr

    def _box(
        self, w0: int, h0: int, orientation, generator
    ) -> tuple[tuple[float, float, float, float], float]:
        """The window on the upright image, and how many file pixels per output pixel it needs at least."""
        width, height = _upright_size(w0, h0, orientation)
        box = self._window(width, height, generator)
        return box, min(box[2], box[3]) / self.size

    def _fast_jpeg(
        self, data: bytes, w0: int, h0: int, orientation, box, shrink: float, generator
    ) -> np.ndarray:
        """The photo crops of a plain 8-bit JPEG, cheaper than through Pillow (benchmarks/stream.py times the
        per-file work): simplejpeg hands libjpeg-turbo's output straight to numpy (Pillow unpacks every row
        into its own 4-byte pixels), at a 1/2, 1/4 or 1/8 DCT scale when the window allows (libjpeg-turbo's
        other M/8 scales are slower than the full decode), and torch's antialiased bilinear resize on uint8
        does the crop-and-resize. Within a grey level or two of the Pillow path (tests/data/test_stream.py).
        """
        # the largest power-of-two reduction the window allows; a default, since a StopIteration raised
        # here would silently end the DataLoader's epoch
        f = next((s for s in (8, 4, 2) if shrink >= s), 1)
        # Training crops take libjpeg-turbo's fast integer DCT and plain chroma upsampling (less decode
        # time; differences far below what the random crop changes); evaluation decodes exactly, as
        # predict does.
        fast = self.crop == "random"
        arr = _simplejpeg.decode_jpeg(
            data,
            colorspace="GRAY" if self.channels == 1 else "RGB",
            min_factor=f,
            min_width=-(-w0 // f),
            min_height=-(-h0 // f),
            fastdct=fast,
            fastupsample=fast,
        )
        arr = _upright(arr, orientation or 1)
        height, width = arr.shape[:2]
        scale = width / _upright_size(w0, h0, orientation)[0]
        left, top, w, h = (v * scale for v in box)
        x0, y0 = min(round(left), width - 1), min(round(top), height - 1)
        x1, y1 = max(x0 + 1, round(left + w)), max(y0 + 1, round(top + h))
        window = arr[y0:y1, x0:x1]
        if orientation not in (None, 1):  # turned views have negative strides, which torch cannot wrap
            window = np.ascontiguousarray(window)
        window = torch.from_numpy(window).permute(2, 0, 1)[None]
        mode = INTERPOLATIONS[self.interpolation]
        size = (self.size, self.size)
        if mode == "nearest-exact":
            out = F.interpolate(window, size=size, mode=mode)
        else:
            out = F.interpolate(window, size=size, mode=mode, antialias=True)
        if self._flips(generator):
            out = out.flip(-1)
        return out[0].permute(1, 2, 0).numpy()

    def _flips(self, generator: torch.Generator | None) -> bool:
        return self.flip and generator is not None and bool(torch.rand((), generator=generator) < 0.5)

    def _window(
        self, width: int, height: int, generator: torch.Generator | None
    ) -> tuple[float, float, float, float]:
        if self.crop == "random":
            if generator is None:
                raise ValueError("a random crop needs a generator")
            top, left, h, w = random_resized_crop_params(1, height, width, generator=generator)[0].tolist()
            return left, top, w, h
        if self.crop == "centre":
            # resize the shorter side to size / crop_pct, keep the centre size x size: a window of
            # crop_pct times the shorter side, in file pixels
            side = min(width, height) * self.size / scale_size(self.size, self.crop_pct)
            return (width - side) / 2, (height - side) / 2, side, side
        if self.crop == "squash":
            return 0, 0, width, height
        raise ValueError(f"unknown crop {self.crop!r}; choose from random, centre, squash")


def _upright_size(w0: int, h0: int, orientation) -> tuple[int, int]:
    """(width, height) of the image once turned upright: EXIF orientations 5-8 turn it a quarter."""
    return (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)


def _upright(arr: np.ndarray, orientation: int) -> np.ndarray:
    """An (H, W, C) array turned upright by its EXIF orientation, as Pillow's ``exif_transpose`` does."""
    if orientation in (2, 4, 5, 7):  # the mirrored ones: mirror first, then rotate like 1, 3, 8, 6
        arr = arr[:, ::-1]
    k = {3: 2, 4: 2, 6: 3, 5: 1, 7: 3, 8: 1}.get(orientation, 0)  # quarter turns anticlockwise
    return np.rot90(arr, k) if k else arr


def read_image(
    path: str | Path, in_chans: int, need: int | None = None, max_pixels: int = MAX_PIXELS
) -> torch.Tensor:
    """An image file as uint8 (1, C, H, W), upright by its EXIF orientation, in grey or RGB to match the model
    (wide modes scaled by their bit depth: ``pixels.to_channels``); a one-line UserError naming the file when
    it cannot be read (decompression bombs included) or holds more than ``max_pixels``.

    ``need``: the side the model's preprocessing resizes to (``Preprocess.resize``); the image is then
    reduced right after decoding (JPEGs in the decoder) to no less than ``REDUCE_MARGIN``
    (8) times that, so memory follows the
    model's input size, not the file's. None keeps the full size."""
    from .folder import READ_ERRORS, image_problem

    try:
        return _decode(path, in_chans, need, max_pixels, str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not an image") from None
    except READ_ERRORS as e:
        raise UserError(f"{path}: not a readable image ({image_problem(path, e).reason})") from None


def decode_image(
    data: bytes, in_chans: int, name: str = "image", need: int | None = None, max_pixels: int = MAX_PIXELS
) -> torch.Tensor:
    """Image bytes (an upload) as :func:`read_image` reads a file: the same pixels for the same bytes; a
    one-line UserError naming ``name`` when they are no readable image (empty, not an image, cut short,
    a decompression bomb, over ``max_pixels``)."""
    from PIL import Image, UnidentifiedImageError

    from .folder import READ_ERRORS

    if not data:
        raise UserError(f"{name}: empty, not an image")
    try:
        return _decode(io.BytesIO(data), in_chans, need, max_pixels, name)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{name}: a decompression bomb (over {Image.MAX_IMAGE_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise UserError(f"{name}: not an image Pillow can read") from None
    except READ_ERRORS as e:
        raise UserError(f"{name}: not a readable image ({' '.join(str(e).split())[:120]})") from None


# EXIF orientation -> the transpose that makes the image upright (as Pillow's exif_transpose applies them)
_TURNS = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}  # PIL.Image.Transpose values


def _decode(src, in_chans: int, need: int | None, max_pixels: int, name: str) -> torch.Tensor:
    from PIL import Image

    from .folder import bombs_are_errors

    with bombs_are_errors(), Image.open(src) as img:
        check_pixels(name, *img.size, limit=max_pixels)  # from the header: before any pixel is decoded
        draft_for(img, in_chans, need)
        img.load()
        orientation = img.getexif().get(0x0112, 1)  # after load: a PNG's eXIf chunk may follow its pixels
        img = reduce_to(to_channels(img, in_chans), need)
        if orientation in _TURNS:  # turned upright on the reduced image: no full-size copy
            img = img.transpose(_TURNS[orientation])
        data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        w, h = img.size
    return data.view(h, w, -1).permute(2, 0, 1).unsqueeze(0).contiguous()
