"""Fashion-MNIST (Xiao et al. 2017): find it locally or download it, and verify every byte before use.

Folders are searched in order: ``data_dir``, ``$RESDENSE_DATA``, the user cache
(``$XDG_CACHE_HOME/resdense/fashion-mnist``, default ``~/.cache/...``) and Debian's
``/usr/share/datasets/fashion-mnist``; a given folder may also hold the files in a ``fashion-mnist``
sub-folder. The first folder holding all four files (``.gz`` or raw) is used, and checked in full:
format, 28x28 images, 60000/10000 examples, labels 0..9 and the SHA-256 of the decompressed content
(gzip bytes differ between copies, the content must not).

``load_idx_dataset`` reads any folder in the same four-file layout (MNIST, or a small set of your own)
with the format checks only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import DataError
from .dataset import Dataset, ImageSet
from .download import download as _download
from .idx import decode_idx_images, decode_idx_labels, read_idx_bytes

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# SHA-256 of the decompressed files (the same for every copy, whatever its gzip bytes).
SHA256 = {
    TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
COUNTS = {"train": 60000, "test": 10000}
IMAGE_SIZE = (28, 28)

MIRROR_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
URL_ENV = "RESDENSE_FASHION_MNIST_URL"  # another base URL (a mirror, or a local server in tests)
DATA_ENV = "RESDENSE_DATA"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's fashion-mnist package


def cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/resdense/fashion-mnist`` (default ``~/.cache``)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "resdense" / "fashion-mnist"


def find_idx_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Those of the four files present in ``folder`` (``name.gz`` preferred over ``name``)."""
    folder = Path(folder)
    found = {}
    for stem in FILES:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
    return found


def _missing_error(folder: Path, found: dict[str, Path]) -> DataError:
    missing = [s for s in FILES if s not in found]
    return DataError(f"{folder / missing[0]}[.gz]: file not found (missing: {', '.join(missing)})")


def _read_split(
    paths: dict[str, Path],
    names: dict[str, str],
    split: str,
    *,
    num_classes: int | None,
    count: int | None,
    size: tuple[int, int] | None,
    sha256: dict[str, str] | None,
) -> ImageSet:
    images_stem, labels_stem = (
        (TRAIN_IMAGES, TRAIN_LABELS) if split == "train" else (TEST_IMAGES, TEST_LABELS)
    )
    decoded = {}
    for stem in (images_stem, labels_stem):
        data = read_idx_bytes(paths[stem], name=names[stem])
        # Format checks first: "truncated" or "wrong magic" says more than a checksum mismatch would.
        if stem == images_stem:
            decoded[stem] = decode_idx_images(data, names[stem], count=count, size=size)
        else:
            decoded[stem] = decode_idx_labels(data, names[stem], count=count, num_classes=num_classes)
        if sha256 is not None:
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha256[stem]:
                raise DataError(
                    f"{names[stem]}: checksum mismatch (SHA-256 of the decompressed content is "
                    f"{digest[:16]}..., expected {sha256[stem][:16]}...); the file is damaged or not the "
                    "official one"
                )
    images, labels = decoded[images_stem], decoded[labels_stem]
    if len(images) != len(labels):
        raise DataError(
            f"{names[labels_stem]}: wrong count ({len(labels)} labels for the {len(images)} images "
            f"in {Path(names[images_stem]).name})"
        )
    return ImageSet(images, labels)


def _read_four(paths: dict[str, Path], names: dict[str, str], **checks) -> tuple[ImageSet, ImageSet]:
    counts = checks.pop("counts", None) or {}
    train = _read_split(paths, names, "train", count=counts.get("train"), **checks)
    test = _read_split(paths, names, "test", count=counts.get("test"), **checks)
    if train.images.shape[2:] != test.images.shape[2:]:
        h, w = train.images.shape[2:]
        th, tw = test.images.shape[2:]
        raise DataError(f"{names[TEST_IMAGES]}: images are {th}x{tw} but the training images are {h}x{w}")
    return train, test


def _read_fashion(paths: dict[str, Path], names: dict[str, str]) -> tuple[ImageSet, ImageSet]:
    # Module globals looked up at call time, so tests can stand in small synthetic sets.
    return _read_four(paths, names, num_classes=len(CLASSES), counts=COUNTS, size=IMAGE_SIZE, sha256=SHA256)


def _candidates(data_dir: str | os.PathLike | None) -> list[tuple[Path, bool]]:
    """(folder, explicit) in search order; an explicit folder with some but not all files is an error."""
    out: list[tuple[Path, bool]] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.exists():
            raise DataError(f"{root}: folder not found")
        if not root.is_dir():
            raise DataError(f"{root}: not a folder")
        out += [(root, True), (root / "fashion-mnist", True)]
    env = os.environ.get(DATA_ENV)
    if env:
        root = Path(env).expanduser()
        out += [(root, False), (root / "fashion-mnist", False)]
    out += [(cache_dir(), False), (DEBIAN_DIR, False)]
    seen, unique = set(), []
    for folder, explicit in out:
        if folder not in seen:
            seen.add(folder)
            unique.append((folder, explicit))
    return unique


def _dataset(train: ImageSet, test: ImageSet, source: Path, **extra) -> Dataset:
    return Dataset("fashion-mnist", train, test, list(CLASSES), source=str(source), extra=extra)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, *, download: bool = True, progress: bool = True
) -> Dataset:
    """Fashion-MNIST, verified: train (60000, 1, 28, 28) and test (10000, 1, 28, 28) uint8 images.

    Searches ``data_dir``, ``$RESDENSE_DATA``, the user cache and Debian's folder; the first folder with
    all four files is used, and a broken file there is an error (never skipped over). If none has them
    and ``download`` is true, the files are fetched from the official mirror (``$RESDENSE_FASHION_MNIST_URL``
    overrides it) into the cache, verified, and only then moved into place.
    """
    searched = []
    for folder, explicit in _candidates(data_dir):
        found = find_idx_files(folder)
        if len(found) == len(FILES):
            train, test = _read_fashion(found, {s: str(p) for s, p in found.items()})
            return _dataset(train, test, folder)
        if found and explicit:
            raise _missing_error(folder, found)
        searched.append(str(folder))
    if not download:
        raise DataError(
            f"Fashion-MNIST not found (looked in {', '.join(searched)}) and download is off; "
            f"put the four IDX files in one of these folders"
        )
    return _download_to_cache(progress)


def _download_to_cache(progress: bool) -> Dataset:
    base = (os.environ.get(URL_ENV) or MIRROR_URL).rstrip("/") + "/"
    dest = cache_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Stage beside the cache folder, not in it: until all four files verify, the cache holds nothing.
    staging = Path(tempfile.mkdtemp(prefix=".fashion-mnist-", suffix=".partial", dir=dest.parent))
    try:
        paths, names = {}, {}
        for stem in FILES:
            url = base + stem + ".gz"
            paths[stem] = _download(
                url, staging / f"{stem}.gz", progress=progress, desc=f"fashion-mnist: {stem}.gz"
            )
            names[stem] = url
        train, test = _read_fashion(paths, names)
        dest.mkdir(parents=True, exist_ok=True)
        for path in paths.values():
            os.replace(path, dest / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _dataset(train, test, dest, downloaded_from=base)


def load_idx_dataset(data_dir: str | os.PathLike, classes: list[str] | None = None) -> Dataset:
    """Any folder in the Fashion-MNIST four-file layout, with format checks but no fixed counts or checksums.

    ``classes`` names the labels (labels must be below ``len(classes)``); by default the classes are
    ``"0"`` .. ``str(max label)``.
    """
    folder = Path(data_dir).expanduser()
    if not folder.exists():
        raise DataError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    found = find_idx_files(folder)
    if len(found) != len(FILES):
        raise _missing_error(folder, found)
    num_classes = len(classes) if classes is not None else None
    names = {s: str(p) for s, p in found.items()}
    train, test = _read_four(found, names, num_classes=num_classes, counts=None, size=None, sha256=None)
    if len(train) == 0:
        raise DataError(f"{names[TRAIN_IMAGES]}: holds no images")
    if classes is None:
        top = int(torch.cat([train.labels, test.labels]).max())
        classes = [str(i) for i in range(top + 1)]
    return Dataset("idx", train, test, list(classes), source=str(folder))
