"""``resdense train`` on a tiny IDX set: the run folder it leaves, and its answers to bad options."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from resdense.rundir import load_checkpoint
from resdense.serve.load import load_trained
from resdense.train import TrainConfig
from tests.cli.conftest import cli
from tests.train.conftest import (
    assert_one_line_error,
    run_cli,
    train_args,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS_COLUMNS = ["epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds", "images_per_s"]
SUMMARY_KEYS = {
    "test_accuracy",
    "best_test_accuracy",
    "epochs",
    "seconds",
    "images_per_s",
    "params",
    "device",
}


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# -- the run folder -------------------------------------------------------------------------------------


def test_run_folder_config_has_every_setting_resolved(finished_run, idx_dir):
    out, _ = finished_run
    config = json.loads((out / "config.json").read_text())
    assert {f.name for f in fields(TrainConfig)} <= set(config)
    # the recipe's values, overridden by the options given, and nothing left open
    assert config["recipe"] == "fast"
    assert config["model"] == "resnet20" and config["model_options"] == {"widths": [4, 8, 16]}
    assert config["dataset"] == "idx" and config["data_dir"] == str(idx_dir)
    assert config["out"] == str(out)
    assert (config["epochs"], config["batch_size"], config["lr"], config["seed"]) == (3, 32, 0.05, 0)
    assert config["optimizer"] == "nesterov" and config["weight_decay"] == 5e-4  # from the recipe
    assert config["augment"] == "none" and config["tta_flip"] is False and config["device"] == "cpu"
    assert config["classes"] == ["0", "1", "2", "3"]
    pre = config["preprocess"]
    assert pre["size"] == 28 and pre["in_chans"] == 1
    assert len(pre["mean"]) == 1 and 0.1 < pre["mean"][0] < 0.6 and 0 < pre["std"][0] < 1  # measured
    assert None not in (config["out"], config["data_dir"], pre["size"])


def test_run_folder_metrics_summary_curves_weights_checkpoint(finished_run):
    out, _ = finished_run
    columns, rows = read_rows(out / "metrics.csv")
    assert columns == METRICS_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for r in rows:
        assert 0 <= float(r["train_acc"]) <= 1 and 0 <= float(r["test_acc"]) <= 1
        assert float(r["train_loss"]) > 0 and float(r["lr"]) == 0.05
        assert float(r["seconds"]) > 0 and float(r["images_per_s"]) > 0

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["epochs"] == 3
    assert summary["test_accuracy"] == pytest.approx(float(rows[-1]["test_acc"]), abs=1e-6)
    assert summary["best_test_accuracy"] == pytest.approx(max(float(r["test_acc"]) for r in rows), abs=1e-6)
    assert summary["params"] == 17_152 and summary["device"].startswith("cpu")
    assert summary["seconds"] > 0 and summary["images_per_s"] > 0

    png = (out / "curves.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 2000
    from PIL import Image

    with Image.open(out / "curves.png") as img:
        assert img.format == "PNG" and min(img.size) > 100

    model, spec = load_trained(out)
    assert spec.model == "resnet20" and spec.classes == ["0", "1", "2", "3"]
    assert sum(p.numel() for p in model.parameters()) == 17_152

    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 3
    for name, t in model.state_dict().items():
        assert torch.equal(t, ckpt["model"][name]), name
    # nothing half-written is left behind
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_final_line_gives_accuracy_throughput_and_time(finished_run):
    out, stdout = finished_run
    lines = stdout.strip().splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 3
    m = re.fullmatch(r"done: test accuracy ([\d.]+), ([\d,]+) images/s, ([\d.]+)s \((.+)\)", lines[-1])
    assert m, lines[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert float(m.group(1)) == pytest.approx(summary["test_accuracy"], abs=1e-4)
    assert int(m.group(2).replace(",", "")) == round(summary["images_per_s"])
    assert m.group(3) == f"{summary['seconds']:.1f}"  # the line prints the summary's seconds, rounded
    assert m.group(4) == str(out)


# -- one folder, one run ----------------------------------------------------------------------------------


def test_out_folder_with_a_run_is_refused_unless_resume_or_force(capsys, idx_dir, tmp_path):
    out = tmp_path / "run"
    small = ["--train-subset", "64"]
    code, _, err = cli(capsys, *train_args(idx_dir, out, *small, epochs=1))
    assert code == 0, err
    before = (out / "model.safetensors").read_bytes()

    code, _, err = cli(capsys, *train_args(idx_dir, out, *small, epochs=1))
    assert_one_line_error(code, err, str(out), "--resume", "--force")
    assert (out / "model.safetensors").read_bytes() == before  # untouched

    # --resume continues the run (to more epochs), --force starts it over
    code, stdout, err = cli(capsys, "train", "--resume", str(out), "--epochs", "2", "--no-progress")
    assert code == 0, err
    assert "resuming" in stdout and "after epoch 1" in stdout
    assert [int(r["epoch"]) for r in read_rows(out / "metrics.csv")[1]] == [1, 2]

    code, stdout, err = cli(capsys, *train_args(idx_dir, out, *small, "--force", epochs=1))
    assert code == 0, err
    assert [int(r["epoch"]) for r in read_rows(out / "metrics.csv")[1]] == [1]
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_resume_keeps_the_runs_own_epochs(capsys, idx_dir, tmp_path):
    """``--resume DIR`` without --epochs finishes the run as it was planned (not the recipe's 8 epochs)."""
    out = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(idx_dir, out, "--train-subset", "64", epochs=2))
    assert code == 0, err
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["epoch"], ckpt["history"] = 1, ckpt["history"][:1]  # as if it had stopped after epoch 1
    torch.save(ckpt, out / "checkpoint.pt")
    code, stdout, err = cli(capsys, "train", "--resume", str(out), "--no-progress")
    assert code == 0, err
    assert "after epoch 1" in stdout
    assert [int(r["epoch"]) for r in read_rows(out / "metrics.csv")[1]] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_resume_and_force_together_are_refused(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "--resume", str(tmp_path), "--force")
    assert_one_line_error(code, err, "--resume", "--force")


def test_resume_of_a_folder_without_checkpoint_is_refused(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "--resume", str(tmp_path), "--no-progress")
    assert_one_line_error(code, err, str(tmp_path), "checkpoint.pt")


# -- bad options: one line, exit 2, no traceback ----------------------------------------------------------


@pytest.mark.parametrize(
    "option, fragments",
    [
        (["--epochs", "0"], ["--epochs", "0"]),
        (["--lr", "-1"], ["--lr", "-1"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--label-smoothing", "1.5"], ["--label-smoothing"]),
        (["--model", "resnt20"], ["resnt20", "resnet20"]),  # close matches listed
        (["--model-options", '{"no_such_option": 1}'], ["no_such_option"]),
        # a batch larger than the training set is capped to it, and said (tests/cli/test_practitioner.py)
        (["--freeze-epochs", "1"], ["--freeze-epochs", "between 0 and --epochs - 1"]),  # a 1-epoch run
        (["--unfreeze-lr-mult", "0"], ["--unfreeze-lr-mult", "positive"]),
        (["--eval-batch-size", "0"], ["--eval-batch-size", "0"]),
        (["--crop-padding", "-3"], ["--crop-padding", "-3"]),
        (["--test-subset", "-1"], ["--test-subset", "-1"]),
    ],
)
def test_bad_options_are_one_line_errors(capsys, idx_dir, tmp_path, option, fragments):
    out = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(idx_dir, out, epochs=1), *option)
    assert_one_line_error(code, err, *fragments)
    assert not (out / "checkpoint.pt").exists()


def test_missing_data_dir_is_named(capsys, tmp_path):
    for dataset in ("idx", "fashion-mnist"):
        code, _, err = cli(
            capsys, "train", "--dataset", dataset, "--data-dir", "/nonexistent", "--out", str(tmp_path / "r")
        )
        assert_one_line_error(code, err, "/nonexistent")


def test_the_installed_command_prints_no_traceback(tmp_path):
    """The real process (the ``resdense`` entry point when installed): exit 2, one line on stderr."""
    argv = ["train", "--dataset", "idx", "--data-dir", "/nonexistent", "--out", str(tmp_path / "r")]
    script = Path(sys.executable).parent / "resdense"
    if script.exists():
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        res = subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=120, env=env)
    else:
        res = run_cli(*argv)
    assert_one_line_error(res.returncode, res.stderr, "/nonexistent")
    assert res.stdout == ""


def test_every_setting_is_an_option_and_reaches_the_config() -> None:
    """The command line derives its options from TrainConfig's fields: every field has its option, and a
    value other than its default given to each one reaches the settings (a field without an option, or an
    option that does not reach the config, fails here, not silently in a user's run)."""
    import argparse

    from resdense.cli import build_parser
    from resdense.cli.train import NOT_OPTIONS, overrides_from
    from resdense.train.config import setting_names
    from tests.train.test_config import argv_for, every_other

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    dests = {a.dest for a in train._actions}
    assert set(setting_names()) - dests == set()
    args = train.parse_args(["--crop-padding", "3", "--eval-batch-size", "64", "--lr", "0.5"])
    assert overrides_from(args) == {
        "crop_padding": 3,
        "eval_batch_size": 64,
        "lr": 0.5,
    }  # only what was given
    values = every_other(TrainConfig)
    assert set(values) == set(setting_names()) - NOT_OPTIONS
    assert overrides_from(train.parse_args(argv_for(values))) == values
    # the spellings users typed before the options were derived still work
    old = train.parse_args(
        ["--sync-bn", "--skip-bad-images", "--tensorboard", "--no-amp", "--resize", "none"]
    )
    assert overrides_from(old) == {
        "sync_bn": True,
        "skip_bad_images": True,
        "tensorboard": True,
        "amp": "no",
        "resize": None,
    }


def test_no_setting_has_a_hand_written_option() -> None:
    """cli/train.py writes only the options that are not settings; the settings' come from the fields."""
    import ast

    import resdense.cli.train as module

    tree = ast.parse(Path(module.__file__).read_text())
    written = [
        n.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "attr", "") == "add_argument"
        and n.args
        and isinstance(n.args[0], ast.Constant)
    ]
    assert sorted(written) == sorted(
        ["--recipe", "--config", "--print-config", "--no-amp", "--resume", "--force", "--no-progress"]
    )


def test_bad_options_are_argparse_one_liners(capsys) -> None:
    for argv in (["--epochs", "x"], ["--resize", "big"], ["--optimizer", "lion"], ["--model-options", "[1]"]):
        with pytest.raises(SystemExit) as e:
            cli(capsys, "train", *argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.strip().splitlines()[-1].startswith(
            "resdense train: error: argument"
        )


# -- settings files: --print-config and --config --------------------------------------------------------------

SETTLED = ["--amp", "no", "--in-memory", "yes"]  # what "auto" would leave to the run to decide


def test_print_config_then_config_trains_with_exactly_those_settings(capsys, idx_dir, tmp_path):
    code, printed, err = cli(capsys, *train_args(idx_dir, tmp_path / "unused", *SETTLED), "--print-config")
    assert code == 0, err
    assert not (tmp_path / "unused").exists()  # printed, not trained
    settings = json.loads(printed)
    path = tmp_path / "settings.json"
    path.write_text(printed)
    out = tmp_path / "run"
    given = ["--epochs", "1", "--train-subset", "256", "--test-subset", "256", "--out", str(out)]
    code, _, err = cli(capsys, "train", "--config", path, *given, "--no-progress")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    expected = {**settings, "epochs": 1, "train_subset": 256, "test_subset": 256, "out": str(out)}
    assert {k: config[k] for k in expected} == expected
    # and the command line with the same file prints what the run recorded
    code, again, _ = cli(capsys, "train", "--config", path, *given, "--print-config")
    assert json.loads(again) == expected


def test_config_of_a_finished_run_reproduces_its_settings(capsys, finished_run, tmp_path):
    run, _ = finished_run
    record = json.loads((run / "config.json").read_text())
    settings = {f.name: record[f.name] for f in fields(TrainConfig)}
    code, printed, err = cli(capsys, "train", "--config", run / "config.json", "--print-config")
    assert code == 0, err
    assert json.loads(printed) == {**settings, "out": None}  # the run's folder is not taken over
    out = tmp_path / "again"
    code, _, err = cli(capsys, "train", "--config", run / "config.json", "--out", out, "--no-progress")
    assert code == 0, err
    again = json.loads((out / "config.json").read_text())
    assert {k: again[k] for k in settings} == {**settings, "out": str(out)}
    assert again["classes"] == record["classes"] and again["preprocess"] == record["preprocess"]


def test_toml_and_yaml_files_on_the_command_line(capsys, tmp_path):
    pytest.importorskip("yaml")
    (tmp_path / "s.toml").write_text('recipe = "d2l-resnet"\nepochs = 2\nresize = "none"\n')
    (tmp_path / "s.yaml").write_text("recipe: d2l-resnet\nepochs: 2\nresize: null\n")
    printed = []
    for name in ("s.toml", "s.yaml"):
        code, text, err = cli(capsys, "train", "--config", tmp_path / name, "--lr", "0.01", "--print-config")
        assert code == 0, err
        printed.append(json.loads(text))
    assert printed[0] == printed[1]
    assert (printed[0]["recipe"], printed[0]["epochs"], printed[0]["lr"], printed[0]["resize"]) == (
        "d2l-resnet",
        2,
        0.01,
        None,
    )


@pytest.mark.parametrize(
    "text, fragments",
    [
        ('{"epochs": 3, "lr_max": 1}', ["unknown setting 'lr_max'"]),
        ('{"epochs": 0}', ["epochs must be >= 1"]),
        ('{"dataset": 3}', ["dataset: expected str, got 3"]),
        ('{"epochs": ', ["not valid JSON"]),
    ],
)
def test_bad_config_files_are_one_line(capsys, tmp_path, text, fragments):
    path = tmp_path / "bad.json"
    path.write_text(text)
    code, _, err = cli(capsys, "train", "--config", path, "--print-config")
    assert_one_line_error(code, err, f"--config {path}", *fragments)


def test_config_and_resume_together_are_refused(capsys, tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{}")
    code, _, err = cli(capsys, "train", "--resume", tmp_path, "--config", path)
    assert_one_line_error(code, err, "--config", "--resume")


def test_test_subset_scores_the_first_n_test_images(capsys, idx_dir, tmp_path):
    """``--test-subset`` on ``train``, as ``study`` and the notebook have it: a short run scores quickly."""
    out = tmp_path / "run"
    code, printed, _ = cli(capsys, *train_args(idx_dir, out, epochs=1), "--test-subset", "20")
    assert code == 0 and " / 20 test)" in printed
    assert json.loads((out / "config.json").read_text())["test_subset"] == 20
