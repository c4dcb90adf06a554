"""Issue 19, cases 2 and 9: validate() covers every option (type, range, finiteness, the device, the model's
options), and what it cannot know before the data (the crop, the memory a resize takes) is checked before
anything is allocated."""

from __future__ import annotations

import pytest
import torch

from resdense.errors import UserError
from resdense.train import TrainConfig
from resdense.train.config import validate
from tests.cli.conftest import cli
from tests.train.conftest import assert_one_line_error, train_args

BAD = {
    "--device cuda without CUDA": (["--device", "cuda"], "CUDA is not available"),
    "--warmup-epochs nan": (["--warmup-epochs", "nan"], "--warmup-epochs must be a finite number"),
    "--warmup-epochs -1": (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
    "--momentum -5": (["--momentum", "-5"], "--momentum must be in [0, 1)"),
    "--weight-decay -1": (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    "--ema nan": (["--ema", "nan"], "--ema must be a finite number"),
    "--ema 2": (["--ema", "2"], "--ema must be in [0, 1)"),
    "--lr inf": (["--lr", "inf"], "--lr must be a finite number"),
    "--resize 100000": (["--resize", "100000"], "--resize must be between 8 and 4096"),
    "mistyped --model-options": (
        ["--model-options", '{"widths": [4, 8, 16], "drop_rate": "x"}'],
        "option drop_rate must be float, got 'x'",
    ),
    "unknown --model-options": (["--model-options", '{"frobnicate": 1}'], "frobnicate"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_case9_bad_options_are_one_line_before_any_data(case, idx_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    extra, fragment = BAD[case]
    out = tmp_path / "run"
    code, _, err = cli(capsys, *train_args(idx_dir, out, epochs=1), *extra)
    assert_one_line_error(code, err, fragment)
    assert not out.exists()  # refused before the run folder, the data or the loop


def test_case9_crop_larger_than_the_images(idx_dir, tmp_path, capsys):
    code, _, err = cli(capsys, *train_args(idx_dir, tmp_path / "run", epochs=1), "--crop", "64")
    assert_one_line_error(code, err, "--crop 64 is larger than the images (28x28")


def test_case2_a_resize_that_does_not_fit_in_memory_is_refused_before_allocating(
    idx_dir, tmp_path, capsys, monkeypatch
):
    import resdense.data.stream as stream

    monkeypatch.setattr(stream, "memory_budget", lambda device="cpu": 10 * 2**20)  # 10 MiB for this run
    code, _, err = cli(capsys, *train_args(idx_dir, tmp_path / "run", epochs=1), "--resize", "256")
    assert_one_line_error(code, err, "--resize 256", "GiB")


def test_case9_every_field_is_type_checked_in_python_too():
    for field, value in {
        "lr": "0.1",
        "epochs": 2.5,
        "tta_flip": "yes",
        "model_options": [],
        "ema": True,
    }.items():
        with pytest.raises(UserError, match="--" + field.replace("_", "-")):
            validate(TrainConfig(**{field: value}))
    validate(TrainConfig(model="resnet20", lr=1, device="cpu"))  # an int for a float is fine
