"""A folder of class sub-folders of images (PNG, JPEG, BMP, GIF, WebP) as an in-memory data set.

Layouts::

    root/<class>/<image>                    split per class, deterministically by seed
    root/train/<class>/<image>              the given split (``val`` may stand for ``test``)
    root/test/<class>/<image>

All images are decoded once, made grey (1 channel) when every one of them is grey and RGB otherwise,
resized (squashed, not cropped) to one size and stored as uint8 (N, C, H, W).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, UserError
from .dataset import Dataset, ImageSet
from .pixels import draft_for, reduce_to, to_channels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_QUIET_HIDDEN = {".ipynb_checkpoints", ".git", ".cache", ".DS_Store", ".Trash"}  # tools' folders: no note
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _class_dirs(folder: Path) -> list[str]:
    dirs = [d.name for d in folder.iterdir() if d.is_dir()]
    names = sorted(n for n in dirs if not n.startswith("."))
    hidden = sorted(n for n in dirs if n.startswith(".") and n not in _QUIET_HIDDEN)
    if hidden:  # hidden by the dot, as ls hides them; said, since a class named "..bag" is one too
        more = f" (and {len(hidden) - 3} more)" if len(hidden) > 3 else ""
        logging.getLogger("resdense").info(
            "%s: left out hidden folder %s%s (the name starts with a dot)",
            folder,
            ", ".join(hidden[:3]),
            more,
        )
    if not names:
        raise DataError(f"{folder}: no class folders (expected one sub-folder of images per class)")
    return names


def list_images(folder: Path) -> list[Path]:
    """A folder's image files, recursively, sorted, hidden ones (and those in hidden folders) left out: one
    rule for a class folder and for a folder given to ``predict`` or ``embed``."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _image_files(class_dir: Path) -> list[Path]:
    files = list_images(class_dir)
    if not files:
        raise DataError(f"{class_dir}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _decode(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """One image as (H, W, 3) uint8 at ``size`` (H, W), and whether it is grey."""
    try:
        with bombs_are_errors(), Image.open(path) as im:
            draft_for(im, 3, max(size))  # a big JPEG decoded small: the DCT shrinks it
            im.load()
            # Phone photos store their rotation in EXIF; apply it so the picture is upright.
            im = ImageOps.exif_transpose(im)
            grey = im.mode in _GREY_MODES
            # wide modes (16-bit, float) scaled by their bit depth, as every reader does; then reduced
            im = reduce_to(to_channels(im, 1 if grey else 3), max(size)).convert("RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except READ_ERRORS as e:
        raise DataError(f"{path}: not a readable image ({image_problem(path, e).reason})") from None
    # A colour-mode file whose channels are all equal (a grey JPEG saved as RGB) is grey as well.
    grey = grey or bool((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())
    return arr, grey


def _first_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            w, h = im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(
            f"{path}: not a readable image ({' '.join(str(e).split()) or type(e).__name__})"
        ) from None
    return h, w


def _load(
    items: list[tuple[Path, int]], size: tuple[int, int]
) -> tuple[list[np.ndarray], torch.Tensor, bool]:
    arrays, all_grey = [], True
    for path, _ in items:
        arr, grey = _decode(path, size)
        arrays.append(arr)
        all_grey &= grey
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return arrays, labels, all_grey


def _to_set(arrays: list[np.ndarray], labels: torch.Tensor, grey: bool, size: tuple[int, int]) -> ImageSet:
    c = 1 if grey else 3
    if not arrays:
        return ImageSet(torch.empty((0, c, *size), dtype=torch.uint8), labels)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (N, 3, H, W)
    # Grey images were expanded to three equal channels; keep one.
    x = x[:, :1] if grey else x
    return ImageSet(x.contiguous(), labels)


@dataclass
class FolderIndex:
    """A folder's files and labels, split into train and test, before any pixel is decoded."""

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    split: dict

    def without(self, bad: Collection[Path]) -> FolderIndex:
        """The same index less the files in ``bad`` (found by :func:`scan_images`)."""
        drop = set(bad)
        keep = lambda items: [(p, y) for p, y in items if p not in drop]  # noqa: E731
        return FolderIndex(self.root, self.classes, keep(self.train), keep(self.test), self.split)


def index_folder(root: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0) -> FolderIndex:
    """Find the classes and image files of ``root`` and split them (see :func:`load_image_folder`)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"test fraction must be in [0, 1), got {test_fraction}")

    train_dir = root / "train"
    test_dir = next((d for d in (root / "test", root / "val") if d.is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        classes = _class_dirs(train_dir)
        train_items = [(p, i) for i, c in enumerate(classes) for p in _image_files(train_dir / c)]
        index = {c: i for i, c in enumerate(classes)}
        test_items = []
        for c in _class_dirs(test_dir):
            if c not in index:
                raise DataError(f"{test_dir / c}: class folder not in {train_dir}")
            test_items += [(p, index[c]) for p in _image_files(test_dir / c)]
        split = {"split": f"folders (train, {test_dir.name})"}
    elif train_dir.is_dir():
        raise DataError(f"{root}: has a train folder but no test or val folder beside it")
    else:
        classes = _class_dirs(root)
        generator = torch.Generator().manual_seed(seed)
        train_items, test_items = [], []
        for i, c in enumerate(classes):
            files = _image_files(root / c)
            n_test = min(int(len(files) * test_fraction + 0.5), len(files) - 1)
            order = torch.randperm(len(files), generator=generator).tolist()
            held_out = set(order[:n_test])
            # Keep file-name order inside each part: the split, not the order, is what the seed picks.
            train_items += [(p, i) for j, p in enumerate(files) if j not in held_out]
            test_items += [(p, i) for j, p in enumerate(files) if j in held_out]
        split = {"split": "random", "test_fraction": test_fraction, "seed": seed}
    if len(classes) < 2:
        raise DataError(f"{root}: only one class folder ({classes[0]}); need at least 2 classes")
    return FolderIndex(root, classes, _interleave(train_items), _interleave(test_items), split)


def _interleave(items: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
    """The classes' files taken in turn (one of each class, then the next of each), each class in file-name
    order. Training shuffles every epoch, so the order costs nothing there; it is what makes "the first N"
    (--train-subset, --test-subset) a sample of every class rather than the first class folder alone."""
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    queues = [by_class[c] for c in sorted(by_class)]
    longest = max((len(q) for q in queues), default=0)
    return [q[j] for j in range(longest) for q in queues if j < len(q)]


def load_image_folder(
    root: str | os.PathLike,
    *,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    index: FolderIndex | None = None,
) -> Dataset:
    """Images in class sub-folders of ``root`` as a Dataset of uint8 (N, C, H, W) images.

    With ``root/train`` and ``root/test`` (or ``root/val``) that split is used and the classes come from
    ``train``; otherwise each class is split by ``seed`` with ``test_fraction`` of it held out for test
    (at least one image stays in train). Images are resized to ``image_size`` x ``image_size``, or to the
    size of the first image when ``image_size`` is None. ``index``: the folder already indexed (and
    perhaps cleaned of bad files) by :func:`index_folder`.
    """
    if image_size is not None and image_size < 1:
        raise UserError(f"image size must be a positive number of pixels, got {image_size}")
    if index is None:
        index = index_folder(root, test_fraction=test_fraction, seed=seed)
    size = (image_size, image_size) if image_size is not None else _first_size(index.train[0][0])
    train_arrays, train_labels, train_grey = _load(index.train, size)
    test_arrays, test_labels, test_grey = _load(index.test, size)
    grey = train_grey and test_grey
    train = _to_set(train_arrays, train_labels, grey, size)
    test = _to_set(test_arrays, test_labels, grey, size)
    return Dataset("folder", train, test, index.classes, source=str(index.root), extra=dict(index.split))


# -- the scan: every file's header, before training -------------------------------------------------------


@dataclass(frozen=True)
class BadImage:
    path: Path
    kind: str  # one of BAD_KINDS
    detail: str = ""

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


BAD_KINDS = ("empty file", "not an image", "decompression bomb", "truncated", "unreadable")
# A complete JPEG ends with its EOI marker, a complete PNG with its IEND chunk (a few bytes may trail).
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL = 4096


@dataclass
class ScanResult:
    bad: list[BadImage]
    grey: bool  # every readable image is stored grey (header mode)
    first_size: tuple[int, int] | None  # (H, W) of the first readable image, upright


def image_problem(path: str | os.PathLike, exc: BaseException) -> BadImage:
    """What went wrong opening or decoding ``path``, classified for one-line reports."""
    path = Path(path)
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return BadImage(
            path, "decompression bomb", f"over Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} pixels"
        )
    if isinstance(exc, UnidentifiedImageError):
        return BadImage(path, "empty file" if _is_empty(path) else "not an image")
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return BadImage(path, "unreadable", detail[:120])


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning)


@contextlib.contextmanager
def bombs_are_errors():
    """Pillow only warns between 1x and 2x its pixel limit; here every image over the limit is refused."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _header(path: Path) -> tuple[str, str | None, tuple[int, int]]:
    """(mode, format, upright (H, W)) from the header alone: Pillow decodes no pixel in ``open``."""
    with bombs_are_errors(), Image.open(path) as im:
        w, h = im.size
        if im.format == "JPEG" and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            w, h = h, w  # stored rotated by 90 degrees
        return im.mode, im.format, (h, w)


def _truncated(path: Path, fmt: str | None) -> bool:
    """A JPEG or PNG whose end marker is missing from its last bytes: cut short (a copy that failed)."""
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL))
        return marker not in f.read()


def scan_images(paths: list[Path]) -> ScanResult:
    """Read every file's header and last bytes, no pixels: finds empty files, non-images, decompression
    bombs, unreadable headers and JPEG/PNG files cut short.

    A file whose header and end are fine but whose pixels inside are damaged is found when it is decoded
    (streamed: a one-line error naming it).
    """
    bad, grey, first = [], True, None
    for path in paths:
        try:
            if _is_empty(path):
                bad.append(BadImage(path, "empty file"))
                continue
            mode, fmt, size = _header(path)
            if _truncated(path, fmt):
                bad.append(BadImage(path, "truncated", f"no {fmt} end marker"))
                continue
        except READ_ERRORS as e:
            bad.append(image_problem(path, e))
            continue
        grey &= mode in _GREY_MODES
        first = first or size
    return ScanResult(bad, grey, first)


def bad_images_error(root: Path, bad: list[BadImage], shown: int = 3) -> DataError:
    """One line: how many bad files of each kind, the first few by name, and the way out."""
    counts = Counter(b.kind for b in bad)
    kinds = ", ".join(f"{counts[k]} {k}" for k in BAD_KINDS if counts[k])
    first = "; ".join(str(b) for b in bad[:shown])
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    return DataError(
        f"{root}: {len(bad)} bad image file{'s' * (len(bad) != 1)} ({kinds}): {first}{more}; remove them "
        "or pass --skip-bad-images to leave them out"
    )
