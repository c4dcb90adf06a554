"""--tensorboard: every epoch's scalars once, read back with TensorBoard's own reader, also after resumes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from resdense.cli import main
from resdense.rundir import read_metrics
from resdense.train import TrainConfig, train
from resdense.train.callbacks import Callback

from .conftest import assert_one_line_error, main_quiet, train_args

TAGS = {
    "loss/train": "train_loss",
    "accuracy/train": "train_acc",
    "accuracy/test": "test_acc",
    "lr": "lr",
    "images_per_s": "images_per_s",
}


def read_events(run: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def assert_every_epoch_once(run: Path, epochs: int) -> EventAccumulator:
    acc = read_events(run)
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    assert set(TAGS) <= set(acc.Tags()["scalars"]), acc.Tags()
    for tag, column in TAGS.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == list(range(1, epochs + 1)), (tag, [e.step for e in events])
        # the logged values are the run's own (metrics.csv rounds some; TensorBoard keeps float32)
        assert [e.value for e in events] == pytest.approx([r[column] for r in rows], rel=1e-5), tag
    return acc


def test_tensorboard_logs_scalars_graph_and_images_and_resume_appends(idx_dir, tmp_path):
    run = tmp_path / "tb"
    code, out = main_quiet(train_args(idx_dir, run, "--tensorboard", epochs=2))
    assert code == 0, out
    acc = assert_every_epoch_once(run, 2)
    assert acc.Tags()["graph"], "no model graph"
    assert acc.Tags()["images"] == ["samples"]
    assert len(acc.Images("samples")) == 1
    # the resumed run keeps logging (its config says tensorboard) into the same folder, without repeats
    code, out = main_quiet(["train", "--resume", str(run), "--epochs", "3", "--no-progress"])
    assert code == 0, out
    assert_every_epoch_once(run, 3)
    assert len(read_events(run).Images("samples")) == 1  # logged once, not again by the resumed run


class KeepCheckpoint(Callback):
    """Copies the checkpoint written at ``epoch``: restoring it afterwards stands for a run killed just after
    TensorBoard logged the next epoch but before that epoch's checkpoint was written."""

    def __init__(self, epoch: int, to: Path):
        self.epoch, self.to = epoch, to

    def on_epoch_end(self, trainer, row):
        if row["epoch"] == self.epoch:
            shutil.copy(trainer.out_dir / "checkpoint.pt", self.to)


def test_a_resume_after_a_crash_purges_epochs_logged_after_the_checkpoint(idx_dir, tmp_path):
    run = tmp_path / "crashed"
    cfg = TrainConfig(
        model="resnet20",
        model_options={"widths": [4, 8, 16]},
        dataset="idx",
        data_dir=str(idx_dir),
        epochs=3,
        batch_size=32,
        lr=0.05,
        schedule="constant",
        tta_flip=False,
        device="cpu",
        out=str(run),
        tensorboard=True,
    )
    train(cfg, progress=False, callbacks=[KeepCheckpoint(1, tmp_path / "epoch1.pt")])
    assert [e.step for e in read_events(run).Scalars("accuracy/test")] == [1, 2, 3]
    shutil.copy(tmp_path / "epoch1.pt", run / "checkpoint.pt")  # the "crash": epochs 2 and 3 logged, lost
    train(cfg, resume=run, progress=False)
    assert_every_epoch_once(run, 3)


def test_tensorboard_switched_on_at_resume(idx_dir, tmp_path):
    run = tmp_path / "late"
    assert main_quiet(train_args(idx_dir, run, epochs=1))[0] == 0
    assert not (run / "tensorboard").exists()
    assert (
        main_quiet(["train", "--resume", str(run), "--epochs", "2", "--tensorboard", "--no-progress"])[0] == 0
    )
    acc = read_events(run)
    assert [e.step for e in acc.Scalars("accuracy/test")] == [2]  # from where it was switched on
    assert acc.Tags()["graph"]


def test_tensorboard_missing_is_a_one_line_error(idx_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    code = main(train_args(idx_dir, tmp_path / "r", "--tensorboard", epochs=1))
    line = assert_one_line_error(code, capsys.readouterr().err, "--tensorboard", "resdense[tensorboard]")
    assert "pip install" in line
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
