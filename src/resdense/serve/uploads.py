"""The service's memory bound for decoded images (issue 37): a cap on the pixels a request may decode, read
from each image's header before anything is decoded, and a server-wide budget of full-size pixels held at
once, so that neither one large request nor many concurrent ones can make the server hold more than the
budget of full-size decodes; each image is reduced to the model's resize right after it is decoded, so a
batch only ever holds images at the network's scale.

Why the header: Pillow's ``Image.open`` is lazy, it reads the size without decoding a pixel; a PNG of
9000x9000 is 78 KB on the wire and 243 MB decoded in RGB, so a cap on the body's bytes bounds nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading

import torch

from ..preprocess import Preprocess, center_crop, resize, resize_shorter
from .predict import read_sources

__all__ = [
    "DEFAULT_MAX_MEGAPIXELS",
    "PixelBudget",
    "header_size",
    "read_reduced",
    "reduced",
    "request_pixels",
]

# per request and held at once by the whole server: above Pillow's own per-image bomb limit (89.5 Mpx), so
# every image Pillow reads alone is served, and below a batch of them (16 of 9000x9000: 1.3 G pixels)
DEFAULT_MAX_MEGAPIXELS = 100.0


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header, nothing decoded; None when Pillow cannot open it (decoding
    it later says why, as a 422)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # any failure to read a header is the decoder's to report, with its own message
        return None


def reduced_size(pre: Preprocess, w: int, h: int) -> tuple[int, int]:
    """The (width, height) an image of ``w`` x ``h`` has after :func:`reduced`."""
    if pre.resize is None:
        side = pre.crop
        return (min(w, side), min(h, side)) if side else (w, h)
    if pre.fit != "shorter":
        return pre.resize, pre.resize
    s = pre.resize
    return (max(1, int(s * w / h)), s) if h <= w else (s, max(1, int(s * h / w)))


def request_pixels(pre: Preprocess, sizes: list[tuple[int, int] | None]) -> int:
    """The pixels a request makes the server hold at most: each image at its full size or at its reduced
    one, whichever is larger (a 1-pixel-high strip is stretched up, not down), summed."""
    total = 0
    for size in sizes:
        if size is not None:
            w, h = size
            rw, rh = reduced_size(pre, w, h)
            total += max(w * h, rw * rh)
    return total


def reduced(pre: Preprocess, image: torch.Tensor) -> torch.Tensor:
    """A decoded uint8 (1, C, H, W) image reduced by the first step of ``pre.fit_images`` (the resize, or
    the crop when there is no resize): ``pre.fit_images`` of the result equals ``pre.fit_images`` of the
    image, exactly (the resize is a no-op on an image already at its size), so answers do not change."""
    if pre.resize is None:
        return center_crop(image, pre.crop).contiguous()
    how = resize_shorter if pre.fit == "shorter" else resize
    return how(image, pre.resize, pre.interpolation).contiguous()


TRIM_PIXELS = 4_000_000  # a decode this large gives its memory back to the system before the next one


def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere). Why: a large decode's blocks are freed into the malloc arena
    of the worker thread that made them, and glibc keeps them; the server's request threads each have an
    arena, so serial decodes of large images on different threads held one image's memory per thread
    (measured: four 9400x9400 requests in turn, 3.0 GB over the idle server instead of 0.8)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _malloc_trim()


class PixelBudget:
    """Full-size pixels the whole server may hold decoded at once: a decode waits (in its worker thread)
    until its image's pixels are free, and gives them back once the image is reduced."""

    def __init__(self, total: int):
        self.total = total
        self.free = total
        self._cond = threading.Condition()

    def take(self, n: int) -> int:
        n = min(n, self.total)  # an image over the budget was refused from its header: never wait forever
        with self._cond:
            self._cond.wait_for(lambda: self.free >= n)
            self.free -= n
        return n

    def give(self, n: int) -> None:
        with self._cond:
            self.free += n
            self._cond.notify_all()


def read_reduced(spec, sources, sizes, invert: str, budget: PixelBudget):
    """:func:`~resdense.serve.predict.read_sources` one image at a time, each reduced right after it is
    decoded and inverted, under the server's pixel budget: (results, reduced images)."""
    pre = spec.preprocess
    results, images = [], []
    for source, size in zip(sources, sizes):
        held = budget.take(size[0] * size[1] if size else 0)
        try:
            [result], image = read_sources(spec, [source], invert)
            if image:
                images.append(reduced(pre, image[0]))
            del image  # the full-size decode goes before the next one is made
            if MALLOC_TRIM is not None and held >= TRIM_PIXELS:
                MALLOC_TRIM(0)
        finally:
            budget.give(held)
        results.append(result)
    return results, images
