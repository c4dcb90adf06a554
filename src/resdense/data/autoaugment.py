"""RandAugment (Cubuk et al. 2020) and TrivialAugment (Müller and Hutter 2021, its "wide" space) on a uint8
batch, drawn per image and keyed on (seed, epoch, image) (data/keyed.py).

torchvision's ``RandAugment`` and ``TrivialAugmentWide`` draw one operation for a whole batched tensor; here
each image draws its own operation, magnitude bin and sign, the images are grouped by what they drew, and
each group goes through torchvision's v2 functional op once (they all take batched uint8 tensors). The
operation spaces are the papers', as torchvision states them. Cost, 256 images of 1x28x28 on one thread of
an AMD EPYC: about 15 ms a batch for ``rand`` (its magnitude is fixed: at most 2 x 14 x 2 groups per
round) and 33 ms for ``trivial`` (its magnitudes vary too, so the groups are smaller and more); none when
the option is off.
"""

from __future__ import annotations

import math

import torch

from ..errors import UserError
from .keyed import uniforms

AUTO_AUGMENTS = ("none", "rand", "trivial")
AUTO_AUGMENT_DRAWS = 21  # the purpose of these draws (data/keyed.py)
BINS = 31  # magnitude bins, as torchvision's
RAND_OPS, RAND_MAGNITUDE = 2, 9  # RandAugment's N and M (torchvision's defaults)

# name -> (largest magnitude in RandAugment's space, in TrivialAugmentWide's (None: the side's fraction or
# a table below), signed?)
_SPACE = {
    "identity": (0.0, 0.0, False),
    "shear_x": (0.3, 0.99, True),
    "shear_y": (0.3, 0.99, True),
    "translate_x": (150 / 331, 32.0, True),  # RandAugment: a fraction of the width; wide: pixels
    "translate_y": (150 / 331, 32.0, True),
    "rotate": (30.0, 135.0, True),
    "brightness": (0.9, 0.99, True),
    "color": (0.9, 0.99, True),
    "contrast": (0.9, 0.99, True),
    "sharpness": (0.9, 0.99, True),
    "posterize": (4.0, 6.0, False),  # bits taken away: 8 - round(m)
    "solarize": (1.0, 1.0, False),  # the threshold falls from 255 as m grows
    "autocontrast": (0.0, 0.0, False),
    "equalize": (0.0, 0.0, False),
}
OPS = tuple(_SPACE)


def functional_ops():
    """torchvision's v2 functional ops, or a one-line error naming the option."""
    try:
        from torchvision.transforms.v2 import functional
    except ModuleNotFoundError:
        raise UserError("--auto-augment needs torchvision: pip install torchvision") from None
    return functional


def _apply(F, x: torch.Tensor, op: str, m: float, h: int, w: int, wide: bool) -> torch.Tensor:
    """One operation at signed magnitude ``m`` on the uint8 group ``x``."""
    nearest = F.InterpolationMode.NEAREST
    if op == "identity":
        return x
    if op in ("shear_x", "shear_y"):
        deg = math.degrees(math.atan(m))
        shear = [deg, 0.0] if op == "shear_x" else [0.0, deg]
        return F.affine(
            x,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=shear,
            interpolation=nearest,
            fill=0,
            center=[0, 0],
        )
    if op in ("translate_x", "translate_y"):
        px = m if wide else m * (w if op == "translate_x" else h)
        move = [int(px), 0] if op == "translate_x" else [0, int(px)]
        return F.affine(
            x, angle=0.0, translate=move, scale=1.0, shear=[0.0, 0.0], interpolation=nearest, fill=0
        )
    if op == "rotate":
        return F.rotate(x, m, interpolation=nearest, fill=0)
    if op == "brightness":
        return F.adjust_brightness(x, 1.0 + m)
    if op == "color":
        return F.adjust_saturation(x, 1.0 + m)
    if op == "contrast":
        return F.adjust_contrast(x, 1.0 + m)
    if op == "sharpness":
        return F.adjust_sharpness(x, 1.0 + m)
    if op == "posterize":
        return F.posterize(x, 8 - int(round(m)))
    if op == "solarize":
        return F.solarize(x, 255.0 * (1.0 - m))
    if op == "autocontrast":
        return F.autocontrast(x)
    return F.equalize(x)


def magnitude(op: str, bin_: int, wide: bool) -> float:
    """The (unsigned) magnitude of ``op`` at bin ``bin_`` of :data:`BINS`."""
    top = _SPACE[op][1 if wide else 0]
    return top * bin_ / (BINS - 1)


def auto_augment(images: torch.Tensor, policy: str, keys: torch.Tensor) -> torch.Tensor:
    """``images`` (uint8 N, C, H, W) with ``policy`` (``rand`` or ``trivial``) applied image by image, the
    draws keyed by ``keys`` (one per image)."""
    if policy == "none":
        return images
    F = functional_ops()
    wide = policy == "trivial"
    rounds = 1 if wide else RAND_OPS
    u = uniforms(keys, 3 * rounds, AUTO_AUGMENT_DRAWS).cpu()
    h, w = images.shape[-2:]
    x = images
    for r in range(rounds):
        op = (u[:, 3 * r] * len(OPS)).long().clamp(max=len(OPS) - 1)
        bins = (
            (u[:, 3 * r + 1] * BINS).long().clamp(max=BINS - 1)
            if wide
            else torch.full_like(op, RAND_MAGNITUDE)
        )
        neg = u[:, 3 * r + 2] < 0.5
        drawn = torch.stack([op, bins, neg.long()], 1)
        groups, which = drawn.unique(dim=0, return_inverse=True)
        out = x.clone()
        for g, (o, b, s) in enumerate(groups.tolist()):
            rows = (which == g).nonzero().view(-1).to(x.device)
            name = OPS[o]
            m = magnitude(name, b, wide)
            if s and _SPACE[name][2]:
                m = -m
            out[rows] = _apply(F, x[rows], name, m, h, w, wide)
        x = out
    return x
