"""Batches straight from in-memory tensors: no DataLoader, no workers, no per-image Python.

Each epoch's order is a permutation drawn from a generator seeded by (seed, epoch), so an epoch can be
replayed exactly after a resume. Under torchrun every process draws the same permutation and takes its own
rows of each *global* batch, so the global batches - and hence the training - do not depend on the number
of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..data.dataset import ImageSet


def epoch_generator(seed: int, epoch: int, stream: int = 0, device: str | torch.device = "cpu"):
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + epoch * 1_009 + stream)
    return g


def train_batches(
    data: ImageSet,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's share of each shuffled global batch of ``batch_size`` examples."""
    n = len(data)
    perm = torch.randperm(n, generator=epoch_generator(seed, epoch)).to(data.labels.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = perm[start : start + batch_size][rank::world_size]
        yield data.images[idx], data.labels[idx]


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def eval_batches(data: ImageSet, batch_size: int, rank: int = 0, world_size: int = 1):
    """Contiguous, unshuffled chunks; under torchrun each process takes every ``world_size``-th chunk."""
    for i, start in enumerate(range(0, len(data), batch_size)):
        if i % world_size == rank:
            yield data.images[start : start + batch_size], data.labels[start : start + batch_size]
