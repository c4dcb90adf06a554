"""Write an in-memory data set (Fashion-MNIST, any IDX set) as an image folder: ``train/`` and ``test/``
with one sub-folder of PNG files per class, the layout ``--dataset folder`` reads (in memory or streamed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from .dataset import Dataset, ImageSet


def class_folder_name(name: str) -> str:
    """A class name as a folder name: path separators and leading dots would change the layout."""
    safe = name.replace("/", "-").replace("\\", "-").strip()
    return safe.lstrip(".") or "_"


def _write_split(images: ImageSet, folders: list[Path], out: Path) -> None:
    arrays = images.images.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, C)
    for i, (arr, label) in enumerate(zip(arrays, images.labels.tolist())):
        img = Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr))
        # the index in the split keeps the original order inside each class folder
        img.save(out / folders[label] / f"{i:05d}.png", compress_level=1)


def write_image_folder(dataset: Dataset, out: str | os.PathLike, *, force: bool = False) -> dict[str, int]:
    """Write ``dataset`` under ``out`` as ``train/<class>/<index>.png`` and ``test/<class>/<index>.png``.

    The folder appears complete or not at all: it is written beside ``out`` under a temporary name and
    renamed. Returns the number of images written per split.
    """
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UserError(f"{out}: exists and is not an empty folder; pass --force to replace it")
    names = [class_folder_name(c) for c in dataset.classes]
    if len(set(names)) != len(names):
        raise UserError(f"class names {dataset.classes} give the same folder name twice")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for split, images in (("train", dataset.train), ("test", dataset.test)):
            for name in names:
                (tmp / split / name).mkdir(parents=True)
            _write_split(images, [Path(split) / n for n in names], tmp)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"train": len(dataset.train), "test": len(dataset.test)}
