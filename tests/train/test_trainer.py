"""The training loop: it learns, it is reproducible, it stops cleanly on a diverging loss; the Python API."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from resdense.cli import main
from resdense.data import load_dataset
from resdense.models import create_model
from resdense.rundir import load_checkpoint, read_metrics
from resdense.train import Trainer, TrainResult, train
from resdense.train import schedule as S
from resdense.train import trainer as trainer_module

from .conftest import NUM_CLASSES, assert_one_line_error, tiny_config, train_args


def weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def test_learning_happens(finished_run):
    """On a learnable set the test accuracy ends far above chance (1/4) and the loss falls."""
    out, _ = finished_run
    rows = read_metrics(out / "metrics.csv")
    assert rows[-1]["test_acc"] >= 0.8, rows
    assert rows[-1]["train_acc"] >= 0.8, rows
    assert rows[-1]["train_loss"] < 0.6 * rows[0]["train_loss"], rows


def test_python_api_returns_summary_and_history(idx_dir, tmp_path):
    """What a notebook reader calls: ``train(TrainConfig(...), dataset=...)``."""
    dataset = load_dataset("idx", idx_dir)
    result = train(tiny_config(tmp_path / "api", idx_dir, epochs=2), dataset=dataset, progress=False)
    assert isinstance(result, TrainResult)
    assert result.out_dir == tmp_path / "api"
    assert [r["epoch"] for r in result.history] == [1, 2]
    for r in result.history:
        assert {"train_loss", "train_acc", "test_acc", "lr", "seconds", "images_per_s"} <= set(r)
    s = result.summary
    assert s["test_accuracy"] == result.history[-1]["test_acc"]
    assert s["epochs"] == 2 and s["model"] == "resnet20"
    assert json.loads((tmp_path / "api" / "summary.json").read_text()) == s
    assert (tmp_path / "api" / "model.safetensors").exists()


def test_seeded_runs_are_reproducible(idx_dir, tmp_path):
    dataset = load_dataset("idx", idx_dir)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = tiny_config(tmp_path / name, idx_dir, seed=seed, augment="flip-crop")
        runs[name] = train(cfg, dataset=dataset, progress=False)
    wa, wb, wc = (weights(tmp_path / n) for n in "abc")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert [r["train_loss"] for r in runs["a"].history] == [r["train_loss"] for r in runs["b"].history]
    # and the seed matters: another seed, other weights
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())


def test_nan_loss_stops_the_run_with_one_line(capsys, idx_dir, tmp_path):
    out = tmp_path / "run"
    code = main(train_args(idx_dir, out, "--lr", "1e30", "--train-subset", "64", epochs=2))
    _, err = capsys.readouterr()
    line = assert_one_line_error(code, err, "training loss became", "epoch 1", "--lr")
    assert "nan" in line or "inf" in line
    assert not (out / "model.safetensors").exists()  # no diverged model presented as a result
    assert not (out / "checkpoint.pt").exists()  # and nothing good to keep


def test_nan_loss_keeps_the_last_good_checkpoint(capsys, idx_dir, tmp_path, monkeypatch):
    """The loss diverges in epoch 2: the checkpoint after epoch 1 is kept, whole and loadable."""
    real_lr_at = S.lr_at

    def exploding_lr(cfg, step, total_steps, steps_per_ep):
        return 1e30 if step >= steps_per_ep else real_lr_at(cfg, step, total_steps, steps_per_ep)

    monkeypatch.setattr(trainer_module, "lr_at", exploding_lr)
    out = tmp_path / "run"
    code = main(train_args(idx_dir, out, "--train-subset", "64", epochs=3))
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, "training loss became", "epoch 2", str(out))

    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1]
    model = create_model("resnet20", num_classes=NUM_CLASSES, in_chans=1, widths=(4, 8, 16))
    model.load_state_dict(ckpt["model"])
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    assert math.isfinite(ckpt["history"][0]["train_loss"])


def test_progressive_resizing_trains_small_and_evaluates_full(idx_dir, tmp_path):
    """The model sees the small side in the first epoch and the full side in the last, and every
    evaluation at the full side."""
    seen: list[tuple[bool, int]] = []
    cfg = tiny_config(tmp_path / "prog", idx_dir, epochs=3, progressive_from=16, progressive_until=0.67)
    dataset = load_dataset("idx", idx_dir)
    trainer = Trainer(cfg, dataset, tmp_path / "prog", progress=False)
    trainer.model.register_forward_pre_hook(lambda m, a: seen.append((m.training, a[0].shape[-1])))
    trainer.fit(callbacks=[])
    train_sides = [s for t, s in seen if t]
    assert train_sides[0] == 16 and train_sides[-1] == 28, train_sides
    assert {s for t, s in seen if not t} == {28}


def test_progressive_resizing_bad_side_is_one_line(idx_dir, tmp_path, capsys):
    code = main(train_args(idx_dir, tmp_path / "bad", "--progressive-from", "4"))
    assert_one_line_error(code, capsys.readouterr().err, "--progressive-from")


def test_unscored_epochs_leave_their_cells_empty(idx_dir, tmp_path, capsys):
    """An epoch without a score has no test_acc in the history, an empty cell in metrics.csv, no number on
    its console line; the summary and the curves use the scored epochs."""
    out = tmp_path / "sparse"
    result = train(tiny_config(out, idx_dir, epochs=3, eval_every=2), progress=False)
    assert ["test_acc" in r for r in result.history] == [False, True, True]
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[1].split(",")[3] == "" and lines[2].split(",")[3] != "", lines
    rows = read_metrics(out / "metrics.csv")
    assert "test_acc" not in rows[0] and rows[2]["test_acc"] == pytest.approx(result.summary["test_accuracy"])
    assert result.summary["best_test_accuracy"] == max(r["test_acc"] for r in result.history[1:])
    epoch_lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch ")]
    assert "test acc" not in epoch_lines[0] and "test acc" in epoch_lines[1], epoch_lines
    assert (out / "curves.png").stat().st_size > 0


def test_bad_eval_every_is_one_line(idx_dir, tmp_path, capsys):
    code = main(train_args(idx_dir, tmp_path / "bad", "--eval-every", "-1"))
    assert_one_line_error(code, capsys.readouterr().err, "--eval-every")


def test_scoring_has_a_progress_bar(idx_dir, tmp_path, monkeypatch):
    """Scoring took 155 of a short run's 323 s in silence: it gets a bar, advanced batch by batch."""
    bars = []

    class Recorder:
        def __init__(self, total, desc="", enabled=True, **_):
            self.total, self.desc, self.done = total, desc, []
            bars.append(self)

        def due(self):
            return True

        def update(self, done, postfix=""):
            self.done.append(done)

        def close(self):
            pass

    monkeypatch.setattr(trainer_module, "ProgressBar", Recorder)
    cfg = tiny_config(tmp_path / "run", idx_dir, eval_batch_size=16, test_subset=40)
    t = Trainer(cfg, load_dataset("idx", idx_dir), tmp_path / "run", progress=True)
    t.evaluate()
    scoring = [b for b in bars if b.desc == "scoring"]
    assert (
        len(scoring) == 1 and scoring[0].total == 3 and scoring[0].done == [1, 2, 3]
    )  # 40 images, 16 a batch


def test_steps_csv_draws_training_error_against_iterations(idx_dir, tmp_path):
    """steps.csv splits each epoch into windows of steps whose images add up to the epoch's own figures."""
    dataset = load_dataset("idx", idx_dir)
    out = tmp_path / "steps"
    # 128 images at batch 8: 16 steps an epoch, windows of max(1, 16 // CURVE_POINTS) = 1 step
    result = train(tiny_config(out, idx_dir, epochs=2, batch_size=8), dataset=dataset, progress=False)
    from resdense.rundir import RunDir

    steps = RunDir(out).read_steps()
    assert [s["step"] for s in steps] == list(range(1, 33))
    assert [s["epoch"] for s in steps] == [1] * 16 + [2] * 16
    for epoch, row in enumerate(result.history, 1):
        window = [s for s in steps if s["epoch"] == epoch]
        # every window holds 8 images: the windows' mean is the epoch's (to the CSV's 6 digits)
        assert sum(s["train_acc"] for s in window) / 16 == pytest.approx(row["train_acc"], abs=1e-5)
        assert sum(s["train_loss"] for s in window) / 16 == pytest.approx(row["train_loss"], rel=1e-4)
    # the windows are the steps' own: not all alike, and each a multiple of 1/8
    assert len({s["train_acc"] for s in steps}) > 1
    assert all(abs(s["train_acc"] * 8 - round(s["train_acc"] * 8)) < 1e-4 for s in steps)


def test_steps_csv_windows_when_an_epoch_has_many_steps(idx_dir, tmp_path):
    dataset = load_dataset("idx", idx_dir)
    out = tmp_path / "many"
    train(tiny_config(out, idx_dir, batch_size=2), dataset=dataset, progress=False)  # 64 steps
    from resdense.rundir import RunDir
    from resdense.train.trainer import CURVE_POINTS

    steps = [s["step"] for s in RunDir(out).read_steps()]
    window = 64 // CURVE_POINTS
    assert steps == [*range(window, 64, window), 64] or steps == list(range(window, 65, window))
