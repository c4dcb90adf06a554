"""Fixtures for the data tests: an isolated environment, small synthetic IDX sets and a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from resdense.data import fashion_mnist
from resdense.data.fashion_mnist import FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from resdense.data.idx import read_idx_bytes, write_idx_images, write_idx_labels

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
N_TRAIN, N_TEST = 120, 40


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the user's cache, $RESDENSE_DATA, Debian's copy or the internet."""
    monkeypatch.delenv("RESDENSE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # Port 9 (discard) on localhost refuses at once: an accidental download fails fast, offline.
    monkeypatch.setenv("RESDENSE_FASHION_MNIST_URL", "http://127.0.0.1:9/")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")


def write_idx_set(
    folder: Path,
    *,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    size: tuple[int, int] = (28, 28),
    num_classes: int = 10,
    gz: bool = True,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Write the four IDX files of a random set into ``folder``; returns the tensors written."""
    g = torch.Generator().manual_seed(seed)
    tensors = {
        TRAIN_IMAGES: torch.randint(0, 256, (n_train, *size), generator=g, dtype=torch.uint8),
        TRAIN_LABELS: torch.arange(n_train) % num_classes,
        TEST_IMAGES: torch.randint(0, 256, (n_test, *size), generator=g, dtype=torch.uint8),
        TEST_LABELS: torch.arange(n_test) % num_classes,
    }
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for stem, t in tensors.items():
        write = write_idx_images if "images" in stem else write_idx_labels
        write(folder / f"{stem}{suffix}", t, gzip=gz)
    return tensors


@pytest.fixture
def fake_fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Make small sets pass as Fashion-MNIST: counts and checksums are those of ``write_idx_set()``.

    Returns ``make(folder, gz=True)``, which writes such a set into ``folder``.
    """
    template = tmp_path / "template"
    write_idx_set(template)
    sums = {s: hashlib.sha256(read_idx_bytes(template / f"{s}.gz")).hexdigest() for s in FILES}
    monkeypatch.setattr(fashion_mnist, "SHA256", sums)
    monkeypatch.setattr(fashion_mnist, "COUNTS", {"train": N_TRAIN, "test": N_TEST})

    def make(folder: Path, gz: bool = True) -> Path:
        write_idx_set(folder, gz=gz)
        return folder

    return make


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 from a thread: yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    with serve(folder) as url:
        yield folder, url


class serve:
    """Context manager: serve ``folder`` on 127.0.0.1 (any free port), giving the base URL."""

    def __init__(self, folder: Path, handler: type = _QuietHandler):
        if issubclass(handler, http.server.SimpleHTTPRequestHandler):
            handler = functools.partial(handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def assert_one_line(err: BaseException, *fragments: str) -> str:
    """The error's message is one line and contains every fragment; returns it."""
    msg = str(err)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg
