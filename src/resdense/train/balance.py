"""Lopsided training sets: how many images each class has, said at the start, and ``--balance`` to even
them out, either in the loss (each class's examples weighted by ``N / (K * n_class)``, so every class
weighs the same in total) or in the sampling (each epoch draws its examples with probability
``1 / n_class``, with replacement, so batches hold the classes in equal shares on average).
``benchmarks/balance.py`` measures which does better (RESULTS.md, section 12: the sampler, on a 20:1
Fashion-MNIST subset); the loss also works for streamed folders, the sampler only in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..data.dataset import ImageSet
from ..data.sampling import epoch_generator, shard_batches
from ..errors import UserError

__all__ = [
    "BALANCE",
    "UNBALANCED",
    "BalancedSampling",
    "balanced",
    "capped_batch_size",
    "class_counts",
    "class_weights",
    "counts_line",
    "is_unbalanced",
]

BALANCE = ("none", "loss", "sampler")
UNBALANCED = 1.5  # the largest class this many times the smallest: said, with the way out


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels.cpu(), minlength=num_classes).tolist()


def counts_line(classes: list[str], counts: list[int], balance: str) -> str:
    """One line: the training images per class, and whether (and how) they are unbalanced."""
    shown = ", ".join(f"{c} {n:,}" for c, n in zip(classes, counts))
    if min(counts) == 0:
        empty = [c for c, n in zip(classes, counts) if n == 0]
        return f"training images per class: {shown} (no training images of {', '.join(empty[:3])})"
    ratio = max(counts) / min(counts)
    if ratio < UNBALANCED:
        return f"training images per class: {shown}"
    # the sampler measured better than the weighted loss (RESULTS.md, section 12); the loss also streams
    how = (
        f"balanced by --balance {balance}"
        if balance != "none"
        else "--balance sampler evens them (or loss, for streamed folders)"
    )
    return f"training images per class: {shown} (unbalanced, {ratio:.1f}x; {how})"


def is_unbalanced(counts: list[int]) -> bool:
    return min(counts) == 0 or max(counts) / min(counts) >= UNBALANCED


def capped_batch_size(batch_size: int, n: int, world_size: int = 1) -> int:
    """``batch_size``, or for a training set smaller than one batch the largest multiple of ``world_size``
    that fits it (so a small folder trains, one batch per step, instead of failing)."""
    if n >= batch_size:
        return batch_size
    capped = n - n % world_size
    if capped < 1:
        raise UserError(f"the training set has {n} images, fewer than the {world_size} processes")
    return capped


def class_weights(counts: list[int]) -> torch.Tensor:
    """``N / (K * n_c)`` for each class (scikit-learn's "balanced" weights; 0 for a class with no images)."""
    n = torch.tensor(counts, dtype=torch.float64)
    present = n > 0
    w = torch.zeros_like(n)
    w[present] = n.sum() / (present.sum() * n[present])
    return w.float()


@dataclass
class BalancedSampling:
    """An in-memory split whose training batches are drawn class-balanced: each epoch draws ``len(split)``
    examples with replacement, each with probability proportional to ``1 / n_class``, from a generator seeded
    by (seed, epoch) (so a resumed run replays the epoch, and under torchrun every process draws the same
    global batches). Everything else is the split's own."""

    split: ImageSet

    def __post_init__(self) -> None:
        counts = torch.bincount(self.split.labels.cpu())
        self.weights = (1.0 / counts.double().clamp(min=1))[self.split.labels.cpu()]

    def __len__(self) -> int:
        return len(self.split)

    def __getattr__(self, name):  # labels, images, channels, sample, eval_batches, to, ...
        if name == "split":
            raise AttributeError(name)
        return getattr(self.split, name)

    def subset(self, n: int) -> BalancedSampling:
        return BalancedSampling(self.split.subset(n))

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
        g = epoch_generator(seed, epoch, stream=997)
        order = torch.multinomial(self.weights, len(self), replacement=True, generator=g)
        order = order.to(self.split.labels.device)
        for idx in shard_batches(order, batch_size, rank, world_size, drop_last):
            batch = self.split.images[idx], self.split.labels[idx]
            yield (*batch, idx) if indices else batch


def balanced(train, balance: str):
    """The training split, with class-balanced sampling when ``balance == "sampler"``."""
    if balance != "sampler":
        return train
    if not isinstance(train, ImageSet):
        raise UserError(
            "--balance sampler: only for data held in memory; use --balance loss for streamed "
            "folders (or --in-memory yes)"
        )
    return BalancedSampling(train)
