"""A validation split held out of the training set, for choosing settings without looking at the test set."""

from __future__ import annotations

import torch

from .dataset import ImageSet

# The held-out images depend on the split size only, never on the run's seed: every run (any seed, any
# recipe, a resumed one) then holds out the same images, so validation figures of different runs compare
# and no held-out image is trained on by a sibling run that is later compared against it.
SPLIT_SEED = 20_061


def holdout(data: ImageSet, n: int) -> tuple[ImageSet, ImageSet]:
    """``(rest, held_out)``: ``n`` images drawn at random (fixed seed) out of ``data``, and the others.

    Both keep the original order among themselves, so ``rest.subset(k)`` is still "the first k".
    """
    if not 0 < n < len(data):
        raise ValueError(f"a validation split needs 0 < n < {len(data)} images, got {n}")
    g = torch.Generator().manual_seed(SPLIT_SEED)
    chosen = torch.zeros(len(data), dtype=torch.bool)
    chosen[torch.randperm(len(data), generator=g)[:n]] = True
    chosen = chosen.to(data.labels.device)
    rest = ImageSet(data.images[~chosen], data.labels[~chosen])
    return rest, ImageSet(data.images[chosen], data.labels[chosen])
