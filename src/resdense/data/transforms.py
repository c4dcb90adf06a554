"""Batched image transforms on uint8 tensors already on the training device.

No per-image Python: a batch of N images is resized, normalised and augmented with a handful of tensor
operations (the airbench way), so the same code feeds a 2-vCPU laptop and an H100 without a DataLoader.
All randomness comes from an explicit ``torch.Generator`` so that seeded runs repeat exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class Preprocess:
    """How raw uint8 images become network input; saved with every model so inference matches training."""

    size: int | None  # square side to resize to; None keeps the stored size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int

    def to_dict(self) -> dict:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std), "in_chans": self.in_chans}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(d["size"], tuple(d["mean"]), tuple(d["std"]), int(d["in_chans"]))

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (N, C, H, W) -> normalised float (N, in_chans, size, size)."""
        return normalize(resize(match_channels(images, self.in_chans), self.size), self.mean, self.std, dtype)


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


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 [0, 255] -> (x / 255 - mean) / std, folded into one multiply-add."""
    c = images.shape[1]
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=images.device).view(1, c, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=images.device).view(1, c, 1, 1)
    return torch.addcmul(shift, images.float(), scale).to(dtype)


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


AUGMENTATIONS = ("none", "flip", "crop", "flip-crop", "flip-erase", "flip-crop-erase")


def augment(x: torch.Tensor, kind: str, generator: torch.Generator | None = None, crop_padding: int = 2):
    """Apply a named augmentation policy to a normalised float batch."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; choose from {', '.join(AUGMENTATIONS)}")
    if "crop" in kind:
        x = random_crop(x, crop_padding, generator)
    if "flip" in kind:
        x = random_flip(x, generator)
    if "erase" in kind:
        x = random_erasing(x, generator=generator)
    return x
