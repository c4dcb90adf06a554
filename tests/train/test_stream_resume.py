"""A streamed run killed with SIGKILL and resumed ends bit for bit as the uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resdense.data import load_dataset
from resdense.data.convert import write_image_folder
from resdense.rundir import load_checkpoint

from .conftest import TINY, run_cli, write_learnable_set
from .test_resume import COMPARED, assert_same_tensors, kill_mid_run, metric_rows, safetensors, start

EPOCHS = 3


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("stream-resume")
    idx = write_learnable_set(work / "idx", n_train=512, n_test=64, seed=5)
    write_image_folder(load_dataset("idx", idx), work / "png")
    return work / "png"


def args(data_dir: Path, out: Path) -> list[str]:
    return [
        "train",
        "--recipe",
        "fast",
        *TINY,
        "--dataset",
        "folder",
        "--data-dir",
        str(data_dir),
        "--in-memory",
        "no",
        "--workers",
        "1",
        "--out",
        str(out),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "32",
        "--augment",
        "flip-crop",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--no-progress",
    ]


def test_killed_streaming_run_resumes_bit_identical(png_folder: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    reference = start(args(png_folder, full))
    broken = tmp_path / "broken"
    try:
        done = kill_mid_run(args(png_folder, broken), broken)
    finally:
        _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    assert 1 <= done < EPOCHS
    assert json.loads((full / "config.json").read_text())["in_memory"] == "no"  # it really streamed
    assert not (broken / "model.safetensors").exists()

    res = run_cli("train", "--resume", str(broken), "--no-progress", timeout=300)
    assert res.returncode == 0, res.stderr
    ckpt_full, ckpt_broken = (
        load_checkpoint(full / "checkpoint.pt"),
        load_checkpoint(broken / "checkpoint.pt"),
    )
    assert ckpt_full["epoch"] == ckpt_broken["epoch"] == EPOCHS
    assert_same_tensors(ckpt_full["model"], ckpt_broken["model"])
    assert_same_tensors(safetensors(full), safetensors(broken))
    assert [[r[k] for k in COMPARED] for r in metric_rows(full)] == [
        [r[k] for k in COMPARED] for r in metric_rows(broken)
    ]
