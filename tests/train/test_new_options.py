"""Issue 36's settings, each one declaration: the option, the settings file and the Python call take them,
and a value out of bounds or a rule between settings is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resdense.cli import main
from resdense.train import TrainConfig

from .conftest import assert_one_line_error, train_args

GIVEN = {
    "mixup": 0.2,
    "cutmix": 1.0,
    "mixup_switch_prob": 0.3,
    "auto_augment": "rand",
    "random_erasing": 0.25,
    "erasing_scale": 0.3,
    "erasing_ratio": 2.0,
    "keep": "best",
    "patience": 3,
    "clip_grad": 5.0,
    "accum_steps": 2,
}


def test_each_option_reaches_the_settings_from_the_command_line_and_a_file(tmp_path: Path, capsys) -> None:
    argv = [x for k, v in GIVEN.items() for x in ("--" + k.replace("_", "-"), str(v))]
    assert main(["train", "--print-config", *argv]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {k: printed[k] for k in GIVEN} == GIVEN
    (tmp_path / "s.json").write_text(json.dumps(GIVEN))
    assert main(["train", "--print-config", "--config", str(tmp_path / "s.json")]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert {k: from_file[k] for k in GIVEN} == GIVEN
    assert {k: getattr(TrainConfig(**GIVEN), k) for k in GIVEN} == GIVEN  # the Python call


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--random-erasing", "1.5"], ["--random-erasing", "between 0 and 1"]),
        (["--mixup", "-1"], ["--mixup", ">= 0"]),
        (["--accum-steps", "0"], ["--accum-steps", ">= 1"]),
        (["--accum-steps", "3"], ["--accum-steps 3", "divide", "--batch-size"]),
        (["--accum-steps", "2", "--balance", "loss"], ["--accum-steps", "--balance loss"]),
        (["--erasing-scale", "0.01"], ["--erasing-scale", "0.02"]),
    ],
)
def test_bad_values_are_one_line(idx_dir: Path, tmp_path: Path, capsys, extra, fragments) -> None:
    code = main(train_args(idx_dir, tmp_path / "run", *extra, epochs=1))
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
    assert not (tmp_path / "run").exists()  # refused before anything was written
