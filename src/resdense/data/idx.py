"""IDX files, the MNIST format: read with content checks into uint8 tensors, and write (atomically).

An IDX file is a big-endian header (magic ``0x0000080D`` for unsigned bytes in ``D`` dimensions, then one
uint32 size per dimension) followed by the raw bytes. Files may be gzip-compressed; that is detected from
the content (gzip's magic bytes), not from the name, because copies in the wild are named either way.
Every problem is a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip as _gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..utils.io import atomic_path

GZIP_MAGIC = b"\x1f\x8b"
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: count, rows, columns
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: count
_KINDS = {IMAGES_MAGIC: "an IDX image file", LABELS_MAGIC: "an IDX label file"}


def _reason(e: BaseException) -> str:
    """An exception as one short line (some carry newlines, some carry nothing)."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


def read_idx_bytes(path: str | os.PathLike, *, name: str | None = None) -> bytes:
    """The decompressed content of an IDX file (gzip or raw, told apart by content).

    ``name`` is what error messages call the file (default: the path), e.g. the URL it came from.
    """
    path = Path(path)
    name = name or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a folder, not an IDX file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot read ({_reason(e)})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            return _gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{name}: corrupt or truncated gzip data ({_reason(e)})") from None
    if path.name.endswith(".gz") and raw[:3] != b"\x00\x00\x08":
        # A raw IDX file named .gz is fine; a .gz that is neither is most likely a failed download (HTML).
        raise DataError(f"{name}: not a gzip file (and not raw IDX data either)")
    return raw


def _check_header(data: bytes, magic: int, header_len: int, name: str) -> None:
    if not data:
        raise DataError(f"{name}: empty file")
    if len(data) >= 4:
        found = int.from_bytes(data[:4], "big")
        if found != magic:
            what = "image" if magic == IMAGES_MAGIC else "label"
            kind = f", which marks {_KINDS[found]}" if found in _KINDS else ""
            raise DataError(
                f"{name}: wrong magic number 0x{found:08x}{kind}; expected 0x{magic:08x} for an IDX {what} file"
            )
    if len(data) < header_len:
        raise DataError(
            f"{name}: truncated ({len(data)} bytes, shorter than the {header_len}-byte IDX header)"
        )


def _check_length(data: bytes, need: int, what: str, name: str) -> None:
    if len(data) < need:
        raise DataError(
            f"{name}: truncated (header declares {what}, {need} bytes, but the data holds {len(data)} bytes)"
        )
    if len(data) > need:
        raise DataError(
            f"{name}: wrong count in header (declares {what}, {need} bytes, "
            f"but the data holds {len(data) - need} bytes more)"
        )


def decode_idx_images(
    data: bytes, name: str, *, count: int | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Decompressed IDX image bytes -> uint8 (N, 1, H, W); checks magic, dimensions and length.

    ``count`` and ``size`` (H, W), when given, are required values.
    """
    _check_header(data, IMAGES_MAGIC, 16, name)
    n, h, w = struct.unpack(">III", data[4:16])
    if h == 0 or w == 0:
        raise DataError(f"{name}: bad image dimensions {h}x{w} in header")
    _check_length(data, 16 + n * h * w, f"{n} images of {h}x{w}", name)
    if count is not None and n != count:
        raise DataError(f"{name}: wrong count ({n} images, expected {count})")
    if size is not None and (h, w) != tuple(size):
        raise DataError(f"{name}: wrong image size ({h}x{w}, expected {size[0]}x{size[1]})")
    if n == 0:
        return torch.empty((0, 1, h, w), dtype=torch.uint8)
    # bytearray: torch wants a writable buffer; the copy costs milliseconds even for 47 MB.
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=16).view(n, 1, h, w)


def decode_idx_labels(
    data: bytes, name: str, *, count: int | None = None, num_classes: int | None = None
) -> torch.Tensor:
    """Decompressed IDX label bytes -> int64 (N,); checks magic, length and the range ``< num_classes``."""
    _check_header(data, LABELS_MAGIC, 8, name)
    (n,) = struct.unpack(">I", data[4:8])
    _check_length(data, 8 + n, f"{n} labels", name)
    if count is not None and n != count:
        raise DataError(f"{name}: wrong count ({n} labels, expected {count})")
    labels = torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64))
    if num_classes is not None and n:
        bad = (labels >= num_classes).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise DataError(
                f"{name}: label out of range ({int(labels[i])} at index {i}; "
                f"there are {num_classes} classes, 0..{num_classes - 1})"
            )
    return labels


def read_idx_images(
    path: str | os.PathLike, *, count: int | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Read an IDX image file (gzip or raw) as uint8 (N, 1, H, W)."""
    return decode_idx_images(read_idx_bytes(path), str(path), count=count, size=size)


def read_idx_labels(
    path: str | os.PathLike, *, count: int | None = None, num_classes: int | None = None
) -> torch.Tensor:
    """Read an IDX label file (gzip or raw) as int64 (N,)."""
    return decode_idx_labels(read_idx_bytes(path), str(path), count=count, num_classes=num_classes)


def _write(path: str | os.PathLike, payload: bytes, gzip: bool) -> Path:
    path = Path(path)
    if gzip:
        # mtime=0: the same tensors always give the same bytes (and checksums).
        payload = _gzip.compress(payload, compresslevel=6, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def _as_uint8(x, what: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype != torch.uint8:
        raise TypeError(f"{what} must be uint8, got {t.dtype}")
    return t.detach().cpu().contiguous()


def write_idx_images(path: str | os.PathLike, images, gzip: bool = True) -> Path:
    """Write uint8 images (N, H, W) or (N, 1, H, W) as an IDX file, gzip-compressed unless ``gzip=False``."""
    t = _as_uint8(images, "images")
    if t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 3:
        raise ValueError(f"IDX images must be (N, H, W) or (N, 1, H, W), got {tuple(t.shape)}")
    n, h, w = t.shape
    return _write(path, struct.pack(">IIII", IMAGES_MAGIC, n, h, w) + t.numpy().tobytes(), gzip)


def write_idx_labels(path: str | os.PathLike, labels, gzip: bool = True) -> Path:
    """Write labels (N,) in 0..255 as an IDX file, gzip-compressed unless ``gzip=False``."""
    t = torch.as_tensor(labels)
    if t.dim() != 1:
        raise ValueError(f"IDX labels must be (N,), got {tuple(t.shape)}")
    if t.dtype != torch.uint8:
        if t.dtype.is_floating_point or (len(t) and (int(t.min()) < 0 or int(t.max()) > 255)):
            raise ValueError("IDX labels must be integers in 0..255")
        t = t.to(torch.uint8)
    t = t.detach().cpu().contiguous()
    return _write(path, struct.pack(">II", LABELS_MAGIC, len(t)) + t.numpy().tobytes(), gzip)
