"""A folder of class sub-folders of images (PNG, JPEG, BMP, GIF, WebP) as an in-memory data set.

Layouts::

    root/<class>/<image>                    split per class, deterministically by seed
    root/train/<class>/<image>              the given split (``val`` may stand for ``test``)
    root/test/<class>/<image>

All images are decoded once, made grey (1 channel) when every one of them is grey and RGB otherwise,
resized (squashed, not cropped) to one size and stored as uint8 (N, C, H, W).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import DataError, UserError
from .dataset import Dataset, ImageSet

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _class_dirs(folder: Path) -> list[str]:
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not names:
        raise DataError(f"{folder}: no class folders (expected one sub-folder of images per class)")
    return names


def _image_files(class_dir: Path) -> list[Path]:
    files = sorted(
        p
        for p in class_dir.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
    )
    if not files:
        raise DataError(f"{class_dir}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _decode(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """One image as (H, W, 3) uint8 at ``size`` (H, W), and whether it is grey."""
    try:
        with Image.open(path) as im:
            im.load()
            # Phone photos store their rotation in EXIF; apply it so the picture is upright.
            im = ImageOps.exif_transpose(im)
            grey = im.mode in _GREY_MODES
            im = im.convert("L").convert("RGB") if grey else im.convert("RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(
            f"{path}: not a readable image ({' '.join(str(e).split()) or type(e).__name__})"
        ) from None
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


def load_image_folder(
    root: str | os.PathLike, *, image_size: int | None = None, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Images in class sub-folders of ``root`` as a Dataset of uint8 (N, C, H, W) images.

    With ``root/train`` and ``root/test`` (or ``root/val``) that split is used and the classes come from
    ``train``; otherwise each class is split by ``seed`` with ``test_fraction`` of it held out for test
    (at least one image stays in train). Images are resized to ``image_size`` x ``image_size``, or to the
    size of the first image when ``image_size`` is None.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if image_size is not None and image_size < 1:
        raise UserError(f"image size must be a positive number of pixels, got {image_size}")
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

    size = (image_size, image_size) if image_size is not None else _first_size(train_items[0][0])
    train_arrays, train_labels, train_grey = _load(train_items, size)
    test_arrays, test_labels, test_grey = _load(test_items, size)
    grey = train_grey and test_grey
    train = _to_set(train_arrays, train_labels, grey, size)
    test = _to_set(test_arrays, test_labels, grey, size)
    return Dataset("folder", train, test, classes, source=str(root), extra=split)
