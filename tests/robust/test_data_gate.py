"""Issue 19, the data side: convert never deletes what it did not write (case 1) and leaves nothing behind
(case 12), evaluate on a folder matches classes by name (case 10), a streamed folder with TensorBoard trains
(case 11), and the minor ones (case 13): a broken metrics.csv in compare, a hidden class folder."""

from __future__ import annotations

import errno
import logging
import os
import shutil

import pytest
import torch

import resdense.data.convert as convert
from resdense.data import load_dataset
from resdense.rundir import RunDir
from resdense.serve.evaluate import evaluate
from resdense.serve.load import load_predictor
from tests.cli.conftest import cli
from tests.train.conftest import assert_one_line_error, train_args


def test_case1_convert_force_onto_the_current_folder_deletes_nothing(idx_dir, tmp_path, monkeypatch, capsys):
    here = tmp_path / "d"
    here.mkdir()
    (here / "precious.txt").write_text("keep me")
    monkeypatch.chdir(here)
    code, _, err = cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, "--force", ".")
    assert_one_line_error(code, err, "is the current folder", command="convert")
    assert (here / "precious.txt").read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, "--force", other)
    assert_one_line_error(code, err, "did not write (notes.txt)", command="convert")
    assert (other / "notes.txt").exists()


def test_case1_convert_into_the_current_folder_is_refused_and_a_new_one_gets_usual_permissions(
    idx_dir, tmp_path, monkeypatch, capsys
):
    here = tmp_path / "d"
    here.mkdir()
    monkeypatch.chdir(here)
    code, _, err = cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, ".")
    assert_one_line_error(code, err, "is the current folder", command="convert")
    assert list(here.iterdir()) == [] and not list(tmp_path.glob(".*.partial"))
    umask = os.umask(0o022)
    os.umask(umask)
    out = tmp_path / "fresh"
    code, _, err = cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, out)
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # was 0700 (mkdtemp's)
    assert sorted(p.name for p in out.iterdir()) == ["test", "train"]
    code, _, err = cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, "--force", out)
    assert code == 0, err  # --force replaces what a convert wrote
    assert not list(tmp_path.glob(".*.partial"))


def test_case12_convert_removes_a_killed_converts_partial_folder(idx_dir, tmp_path, capsys):
    stale = tmp_path / ".out.abc.partial"
    (stale / "train").mkdir(parents=True)
    code, _, err = cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, tmp_path / "out")
    assert code == 0, err
    assert not stale.exists()


def test_case6_convert_on_a_full_disk_is_one_line_and_leaves_nothing(idx_dir, tmp_path, monkeypatch, capsys):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(convert, "_write_split", full)  # the PNG writes meet the full disk
    code, _, err = cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, tmp_path / "out")
    assert_one_line_error(code, err, str(tmp_path), "No space left", command="convert")
    assert not list(tmp_path.glob(".out.*"))
    assert not (tmp_path / "out").exists()


def test_case10_evaluate_on_a_folder_matches_classes_by_name(finished_run, idx_dir, tmp_path, capsys):
    run = finished_run[0]
    folder = tmp_path / "png"
    assert cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, folder)[0] == 0
    for split in ("train", "test"):
        shutil.rmtree(folder / split / "0")  # the folder holds classes 1, 2, 3: its index 0 is the model's 1
    predictor = load_predictor(run)
    data = load_dataset("idx", str(idx_dir)).test
    keep = data.labels != 0
    right = predictor.predict_logits(data.images[keep]).argmax(1) == data.labels[keep]
    result = evaluate(run, dataset="folder", data_dir=str(folder), predictor=predictor)
    assert result.accuracy == pytest.approx(right.double().mean().item())  # by index it was another figure
    assert int(result.confusion[0].sum()) == 0
    code, out, err = cli(
        capsys, "evaluate", run, "--dataset", "folder", "--data-dir", folder, "--out", tmp_path
    )
    assert code == 0 and "scoring the 3 of the model's 4 classes" in err
    (folder / "test" / "9").mkdir()
    shutil.copytree(folder / "test" / "1", folder / "test" / "9", dirs_exist_ok=True)
    (folder / "train" / "9").mkdir()
    shutil.copytree(folder / "train" / "1", folder / "train" / "9", dirs_exist_ok=True)
    code, _, err = cli(
        capsys, "evaluate", run, "--dataset", "folder", "--data-dir", folder, "--out", tmp_path
    )
    assert_one_line_error(code, err, "classes 9 are not the model's", command="evaluate")


def test_case11_streamed_folder_with_tensorboard_trains(idx_dir, tmp_path, capsys):
    folder = tmp_path / "png"
    assert cli(capsys, "convert", "--dataset", "idx", "--data-dir", idx_dir, folder)[0] == 0
    args = [a if a != "idx" else "folder" for a in train_args(folder, tmp_path / "run", epochs=1)]
    code, _, err = cli(capsys, *args, "--in-memory", "no", "--tensorboard", "--workers", "0")
    assert code == 0, err
    assert list((tmp_path / "run" / RunDir.TENSORBOARD).glob("events.out.tfevents.*"))


def test_case13_compare_on_a_broken_metrics_file_is_one_line(run_copy, finished_run, capsys):
    (run_copy / RunDir.METRICS).write_text("epoch,train_loss\n1,abc\n")
    code, _, err = cli(capsys, "compare", finished_run[0], run_copy)
    assert_one_line_error(
        code, err, str(run_copy / RunDir.METRICS), "not a readable metrics file", command="compare"
    )


def test_case13_a_hidden_class_folder_is_said(tmp_path, caplog):
    from PIL import Image

    from resdense.data.folder import index_folder

    for name in ("bag", "..bag", "shoe"):
        (tmp_path / "f" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), i * 90).save(tmp_path / "f" / name / f"{i}.png")
    with caplog.at_level(logging.INFO, logger="resdense"):
        index = index_folder(tmp_path / "f")
    assert index.classes == ["bag", "shoe"]
    assert "left out hidden folder ..bag" in caplog.text
    assert torch  # (the folder's images are read by index_folder's callers)
