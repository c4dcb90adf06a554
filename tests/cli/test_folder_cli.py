"""Image folders from the command line: `resdense convert`, bad files, --in-memory, --skip-bad-images, and
decompression bombs given to `predict`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resdense.data import load_dataset
from tests.train.conftest import QUIET, TINY, assert_one_line_error

from .conftest import cli

KINDS = ("empty file", "not an image", "decompression bomb", "truncated")


@pytest.fixture(scope="module")
def png_dir(tmp_path_factory) -> Path:
    """The shared tiny IDX set written as a PNG folder by `resdense convert` (read-only)."""
    from tests.train.conftest import shared_idx_dir

    idx = shared_idx_dir(tmp_path_factory)
    out = tmp_path_factory.mktemp("png") / "folder"
    subprocess.run(
        [sys.executable, "-m", "resdense", "convert", str(out), "--dataset", "idx", "--data-dir", str(idx)],
        check=True,
        capture_output=True,
    )
    return out


def folder_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        *TINY,
        *QUIET,
        "--dataset",
        "folder",
        "--data-dir",
        data,
        "--out",
        out,
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--schedule",
        "constant",
        "--no-tta-flip",
        "--resize",
        "28",
        *extra,
    ]


def test_convert_writes_the_idx_set_as_pngs(png_dir: Path, idx_dir: Path, capsys, tmp_path: Path) -> None:
    idx = load_dataset("idx", idx_dir)
    assert sorted(p.name for p in png_dir.iterdir()) == ["test", "train"]
    assert sorted(p.name for p in (png_dir / "train").iterdir()) == ["0", "1", "2", "3"]
    folder = load_dataset("folder", png_dir)
    assert len(folder.train) == len(idx.train) and len(folder.test) == len(idx.test)
    # every image unchanged (PNG is lossless), in its class's folder, in the original order within a class
    for split in ("train", "test"):
        a, b = getattr(idx, split), getattr(folder, split)
        for k in range(4):
            assert torch.equal(a.images[a.labels == k], b.images[b.labels == k])
    code, _, err = cli(capsys, "convert", png_dir, "--dataset", "idx", "--data-dir", idx_dir)
    assert_one_line_error(code, err, str(png_dir), "--force", command="convert")
    assert not list(png_dir.parent.glob(".*partial")), "a temporary folder was left behind"


def test_both_paths_give_the_same_run(png_dir: Path, tmp_path: Path, capsys) -> None:
    runs = {}
    for mode in ("yes", "no"):
        out = tmp_path / mode
        code, stdout, err = cli(capsys, *folder_args(png_dir, out, "--in-memory", mode, "--workers", "1"))
        assert code == 0, err
        runs[mode] = out
    files = {m: sorted(p.name for p in out.iterdir()) for m, out in runs.items()}
    assert files["yes"] == files["no"]
    from safetensors.torch import load_file

    a, b = (load_file(str(runs[m] / "model.safetensors")) for m in ("yes", "no"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same training, bit for bit (images at --resize)
    strip = lambda p: [line.split(",")[:5] for line in (p / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert strip(runs["yes"]) == strip(runs["no"])


def bad_file(root: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = root / "train" / "1" / f"bad-{kind.replace(' ', '-')}.png"
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "not an image":
        path.write_text("hello")
    elif kind == "decompression bomb":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)  # a small bomb: over the lowered limit
        Image.fromarray(np.zeros((60, 60), np.uint8)).save(path)
    else:
        data = (root / "train" / "1" / next(p.name for p in (root / "train" / "1").iterdir())).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_bad_file_is_one_line(png_dir, tmp_path, capsys, monkeypatch, kind) -> None:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(png_dir, root)
    path = bad_file(root, kind, monkeypatch)
    code, _, err = cli(capsys, *folder_args(root, tmp_path / "run"))
    assert_one_line_error(code, err, "1 bad image file", f"1 {kind}", str(path), "--skip-bad-images")
    # left out on request, and listed in the run folder
    code, out, err = cli(capsys, *folder_args(root, tmp_path / "run", "--skip-bad-images", "--epochs", "1"))
    assert code == 0, err
    assert "left out 1 bad image file (listed in" in out
    listed = (tmp_path / "run" / "bad_images.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(f"{path}\t{kind}")
    # and evaluated without them: the figure is the run's own
    code, out, err = cli(capsys, "evaluate", tmp_path / "run", "--json", "--out", tmp_path / "eval")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # exactly: the run reports its saved model's figure, as evaluate scores it
    assert json.loads(out)["accuracy"] == summary["test_accuracy"]


def test_predict_refuses_a_decompression_bomb_in_one_line(
    finished_run, tmp_path, capsys, monkeypatch
) -> None:
    run, _ = finished_run
    bomb = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(bomb)
    for limit in (40 * 40, 70 * 70):  # over twice the limit (Pillow raises), and between 1x and 2x (warns)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        code, _, err = cli(capsys, "predict", run, bomb)
        assert code == 1
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("resdense predict: error:"), err
        assert str(bomb) in lines[0] and "decompression bomb" in lines[0] and "Traceback" not in err


def test_in_memory_options_are_checked(idx_dir, tmp_path, capsys) -> None:
    base = ["train", *TINY, *QUIET, "--dataset", "idx", "--data-dir", idx_dir, "--out", tmp_path / "r"]
    code, _, err = cli(capsys, *base, "--in-memory", "no")
    assert_one_line_error(code, err, "--in-memory no", "image folders")
    code, _, err = cli(capsys, *base, "--workers", "-1")
    assert_one_line_error(code, err, "--workers")
