"""What the training loop reads: a data set of two splits, each behind one batch protocol.

A split is anything with ``len()``, ``labels``, ``channels``, ``subset(n)``, ``sample()``,
``train_batches(batch_size, seed=, epoch=, rank=, world_size=)``, ``eval_batches(batch_size, rank,
world_size)`` and ``batches_at(chunks)`` (the examples at given indices, as evaluation sees them), all
yielding (uint8 images, int64 labels). :class:`ImageSet` (the whole split in memory as tensors, on the
training device) and :class:`resdense.data.stream.FolderStream` (files decoded batch by batch)
are the two; both take their order from :mod:`resdense.data.sampling`, so the global batches are the same for
any number of processes and any epoch can be replayed after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .sampling import epoch_order, eval_chunks, shard_batches


@dataclass
class ImageSet:
    """A whole split in memory: no DataLoader, no workers, no per-image Python; each batch is gathered from
    uint8 tensors already on the device."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def to(self, device) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))

    def subset(self, n: int) -> ImageSet:
        """The first ``n`` examples (``n`` <= 0 or None keeps all)."""
        if not n or n >= len(self):
            return self
        return ImageSet(self.images[:n], self.labels[:n])

    def sample(self, n: int = 0) -> torch.Tensor:
        """Up to ``n`` evenly spaced images (0: all of them, which are at hand anyway)."""
        if not n or n >= len(self):
            return self.images
        return self.images[torch.linspace(0, len(self) - 1, n).round().long().to(self.images.device)]

    def train_batches(
        self,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        indices: bool = False,
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """This process's share of each shuffled global batch of ``batch_size`` examples (uint8, labels, and
        with ``indices`` the examples' indices: keyed augmentations need them)."""
        order = epoch_order(len(self), seed, epoch).to(self.labels.device)
        for idx in shard_batches(order, batch_size, rank, world_size, drop_last):
            batch = self.images[idx], self.labels[idx]
            yield (*batch, idx) if indices else batch

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        """Contiguous, unshuffled chunks; under torchrun each process takes every ``world_size``-th chunk."""
        yield from self.batches_at(eval_chunks(len(self), batch_size, rank, world_size))

    def batches_at(self, chunks) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The examples at each chunk of indices (a slice or an index tensor), unaugmented."""
        for chunk in chunks:
            if isinstance(chunk, torch.Tensor):
                chunk = chunk.to(self.labels.device)
            yield self.images[chunk], self.labels[chunk]


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
