"""CIFAR-10 (Krizhevsky 2009) from its official *binary* release, never the pickled Python one.

The binary release, ``cifar-10-binary.tar.gz`` (its MD5 published beside it), holds
``cifar-10-batches-bin/data_batch_1.bin`` .. ``data_batch_5.bin`` (the 50,000 training images) and
``test_batch.bin`` (10,000): records of one label byte and 3,072 image bytes, the 32x32 red plane, then green,
then blue (channel-planar, row-major), which is already PyTorch's (C, H, W) layout, so a split is one
``numpy.frombuffer`` and a reshape into uint8 tensors. The pickled release would run code from the file when
read; resdense never opens it.

Folders are searched as Fashion-MNIST's are: ``data_dir``, ``$RESDENSE_DATA``, the user cache
(``$XDG_CACHE_HOME/resdense/cifar-10``). A folder may hold the six ``.bin`` files, a
``cifar-10-batches-bin`` folder of them, or the tarball itself (read in place, its MD5 checked). When none
holds them and downloading is allowed, the tarball is fetched (``$RESDENSE_CIFAR10_URL`` overrides the
address) beside the cache, its MD5 checked, and the six files unpacked into the cache only then.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..preprocess import CIFAR_MEAN, CIFAR_STD
from .dataset import Dataset, ImageSet
from .download import download as fetch

__all__ = ["CLASSES", "MEAN", "STD", "cache_dir", "load_cifar10", "read_batches", "write_binary_release"]

# the class names, in label order (the release's batches.meta.txt)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# the training split's per-channel mean and std in [0, 1], owned by preprocess (the CIFAR nets' cfgs use them)
MEAN, STD = CIFAR_MEAN, CIFAR_STD

ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on the release's page
URL = "https://www.cs.toronto.edu/~kriz/" + ARCHIVE
URL_ENV = "RESDENSE_CIFAR10_URL"  # another address for the tarball (a mirror, or a local server in tests)
DATA_ENV = "RESDENSE_DATA"
FOLDER = "cifar-10-batches-bin"  # the tarball's one folder
PICKLE_FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
FILES = (*TRAIN_FILES, TEST_FILE)
SIDE, CHANNELS = 32, 3
RECORD = 1 + CHANNELS * SIDE * SIDE  # one label byte, then the three 32x32 planes
PER_FILE = 10_000  # records in each of the six files; looked up at call time, so tests can use fewer


def cache_dir() -> Path:
    """Where the download is unpacked: ``$XDG_CACHE_HOME/resdense/cifar-10`` (default ``~/.cache``)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "resdense" / "cifar-10"


def read_batches(blobs: list[bytes], names: list[str]) -> ImageSet:
    """The records of the ``.bin`` files' bytes as one split: uint8 (N, 3, 32, 32) images, int64 labels."""
    parts_x, parts_y = [], []
    for data, name in zip(blobs, names):
        if len(data) != PER_FILE * RECORD:
            raise DataError(
                f"{name}: {len(data):,} bytes, expected {PER_FILE * RECORD:,} ({PER_FILE:,} records of "
                f"{RECORD:,} bytes: a label byte and a 3x32x32 image); the file is truncated or not CIFAR-10's"
            )
        records = np.frombuffer(data, dtype=np.uint8).reshape(PER_FILE, RECORD)
        labels = records[:, 0]
        if labels.max(initial=0) >= len(CLASSES):
            raise DataError(f"{name}: label {int(labels.max())} out of range (CIFAR-10 has 10 classes, 0..9)")
        parts_y.append(torch.from_numpy(labels.astype(np.int64)))
        # channel-planar already: the 3,072 bytes reshape straight into (3, 32, 32)
        parts_x.append(torch.from_numpy(records[:, 1:].copy()).view(PER_FILE, CHANNELS, SIDE, SIDE))
    return ImageSet(torch.cat(parts_x), torch.cat(parts_y))


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)  # the release publishes an MD5; it checks integrity, not trust
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_archive(path: Path, name: str) -> None:
    digest = _md5(path)
    if digest != ARCHIVE_MD5:
        raise DataError(
            f"{name}: checksum mismatch (MD5 {digest}, expected {ARCHIVE_MD5}); the file is damaged or not "
            "the official CIFAR-10 binary release"
        )


def _archive_members(path: Path, name: str) -> dict[str, bytes]:
    """The six ``.bin`` files' bytes from the tarball (checked first), read in memory, nothing extracted."""
    _check_archive(path, name)
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in FILES:
                    out[base] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{name}: cannot read the archive ({e})") from None
    missing = [f for f in FILES if f not in out]
    if missing:
        raise DataError(f"{name}: the archive lacks {', '.join(missing)}")
    return out


def _files_in(folder: Path) -> dict[str, Path] | None:
    """The six files in ``folder`` or its ``cifar-10-batches-bin``; None when neither holds any."""
    for where in (folder, folder / FOLDER):
        found = {f: where / f for f in FILES if (where / f).is_file()}
        if found:
            missing = [f for f in FILES if f not in found]
            if missing:
                raise DataError(f"{where / missing[0]}: file not found (missing: {', '.join(missing)})")
            return found
    return None


def _dataset(blobs: dict[str, bytes], names: dict[str, str], source: Path, **extra) -> Dataset:
    train = read_batches([blobs[f] for f in TRAIN_FILES], [names[f] for f in TRAIN_FILES])
    test = read_batches([blobs[TEST_FILE]], [names[TEST_FILE]])
    return Dataset("cifar10", train, test, list(CLASSES), source=str(source), extra=extra)


def _from_folder(folder: Path) -> Dataset | None:
    files = _files_in(folder)
    if files is not None:
        return _dataset(
            {f: p.read_bytes() for f, p in files.items()}, {f: str(p) for f, p in files.items()}, folder
        )
    if (folder / ARCHIVE).is_file():
        blobs = _archive_members(folder / ARCHIVE, str(folder / ARCHIVE))
        return _dataset(blobs, {f: f"{folder / ARCHIVE}:{f}" for f in FILES}, folder)
    return None


def _candidates(data_dir) -> list[tuple[Path, bool]]:
    out: list[tuple[Path, bool]] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: folder not found" if not root.exists() else f"{root}: not a folder")
        out += [(root, True), (root / "cifar-10", True)]
    env = os.environ.get(DATA_ENV)
    if env:
        out += [(Path(env).expanduser(), False), (Path(env).expanduser() / "cifar-10", False)]
    out.append((cache_dir(), False))
    return out


def load_cifar10(
    data_dir: str | os.PathLike | None = None, *, download: bool = True, progress: bool = True
) -> Dataset:
    """CIFAR-10, verified: train (50000, 3, 32, 32) and test (10000, 3, 32, 32) uint8 images, labels 0..9.

    The first folder of ``data_dir``, ``$RESDENSE_DATA`` and the user cache that holds the binary release
    (the six ``.bin`` files or the tarball) is read; otherwise, when ``download`` is true, the tarball is
    fetched, its MD5 checked and the files unpacked into the cache."""
    searched = []
    for folder, explicit in _candidates(data_dir):
        found = _from_folder(folder)
        if found is not None:
            return found
        if explicit and (folder / PICKLE_FOLDER).is_dir():
            raise DataError(
                f"{folder / PICKLE_FOLDER}: the pickled (Python) release, which resdense never reads (unpickling "
                f"runs code from the file); use the binary release, {ARCHIVE}"
            )
        searched.append(str(folder))
    if not download:
        raise DataError(
            f"CIFAR-10 not found (looked in {', '.join(searched)}) and download is off; put {ARCHIVE} or its "
            f"{FOLDER} folder in one of these folders"
        )
    return _download_to_cache(progress)


def _download_to_cache(progress: bool) -> Dataset:
    url = os.environ.get(URL_ENV) or URL
    dest = cache_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # staged beside the cache: until the archive checks out, the cache holds nothing of it
    staging = Path(tempfile.mkdtemp(prefix=".cifar-10-", suffix=".partial", dir=dest.parent))
    try:
        archive = fetch(url, staging / ARCHIVE, progress=progress, desc=f"cifar-10: {ARCHIVE}")
        blobs = _archive_members(archive, url)
        ds = _dataset(blobs, {f: f"{url}:{f}" for f in FILES}, dest, downloaded_from=url)
        (staging / FOLDER).mkdir()
        for f, data in blobs.items():
            (staging / FOLDER / f).write_bytes(data)
        dest.mkdir(parents=True, exist_ok=True)
        if (dest / FOLDER).exists():
            shutil.rmtree(dest / FOLDER)
        os.replace(staging / FOLDER, dest / FOLDER)  # the unpacked files appear at once, all six
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ds


def write_binary_release(
    folder: str | os.PathLike, train: ImageSet, test: ImageSet, *, archive: bool = False
) -> Path:
    """Write ``train`` (split into five files) and ``test`` in the release's record format under
    ``folder/cifar-10-batches-bin`` (or as ``folder/cifar-10-binary.tar.gz``): for tests and for small sets
    of your own in this format. Each file must then hold ``PER_FILE`` records."""
    folder = Path(folder)
    blobs = {}
    n = len(train) // len(TRAIN_FILES)
    for i, name in enumerate(TRAIN_FILES):
        blobs[name] = _records(train.images[i * n : (i + 1) * n], train.labels[i * n : (i + 1) * n])
    blobs[TEST_FILE] = _records(test.images, test.labels)
    if archive:
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(folder / ARCHIVE, "w:gz") as tar:
            for name, data in blobs.items():
                info = tarfile.TarInfo(f"{FOLDER}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return folder / ARCHIVE
    (folder / FOLDER).mkdir(parents=True, exist_ok=True)
    for name, data in blobs.items():
        (folder / FOLDER / name).write_bytes(data)
    return folder / FOLDER


def _records(images: torch.Tensor, labels: torch.Tensor) -> bytes:
    flat = images.to(torch.uint8).reshape(len(images), -1).numpy()
    return np.concatenate([labels.to(torch.uint8).numpy()[:, None], flat], axis=1).tobytes()
