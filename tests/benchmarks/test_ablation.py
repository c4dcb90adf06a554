"""benchmarks/ablation.py: every variant is a valid ``resdense train`` command that changes the recipe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ablation  # noqa: E402
from resdense.cli import build_parser  # noqa: E402
from resdense.cli.train import overrides_from  # noqa: E402
from resdense.train.config import validate  # noqa: E402
from resdense.train.recipes import get_recipe  # noqa: E402


@pytest.mark.parametrize("name", sorted(ablation.VARIANTS))
def test_every_variant_parses_to_a_valid_setting_that_differs_from_fast(name):
    args = build_parser().parse_args(["train", "--recipe", "fast", *ablation.VARIANTS[name][1]])
    fast = get_recipe("fast")
    cfg = fast.with_overrides(**overrides_from(args))
    validate(cfg)
    assert (cfg != fast) == (name != "base"), name  # a variant that changed nothing would measure noise
