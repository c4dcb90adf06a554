"""Data: data sets in memory as uint8 tensors or streamed from image folders, behind one batch protocol
(dataset.py); batched augmentation (augment.py) and per-file photo decoding (photo.py)."""

from __future__ import annotations

import os

from ..errors import UserError
from .cifar10 import load_cifar10
from .dataset import Dataset, ImageSet
from .fashion_mnist import load_fashion_mnist, load_idx_dataset
from .folder import load_image_folder

DATASETS = ("fashion-mnist", "cifar10", "idx", "folder")
# other spellings of a name in DATASETS
ALIASES = {"cifar-10": "cifar10"}


def dataset_key(name: str) -> str:
    """A data set's name as DATASETS spells it (``Fashion_MNIST`` -> ``fashion-mnist``)."""
    key = name.strip().lower().replace("_", "-")
    return ALIASES.get(key, key)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    progress: bool = True,
    image_size: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a data set by name: ``fashion-mnist``, ``cifar10`` (the binary release), ``idx`` (a folder of four IDX files) or ``folder``.

    ``image_size`` and ``seed`` apply to ``folder`` (resize and train/test split); ``download`` and
    ``progress`` to ``fashion-mnist`` and ``cifar10``. The IDX sets keep their stored size; training resizes on the fly.
    """
    key = dataset_key(name)
    if key == "fashion-mnist":
        return load_fashion_mnist(data_dir, download=download, progress=progress)
    if key == "cifar10":
        return load_cifar10(data_dir, download=download, progress=progress)
    if key not in DATASETS:
        raise UserError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    if data_dir is None:
        raise UserError(f"data set {key!r} needs a data folder (data_dir)")
    if key == "idx":
        return load_idx_dataset(data_dir)
    return load_image_folder(data_dir, image_size=image_size, seed=seed)


__all__ = [
    "DATASETS",
    "Dataset",
    "ImageSet",
    "dataset_key",
    "load_dataset",
    "load_cifar10",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_image_folder",
]
