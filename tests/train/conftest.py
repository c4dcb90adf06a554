"""Fixtures for the training tests: isolation from the user's data and a tiny learnable IDX data set."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resdense.cli import main
from resdense.data import fashion_mnist
from resdense.data.fashion_mnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from resdense.data.idx import write_idx_images, write_idx_labels

NUM_CLASSES = 4
SIZE = 28
# A tiny, fast model: resnet20 with 4/8/16 channels (about 17k parameters).
TINY = ["--model", "resnet20", "--model-options", '{"widths": [4, 8, 16]}']
QUIET = ["--device", "cpu", "--no-progress"]


@contextlib.contextmanager
def isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No test sees the user's cache, $RESDENSE_DATA, Debian's copy or the internet."""
    monkeypatch.delenv("RESDENSE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("RESDENSE_FASHION_MNIST_URL", "http://127.0.0.1:9/")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.chdir(tmp_path)  # a run without --out lands in tmp_path/runs, never in the repository
    yield


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with isolation(tmp_path, monkeypatch):
        yield


def pattern_images(labels: torch.Tensor, *, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Class k: a bright band in the k-th quarter of the rows, on noise; easy to learn, hard to guess."""
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    images = torch.randint(0, 90, (n, size, size), generator=g, dtype=torch.int64)
    band = size // NUM_CLASSES
    for i, k in enumerate(labels.tolist()):
        images[i, k * band : (k + 1) * band] += 150
    return images.clamp(0, 255).to(torch.uint8)


def write_learnable_set(folder: Path, *, n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """The four IDX files of a small set whose classes differ by where a bright band lies."""
    g = torch.Generator().manual_seed(seed + 1)
    train_labels = torch.randint(0, NUM_CLASSES, (n_train,), generator=g)
    test_labels = torch.arange(n_test) % NUM_CLASSES
    folder.mkdir(parents=True, exist_ok=True)
    write_idx_images(folder / f"{TRAIN_IMAGES}.gz", pattern_images(train_labels, seed=seed))
    write_idx_labels(folder / f"{TRAIN_LABELS}.gz", train_labels)
    write_idx_images(folder / f"{TEST_IMAGES}.gz", pattern_images(test_labels, seed=seed + 2))
    write_idx_labels(folder / f"{TEST_LABELS}.gz", test_labels)
    return folder


# The CLI tests (tests/cli) share these through the shared_* functions: one data set and one finished run
# per session, whichever test asks first.
_SESSION: dict[str, object] = {}


def shared_idx_dir(factory: pytest.TempPathFactory) -> Path:
    """A learnable 4-class IDX set: 256 training and 64 test images of 28x28 (shared, read-only)."""
    if "idx_dir" not in _SESSION:
        _SESSION["idx_dir"] = write_learnable_set(factory.mktemp("data") / "idx")
    return _SESSION["idx_dir"]


@pytest.fixture(scope="session")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_idx_dir(tmp_path_factory)


def tiny_config(out: Path | None, data_dir: Path, **overrides):
    """A one-epoch run of a 4/8/16-channel ResNet-20 on 128 images of the toy IDX set, plain SGD: the
    training tests' settings, any of them overridden."""
    from resdense.train import TrainConfig

    base = dict(
        model="resnet20",
        model_options={"widths": (4, 8, 16)},
        dataset="idx",
        data_dir=str(data_dir),
        epochs=1,
        batch_size=32,
        lr=0.05,
        optimizer="sgd",
        schedule="constant",
        augment="none",
        tta_flip=False,
        device="cpu",
        seed=0,
        train_subset=128,
        out=None if out is None else str(out),
    )
    return TrainConfig(**{**base, **overrides})


def train_args(data_dir: Path, out: Path, *extra: str, epochs: int = 2) -> list[str]:
    """``resdense train`` arguments for the tiny model on ``data_dir``, batch 32, constant SGD."""
    return [
        "train",
        *TINY,
        *QUIET,
        "--dataset",
        "idx",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--schedule",
        "constant",
        "--augment",
        "none",
        "--no-tta-flip",
        "--progressive-from",
        "0",
        "--seed",
        "0",
        *extra,
    ]


def run_cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m resdense ARGV`` in a fresh process, one thread (so results do not depend on the machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "resdense", *argv], capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_one_line_error(code: int, err: str, *fragments: str, command: str = "train") -> str:
    """Exit 2, one line on stderr that starts ``resdense <command>: error:`` and names every fragment."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"resdense {command}: error:"), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


def main_quiet(argv: list[str]) -> tuple[int, str]:
    """``resdense.cli.main(argv)`` with stdout captured (for session fixtures, which cannot use capsys)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    return code, buf.getvalue()


def shared_finished_run(factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 3-epoch ``resdense train`` run of the tiny ResNet on the shared set: (run folder, stdout).

    Tests may add files (figures) to the folder but must not change what training wrote."""
    if "finished_run" not in _SESSION:
        out = factory.mktemp("runs") / "resnet-run"
        code, stdout = main_quiet(train_args(shared_idx_dir(factory), out, epochs=3))
        assert code == 0, stdout
        _SESSION["finished_run"] = (out, stdout)
    return _SESSION["finished_run"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return shared_finished_run(tmp_path_factory)
