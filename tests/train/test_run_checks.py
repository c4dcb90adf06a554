"""Issue 37's training cases, each at its owner: runs that cannot be scored and a batch of one through batch
norm refused in the plan (``train.plan.settle``), options a resume cannot take refused (``cli/train.py``),
divergence stopped (``train.trainer``), ``train()`` called wrongly named in one line before any folder is
made (``train.run``)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from resdense.cli import main
from resdense.data import load_dataset
from resdense.errors import UserError
from resdense.train import Callback, TrainConfig, Trainer, train

from .conftest import tiny_config, train_args


def one_line(code: int, err: str, *parts: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and lines and "Traceback" not in err, err
    for p in parts:
        assert p in lines[-1], lines[-1]
    return lines[-1]


def write_folder(root, per_class: int, classes: int = 2) -> None:
    """Class folders with no train/ and test/: the test split is carved from them (none of 2 per class)."""
    for k in range(classes):
        d = root / f"c{k}"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (28, 28), 40 * k + i).save(d / f"{i}.png")


def test_a_folder_without_test_images_is_refused_before_training(capsys, tmp_path) -> None:
    """Two images per class, no test split: it trained, then ended in ZeroDivisionError."""
    write_folder(tmp_path / "data", per_class=2)
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--model", "resnet20"]
        + ["--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out)]
    )
    one_line(code, capsys.readouterr().err, "no test images", "could not be scored")
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint.pt").exists()


def test_batch_of_one_through_batch_norm_is_refused(capsys, idx_dir, tmp_path) -> None:
    """``--batch-size 1`` on resnet18 at 28 px: batch norm's ValueError mid-run."""
    out = tmp_path / "run"
    args = ["train", "--model", "resnet18", "--resize", "28", "--dataset", "idx", "--data-dir", str(idx_dir)]
    args += ["--batch-size", "1", "--train-subset", "8", "--epochs", "1", "--device", "cpu", "--no-progress"]
    code = main([*args, "--out", str(out)])
    one_line(code, capsys.readouterr().err, "--batch-size 1", "batch norm")


def test_resume_refuses_options_it_cannot_take(capsys, idx_dir, tmp_path) -> None:
    """``train --resume RUN --lr 5 --model resnet56`` ignored both."""
    out = tmp_path / "run"
    assert main(train_args(idx_dir, out, "--train-subset", "64", epochs=1)) == 0
    capsys.readouterr()
    code = main(["train", "--resume", str(out), "--lr", "5", "--model", "resnet56", "--no-progress"])
    one_line(code, capsys.readouterr().err, "--lr", "--model", "cannot change a resumed run")
    # what a resume takes still works
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress", "--device", "cpu"]) == 0


def test_a_loss_grown_by_orders_of_magnitude_stops_the_run(idx_dir, tmp_path) -> None:
    """A finite loss of 1e19 ended "done" with the model saved."""
    cfg = tiny_config(tmp_path / "run", idx_dir, epochs=2)
    trainer = Trainer(cfg, load_dataset("idx", idx_dir), tmp_path / "run", progress=False)
    real = trainer.loss
    trainer.loss = lambda logits, y: real(logits, y) + 1e19  # the same gradients, an absurd loss
    with pytest.raises(UserError, match="diverged"):
        trainer.fit(callbacks=[])
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_train_called_wrongly_names_the_mistake(idx_dir, tmp_path) -> None:
    with pytest.raises(TypeError, match=r"a TrainConfig, got str.*get_recipe\('fast'\)"):
        train("fast")
    with pytest.raises(TypeError, match="num_classes: the classes and channels come from the data"):
        train(TrainConfig(), num_classes=3)
    with pytest.raises(TypeError, match="epochs is a setting"):
        train(TrainConfig(), epochs=3)
    out = tmp_path / "run"
    with pytest.raises(TypeError, match="1 is a int, not a resdense Callback"):
        train(tiny_config(out, idx_dir), callbacks=[1])
    assert not out.exists()  # refused before the run folder was made
    with pytest.raises(TypeError, match="a list of Callback objects"):
        train(tiny_config(out, idx_dir), callbacks=Callback())
    assert not out.exists()


def test_the_loss_check_leaves_ordinary_runs_alone(idx_dir, tmp_path) -> None:
    result = train(tiny_config(tmp_path / "ok", idx_dir), progress=False)
    assert torch.isfinite(torch.tensor(result.history[-1]["train_loss"]))
