"""Batches for the training loop, from in-memory tensors or from a streamed image folder: one interface.

In memory: no DataLoader, no workers, no per-image Python; the rows of each batch are gathered from uint8
tensors already on the device. Streamed (:class:`resdense.data.stream.FolderStream`): files are decoded in
DataLoader worker processes, batch by batch. Both take their order from :mod:`resdense.data.sampling`, so
the global batches are the same for any number of processes and any epoch can be replayed after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..data.dataset import ImageSet
from ..data.sampling import epoch_generator, epoch_order, eval_chunks, shard_batches, steps_per_epoch

__all__ = ["epoch_generator", "eval_batches", "steps_per_epoch", "train_batches"]


def train_batches(
    data,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's share of each shuffled global batch of ``batch_size`` examples (uint8, labels)."""
    if not isinstance(data, ImageSet):  # a streamed split decodes its own rows
        yield from data.train_batches(batch_size, seed=seed, epoch=epoch, rank=rank, world_size=world_size,
                                      drop_last=drop_last)  # fmt: skip
        return
    order = epoch_order(len(data), seed, epoch).to(data.labels.device)
    for idx in shard_batches(order, batch_size, rank, world_size, drop_last):
        yield data.images[idx], data.labels[idx]


def eval_batches(data, batch_size: int, rank: int = 0, world_size: int = 1):
    """Contiguous, unshuffled chunks; under torchrun each process takes every ``world_size``-th chunk."""
    if not isinstance(data, ImageSet):
        yield from data.eval_batches(batch_size, rank=rank, world_size=world_size)
        return
    for chunk in eval_chunks(len(data), batch_size, rank, world_size):
        yield data.images[chunk], data.labels[chunk]
