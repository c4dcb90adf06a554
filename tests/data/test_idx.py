"""IDX reading and writing: round trips, gzip told apart by content, and every kind of broken file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from resdense.data.idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    read_idx_bytes,
    read_idx_images,
    read_idx_labels,
    write_idx_images,
    write_idx_labels,
)
from resdense.errors import DataError

from .conftest import assert_one_line


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randint(0, 256, (30, 7, 5), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path: Path, images: torch.Tensor, gz: bool) -> None:
    labels = torch.arange(30) % 4
    write_idx_images(tmp_path / "im", images, gzip=gz)
    write_idx_labels(tmp_path / "lb", labels, gzip=gz)
    assert ((tmp_path / "im").read_bytes()[:2] == b"\x1f\x8b") == gz
    got = read_idx_images(tmp_path / "im", count=30, size=(7, 5))
    assert got.dtype == torch.uint8 and got.shape == (30, 1, 7, 5)
    assert torch.equal(got[:, 0], images)
    got_labels = read_idx_labels(tmp_path / "lb", count=30, num_classes=4)
    assert got_labels.dtype == torch.int64 and torch.equal(got_labels, labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["im", "lb"]  # no temp files left behind


def test_gzip_detected_by_content_not_name(tmp_path: Path, images: torch.Tensor) -> None:
    write_idx_images(tmp_path / "raw.gz", images, gzip=False)
    write_idx_images(tmp_path / "packed", images, gzip=True)
    assert torch.equal(read_idx_images(tmp_path / "raw.gz"), read_idx_images(tmp_path / "packed"))


def test_write_accepts_one_channel_and_rejects_bad_input(tmp_path: Path, images: torch.Tensor) -> None:
    write_idx_images(tmp_path / "a", images[:, None])
    assert torch.equal(read_idx_images(tmp_path / "a")[:, 0], images)
    with pytest.raises(TypeError):
        write_idx_images(tmp_path / "b", images.float())
    with pytest.raises(ValueError):
        write_idx_images(tmp_path / "b", images.view(30, 1, 7, 5).expand(30, 3, 7, 5))
    with pytest.raises(ValueError):
        write_idx_labels(tmp_path / "b", torch.tensor([0, 256]))
    assert not (tmp_path / "b").exists()


def test_empty_image_file_of_zero_images(tmp_path: Path) -> None:
    write_idx_images(tmp_path / "e", torch.empty((0, 4, 4), dtype=torch.uint8))
    assert read_idx_images(tmp_path / "e").shape == (0, 1, 4, 4)


def _raw_images(n: int = 3, h: int = 4, w: int = 4, declared: int | None = None, magic: int = IMAGES_MAGIC):
    header = struct.pack(">IIII", magic, n if declared is None else declared, h, w)
    return header + bytes(n * h * w)


BAD_IMAGE_FILES = {
    "missing": (None, "file not found"),
    "empty": (b"", "empty file"),
    "short-header": (_raw_images()[:10], "truncated"),
    "truncated": (_raw_images()[:-5], "truncated"),
    "truncated-gz": (gzip.compress(_raw_images(200))[:-30], "gzip"),
    "corrupt-gz": (b"\x1f\x8b" + b"\x00" * 40, "gzip"),
    "wrong-magic": (_raw_images(magic=LABELS_MAGIC), "wrong magic number 0x00000801"),
    "garbage": (b"<html>404 not found</html>" * 3, "wrong magic"),
    "declared-too-few": (_raw_images(3, declared=2), "wrong count in header"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGE_FILES))
def test_bad_image_files(tmp_path: Path, case: str) -> None:
    content, fragment = BAD_IMAGE_FILES[case]
    path = tmp_path / f"{case}-idx3-ubyte"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_idx_images(path)
    assert_one_line(e.value, str(path), fragment)


def test_not_gzip_file_named_gz(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"<!DOCTYPE html><title>Not Found</title>")
    with pytest.raises(DataError) as e:
        read_idx_bytes(path)
    assert_one_line(e.value, str(path), "not a gzip file")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        read_idx_images(tmp_path)
    assert_one_line(e.value, str(tmp_path), "folder")


def test_required_count_and_size(tmp_path: Path, images: torch.Tensor) -> None:
    write_idx_images(tmp_path / "im.gz", images)
    with pytest.raises(DataError) as e:
        read_idx_images(tmp_path / "im.gz", count=31)
    assert_one_line(e.value, "im.gz", "wrong count (30 images, expected 31)")
    with pytest.raises(DataError) as e:
        read_idx_images(tmp_path / "im.gz", size=(28, 28))
    assert_one_line(e.value, "im.gz", "wrong image size (7x5, expected 28x28)")


def test_labels_checks(tmp_path: Path) -> None:
    path = tmp_path / "lb.gz"
    write_idx_labels(path, torch.tensor([0, 3, 9, 10, 2]))
    assert read_idx_labels(path, num_classes=11).tolist() == [0, 3, 9, 10, 2]
    with pytest.raises(DataError) as e:
        read_idx_labels(path, num_classes=10)
    assert_one_line(e.value, str(path), "label out of range (10 at index 3")
    with pytest.raises(DataError) as e:
        read_idx_labels(path, count=6)
    assert_one_line(e.value, str(path), "wrong count (5 labels, expected 6)")
    raw = tmp_path / "short"
    raw.write_bytes(struct.pack(">II", LABELS_MAGIC, 10) + bytes(4))
    with pytest.raises(DataError) as e:
        read_idx_labels(raw)
    assert_one_line(e.value, str(raw), "truncated")
    with pytest.raises(DataError) as e:
        read_idx_images(path)  # a label file where images belong
    assert_one_line(e.value, str(path), "marks an IDX label file")
