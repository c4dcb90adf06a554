"""How raw uint8 images become network input: one typed :class:`Preprocess`, the functions that apply it, and
the normalisation constants. Saved with every model (``ModelSpec``), carried by every model as part of its
``pretrained_cfg``, and used by training, serving and the studies alike, so a model is fed one way only.

Two ways to fit an image to the network, as the references do it:

* ``fit="squash"``: the whole image resized to ``resize`` x ``resize`` (what the in-memory data sets store,
  and d2l's ``transforms.Resize(96)`` on square images);
* ``fit="shorter"``: the shorter side resized to ``resize``, the aspect ratio kept (torchvision's
  ``Resize(256)`` of its ImageNet evaluation, the streamed folders' evaluation).

Either way ``crop`` then cuts the centre ``crop`` x ``crop`` (``CenterCrop(224)``). These are timm's
``crop_mode`` ``"squash"`` and ``"center"`` (:data:`CROP_MODES`), and the resize side is timm's
``floor(crop / crop_pct)`` (:func:`scale_size`, :func:`crop_pct_for`: the one place that arithmetic lives).
``interpolation`` says how the resize resamples: ``"bilinear"`` (every file written before it existed, and
the in-memory training path), ``"bicubic"`` (most of timm's weights) or ``"nearest"``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

import torch
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# evaluation crops the centre crop_pct of the shorter side (ImageNet's 224 of 256)
CROP_PCT = 0.875
FITS = ("squash", "shorter")
# timm's crop_mode -> our fit; "border" (letterboxing: the longer side fitted, the rest padded) has no fit
CROP_MODES = {"center": "shorter", "squash": "squash"}
# timm's interpolation names -> torch's interpolate modes. "nearest" is PIL's (and so torchvision's on PIL
# images): the source pixel under each output pixel's centre, which torch calls "nearest-exact"
INTERPOLATIONS = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}
# what a model file without an interpolation means (every file written before it existed), and the default
DEFAULT_INTERPOLATION = "bilinear"


@dataclass(frozen=True)
class Preprocess:
    """uint8 images -> normalised float input: channels matched, resized, centre-cropped, normalised."""

    resize: int | None  # the square side (squash) or the shorter side (shorter); None keeps the stored size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int
    crop: int | None = None  # then the centre crop x crop
    fit: str = "squash"
    interpolation: str = DEFAULT_INTERPOLATION  # how the resize resamples (timm's name)

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, got {self.fit!r}")
        check_interpolation(self.interpolation)

    @classmethod
    def centre(
        cls,
        size: int,
        mean,
        std,
        in_chans: int,
        crop_pct: float = CROP_PCT,
        fit: str = "shorter",
        interpolation: str = DEFAULT_INTERPOLATION,
    ) -> Preprocess:
        """The evaluation of photos: the shorter side to ``floor(size / crop_pct)``, then the centre ``size``."""
        return cls(scale_size(size, crop_pct), tuple(mean), tuple(std), in_chans, size, fit, interpolation)

    @property
    def crop_mode(self) -> str:
        """timm's name for ``fit``."""
        return crop_mode_for(self.fit)

    @property
    def crop_pct(self) -> float:
        """timm's name for the crop: the share of the resized side the centre crop keeps (1.0: no crop)."""
        return crop_pct_for(self.crop, self.resize) if self.crop and self.resize else 1.0

    def to_dict(self) -> dict:
        # "size" is the key files have used since the first release: older readers keep working. crop, fit
        # and interpolation are written when they differ from what a file without them has always meant
        d = {"size": self.resize, "mean": list(self.mean), "std": list(self.std), "in_chans": self.in_chans}
        if self.crop is not None:
            d["crop"] = self.crop
        if self.fit != "squash":
            d["fit"] = self.fit
        if self.interpolation != DEFAULT_INTERPOLATION:
            d["interpolation"] = self.interpolation
        return d

    def describe(self) -> dict[str, str]:
        """How to feed the model, in flat string keys any tool can read without resdense (an ONNX file's
        ``metadata_props``, a TorchScript file's extra file, a model card): 8-bit pixels times
        ``pixel_scale``, the resize (``resize_mode`` ``squash``: both sides to ``resize``; ``shorter``: the
        shorter side to ``resize``, keeping the aspect ratio; ``none``: as stored), its ``interpolation``, the
        centre ``crop``, then ``(x - mean) / std`` per channel, ``color_mode`` L or RGB, NCHW input."""
        return {
            "pixel_scale": repr(1.0 / 255.0),
            "color_mode": "L" if self.in_chans == 1 else "RGB",
            "channels": str(self.in_chans),
            "resize_mode": "none" if self.resize is None else self.fit,
            "resize": "" if self.resize is None else str(self.resize),
            "interpolation": self.interpolation,
            "crop": "" if self.crop is None else str(self.crop),
            "crop_mode": "center" if self.crop is not None else "none",
            "input_size": "" if self.input_size is None else str(self.input_size),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "layout": "NCHW",
        }

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            d["size"] if "size" in d else d["resize"],
            tuple(float(v) for v in d["mean"]),
            tuple(float(v) for v in d["std"]),
            int(d["in_chans"]),
            d.get("crop"),
            d.get("fit", "squash"),
            d.get("interpolation", DEFAULT_INTERPOLATION),
        )

    @property
    def input_size(self) -> int | None:
        """The square side the network is fed (None: the images' own)."""
        return self.crop or self.resize

    def for_channels(self, in_chans: int) -> Preprocess:
        """The same preprocessing for ``in_chans`` channels (one grey channel made from RGB statistics: their
        channel average)."""
        if in_chans == self.in_chans and len(self.mean) == in_chans:
            return self
        mean, std = self.mean, self.std
        if len(mean) != in_chans:
            mean = (sum(mean) / len(mean),) * in_chans
            std = (sum(std) / len(std),) * in_chans
        return replace(self, mean=mean, std=std, in_chans=in_chans)

    def fit_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> uint8 (N, in_chans, side, side): channels, size and crop, not normalised.
        Images of any size come out alike, so files of different sizes batch together."""
        x = match_channels(images, self.in_chans)
        how = resize_shorter if self.fit == "shorter" else resize
        return center_crop(how(x, self.resize, self.interpolation), self.crop)

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (N, C, H, W) -> normalised float (N, in_chans, input_size, input_size)."""
        return normalize(self.fit_images(images), self.mean, self.std, dtype)


def check_interpolation(name: str) -> str:
    if name not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {name!r}")
    return name


def fit_for(crop_mode: str | None) -> str:
    """Our ``fit`` for timm's ``crop_mode`` (None: timm's default, ``"center"``); ValueError for others."""
    mode = crop_mode or "center"
    if mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    return CROP_MODES[mode]


def crop_mode_for(fit: str) -> str:
    """timm's ``crop_mode`` for our ``fit``."""
    return next(mode for mode, f in CROP_MODES.items() if f == fit)


def scale_size(size: int, crop_pct: float) -> int:
    """The side an image is resized to before its centre ``size`` is cut: timm's ``floor(size / crop_pct)``."""
    return math.floor(size / crop_pct)


def crop_pct_for(size: int, resize: int) -> float:
    """The ``crop_pct`` that :func:`scale_size` (and timm, which computes the same) turns back into ``resize``
    for a centre crop of ``size``: ``size / resize``, nudged by the last bit where floating point would floor
    it one pixel short."""
    pct = size / resize
    while scale_size(size, pct) < resize:
        pct = math.nextafter(pct, 0.0)
    while scale_size(size, pct) > resize:
        pct = math.nextafter(pct, 1.0)
    return pct


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


def _resize_to(
    images: torch.Tensor, hw: tuple[int, int], interpolation: str = DEFAULT_INTERPOLATION
) -> torch.Tensor:
    if tuple(images.shape[-2:]) == hw:
        return images
    mode = INTERPOLATIONS[check_interpolation(interpolation)]
    if mode == "nearest-exact":  # picks pixels: uint8 in, uint8 out, nothing to round
        return F.interpolate(images, size=hw, mode=mode)
    was_uint8 = images.dtype == torch.uint8
    x = images.float() if was_uint8 else images
    if was_uint8 and mode == "bicubic":
        # PIL resamples the rows, stores them as uint8, then the columns: bicubic's overshoot at hard edges
        # is clipped between the two passes. One float pass keeps it (up to 27 grey levels from PIL's picture
        # at saturated edges); the same two passes, rounded between them, stay within a level of it, on any
        # device. (Pillow 13 sometimes takes the columns first: the two orders differ only where an edge
        # overshoots 0 or 255, tests/models/test_timm_contract.py)
        x = _aa(x, (x.shape[-2], hw[1]), mode).round_().clamp_(0, 255)
    x = _aa(x, hw, mode)
    return x.round().clamp(0, 255).to(torch.uint8) if was_uint8 else x


def _aa(x: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    # antialiased, as PIL (and so torchvision on PIL images) resamples; torch's antialiased bicubic uses
    # PIL's kernel (a = -0.5)
    return F.interpolate(x, size=hw, mode=mode, align_corners=False, antialias=True)


def resize(
    images: torch.Tensor, size: int | None, interpolation: str = DEFAULT_INTERPOLATION
) -> torch.Tensor:
    """Resize of a batch (uint8 or float) to ``size`` x ``size``; a no-op when it already fits.

    d2l resizes each PIL image with ``transforms.Resize``; a batched antialiased interpolation gives the
    same picture without a Python loop over images.
    """
    return images if size is None else _resize_to(images, (size, size), interpolation)


def resize_shorter(
    images: torch.Tensor, size: int | None, interpolation: str = DEFAULT_INTERPOLATION
) -> torch.Tensor:
    """Resize so that the shorter side is ``size``, keeping the aspect ratio (torchvision's ``Resize(int)``)."""
    if size is None:
        return images
    h, w = images.shape[-2:]
    if h <= w:
        return _resize_to(images, (size, max(1, int(size * w / h))), interpolation)
    return _resize_to(images, (max(1, int(size * h / w)), size), interpolation)


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
        # vectorises (benchmarks/stream.py's pipeline measures it).
        rows = images.permute(0, 2, 3, 1).reshape(n * h, w * c)
        out = torch.addcmul(shift.repeat(w), rows.float(), scale.repeat(w)).to(dtype)
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
    return torch.addcmul(shift.view(1, c, 1, 1), images.float(), scale.view(1, c, 1, 1)).to(dtype)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units, computed in chunks (no big float copy)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(8192):
        x = chunk.to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        s += x.sum(1).cpu()
        s2 += (x * x).sum(1).cpu()
    n = images.numel() / c
    mean = s / n
    std = (s2 / n - mean**2).clamp(min=1e-12).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)
