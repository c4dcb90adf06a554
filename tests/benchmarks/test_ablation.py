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


def test_training_macs_follow_the_epochs_the_sides_and_the_width():
    fast = {**get_recipe("fast").to_dict(), "epochs": 7, "progressive_from": 16, "progressive_until": 0.75}
    base = ablation.training_macs(fast, 50_000)
    # seven epochs, the first four downscaled (16 px ... 25 px): less than seven at 28 px, more than four
    full = ablation.training_macs({**fast, "progressive_from": 0}, 50_000)
    assert 4 / 7 * full < base < full
    assert full == pytest.approx(7 * 3 * 50_000 * 30.82e6, rel=1e-3)  # resnet20: 30.8 M MACs at 28x28
    wide = ablation.training_macs({**fast, "model_options": {"widths": [32, 64, 128]}}, 50_000)
    assert wide == pytest.approx(4 * base, rel=0.02)  # twice the channels: four times the MACs
    assert ablation.training_macs(fast, 25_000) == pytest.approx(base / 2)


def test_report_gives_each_gain_with_the_standard_error_of_a_difference(tmp_path):
    def row(variant, seed, acc):
        return {
            "variant": variant,
            "seed": seed,
            "val_acc": acc,
            "wall_s": 100.0,
            "train_tmacs": 25.0,
            "change": variant,
        }

    rows = [
        row("base", 0, 0.930),
        row("base", 1, 0.932),
        row("base", 2, 0.934),
        row("x", 0, 0.940),
        row("x", 1, 0.942),
        row("one", 0, 0.936),
    ]
    by = {r["variant"]: r for r in ablation.report(rows)}
    assert by["base"]["gain"] is None and by["base"]["se"] == pytest.approx(0.002 / 3**0.5)
    assert by["x"]["gain"] == pytest.approx(0.009)
    assert by["x"]["gain_se"] == pytest.approx(((0.0014142 / 2**0.5) ** 2 + 0.002**2 / 3) ** 0.5, rel=1e-3)
    # one seed borrows the recipe's run-to-run spread (base's standard deviation) for its error
    assert by["one"]["se"] == pytest.approx(0.002) and by["one"]["seeds"] == 1
    ablation.plot(list(by.values()), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0
