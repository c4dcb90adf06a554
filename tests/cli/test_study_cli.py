"""``resdense study``: the options a study shares with training are `resdense train`'s own, derived from the
same declarations (train/config.py), so their help and types are written once."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from resdense.cli import study
from resdense.train.config import TrainConfig
from resdense.train.settings import declaration


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    study.add_parser(p.add_subparsers())
    return p


def study_parser() -> argparse.ArgumentParser:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["study"]


def test_shared_options_carry_the_training_settings_declarations() -> None:
    actions = {a.dest: a for a in study_parser()._actions}
    declared = {f.name: declaration(f) for f in fields(TrainConfig)}
    for name in study.SHARED:
        assert name in study.OPTIONS
        assert actions[name].help.startswith(declared[name].help.replace("%", "%%")), name
        assert "the study's own" in actions[name].help


def test_shared_options_parse_as_declared() -> None:
    args = parser().parse_args(
        ["study", "degradation", "--epochs", "3", "--lr", "0.05", "--train-subset", "64"]
    )
    assert (args.epochs, args.lr, args.train_subset) == (3, 0.05, 64)
    with pytest.raises(SystemExit):
        parser().parse_args(["study", "degradation", "--epochs", "three"])
