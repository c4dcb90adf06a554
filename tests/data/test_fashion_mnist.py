"""Fashion-MNIST and the IDX folder loader: search order, verification, download, and the real set."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from resdense.data import DATASETS, load_dataset
from resdense.data import fashion_mnist as fm
from resdense.data.fashion_mnist import (
    CLASSES,
    FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    cache_dir,
    load_fashion_mnist,
    load_idx_dataset,
)
from resdense.data.idx import write_idx_images, write_idx_labels
from resdense.errors import DataError, UserError

from .conftest import N_TEST, N_TRAIN, REAL_DIR, assert_one_line, serve, write_idx_set

MakeSet = Callable[..., Path]


def test_classes_and_files() -> None:
    assert CLASSES[0] == "T-shirt/top" and CLASSES[9] == "Ankle boot" and len(CLASSES) == 10
    assert FILES == (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )


def test_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == tmp_path / "xdg-cache" / "resdense" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert cache_dir() == Path.home() / ".cache" / "resdense" / "fashion-mnist"


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_data_dir(tmp_path: Path, fake_fmnist: MakeSet, gz: bool) -> None:
    folder = fake_fmnist(tmp_path / "d", gz=gz)
    ds = load_fashion_mnist(folder, download=False)
    assert ds.name == "fashion-mnist" and ds.classes == list(CLASSES) and ds.source == str(folder)
    assert ds.train.images.shape == (N_TRAIN, 1, 28, 28) and ds.test.images.shape == (N_TEST, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.train.labels.tolist() == [i % 10 for i in range(N_TRAIN)]


def test_search_order(tmp_path: Path, fake_fmnist: MakeSet, monkeypatch: pytest.MonkeyPatch) -> None:
    given, env, debian = tmp_path / "given", tmp_path / "env", tmp_path / "debian"
    for folder in (given, env, cache_dir(), debian):
        fake_fmnist(folder)
    monkeypatch.setenv("RESDENSE_DATA", str(env))
    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    assert load_fashion_mnist(given, download=False).source == str(given)
    assert load_fashion_mnist(download=False).source == str(env)
    monkeypatch.delenv("RESDENSE_DATA")
    assert load_fashion_mnist(download=False).source == str(cache_dir())
    for p in cache_dir().iterdir():
        p.unlink()
    assert load_fashion_mnist(download=False).source == str(debian)
    # A given folder without the files is skipped, not an error.
    (tmp_path / "empty").mkdir()
    assert load_fashion_mnist(tmp_path / "empty", download=False).source == str(debian)


def test_fashion_mnist_sub_folder(
    tmp_path: Path, fake_fmnist: MakeSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fmnist(tmp_path / "root" / "fashion-mnist")
    assert load_fashion_mnist(tmp_path / "root", download=False).source == str(
        tmp_path / "root" / "fashion-mnist"
    )
    monkeypatch.setenv("RESDENSE_DATA", str(tmp_path / "root"))
    assert load_fashion_mnist(download=False).source == str(tmp_path / "root" / "fashion-mnist")


def test_broken_given_folder_is_an_error_not_skipped(
    tmp_path: Path, fake_fmnist: MakeSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fmnist(cache_dir())  # a good copy further down the search order
    given = fake_fmnist(tmp_path / "given")
    bad = given / f"{TEST_LABELS}.gz"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataError) as e:
        load_fashion_mnist(given)
    assert_one_line(e.value, str(bad), "gzip")


def test_partial_given_folder_names_missing_file(tmp_path: Path, fake_fmnist: MakeSet) -> None:
    given = fake_fmnist(tmp_path / "given")
    (given / f"{TRAIN_LABELS}.gz").unlink()
    with pytest.raises(DataError) as e:
        load_fashion_mnist(given)
    assert_one_line(e.value, str(given / TRAIN_LABELS), "file not found")


def test_given_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_fashion_mnist(tmp_path / "nope")
    assert_one_line(e.value, str(tmp_path / "nope"), "folder not found")


def test_not_found_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_fashion_mnist(download=False)
    assert_one_line(e.value, str(cache_dir()), "download is off")


def _rewrite(folder: Path, stem: str, tensor: torch.Tensor) -> Path:
    path = folder / f"{stem}.gz"
    (write_idx_images if "images" in stem else write_idx_labels)(path, tensor)
    return path


def _bad_labels(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[5] = 10
    return t


def _one_pixel_off(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[0, 0, 0] ^= 1
    return t


# How each bad case alters the set, which file it breaks and what the message says.
BAD_SETS = {
    "wrong-count": (TRAIN_IMAGES, lambda t: t[:-1], "wrong count (119 images, expected 120)"),
    "wrong-size": (TEST_IMAGES, lambda t: t[:, :27, :27], "wrong image size (27x27, expected 28x28)"),
    "label-out-of-range": (TRAIN_LABELS, _bad_labels, "label out of range (10 at index 5"),
    "checksum": (TEST_IMAGES, _one_pixel_off, "checksum mismatch"),
}


@pytest.mark.parametrize("case", list(BAD_SETS))
def test_bad_sets(tmp_path: Path, fake_fmnist: MakeSet, case: str) -> None:
    stem, alter, fragment = BAD_SETS[case]
    folder = tmp_path / "d"
    tensors = write_idx_set(folder)
    bad = _rewrite(folder, stem, alter(tensors[stem]))
    with pytest.raises(DataError) as e:
        load_fashion_mnist(folder)
    assert_one_line(e.value, str(bad), fragment)


def test_real_checksums_reject_synthetic_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_set(tmp_path / "d")
    monkeypatch.setattr(fm, "COUNTS", {"train": N_TRAIN, "test": N_TEST})
    with pytest.raises(DataError) as e:
        load_fashion_mnist(tmp_path / "d")
    assert_one_line(e.value, TRAIN_IMAGES, "checksum mismatch", "expected c59f468a2f672dc8")


def test_download_end_to_end(
    http_dir: tuple[Path, str], fake_fmnist: MakeSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, url = http_dir
    fake_fmnist(served)
    monkeypatch.setenv("RESDENSE_FASHION_MNIST_URL", url)
    ds = load_fashion_mnist(progress=False)
    assert ds.source == str(cache_dir()) and ds.extra["downloaded_from"] == url
    assert ds.train.images.shape == (N_TRAIN, 1, 28, 28)
    assert sorted(p.name for p in cache_dir().iterdir()) == sorted(f"{s}.gz" for s in FILES)
    assert [p.name for p in cache_dir().parent.iterdir()] == ["fashion-mnist"]  # staging folder gone
    # The second time it comes from the cache, with no server needed.
    monkeypatch.setenv("RESDENSE_FASHION_MNIST_URL", "http://127.0.0.1:9/")
    again = load_fashion_mnist(progress=False)
    assert again.source == str(cache_dir()) and torch.equal(again.test.images, ds.test.images)


def test_download_failing_verification_leaves_cache_empty(
    http_dir: tuple[Path, str], fake_fmnist: MakeSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, url = http_dir
    tensors = write_idx_set(served)
    _rewrite(served, TRAIN_LABELS, _bad_labels(tensors[TRAIN_LABELS]))
    monkeypatch.setenv("RESDENSE_FASHION_MNIST_URL", url)
    with pytest.raises(DataError) as e:
        load_fashion_mnist(progress=False)
    assert_one_line(e.value, f"{url}{TRAIN_LABELS}.gz", "label out of range")
    assert not cache_dir().exists()
    assert not any(cache_dir().parent.iterdir())


def test_download_404(
    http_dir: tuple[Path, str], fake_fmnist: MakeSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, url = http_dir
    fake_fmnist(served)
    (served / f"{TEST_IMAGES}.gz").unlink()
    monkeypatch.setenv("RESDENSE_FASHION_MNIST_URL", url)
    with pytest.raises(DataError) as e:
        load_fashion_mnist(progress=False)
    assert_one_line(e.value, f"{url}{TEST_IMAGES}.gz", "HTTP 404")
    assert not cache_dir().exists() and not any(cache_dir().parent.iterdir())


def test_load_idx_dataset_any_size(tmp_path: Path) -> None:
    write_idx_set(tmp_path, n_train=33, n_test=7, size=(12, 9), num_classes=3, gz=False)
    ds = load_idx_dataset(tmp_path)
    assert ds.name == "idx" and ds.classes == ["0", "1", "2"]
    assert ds.train.images.shape == (33, 1, 12, 9) and ds.test.images.shape == (7, 1, 12, 9)
    assert load_idx_dataset(tmp_path, classes=["a", "b", "c", "d"]).classes == ["a", "b", "c", "d"]
    with pytest.raises(DataError) as e:
        load_idx_dataset(tmp_path, classes=["a", "b"])
    assert_one_line(e.value, TRAIN_LABELS, "label out of range (2 at index 2")


def test_load_idx_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_idx_dataset(tmp_path / "nope")
    assert_one_line(e.value, "nope", "folder not found")
    tensors = write_idx_set(tmp_path, size=(8, 8))
    write_idx_labels(tmp_path / f"{TEST_LABELS}.gz", tensors[TEST_LABELS][:-1])
    with pytest.raises(DataError) as e:
        load_idx_dataset(tmp_path)
    assert_one_line(e.value, f"{TEST_LABELS}.gz", "wrong count (39 labels for the 40 images")
    write_idx_set(tmp_path, size=(8, 8))
    write_idx_images(tmp_path / f"{TEST_IMAGES}.gz", tensors[TEST_IMAGES][:, :7])
    with pytest.raises(DataError) as e:
        load_idx_dataset(tmp_path)
    assert_one_line(e.value, f"{TEST_IMAGES}.gz", "7x8", "8x8")
    os.remove(tmp_path / f"{TRAIN_IMAGES}.gz")
    with pytest.raises(DataError) as e:
        load_idx_dataset(tmp_path)
    assert_one_line(e.value, TRAIN_IMAGES, "file not found")


def test_load_dataset_dispatch(tmp_path: Path, fake_fmnist: MakeSet) -> None:
    assert DATASETS == ("fashion-mnist", "cifar10", "idx", "folder")
    fake_fmnist(tmp_path / "f")
    assert load_dataset("fashion-mnist", tmp_path / "f", download=False).name == "fashion-mnist"
    assert load_dataset("Fashion_MNIST", tmp_path / "f", download=False).name == "fashion-mnist"
    assert load_dataset("idx", tmp_path / "f").name == "idx"
    with pytest.raises(UserError) as e:
        load_dataset("svhn")  # an unknown name (cifar10 was one until it became a choice)
    assert_one_line(e.value, "svhn", "fashion-mnist, cifar10, idx, folder")
    with pytest.raises(UserError, match="data folder"):
        load_dataset("folder")


# The real set, from Debian's fashion-mnist package (CI installs it).
needs_real = pytest.mark.skipif(not REAL_DIR.exists(), reason=f"{REAL_DIR} not installed")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """Loaded once, found by the default search (Debian's folder), timed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RESDENSE_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(fm, "DEBIAN_DIR", REAL_DIR)
        start = time.perf_counter()
        ds = load_fashion_mnist(download=False)
        return ds, time.perf_counter() - start


@needs_real
def test_real_set(real) -> None:
    ds, seconds = real
    assert ds.source == str(REAL_DIR)
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.train.images.dtype == torch.uint8
    assert int(ds.train.labels.min()) == 0 and int(ds.train.labels.max()) == 9
    assert ds.train.labels.bincount().tolist() == [6000] * 10
    assert ds.test.labels.bincount().tolist() == [1000] * 10
    assert seconds < 5.0  # about 0.5 s on a slow machine; generous for shared CI


@needs_real
def test_real_set_raw_files_and_download(
    real, tmp_path: Path, http_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decompressed copies load the same (content checksums), and so does a download of Debian's .gz."""
    ds, _ = real
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / TEST_LABELS).write_bytes(gzip.decompress((REAL_DIR / f"{TEST_LABELS}.gz").read_bytes()))
    for stem in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES):
        os.symlink(REAL_DIR / f"{stem}.gz", raw / f"{stem}.gz")
    assert torch.equal(load_fashion_mnist(raw).test.labels, ds.test.labels)
    with serve(REAL_DIR) as url:
        monkeypatch.setenv("RESDENSE_FASHION_MNIST_URL", url)
        downloaded = load_fashion_mnist(progress=False)
    assert downloaded.source == str(cache_dir())
    assert torch.equal(downloaded.train.images, ds.train.images)
