"""MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019), drawn per image and keyed on (seed, epoch, image).

Semantics as timm's ``Mixup`` in its per-element mode: image i is mixed with image N-1-i of the batch (the
batch reversed), its weight lambda drawn from Beta(alpha, alpha) for it alone; with both on, each image takes
CutMix with ``switch_prob``. CutMix pastes a box of area (1 - lambda) (clipped to the image) and lambda is
then corrected to the share of the image left unpasted. The targets are the same mix of the two images'
*label-smoothed* one-hots, so they sum to 1 and the smoothing is applied once.

Hand-written: torchvision's v2 ``MixUp``/``CutMix`` draw one lambda (and one box) for the whole batch, and
the draws here must be per image and keyed on the image, not the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .keyed import betas, uniforms

# purposes of the keyed draws (data/keyed.py): each augmentation its own stream
MIXUP_DRAWS, CUTMIX_DRAWS, MIX_CHOICE_DRAWS = 11, 12, 13


def smoothed_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(N, K) float targets: ``1 - smoothing + smoothing / K`` on the label, ``smoothing / K`` elsewhere
    (what ``CrossEntropyLoss(label_smoothing=)`` aims at)."""
    off = smoothing / num_classes
    t = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return t.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


@dataclass(frozen=True)
class Mix:
    """MixUp and/or CutMix (an alpha of 0 is off) for batches of ``num_classes`` classes."""

    mixup: float
    cutmix: float
    switch_prob: float
    num_classes: int
    smoothing: float = 0.0

    def __call__(
        self, x: torch.Tensor, labels: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixed float batch (N, C, H, W) and its soft targets (N, K); ``keys`` from
        :func:`~resdense.data.keyed.image_keys`, one per image."""
        n, _, h, w = x.shape
        dev = x.device
        cut = torch.zeros(n, dtype=torch.bool, device=dev)
        if self.cutmix > 0 and self.mixup > 0:
            cut = uniforms(keys, 1, MIX_CHOICE_DRAWS)[:, 0] < self.switch_prob
        elif self.cutmix > 0:
            cut = torch.ones(n, dtype=torch.bool, device=dev)
        lam = torch.ones(n, device=dev)
        if self.mixup > 0:
            lam = torch.where(cut, lam, betas(keys, self.mixup, MIXUP_DRAWS))
        partner = x.flip(0)
        out = x
        if self.mixup > 0:
            mix_lam = torch.where(cut, 1.0, lam).view(n, 1, 1, 1).to(x.dtype)
            out = x * mix_lam + partner * (1 - mix_lam)
        if self.cutmix > 0:
            cut_lam = betas(keys, self.cutmix, CUTMIX_DRAWS)
            u = uniforms(keys, 2, CUTMIX_DRAWS + 100)
            # a box of area (1 - lambda) * h * w with the image's aspect, centred anywhere, clipped
            side = (1 - cut_lam).sqrt()
            bh, bw = (side * h).round(), (side * w).round()
            cy, cx = (u[:, 0] * h).floor(), (u[:, 1] * w).floor()
            y0, y1 = (cy - bh / 2).floor().clamp(0, h), (cy + bh / 2).floor().clamp(0, h)
            x0, x1 = (cx - bw / 2).floor().clamp(0, w), (cx + bw / 2).floor().clamp(0, w)
            ys = torch.arange(h, device=dev).view(1, h, 1)
            xs = torch.arange(w, device=dev).view(1, 1, w)
            box = (
                (ys >= y0.view(n, 1, 1))
                & (ys < y1.view(n, 1, 1))
                & (xs >= x0.view(n, 1, 1))
                & (xs < x1.view(n, 1, 1))
                & cut.view(n, 1, 1)
            )
            out = torch.where(box.unsqueeze(1), partner, out)
            pasted = (y1 - y0) * (x1 - x0) / (h * w)  # lambda corrected to what was pasted
            lam = torch.where(cut, 1 - pasted, lam)
        one_hot = smoothed_one_hot(labels, self.num_classes, self.smoothing)
        lam = lam.view(n, 1)
        targets = one_hot * lam + one_hot.flip(0) * (1 - lam)
        return out, targets
