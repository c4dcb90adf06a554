"""Batched augmentation on tensors already on the training device, and the one random-resized-crop sampler.

No per-image Python: a batch of N images is augmented with a handful of tensor operations (the airbench
way), so the same code feeds a 2-vCPU laptop and an H100 without a DataLoader. All randomness comes from an
explicit ``torch.Generator`` so that seeded runs repeat exactly. :class:`BatchAugment` is what the training
loop applies to each uint8 batch: the preprocessing and the policy, in the order the policy needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch.nn import functional as F

from ..preprocess import Preprocess
from .autoaugment import auto_augment
from .keyed import image_keys, uniforms


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
    largest centred box within ``ratio``. Separate from the cropping: the streamed photos draw their box
    here too (``n=1``, data/photo.py), for images decoded one at a time.
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


ERASING_DRAWS = 31  # the purpose of Random Erasing's keyed draws (data/keyed.py)
ERASING_MIN_AREA = 0.02  # the smallest box, as a fraction of the image (Zhong et al., timm)


def erasing_boxes(
    u: torch.Tensor, h: int, w: int, scale: tuple[float, float], ratio: float, attempts: int = 10
) -> torch.Tensor:
    """Random Erasing's boxes (N, 4) as (top, left, height, width) from uniforms ``u`` (N, 2 * attempts + 2):
    area fraction uniform in ``scale``, aspect log-uniform in [1/ratio, ratio]; the first of ``attempts``
    candidates that fits the image with its rounded area still in ``scale`` is kept (timm retries the same
    way); an image with none gets an empty box."""
    a = attempts
    area = (scale[0] + (scale[1] - scale[0]) * u[:, :a]) * h * w
    log_r = (2 * u[:, a : 2 * a] - 1) * math.log(ratio)
    eh = (area * log_r.exp()).sqrt().round()
    ew = (area / log_r.exp()).sqrt().round()
    frac = eh * ew / (h * w)
    ok = (eh >= 1) & (ew >= 1) & (eh <= h) & (ew <= w) & (frac >= scale[0]) & (frac <= scale[1])
    first = ok.float().argmax(1, keepdim=True)
    eh = torch.where(ok.any(1), eh.gather(1, first).squeeze(1), 0.0)
    ew = torch.where(ok.any(1), ew.gather(1, first).squeeze(1), 0.0)
    top = (u[:, 2 * a] * (h - eh + 1)).floor().clamp(max=h - eh)
    left = (u[:, 2 * a + 1] * (w - ew + 1)).floor().clamp(max=w - ew)
    return torch.stack([top, left, eh, ew], 1).long()


def keyed_erasing(
    x: torch.Tensor, keys: torch.Tensor, p: float, scale: tuple[float, float], ratio: float
) -> torch.Tensor:
    """Random Erasing (Zhong et al. 2017) of each image with probability ``p``, its draws keyed per image:
    the box is set to 0, the data mean after normalisation (timm's ``const`` mode).

    Hand-written as one broadcast mask: torchvision's ``erase`` takes one box per call, and a call per image
    measured 3.7 ms against this mask's 1.9 ms for 256 images of 28x28 (AMD EPYC, one thread; the same
    pixels, checked)."""
    n, _, h, w = x.shape
    u = uniforms(keys, 23, ERASING_DRAWS)
    top, left, eh, ew = erasing_boxes(u[:, :22], h, w, scale, ratio).unbind(1)
    on = u[:, 22] < p
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (
        (ys >= top.view(n, 1, 1))
        & (ys < (top + eh).view(n, 1, 1))
        & (xs >= left.view(n, 1, 1))
        & (xs < (left + ew).view(n, 1, 1))
        & on.view(n, 1, 1)
    )
    return x.masked_fill(inside.unsqueeze(1), 0.0)


# rrc-flip: random-resized crops and flips (d2l 14.2's fine-tuning); on a streamed folder the decoding workers
# crop each file as they decode it (data/photo.py), so the batch is left alone
PHOTO_AUGMENT = "rrc-flip"
AUGMENTATIONS = ("none", "flip", "crop", "flip-crop", "flip-erase", "flip-crop-erase", PHOTO_AUGMENT)


def flip_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose entry of the boolean ``flip`` is set."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def alternate_flips(images: torch.Tensor, epoch: int) -> torch.Tensor:
    """airbench's alternating flip: which images to mirror in ``epoch``, each image every other epoch.

    The phase is a bit of a hash of the image's own pixels (its uint8 sum), so it is fixed per image without
    any index travelling with the batch (in memory, streamed and under torchrun alike), and about half the
    images start mirrored; in the next epoch exactly the others are."""
    total = images.reshape(images.shape[0], -1).sum(1, dtype=torch.int64)
    phase = ((total * 0x9E3779B1) >> 15) & 1  # Fibonacci hashing: neighbouring sums, unrelated bits
    return (phase + epoch) % 2 == 1


def augment(
    x: torch.Tensor,
    kind: str,
    generator: torch.Generator | None = None,
    crop_padding: int = 2,
    out_size: int | None = None,
    flip: torch.Tensor | None = None,
):
    """Apply a named augmentation policy to a normalised float batch. ``rrc-flip``: random-resized crops
    to ``out_size`` (the images' own side when None) and flips. ``flip``: which images the policy's flip
    mirrors (a boolean per image), instead of a random half."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; choose from {', '.join(AUGMENTATIONS)}")

    def flipped(x):
        return random_flip(x, generator) if flip is None else flip_where(x, flip)

    if kind == PHOTO_AUGMENT:
        return flipped(random_resized_crop(x, out_size or x.shape[-1], generator))
    if "crop" in kind:  # a random translation by up to crop_padding pixels (airbench's "translate")
        x = random_crop(x, crop_padding, generator)
    if "flip" in kind:
        x = flipped(x)
    if "erase" in kind:
        x = random_erasing(x, generator=generator)
    return x


@dataclass(frozen=True)
class BatchAugment:
    """What the training loop does to each uint8 batch: preprocess it and apply the augmentation ``policy``.

    Random-resized crops are cut from the whole (resized) image, not from its evaluation crop, and come out
    at the network's input size; every other policy works on the preprocessed batch, so crops and erasing
    keep their meaning in pixels of what the network sees.
    """

    policy: str  # one of AUGMENTATIONS: augment() says so when it is not
    preprocess: Preprocess
    crop_padding: int = 2
    alt_flip: bool = False  # flips: each image every other epoch (alternate_flips), not a random half
    # drawn per image, keyed on (seed, epoch, image index): these need the batch's indices (keyed_call)
    auto_augment: str = "none"  # data/autoaugment.py's AUTO_AUGMENTS, on the uint8 images first
    erasing: float = 0.0  # Random Erasing's probability, after the policy
    erasing_scale: float = 0.4  # the largest box's share of the image (Zhong et al.)
    erasing_ratio: float = 3.3  # aspect ratios from 1/ratio to ratio
    seed: int = 0

    @property
    def keyed(self) -> bool:
        """Whether a batch needs its images' indices (:meth:`keyed_call`)."""
        return self.auto_augment != "none" or self.erasing > 0

    def keyed_call(
        self, images: torch.Tensor, indices: torch.Tensor, generator: torch.Generator | None, epoch: int
    ) -> torch.Tensor:
        """The batch of the images at ``indices`` (of the split), with the keyed augmentations: the same
        pixels for an image wherever and in whichever batch it comes, in memory or streamed."""
        keys = image_keys(self.seed, epoch, indices.to(images.device))
        augmented = auto_augment(images, self.auto_augment, keys)
        x = replace(self, auto_augment="none", erasing=0.0).apply(augmented, generator, epoch, images)
        if self.erasing > 0:
            x = keyed_erasing(
                x, keys, self.erasing, (ERASING_MIN_AREA, self.erasing_scale), self.erasing_ratio
            )
        return x

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None, epoch: int = 0
    ) -> torch.Tensor:
        return self.apply(images, generator, epoch, images)

    def apply(
        self, images: torch.Tensor, generator: torch.Generator | None, epoch: int, originals: torch.Tensor
    ) -> torch.Tensor:
        """The preprocessing and the policy; ``--alt-flip``'s phase is hashed from the ``originals`` (the
        images before ``--auto-augment``, which changes their pixels every epoch)."""
        flip = alternate_flips(originals, epoch) if self.alt_flip and "flip" in self.policy else None
        if self.policy == PHOTO_AUGMENT:
            whole = replace(self.preprocess, crop=None)(images)
            return augment(whole, PHOTO_AUGMENT, generator, out_size=self.preprocess.input_size, flip=flip)
        x = self.preprocess(images)
        return (
            x if self.policy == "none" else augment(x, self.policy, generator, self.crop_padding, flip=flip)
        )
