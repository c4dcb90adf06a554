"""load_image_folder: grey/colour, sizes, the seeded split, given train/test folders, and bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resdense.data import load_dataset
from resdense.data.folder import load_image_folder
from resdense.errors import DataError, UserError

from .conftest import assert_one_line

_rng = np.random.default_rng(0)


def _save(path: Path, size: tuple[int, int], mode: str = "L", fmt: str | None = None) -> Path:
    """A random image of ``size`` (W, H) in ``mode`` ("L" or "RGB"), format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(_rng.integers(0, 256, shape, dtype=np.uint8)).save(path, fmt)
    return path


def _make(root: Path, counts: dict[str, int], mode: str = "L", ext: str = ".png") -> Path:
    for c, n in counts.items():
        for i in range(n):
            _save(root / c / f"{i:03d}{ext}", (9 + i % 4, 7 + i % 3), mode)
    return root


def test_grey_pngs_of_odd_sizes(tmp_path: Path) -> None:
    root = _make(tmp_path / "r", {"cat": 5, "dog": 4})
    ds = load_image_folder(root)
    assert ds.name == "folder" and ds.classes == ["cat", "dog"] and ds.source == str(root)
    # The first image (cat/000.png) is 9 wide, 7 high: everything is resized to that.
    assert ds.train.images.shape[1:] == (1, 7, 9) and ds.train.images.dtype == torch.uint8
    assert len(ds.train) + len(ds.test) == 9
    # 20% held out per class, rounded: 1 of 5 cats, 1 of 4 dogs.
    assert ds.test.labels.tolist() == [0, 1] and ds.train.labels.bincount().tolist() == [4, 3]
    # The first image, already at the target size, is stored unchanged.
    first = np.asarray(Image.open(root / "cat" / "000.png"))
    all_images = torch.cat([ds.train.images, ds.test.images])
    assert any(torch.equal(img[0], torch.from_numpy(first.copy())) for img in all_images)


def test_colour_jpeg_and_grey_png_mix_is_rgb(tmp_path: Path) -> None:
    root = _make(tmp_path / "r", {"a": 3}, mode="L", ext=".png")
    _make(root, {"b": 3}, mode="RGB", ext=".jpg")
    _save(root / "b" / "x.bmp", (20, 11), "RGB")
    ds = load_image_folder(root, image_size=16, test_fraction=0.0)
    assert ds.train.images.shape == (7, 3, 16, 16) and len(ds.test) == 0
    assert ds.test.images.shape == (0, 3, 16, 16)
    grey = ds.train.images[ds.train.labels == 0]
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])


def test_rgb_files_with_grey_content_count_as_grey(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for c in ("a", "b"):
        for i in range(2):
            (root / c).mkdir(parents=True, exist_ok=True)
            grey = _rng.integers(0, 256, (5, 6), dtype=np.uint8)
            Image.fromarray(np.stack([grey] * 3, -1)).save(root / c / f"{i}.png")
    assert load_image_folder(root).train.images.shape[1] == 1


def test_split_is_deterministic_by_seed(tmp_path: Path) -> None:
    root = _make(tmp_path / "r", {"a": 10, "b": 10, "c": 1})
    one, two = load_image_folder(root, seed=3), load_image_folder(root, seed=3)
    assert torch.equal(one.test.images, two.test.images)
    assert one.extra == {"split": "random", "test_fraction": 0.2, "seed": 3}
    assert one.test.labels.bincount(minlength=3).tolist() == [2, 2, 0]  # c keeps its only image
    others = [load_image_folder(root, seed=s).test.images for s in range(4, 8)]
    assert any(not torch.equal(one.test.images, o) for o in others)
    # Nearly everything held out still leaves one training image per class.
    assert load_image_folder(root, test_fraction=0.99).train.labels.bincount().tolist() == [1, 1, 1]


@pytest.mark.parametrize("test_name", ["test", "val"])
def test_given_split(tmp_path: Path, test_name: str) -> None:
    root = tmp_path / "r"
    _make(root / "train", {"x": 3, "y": 2, "z": 2})
    _make(root / test_name, {"y": 2, "x": 1}, ext=".jpg")  # each split reads its classes in turn
    ds = load_dataset("folder", root, image_size=8)
    assert ds.classes == ["x", "y", "z"]
    assert ds.train.labels.tolist() == [0, 1, 2, 0, 1, 2, 0] and ds.test.labels.tolist() == [0, 1, 1]
    assert ds.test.images.shape == (3, 1, 8, 8)
    assert ds.extra["split"] == f"folders (train, {test_name})"


def test_ignores_other_files_and_hidden_folders(tmp_path: Path) -> None:
    root = _make(tmp_path / "r", {"a": 2, "b": 2})
    (root / "a" / "notes.txt").write_text("not an image")
    _save(root / ".thumbs" / "0.png", (4, 4))
    _save(root / "b" / ".hidden" / "0.png", (4, 4))
    _save(root / "b" / "nested" / "0.gif", (4, 4))
    ds = load_image_folder(root, test_fraction=0.0)
    assert ds.classes == ["a", "b"] and ds.train.labels.tolist() == [0, 1, 0, 1, 1]


def test_errors(tmp_path: Path) -> None:
    def err(root: Path, *fragments: str, **kw) -> None:
        with pytest.raises(DataError) as e:
            load_image_folder(root, **kw)
        assert_one_line(e.value, *fragments)

    err(tmp_path / "nope", str(tmp_path / "nope"), "folder not found")
    (tmp_path / "file.png").write_bytes(b"x")
    err(tmp_path / "file.png", "not a folder")
    (tmp_path / "empty").mkdir()
    err(tmp_path / "empty", str(tmp_path / "empty"), "no class folders")
    one = _make(tmp_path / "one", {"only": 3})
    err(one, str(one), "need at least 2 classes")
    no_images = _make(tmp_path / "noimg", {"a": 2})
    (no_images / "b").mkdir()
    (no_images / "b" / "readme.txt").write_text("hi")
    err(no_images, str(no_images / "b"), "no images")
    broken = _make(tmp_path / "broken", {"a": 2, "b": 2})
    (broken / "b" / "bad.jpg").write_bytes(b"this is not a jpeg")
    err(broken, str(broken / "b" / "bad.jpg"), "not a readable image")
    truncated = _make(tmp_path / "trunc", {"a": 2, "b": 2})
    data = (truncated / "a" / "001.png").read_bytes()
    (truncated / "a" / "001.png").write_bytes(data[: len(data) // 2])
    err(truncated, str(truncated / "a" / "001.png"), "not a readable image")
    unknown = tmp_path / "unknown"
    _make(unknown / "train", {"a": 1, "b": 1})
    _make(unknown / "test", {"c": 1})
    err(unknown, str(unknown / "test" / "c"), "not in")
    lone = _make(tmp_path / "lone" / "train", {"a": 1, "b": 1}).parent
    err(lone, str(lone), "no test or val folder")
    with pytest.raises(UserError):
        load_image_folder(tmp_path / "broken", test_fraction=1.0)
    with pytest.raises(UserError):
        load_image_folder(tmp_path / "broken", image_size=0)


def test_the_first_n_images_of_a_folder_come_from_every_class(tmp_path: Path) -> None:
    """Class folders are read in turn, not one after another: --train-subset N (the first N) of a folder
    samples every class; each class keeps its file-name order, and the split is what the seed made."""
    from resdense.data.folder import index_folder

    root = _make(tmp_path / "r", {"ant": 6, "bee": 4, "cow": 5})
    index = index_folder(root, test_fraction=0.0)
    assert [y for _, y in index.train] == [0, 1, 2] * 4 + [0, 2, 0]
    for c, name in enumerate(["ant", "bee", "cow"]):
        assert [p.name for p, y in index.train if y == c] == sorted(p.name for p in (root / name).iterdir())
    ds = load_image_folder(root, test_fraction=0.0)
    assert ds.train.subset(3).labels.tolist() == [0, 1, 2]
    given = _make(tmp_path / "g" / "train", {"ant": 3, "bee": 3}).parent
    _make(given / "test", {"ant": 2, "bee": 2})
    assert load_image_folder(given).test.subset(2).labels.tolist() == [0, 1]
