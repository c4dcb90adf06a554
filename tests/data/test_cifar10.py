"""CIFAR-10 from its binary release, on files made here in that format (one label byte, then the 32x32 red,
green and blue planes): read from a folder, from the tarball (MD5 checked), downloaded, never the pickles."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from resdense.data import cifar10, load_dataset
from resdense.data.dataset import ImageSet
from resdense.errors import DataError

PER_FILE = 8  # records in each of the six files here (the release has 10,000)


@pytest.fixture(autouse=True)
def small_files(monkeypatch, tmp_path):
    monkeypatch.setattr(cifar10, "PER_FILE", PER_FILE)
    monkeypatch.delenv("RESDENSE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv(cifar10.URL_ENV, "http://127.0.0.1:9/nothing-here")


def fake_split(n: int, seed: int) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g).to(torch.uint8)
    return ImageSet(images, torch.arange(n) % 10)


@pytest.fixture
def splits():
    return fake_split(5 * PER_FILE, 0), fake_split(PER_FILE, 1)


def test_records_are_label_then_channel_planar_32x32(tmp_path):
    # one record written byte by byte as the release documents it: label, 1024 red, 1024 green, 1024 blue
    record = bytes([7]) + bytes(range(256)) * 4 + bytes([1]) * 1024 + bytes([2]) * 1024
    s = cifar10.read_batches([record * PER_FILE], ["x.bin"])
    assert s.images.dtype == torch.uint8 and s.images.shape == (PER_FILE, 3, 32, 32)
    assert s.labels.dtype == torch.int64 and s.labels.tolist() == [7] * PER_FILE
    assert s.images[0, 0, 0, 5] == 5 and s.images[0, 0, 8, 3] == (8 * 32 + 3) % 256  # red, row-major
    assert (s.images[0, 1] == 1).all() and (s.images[0, 2] == 2).all()


def test_reads_the_folder_and_the_tarball(tmp_path, splits, monkeypatch):
    train, test = splits
    cifar10.write_binary_release(tmp_path / "bin", train, test)
    ds = load_dataset("cifar10", tmp_path / "bin", download=False)
    assert ds.name == "cifar10" and ds.classes == list(cifar10.CLASSES) and ds.image_shape == (3, 32, 32)
    assert torch.equal(ds.train.images, train.images) and torch.equal(ds.train.labels, train.labels)
    assert torch.equal(ds.test.images, test.images) and torch.equal(ds.test.labels, test.labels)
    # the same through the dataset's other spelling, and from the .bin files given directly
    assert torch.equal(load_dataset("CIFAR-10", tmp_path / "bin" / cifar10.FOLDER).test.images, test.images)

    archive = cifar10.write_binary_release(tmp_path / "tar", train, test, archive=True)
    with pytest.raises(DataError, match="checksum mismatch") as e:
        load_dataset("cifar10", tmp_path / "tar", download=False)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    ds = load_dataset("cifar10", tmp_path / "tar", download=False)
    assert torch.equal(ds.train.images, train.images) and torch.equal(ds.test.labels, test.labels)


def test_broken_files_are_one_line_errors(tmp_path, splits):
    folder = cifar10.write_binary_release(tmp_path, *splits)
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-5])
    with pytest.raises(DataError, match="test_batch.bin.*truncated"):
        load_dataset("cifar10", tmp_path, download=False)
    data = bytearray((folder / "data_batch_1.bin").read_bytes())
    (folder / "test_batch.bin").write_bytes(data)
    data[cifar10.RECORD] = 10
    (folder / "data_batch_1.bin").write_bytes(bytes(data))
    with pytest.raises(DataError, match="label 10 out of range"):
        load_dataset("cifar10", tmp_path, download=False)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin: file not found"):
        load_dataset("cifar10", tmp_path, download=False)


def test_the_pickled_release_is_refused(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04not read")
    with pytest.raises(DataError, match="pickled"):
        load_dataset("cifar10", tmp_path, download=False)


def test_not_found_offline_says_where_it_looked(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="download is off") as e:
        load_dataset("cifar10", tmp_path / "empty", download=False)
    assert str(tmp_path / "empty") in str(e.value)


def test_downloaded_checked_and_unpacked_into_the_cache(tmp_path, splits, monkeypatch):
    train, test = splits
    archive = cifar10.write_binary_release(tmp_path / "server", train, test, archive=True)
    monkeypatch.setenv(cifar10.URL_ENV, archive.as_uri())  # urllib reads file:// as it reads https://
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("cifar10", progress=False)
    cache = cifar10.cache_dir()
    assert not (cache / cifar10.FOLDER).exists()  # nothing kept of a file that failed its check
    assert [p.name for p in cache.parent.iterdir()] == []  # no staging folder left behind either
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    ds = load_dataset("cifar10", progress=False)
    assert ds.extra["downloaded_from"] == archive.as_uri()
    assert sorted(p.name for p in (cache / cifar10.FOLDER).iterdir()) == sorted(cifar10.FILES)
    # the next load reads the cache, offline
    again = load_dataset("cifar10", download=False)
    assert torch.equal(again.train.images, ds.train.images) and again.source == str(cache)


def test_a_cifar10_run_trains_and_evaluates_with_flip_crop(tmp_path, splits, capsys):
    """3x32x32 through a CIFAR net, the flip-crop augmentation and evaluate (with its new metrics)."""
    from resdense.cli import main
    from resdense.rundir import RunDir

    cifar10.write_binary_release(tmp_path / "data", *splits)
    run = tmp_path / "run"
    argv = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--out", str(run)]
    argv += ["--model", "resnet20", "--model-options", '{"widths": [4, 8, 16]}', "--epochs", "1"]
    argv += ["--batch-size", "8", "--augment", "flip-crop", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    config, summary = RunDir(run).read_config(), RunDir(run).read_summary()
    assert config["dataset"] == "cifar10" and config["plan"]["input_size"] == 32
    assert summary["top5_accuracy"] >= 0 and set(summary["per_class"]) == set(cifar10.CLASSES)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--out", str(tmp_path / "figs")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n"] == PER_FILE and evaluated["accuracy"] == summary["test_accuracy"]
    assert (
        evaluated["classes"] == list(cifar10.CLASSES)
        and evaluated["top5_accuracy"] == summary["top5_accuracy"]
    )
