"""What the serving commands take as input: image files and folders of them, read a batch at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..data.folder import IMAGE_EXTENSIONS, list_images
from ..data.photo import read_image
from ..errors import UserError

__all__ = ["image_paths", "read_batches"]


def image_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Every input as files: a file stays (whatever its name: a bad one is reported when read); a folder
    gives its image files, recursively, sorted, hidden ones left out. A folder without images, or a path
    that does not exist, is a one-line :class:`UserError`."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = list_images(p)
            if not files:
                raise UserError(f"{p}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            out += files
        else:
            out.append(p)  # missing or unreadable: an error entry when read, the others go on
    return out


def read_batches(
    paths: Sequence[Path], in_chans: int, batch_size: int
) -> Iterator[tuple[list[int], list[torch.Tensor], list[tuple[int, str]]]]:
    """``paths`` a batch at a time, decoded only then (a folder of any size is never held whole): per
    batch the indices of the files read, their images (uint8 (1, C, H, W), each its own size) and
    ``(index, message)`` for those that could not be read."""
    for start in range(0, len(paths), batch_size):
        good, images, bad = [], [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                images.append(read_image(paths[i], in_chans))
                good.append(i)
            except UserError as e:
                bad.append((i, str(e)))
        yield good, images, bad
