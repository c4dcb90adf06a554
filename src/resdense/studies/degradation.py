"""Degradation: add layers to a plain network and its *training* error goes up; a residual network of the same
depth keeps improving (He et al. 2015, Fig. 1 and Fig. 6; d2l 8.6.1).

Plain and residual CIFAR nets of each depth train with one recipe on Fashion-MNIST; the figure is the
paper's Fig. 6: plain left, residual right, thin lines training error, bold lines test error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..plots import integer_epochs, new_axes, save_figure
from .base import (
    StudyResult,
    StudySettings,
    check_positive,
    load_data,
    markdown_table,
    near_chance,
    run,
    why_inconclusive,
    write_report,
    write_table,
)

CLAIM = (
    "A deeper plain network has a *higher training error* than a shallower one, while the residual network "
    "of the same depths does not: at the deepest depth the residual net trains to a lower error than the "
    "plain one."
)
DEPTHS = (20, 32, 44, 56, 110)  # the registered plain and residual CIFAR nets


@dataclass(frozen=True)
class DegradationSettings(StudySettings):
    depths: tuple[int, ...] = (20, 32, 44, 56)
    widths: tuple[int, ...] | None = None  # stage widths; None: the paper's 16/32/64

    @classmethod
    def full(cls) -> DegradationSettings:
        return cls(epochs=3, train_subset=2000, test_subset=1000, batch_size=32, widths=(8, 16, 32))

    @classmethod
    def quick(cls) -> DegradationSettings:
        return cls(
            epochs=2, train_subset=512, test_subset=500, batch_size=64, depths=(20, 32), widths=(8, 16, 32)
        )


def degradation(
    out: str | Path = "runs/studies/degradation", *, quick: bool = False, **overrides
) -> StudyResult:
    """Train plain and residual nets at each depth; return the table (one row per net) and the verdict."""
    settings = (DegradationSettings.quick() if quick else DegradationSettings.full()).with_overrides(
        **overrides
    )
    check_positive(settings)
    depths = tuple(sorted(set(settings.depths)))
    if len(depths) < 2 or not set(depths) <= set(DEPTHS):
        raise UserError(f"--depths: need at least two of {', '.join(map(str, DEPTHS))}, got {depths}")
    out = Path(out)
    data = load_data(settings)
    options = {"widths": tuple(settings.widths)} if settings.widths else {}

    curves: dict[tuple[str, int], list[dict]] = {}
    rows = []
    for kind in ("plain", "resnet"):
        for depth in depths:
            model = f"{kind}{depth}"
            cfg = settings.recipe(model, model_options=options)
            r = run(cfg, out / "runs" / model, data)
            curves[(kind, depth)] = r["history"]
            last = r["history"][-1]
            rows.append({
                "model": model, "kind": "plain" if kind == "plain" else "residual", "depth": depth,
                "params": r["summary"]["params"], "train_error": 1 - last["train_acc"],
                "test_error": 1 - last["test_acc"], "best_test_error": 1 - r["summary"]["best_test_accuracy"],
                "seconds": r["summary"]["seconds"],
            })  # fmt: skip

    held, verdict = judge(rows)
    inconclusive = undecided(rows, quick)
    figure = plot(curves, depths, out / "degradation.png")
    write_table(out, rows)
    write_report(
        out, title="Degradation: plain versus residual networks", claim=CLAIM, held=held, verdict=verdict,
        settings=settings, inconclusive=inconclusive, table=markdown_table(rows), figures=[figure],
        notes="Training error is the running error over the last epoch's batches (the network in training "
              "mode, as in the paper's curves); test error is measured after the epoch. The recipe: SGD with "
              f"momentum 0.9, one-cycle learning rate peaking at {settings.lr}, weight decay 5e-4, batch "
              f"{settings.batch_size}, no augmentation, at 28x28; stage widths {settings.widths or (16, 32, 64)} "
              "(the paper's are 16/32/64).",
    )  # fmt: skip
    return StudyResult("degradation", out, rows, held, verdict, [figure], inconclusive)


def judge(rows: list[dict]) -> tuple[bool, str]:
    """The claim as the final training errors decide it."""
    plain = {r["depth"]: r["train_error"] for r in rows if r["kind"] == "plain"}
    res = {r["depth"]: r["train_error"] for r in rows if r["kind"] == "residual"}
    lo, hi = min(plain), max(plain)
    plain_rises = plain[hi] > plain[lo]
    residual_no_worse = res[hi] <= res[lo]
    residual_beats_plain = res[hi] < plain[hi]
    held = plain_rises and residual_no_worse and residual_beats_plain
    verdict = (
        f"Plain training error {plain[lo]:.2%} at depth {lo} and {plain[hi]:.2%} at depth {hi} "
        f"({'rises' if plain_rises else 'does not rise'}); residual {res[lo]:.2%} -> {res[hi]:.2%} "
        f"({'no worse' if residual_no_worse else 'worse'}); at depth {hi} the residual net is "
        f"{'below' if residual_beats_plain else 'not below'} the plain one."
    )
    return held, verdict


def undecided(rows: list[dict], quick: bool) -> str:
    """Why these rows cannot decide the claim ("" when they can): --quick, or shallow nets near chance."""
    lo = min(r["depth"] for r in rows)
    shallow = [r for r in rows if r["depth"] == lo and near_chance(r["train_error"])]
    return why_inconclusive(
        quick,
        shallow and f"the depth-{lo} nets end at " + ", ".join(f"{r['train_error']:.0%}" for r in shallow)
        + " training error, near chance (90%): a net that has not learned cannot show what depth costs",
    )  # fmt: skip


def plot(curves: dict, depths: tuple[int, ...], path: Path) -> Path:
    fig, axes = new_axes(9, 3.6, ncols=2, sharey=True)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for ax, kind, title in zip(axes, ("plain", "resnet"), ("plain", "residual (ResNet)")):
        for i, depth in enumerate(depths):
            hist = curves[(kind, depth)]
            epochs = [h["epoch"] for h in hist]
            c = colors[i % len(colors)]
            ax.plot(epochs, [100 * (1 - h["train_acc"]) for h in hist], color=c, lw=0.9, ls="--")
            ax.plot(epochs, [100 * (1 - h["test_acc"]) for h in hist], color=c, lw=2.4,
                    label=f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}")  # fmt: skip
        ax.set_title(title)
        integer_epochs(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, title="thin dashed: train, bold: test", title_fontsize=7)
    axes[0].set_ylabel("error (%)")
    return save_figure(fig, path)
