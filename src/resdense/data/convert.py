"""Write an in-memory data set (Fashion-MNIST, any IDX set) as an image folder: ``train/`` and ``test/``
with one sub-folder of PNG files per class, the layout ``--dataset folder`` reads (in memory or streamed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..utils.io import STORAGE_ERRNOS, file_mode, storage_error
from .dataset import Dataset, ImageSet

try:
    import fcntl
except ImportError:  # not POSIX: stale temporary folders are then left for the user
    fcntl = None

SPLITS = ("train", "test")


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


def _hold(folder: Path):
    """An open descriptor of ``folder`` holding an flock on it (None where there is no flock): a writer's
    temporary folder is locked while it is written, so a later convert knows a dead one's from a live one's."""
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_stale_partials(parent: Path, name: str) -> None:
    """The temporary folders of converts into ``parent / name`` that were killed (no one holds their lock)."""
    if fcntl is None:
        return
    for stale in parent.glob(f".{name}.*.partial"):
        try:
            fd = _hold(stale)
        except OSError:
            continue  # a live convert holds it
        try:
            shutil.rmtree(stale, ignore_errors=True)
        finally:
            os.close(fd)


def _check_replaceable(out: Path) -> None:
    """``--force`` replaces only what a convert wrote (train/ and test/)."""
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; --force replaces only an image folder")
    others = sorted(p.name for p in out.iterdir() if p.name not in SPLITS or not p.is_dir())
    if others:
        more = f" (and {len(others) - 3} more)" if len(others) > 3 else ""
        raise UserError(
            f"{out}: --force would delete files a convert did not write ({', '.join(others[:3])}"
            f"{more}); choose another folder"
        )


def write_image_folder(dataset: Dataset, out: str | os.PathLike, *, force: bool = False) -> dict[str, int]:
    """Write ``dataset`` under ``out`` as ``train/<class>/<index>.png`` and ``test/<class>/<index>.png``.

    The folder appears complete or not at all: it is written beside ``out`` (never inside it) under a
    temporary name and renamed. ``force`` replaces a folder a convert wrote, nothing else. Returns the number
    of images written per split.
    """
    out = Path(out).expanduser().resolve()  # "." has no name and no parent of its own: the real ones
    here = Path.cwd().resolve()
    if out in (here, *here.parents):  # replacing it would pull the folder from under the shell's feet
        raise UserError(
            f"{out}: is the current folder (or one above it); give the images a folder of their own, "
            "e.g. ./images"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise UserError(f"{out}: exists and is not an empty folder; pass --force to replace it")
        _check_replaceable(out)
    names = [class_folder_name(c) for c in dataset.classes]
    if len(set(names)) != len(names):
        raise UserError(f"class names {dataset.classes} give the same folder name twice")
    tmp, fd = None, None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out.parent, out.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        fd = _hold(tmp)
        os.chmod(tmp, file_mode(folder=True))  # mkdtemp makes it private (0700); the result is a usual folder
        for split, images in zip(SPLITS, (dataset.train, dataset.test)):
            for name in names:
                (tmp / split / name).mkdir(parents=True)
            _write_split(images, [Path(split) / n for n in names], tmp)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except OSError as e:
        if e.errno in STORAGE_ERRNOS:
            raise storage_error(out.parent, e, out.name) from None
        raise
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and tmp.exists():
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    return {"train": len(dataset.train), "test": len(dataset.test)}
