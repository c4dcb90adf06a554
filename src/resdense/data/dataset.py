"""A whole image-classification data set in memory: uint8 images and int64 labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))

    def subset(self, n: int) -> ImageSet:
        """The first ``n`` examples (``n`` <= 0 or None keeps all)."""
        if not n or n >= len(self):
            return self
        return ImageSet(self.images[:n], self.labels[:n])


@dataclass
class Dataset:
    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    source: str = ""  # where it was read from, for the run's config
    extra: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])
