"""Issue 37's output cases, command by command: every ``--out``/``--plot`` checked before any work (one
function, ``utils.outputs.check_output``), nothing overwritten without ``--force``, names that are not UTF-8
or hold a newline or a formula written safely, a subset evaluation beside the full one, a run folder given as
the images warned."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resdense.utils.outputs import read_csv_cell, unescape_name

from .conftest import cli

W = ["--weights", "fashion-mnist"]


def image(path: Path, shade: int = 200) -> Path:
    """A light 28x28 PNG with a little noise (a data set of flat images has no spread to normalise by)."""
    noise = np.random.default_rng(len(str(path))).integers(0, 40, (28, 28))
    Image.fromarray((shade - noise).clip(0, 255).astype(np.uint8)).save(path, format="PNG")
    return path


def bytes_name(folder: Path, raw: bytes) -> Path:
    """A file whose name is ``raw`` (not UTF-8, a newline, a formula), as os.fsdecode gives it back."""
    p = Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))
    return image(p)


def one_line(code: int, err: str, *parts: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for p in parts:
        assert p in lines[0], lines[0]


@pytest.fixture
def img(tmp_path: Path) -> Path:
    return image(tmp_path / "shoe.png")


# -- checked before any work -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["predict", *W, "IMG", "--out", "DIR"], "a folder"),
        (["predict", *W, "IMG", "--out", "FILE/p.csv"], "is a file, not a folder"),
        (["predict", *W, "IMG", "--out", ""], "empty"),
        (["predict", *W, "IMG", "--out", "p.txt"], "expected a .csv or .json file name"),
        (["embed", *W, "IMG", "--out", "out/"], "a folder"),
        (["embed", *W, "IMG", "--out", "FILE/f"], "is a file, not a folder"),
        (["explain", *W, "IMG", "--out", "FILE"], "a file, not a folder"),
        (["inspect", "resnet18", "--image", "IMG", "--out", "DIR"], "a folder"),
        (["inspect", "resnet18", "--image", "IMG", "--out", "f.jpg"], "expected a .png file name"),
        (["evaluate", *W, "--out", "FILE"], "a file, not a folder"),
        (["compare", "DIR", "--plot", "x.txt"], "expected a .png file name"),
        (["compare", "DIR", "--plot", "DIR"], "a folder"),
        (["export", "--weights", "fashion-mnist", "--format", "onnx", "--out", "DIR"], "folder"),
        (["study", "identity", "--quick", "--out", "FILE"], "a file, not a folder"),
        (["convert", "FILE", "--dataset", "idx", "--data-dir", "DIR"], "OUT FILE: a file, not a folder"),
        (["convert", "FILE/sub", "--dataset", "idx", "--data-dir", "DIR"], "is a file, not a folder"),
    ],
)
def test_outputs_checked_before_any_work(capsys, tmp_path: Path, img: Path, argv, says) -> None:
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_text("kept")
    before = sorted(p.name for p in tmp_path.iterdir())
    os.chdir(tmp_path)
    code, _, err = cli(capsys, *[str(img) if a == "IMG" else a for a in argv])
    one_line(code, err, says)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert (tmp_path / "FILE").read_text() == "kept"


def test_predict_and_export_keep_an_existing_out_without_force(capsys, tmp_path: Path, img: Path) -> None:
    out = tmp_path / "p.csv"
    out.write_text("kept")
    code, _, err = cli(capsys, "predict", *W, img, "--out", out)
    one_line(code, err, "exists; use --force")
    assert out.read_text() == "kept"
    code, _, err = cli(capsys, "predict", *W, img, "--out", out, "--force")
    assert code == 0 and "shoe.png" in out.read_text()
    onnx = tmp_path / "m.onnx"
    onnx.write_text("kept")
    code, _, err = cli(capsys, "export", "--weights", "fashion-mnist", "--format", "onnx", "--out", onnx)
    one_line(code, err, "exists; use --force")
    assert onnx.read_text() == "kept"


# -- names -----------------------------------------------------------------------------------------------


NASTY = [b"caf\xe9.png", b"=HYPERLINK(1).png", b"-2+3.png", b"@SUM.png", b"two\nlines.png"]


def test_predict_csv_and_json_take_any_name(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    files = sorted(bytes_name(folder, raw) for raw in NASTY)
    out = tmp_path / "p.csv"
    code, stdout, err = cli(capsys, "predict", *W, folder, "--out", out)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8"))))  # valid UTF-8
    assert sorted(read_csv_cell(r["path"]) for r in rows) == sorted(map(str, files))
    assert not any(r["path"].startswith(("=", "+", "-", "@")) for r in rows)  # spreadsheet-safe
    assert len(stdout.splitlines()) == len(files)  # one printed line per image, the newline escaped
    code, stdout, err = cli(capsys, "predict", *W, folder, "--json")
    assert code == 0 and "caf\\\\xe9.png" in stdout


def test_skip_bad_images_and_embed_take_any_name(capsys, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    files = sorted(bytes_name(folder, raw) for raw in NASTY)
    bad = Path(os.fsdecode(os.path.join(os.fsencode(folder), b"bro\xffken.png")))
    bad.write_bytes(b"not a png")
    out = tmp_path / "f"
    code, _, err = cli(capsys, "embed", *W, folder, "--out", out)
    assert code == 1 and "bro\\xffken.png" in err  # the bad file said, escaped
    lines = (tmp_path / "f.txt").read_text("utf-8").splitlines()
    assert len(lines) == np.load(tmp_path / "f.npy").shape[0] == len(files)
    assert [unescape_name(x) for x in lines] == [str(f) for f in files]


def test_evaluate_mistakes_csv_is_spreadsheet_safe(capsys, tmp_path: Path) -> None:
    """A folder test set whose class and file names start with a formula and are not UTF-8."""
    root = tmp_path / "data"
    for split in ("train", "test"):
        for cls in (b"=cmd", b"caf\xe9"):
            d = Path(os.fsdecode(os.path.join(os.fsencode(root / split), cls)))
            d.mkdir(parents=True)
            for i in range(3):
                bytes_name(d, b"@x%d.png" % i)
    run = tmp_path / "run"
    tiny = ["--model", "resnet20", "--model-options", '{"widths": [4, 4, 4]}', "--resize", "16"]
    quick = ["--epochs", "1", "--device", "cpu", "--no-progress", "--out", run]
    code, _, err = cli(capsys, "train", "--dataset", "folder", "--data-dir", root, *tiny, *quick)
    assert code == 0, err
    code, _, err = cli(capsys, "evaluate", run, "--out", tmp_path / "ev")
    assert code == 0, err
    text = (tmp_path / "ev" / "mistakes.csv").read_bytes().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    cells = [r[k] for r in rows for k in ("file", "true", "predicted")]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    assert {read_csv_cell(r["true"]) for r in rows} <= {"=cmd", os.fsdecode(b"caf\xe9")}


# -- beside, not over --------------------------------------------------------------------------------------


def test_evaluate_a_subset_writes_beside_the_full_test(capsys, tmp_path: Path, finished_run) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    assert cli(capsys, "evaluate", run)[0] == 0
    full = (run / "mistakes.csv").read_bytes()
    code, stdout, err = cli(capsys, "evaluate", run, "--test-subset", "10")
    assert code == 0, err
    assert (run / "mistakes.csv").read_bytes() == full  # the full test's files kept
    sub = run / "test-subset-10"
    assert (sub / "mistakes.csv").exists() and (sub / "confusion.png").exists()
    assert str(sub) in stdout  # and said where they went


def test_a_run_folder_given_as_the_images_is_warned(capsys, tmp_path: Path, finished_run) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    code, _, err = cli(capsys, "predict", run / "model.safetensors", run)
    assert code == 0 and f"{run}: a run folder; its figures are classified as images" in err


def test_explain_takes_any_name(capsys, tmp_path: Path) -> None:
    f = bytes_name(tmp_path, b"caf\xe9\n=x.png")
    code, stdout, err = cli(capsys, "explain", *W, f, "--out", tmp_path / "o")
    assert code == 0, err
    assert "caf\\xe9\\n=x.png: predicted" in stdout and (tmp_path / "o" / "explain.png").exists()
