"""Which examples each process takes, and in what order: keyed on (seed, epoch, rank) alone.

One permutation per epoch from a generator seeded by (seed, epoch); the epoch's *global* batches are its
consecutive slices, and under torchrun rank r takes rows r, r + world, ... of each. So the global batches
(and the training they drive) do not depend on the number of processes, every example is seen once per
epoch across the ranks, and a resumed run replays any epoch exactly. The in-memory loader and the
streamed folders share this code.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def epoch_generator(seed: int, epoch: int, stream: int = 0, device: str | torch.device = "cpu"):
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + epoch * 1_009 + stream)
    return g


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's permutation of ``range(n)`` (CPU int64); the same in every process."""
    return torch.randperm(n, generator=epoch_generator(seed, epoch))


def shard_batches(
    order: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1, drop_last: bool = True
) -> Iterator[torch.Tensor]:
    """This process's rows of each global batch of ``batch_size`` consecutive entries of ``order``."""
    n = len(order)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size][rank::world_size]


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def eval_chunks(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[slice]:
    """Contiguous, unshuffled chunks; under torchrun each process takes every ``world_size``-th chunk."""
    for i, start in enumerate(range(0, n, batch_size)):
        if i % world_size == rank:
            yield slice(start, min(start + batch_size, n))
