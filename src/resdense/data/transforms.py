"""Batched image transforms on uint8 tensors already on the training device.

No per-image Python: a batch of N images is resized, normalised and augmented with a handful of tensor
operations (the airbench way), so the same code feeds a 2-vCPU laptop and an H100 without a DataLoader.
All randomness comes from an explicit ``torch.Generator`` so that seeded runs repeat exactly.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

# libjpeg-turbo straight to numpy; optional (jpeg.py imports it): without it, photos decode through Pillow
from .jpeg import plain_jpeg_header
from .jpeg import simplejpeg as _simplejpeg


@dataclass(frozen=True)
class Preprocess:
    """How raw uint8 images become network input; saved with every model so inference matches training."""

    size: int | None  # square side to resize to; None keeps the stored size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int
    crop: int | None = None  # then cut the centre crop x crop (ImageNet evaluation: resize 256, crop 224)

    def to_dict(self) -> dict:
        d = {"size": self.size, "mean": list(self.mean), "std": list(self.std), "in_chans": self.in_chans}
        if self.crop is not None:
            d["crop"] = self.crop
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(d["size"], tuple(d["mean"]), tuple(d["std"]), int(d["in_chans"]), d.get("crop"))

    @property
    def input_size(self) -> int | None:
        """The square side the network is fed (None: the images' own)."""
        return self.crop or self.size

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (N, C, H, W) -> normalised float (N, in_chans, input_size, input_size)."""
        x = center_crop(resize(match_channels(images, self.in_chans), self.size), self.crop)
        return normalize(x, self.mean, self.std, dtype)


def match_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    c = images.shape[1]
    if c == in_chans:
        return images
    if c == 1:
        return images.expand(-1, in_chans, -1, -1)
    if in_chans == 1 and c == 3:
        # ITU-R 601 luma, as PIL's convert("L")
        w = torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)
        return (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot turn {c}-channel images into {in_chans}-channel input")


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of a batch (uint8 or float) to ``size`` x ``size``; a no-op when it already fits.

    d2l resizes each PIL image with ``transforms.Resize``; a batched bilinear interpolation with
    antialiasing gives the same picture without a Python loop over images.
    """
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    was_uint8 = images.dtype == torch.uint8
    x = images.float() if was_uint8 else images
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8) if was_uint8 else x


def center_crop(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """The central ``size`` x ``size`` window of each image (torchvision's CenterCrop, without padding)."""
    if size is None:
        return images
    h, w = images.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"cannot centre-crop {size}x{size} from {h}x{w} images")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 [0, 255] -> (x / 255 - mean) / std, folded into one multiply-add."""
    n, c, h, w = images.shape
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=images.device)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=images.device)
    if c > 1 and images.is_contiguous(memory_format=torch.channels_last):
        # Decoded photos arrive channels-last (pixels interleaved). Broadcasting a per-channel (1, C, 1, 1)
        # over that memory leaves an innermost loop of C = 3 elements, which does not vectorise; seen as
        # rows of W * C values with the (mean, std) pattern repeated along the row, the same multiply-add
        # ran about 2.5x faster on the CPU (RGB 224x224 batches, benchmarks/stream.py's pipeline).
        rows = images.permute(0, 2, 3, 1).reshape(n * h, w * c)
        out = torch.addcmul(shift.repeat(w), rows.float(), scale.repeat(w)).to(dtype)
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    return torch.addcmul(shift.view(1, c, 1, 1), images.float(), scale.view(1, c, 1, 1)).to(dtype)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror a random half of the batch left-right."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by ``padding`` (zeros) and cut a random window of the original size from each image.

    Gathers with one index tensor instead of slicing image by image.
    """
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (
        (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * padding)
    )
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_erasing(
    x: torch.Tensor,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.25),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero a random rectangle (area fraction in ``scale``, aspect 1/3..3) in a fraction ``p`` of images.

    Zhong et al. 2017; the rectangle is a per-image mask built from broadcast comparisons. Applied after
    normalisation, zero is the data mean.
    """
    n, _, h, w = x.shape
    dev = x.device
    area = torch.empty(n, device=dev).uniform_(*scale, generator=generator) * h * w
    log_ratio = torch.empty(n, device=dev).uniform_(-1.0986, 1.0986, generator=generator)  # ln(1/3)..ln 3
    eh = (area * log_ratio.exp()).sqrt().round().clamp(1, h)
    ew = (area / log_ratio.exp()).sqrt().round().clamp(1, w)
    y0 = (torch.rand(n, device=dev, generator=generator) * (h - eh + 1)).floor()
    x0 = (torch.rand(n, device=dev, generator=generator) * (w - ew + 1)).floor()
    apply = torch.rand(n, device=dev, generator=generator) < p
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (
        (ys >= y0.view(n, 1, 1))
        & (ys < (y0 + eh).view(n, 1, 1))
        & (xs >= x0.view(n, 1, 1))
        & (xs < (x0 + ew).view(n, 1, 1))
        & apply.view(n, 1, 1)
    )
    return x.masked_fill(inside.unsqueeze(1), 0.0)


def random_resized_crop_params(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    attempts: int = 10,
) -> torch.Tensor:
    """Crop boxes (N, 4) as (top, left, h, w), drawn as torchvision's RandomResizedCrop draws them.

    Each image gets ``attempts`` candidate boxes at once (area fraction uniform in ``scale``, aspect ratio
    log-uniform in ``ratio``); the first that fits is kept, and an image with none falls back to the
    largest centred box within ``ratio``. Separate from the cropping so that a streaming loader can draw the
    same boxes for images it decodes one at a time.
    """
    area = height * width
    a = torch.empty(n, attempts, device=device).uniform_(*scale, generator=generator) * area
    log_r = torch.empty(n, attempts, device=device).uniform_(
        float(torch.tensor(ratio[0]).log()), float(torch.tensor(ratio[1]).log()), generator=generator
    )
    w = (a * log_r.exp()).sqrt().round()
    h = (a / log_r.exp()).sqrt().round()
    ok = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=device))
    idx = first.clamp(min=0).view(n, 1)
    h, w = h.gather(1, idx).squeeze(1), w.gather(1, idx).squeeze(1)
    u = torch.rand(n, 2, device=device, generator=generator)
    top = (u[:, 0] * (height - h + 1)).floor().clamp(max=height - h)
    left = (u[:, 1] * (width - w + 1)).floor().clamp(max=width - w)
    # fallback: the whole image, trimmed to the nearest allowed aspect ratio, centred
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fh, fw = height, int(round(height * ratio[1]))
    else:
        fw, fh = width, height
    miss = first < 0
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], device=device, dtype=h.dtype)
    boxes = torch.stack([top, left, h, w], 1)
    return torch.where(miss.view(n, 1), fallback.view(1, 4), boxes).long()


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut box (top, left, h, w) out of each image and resize it to ``size`` x ``size`` (bilinear), batched:
    one affine sampling grid per image, one ``grid_sample`` for the whole batch."""
    n, _, height, width = x.shape
    b = boxes.to(x.device, torch.float32)
    top, left, h, w = b.unbind(1)
    # the box in grid_sample's [-1, 1] coordinates (align_corners=False: pixel edges at -1 and 1)
    cx = (left + w / 2) / width * 2 - 1
    cy = (top + h / 2) / height * 2 - 1
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = w / width, cx
    theta[:, 1, 1], theta[:, 1, 2] = h / height, cy
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    was_uint8 = x.dtype == torch.uint8
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8) if was_uint8 else out


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Inception-style random-resized crop of a batch to ``size`` x ``size`` (d2l 14.2's training crop)."""
    boxes = random_resized_crop_params(
        x.shape[0], x.shape[-2], x.shape[-1], scale, ratio, generator, x.device
    )
    return crop_resize(x, boxes, size)


AUGMENTATIONS = ("none", "flip", "crop", "flip-crop", "flip-erase", "flip-crop-erase", "rrc-flip")


def augment(
    x: torch.Tensor,
    kind: str,
    generator: torch.Generator | None = None,
    crop_padding: int = 2,
    out_size: int | None = None,
):
    """Apply a named augmentation policy to a normalised float batch. ``rrc-flip``: random-resized crops
    to ``out_size`` (the images' own side when None) and flips."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; choose from {', '.join(AUGMENTATIONS)}")
    if kind == "rrc-flip":
        return random_flip(random_resized_crop(x, out_size or x.shape[-1], generator), generator)
    if "crop" in kind:
        x = random_crop(x, crop_padding, generator)
    if "flip" in kind:
        x = random_flip(x, generator)
    if "erase" in kind:
        x = random_erasing(x, generator=generator)
    return x


# -- photo transforms: one file at a time (in DataLoader workers), uint8 until the batch is normalised -------

CROP_PCT = 0.875  # evaluation: resize the shorter side to size / 0.875, take the centre crop (ImageNet's)
PHOTO_AUGMENT = "rrc-flip"  # the policy that asks for the photo transforms on the streamed path


def rrc_params(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """A random-resized-crop window ``(left, top, w, h)`` in a ``width`` x ``height`` image.

    Szegedy et al. 2015, as the ImageNet references sample it: an area fraction uniform in ``scale`` and a
    log-uniform aspect ratio in ``ratio``, ten tries to fit, then the largest centred window within
    ``ratio``. Only the parameters: the crop itself is done by whoever holds the pixels.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


@dataclass(frozen=True)
class PhotoTransform:
    """One image file -> uint8 (size, size, channels) array, decoded as cheaply as the format allows.

    ``crop``: ``"random"`` (random-resized crop, training), ``"centre"`` (shorter side to
    ``size / crop_pct``, centre crop: evaluation) or ``"squash"`` (the whole image resized to a square, as
    the in-memory path stores folders). The window is chosen on the upright image's size from the header;
    a JPEG is then decoded straight at the smallest 1/2, 1/4 or 1/8 scale that still covers the window at
    ``size`` (Pillow's draft mode: the DCT does the shrinking), and the window is cut and resized in one
    antialiased bilinear resample. Randomness comes from the ``rng`` given, so a seeded caller repeats.
    """

    size: int
    channels: int  # 1: grey, 3: RGB
    crop: str = "squash"
    flip: bool = False
    crop_pct: float = CROP_PCT

    def __call__(self, path, rng: random.Random | None = None):
        from PIL import Image, ImageOps

        from .folder import bombs_are_errors

        with open(path, "rb") as f:
            data = f.read()
        box = None
        if self.crop != "squash" and _simplejpeg is not None:
            head = plain_jpeg_header(data)
            if head is not None:
                w0, h0, orientation = head
                box, shrink = self._box(w0, h0, orientation, rng)
                try:
                    return self._fast_jpeg(data, w0, h0, orientation, box, shrink, rng)
                except ValueError:  # what libjpeg-turbo's strict mode refuses, Pillow may still read
                    pass  # with the window already drawn: the same crop as the fast path would take
        with bombs_are_errors(), Image.open(io.BytesIO(data)) as im:
            w0, h0 = im.size
            orientation = im.getexif().get(0x0112, 1) if im.format == "JPEG" else None
            if box is None:
                box, shrink = self._box(w0, h0, orientation, rng)
            width, height = _upright_size(w0, h0, orientation)
            if im.format == "JPEG" and shrink >= 2:
                im.draft(
                    "L" if self.channels == 1 else "RGB", (math.ceil(w0 / shrink), math.ceil(h0 / shrink))
                )
            im.load()
            if orientation != 1:  # upright by EXIF (PNG and WebP may carry it too); in place: no copy
                ImageOps.exif_transpose(im, in_place=True)
            mode = "L" if self.channels == 1 else "RGB"
            if im.mode != mode:
                # palette, CMYK, 16-bit, alpha: converted before resampling (Pillow resizes "P" by nearest)
                im = (
                    im.convert("L").convert(mode)
                    if im.mode in _PIL_GREY and mode == "RGB"
                    else im.convert(mode)
                )
            sx, sy = im.size[0] / width, im.size[1] / height
            left, top, w, h = box
            im = im.resize(
                (self.size, self.size),
                Image.Resampling.BILINEAR,
                box=(left * sx, top * sy, (left + w) * sx, (top + h) * sy),
            )
        if self.flip and rng is not None and rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(im, dtype=np.uint8)
        return arr[..., None] if arr.ndim == 2 else arr

    def _box(self, w0: int, h0: int, orientation, rng) -> tuple[tuple[float, float, float, float], float]:
        """The window on the upright image, and how many file pixels per output pixel it needs at least."""
        width, height = _upright_size(w0, h0, orientation)
        box = self._window(width, height, rng)
        return box, min(box[2], box[3]) / self.size

    def _fast_jpeg(self, data: bytes, w0: int, h0: int, orientation, box, shrink: float, rng) -> np.ndarray:
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
            data, colorspace="GRAY" if self.channels == 1 else "RGB", min_factor=f,
            min_width=-(-w0 // f), min_height=-(-h0 // f), fastdct=fast, fastupsample=fast,
        )  # fmt: skip
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
        out = F.interpolate(window, size=(self.size, self.size), mode="bilinear", antialias=True)
        if self.flip and rng is not None and rng.random() < 0.5:
            out = out.flip(-1)
        return out[0].permute(1, 2, 0).numpy()

    def _window(
        self, width: int, height: int, rng: random.Random | None
    ) -> tuple[float, float, float, float]:
        if self.crop == "random":
            if rng is None:
                raise ValueError("a random crop needs an rng")
            return rrc_params(width, height, rng)
        if self.crop == "centre":
            # resize the shorter side to size / crop_pct, keep the centre size x size: a window of
            # crop_pct times the shorter side, in file pixels
            side = min(width, height) * self.size / round(self.size / self.crop_pct)
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


_PIL_GREY = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
