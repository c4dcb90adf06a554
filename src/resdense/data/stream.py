"""Image folders of any size, streamed: files are decoded batch by batch, never the whole set at once.

Each rank reads only its own rows of each global batch (:mod:`resdense.data.sampling`): one permutation per
epoch keyed on (seed, epoch), so across ranks every image is seen once per epoch, the global batches do not
depend on the number of processes, and a resumed run replays its next epoch exactly. Decoding happens in
DataLoader worker processes (PIL releases no GIL worth having, so threads would not help), which prefetch
while the model trains. The random augmentation of each image is keyed on (seed, epoch, image), so it too
is the same whichever process or worker decodes it.

Everything stays uint8 until the batch is on the training device: a worker hands back an
(N, C, size, size) uint8 batch (channels-last in memory, as numpy stacks it), a quarter of what float
tensors would cost to move between processes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UserError
from ..utils.device import local_world_size, usable_cores
from .augment import PHOTO_AUGMENT
from .dataset import Dataset
from .folder import (
    READ_ERRORS,
    BadImage,
    FolderIndex,
    bad_images_error,
    image_problem,
    index_folder,
    load_image_folder,
    scan_images,
)
from .photo import PhotoTransform
from .sampling import epoch_order, eval_chunks, shard_batches

IN_MEMORY = ("auto", "yes", "no")
RAM_FRACTION = 0.25  # auto: in memory when the decoded images take at most this share of the RAM ...
GPU_FRACTION = 0.5  # ... and, training on a GPU, at most this share of its memory
STATS_SAMPLE = 2048  # images decoded to estimate the mean and std of a streamed set


class _Files(torch.utils.data.Dataset):
    """File paths and labels as flat numpy arrays: no per-item Python objects for forked workers to copy."""

    def __init__(self, items: list[tuple[Path, int]], transform: PhotoTransform):
        self.paths = np.array([os.fsencode(p) for p, _ in items], dtype=np.bytes_)
        self.labels = np.array([y for _, y in items], dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        return self.__getitems__([key])

    def __getitems__(self, keys: list[tuple[int, int | None]]):
        """Decode a batch of (index, augmentation seed); a bad file comes back as a message, not a crash."""
        images = []
        for i, aug_seed in keys:
            path = os.fsdecode(self.paths[i])
            g = torch.Generator().manual_seed(aug_seed) if aug_seed is not None else None
            try:
                images.append(self.transform(path, g))
            except READ_ERRORS as e:
                return None, None, str(image_problem(path, e))
        idx = [i for i, _ in keys]
        return np.stack(images), self.labels[idx], None


def _decode_in_the_background(_worker_id: int) -> None:
    """Decoding workers yield to the training threads. On a CPU with as many cores as training threads, a
    worker woken at normal priority pre-empts one thread of a multi-threaded operation and its siblings wait
    at the barrier, and streamed training ran far slower than the decoding work explains (benchmarks/stream.py,
    RESULTS.md section 8). With idle cores (a GPU run) nothing changes."""
    with contextlib.suppress(OSError):
        os.nice(10)


def _collate(batch):
    images, labels, error = batch
    if error is not None:
        return None, None, error
    # (N, H, W, C) -> (N, C, H, W) as a view: channels-last memory, which the models prefer anyway
    return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels), None


class _Batches:
    """A DataLoader batch sampler: this rank's (index, augmentation seed) rows of each global batch."""

    def __init__(self, shards: list[torch.Tensor] | Iterator, n: int, key):
        self.shards, self.n, self.key = shards, n, key

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for rows in self.shards:
            yield [(i, self.key(i)) for i in rows.tolist()]


@dataclass
class FolderStream:
    """One split of an image folder, decoded batch by batch in ``workers`` DataLoader processes."""

    items: list[tuple[Path, int]]
    transform: PhotoTransform
    workers: int = 2
    pin_memory: bool = False
    batch_augment: str = "none"  # what the training loop still applies to the decoded batch

    def __post_init__(self) -> None:
        self._files = _Files(self.items, self.transform)
        self._sampler = _Batches([], 0, lambda i: None)
        self._loader: torch.utils.data.DataLoader | None = None
        self._generation = 0

    def __len__(self) -> int:
        return len(self.items)

    @property
    def channels(self) -> int:
        return self.transform.channels

    @property
    def size(self) -> int:
        return self.transform.size

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([y for _, y in self.items], dtype=torch.int64)

    def subset(self, n: int) -> FolderStream:
        return self if not n or n >= len(self) else replace(self, items=self.items[:n])

    def _load(self, shards, n: int, key) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``shards``, decoded by this stream's workers. The workers are started once and
        kept (``persistent_workers``) for every later epoch, evaluation and sample: a DataLoader started
        afresh forks the training process each time, and until each of its pages has been copied once,
        every write to the model's and activations' memory pays a copy-on-write fault. On 2 vCPUs that cost
        seconds per start (benchmarks/stream.py, RESULTS.md section 8), a whole epoch's data cost for a small
        folder. One iteration at a time: the workers serve whichever started last."""
        self._generation += 1
        mine = self._generation
        self._sampler.shards, self._sampler.n, self._sampler.key = shards, n, key
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                self._files,
                batch_sampler=self._sampler,
                num_workers=self.workers,
                collate_fn=_collate,
                pin_memory=self.pin_memory,
                prefetch_factor=4 if self.workers else None,
                worker_init_fn=_decode_in_the_background,
                persistent_workers=self.workers > 0,
            )
        for images, labels, error in self._loader:
            self._still_mine(mine)
            if error is not None:
                raise DataError(f"{error}; its header read fine, its pixels do not (a damaged file?)")
            yield images, labels
        self._still_mine(mine)

    def _still_mine(self, generation: int) -> None:
        if self._generation != generation:
            raise RuntimeError("a FolderStream serves one iteration at a time; a later one has started")

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
        """As :meth:`ImageSet.train_batches <resdense.data.dataset.ImageSet.train_batches>`: with
        ``indices``, each batch's indices too (the batches come in the order of the shards)."""
        n = len(self)
        order = epoch_order(n, seed, epoch)
        shards = shard_batches(order, batch_size, rank, world_size, drop_last)
        steps = n // batch_size if drop_last else -(-n // batch_size)
        # the image's own random crop and flip, whoever decodes it: keyed on (seed, epoch, image)
        base = ((seed * 1_000_003 + epoch) * 2**32) % 2**62
        if not indices:
            yield from self._load(shards, steps, lambda i: base + i)
            return
        shards = list(shards)
        for (images, labels), idx in zip(self._load(shards, steps, lambda i: base + i), shards):
            yield images, labels, idx

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        yield from self.batches_at(eval_chunks(len(self), batch_size, rank, world_size))

    def batches_at(self, chunks) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The examples at each chunk of indices (a slice or an index tensor), decoded as for evaluation."""
        chunks = [torch.arange(c.start, c.stop) if isinstance(c, slice) else c for c in chunks]
        yield from self._load(chunks, len(chunks), lambda i: None)

    def sample(self, n: int = STATS_SAMPLE) -> torch.Tensor:
        """Up to ``n`` evenly spaced images, decoded (uint8 N, C, H, W): enough for the mean and std. A
        training stream's random crops are drawn with fixed seeds (the image's index): the statistics are
        those of what training sees, and the same every time."""
        picks = torch.linspace(0, len(self) - 1, min(n, len(self))).round().long().unique()
        chunks = list(picks.split(256))
        return torch.cat([x.contiguous() for x, _ in self._load(chunks, len(chunks), lambda i: i)])


@dataclass
class StreamedFolder:
    """An image folder to be streamed: the streamed counterpart of :class:`Dataset`."""

    index: FolderIndex
    grey: bool
    first_size: tuple[int, int]  # (H, W) of the first training image
    name: str = "folder"
    extra: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    @property
    def source(self) -> str:
        return str(self.index.root)

    def streams(
        self, *, size: int | None, augment: str, workers: int | None = None, pin_memory: bool = False
    ) -> tuple[FolderStream, FolderStream]:
        """(train, test) streams at ``size`` (default: the first image's shorter side).

        ``augment`` ``rrc-flip`` takes the photo transforms (random-resized crop and flip in training;
        shorter side to size/0.875 and the centre crop for evaluation); any other policy squashes each
        image to the square, as the in-memory path stores it, and leaves the policy to the batch.
        """
        size = size or min(self.first_size)
        c = 1 if self.grey else 3
        workers = default_workers() if workers is None else workers
        if augment == PHOTO_AUGMENT:
            train_t = PhotoTransform(size, c, crop="random", flip=True)
            test_t = PhotoTransform(size, c, crop="centre")
            left = "none"
        else:
            train_t = test_t = PhotoTransform(size, c, crop="squash")
            left = augment
        train = FolderStream(self.index.train, train_t, workers, pin_memory, left)
        test = FolderStream(self.index.test, test_t, workers, pin_memory)
        return train, test


def default_workers() -> int:
    """Decoding processes per training process: this process's share of the cores, at most 8."""
    return max(1, min(8, usable_cores() // local_world_size()))


def memory_budget(device: torch.device | str = "cpu") -> int:
    """Bytes the decoded images may take in memory under ``--in-memory auto``, per training process."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget = RAM_FRACTION * ram / local_world_size()  # every local process holds its own copy
    device = torch.device(device)
    if device.type == "cuda":
        budget = min(budget, GPU_FRACTION * torch.cuda.get_device_properties(device).total_memory)
    return int(budget)


def load_folder(
    root: str | os.PathLike,
    *,
    in_memory: str = "auto",
    budget_bytes: int | None = None,
    augment: str = "none",
    skip_bad_images: bool = False,
    seed: int = 0,
    image_size: int | None = None,
) -> tuple[Dataset | StreamedFolder, list[BadImage]]:
    """Index and scan an image folder, then hold it in memory or stream it; also the bad files left out.

    The scan reads every file's header (not its pixels): bad files stop here with one error that counts
    them, unless ``skip_bad_images``. ``in_memory``: ``yes``, ``no`` or ``auto`` (in memory when the
    decoded images fit ``budget_bytes``, default :func:`memory_budget`, and the augmentation does not
    ask for the photo transforms, which crop the files as they decode them). In memory, images are squashed
    to ``image_size`` (default: the first image's size); ``rrc-flip`` then crops the stored squares.
    """
    if in_memory not in IN_MEMORY:
        raise UserError(f"--in-memory: expected one of {', '.join(IN_MEMORY)}, got {in_memory!r}")
    index = index_folder(root, seed=seed)
    scan = scan_images([p for p, _ in index.train + index.test])
    if scan.bad and not skip_bad_images:
        raise bad_images_error(index.root, scan.bad)
    index = index.without(b.path for b in scan.bad)
    if not index.train:
        raise DataError(f"{index.root}: no readable training images left")
    n = len(index.train) + len(index.test)
    h, w = (image_size, image_size) if image_size else scan.first_size
    need = n * (1 if scan.grey else 3) * h * w
    budget = memory_budget() if budget_bytes is None else budget_bytes
    if in_memory == "auto":
        in_memory = "yes" if need <= budget and augment != PHOTO_AUGMENT else "no"
    if in_memory == "yes" and need > budget:  # before decoding: one line, not the kernel's OOM killer
        raise DataError(
            f"{index.root}: {n:,} images at {h}x{w} need {need / 2**30:,.1f} GiB in memory, more than "
            f"the {budget / 2**30:,.1f} GiB a run may hold; use --in-memory no or a smaller --resize"
        )
    if in_memory == "yes":
        return load_image_folder(index.root, index=index, image_size=image_size), scan.bad
    return StreamedFolder(index, scan.grey, scan.first_size, extra=dict(index.split)), scan.bad
