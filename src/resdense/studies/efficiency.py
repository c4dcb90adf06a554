"""Efficiency: ResNet and DenseNet families trained with one recipe and one budget of epochs, their test
accuracy against parameters, multiply-adds and training time (d2l 8.7: DenseNet concatenates instead of
adding, and its transition layers keep the channels in check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..models import get_model_info
from ..models.registry import UnknownModelError
from ..plots import new_axes, save_figure
from .base import (
    StudyResult,
    StudySettings,
    check_positive,
    load_data,
    markdown_table,
    run,
    single_seed,
    why_inconclusive,
    write_report,
    write_table,
)

CLAIM = (
    "DenseNet reaches the accuracy of a ResNet with fewer parameters: for every ResNet of the study, some "
    "DenseNet with fewer parameters is at least as accurate (within 0.3 points of test accuracy)."
)
TOLERANCE = 0.003
FULL_MODELS = ("resnet20", "resnet32", "densenet_bc_40", "densenet_bc_64", "d2l_resnet18", "d2l_densenet")


@dataclass(frozen=True)
class EfficiencySettings(StudySettings):
    models: tuple[str, ...] = FULL_MODELS
    resize: int = 32  # d2l's DenseNet halves the image 5 times: 28x28 is too small for it
    model_options: dict = field(default_factory=dict)  # per model name: builder options (quick: narrow nets)

    @classmethod
    def full(cls) -> EfficiencySettings:
        return cls(epochs=2, train_subset=2000, test_subset=1000, batch_size=32)

    @classmethod
    def quick(cls) -> EfficiencySettings:
        return cls(
            epochs=1,
            train_subset=512,
            test_subset=500,
            batch_size=64,
            models=("resnet20", "densenet_bc_40"),
            model_options={"resnet20": {"widths": (8, 16, 32)}, "densenet_bc_40": {"growth_rate": 4}},
        )


def family(model: str) -> str:
    return "DenseNet" if "densenet" in model else "ResNet"


def efficiency(
    out: str | Path = "runs/studies/efficiency", *, quick: bool = False, **overrides
) -> StudyResult:
    """Train each model with the same recipe; table and figures of accuracy against its costs.

    ``out``: the study's folder; ``quick``: the smoke size, seconds, which decides nothing.
    """
    settings = (EfficiencySettings.quick() if quick else EfficiencySettings.full()).with_overrides(
        **overrides
    )
    check_positive(settings)
    single_seed(settings, "efficiency")
    for m in settings.models:
        try:
            get_model_info(m)
        except UnknownModelError as e:
            raise UserError(f"--models: {e}") from None
        if get_model_info(m).family == "plain":
            raise UserError(f"--models: {m} has no shortcuts; this study compares ResNets and DenseNets")
    kinds = {family(m) for m in settings.models}
    if kinds != {"ResNet", "DenseNet"}:
        raise UserError("--models: give at least one ResNet and one DenseNet")
    out = Path(out)
    data = load_data(settings)

    rows = []
    for model in settings.models:
        cfg = settings.recipe(
            model, resize=settings.resize, model_options=settings.model_options.get(model, {})
        )
        r = run(cfg, out / "runs" / model, data)
        train_seconds = sum(h["seconds"] for h in r["history"])
        rows.append(
            {
                "model": model,
                "family": family(model),
                "params": r["summary"]["params"],
                "macs": r["summary"]["macs"],
                "test_accuracy": r["summary"]["test_accuracy"],
                "train_seconds": round(train_seconds, 1),
                "images_per_s": round(r["summary"]["images_per_s"], 1),
            }
        )

    held, verdict, pairs = judge(rows)
    figures = plot(rows, out)
    write_table(out, rows)
    inconclusive = why_inconclusive(quick)
    write_report(
        out,
        title="Efficiency: ResNet versus DenseNet at one training budget",
        claim=CLAIM,
        held=held,
        inconclusive=inconclusive,
        verdict=verdict,
        settings=settings,
        table=markdown_table(rows) + "\n\nEach ResNet against the most accurate DenseNet with fewer "
        "parameters:\n\n" + markdown_table(pairs),
        figures=figures,
        notes=f"Every model: the same recipe, {settings.epochs} epoch(s), images resized to "
        f"{settings.resize}x{settings.resize}. MACs per image at that size. Training time is the sum of "
        "the epochs' training seconds (no evaluation), measured on a machine shared with other jobs: "
        "compare times within this table only, as rough ratios.",
    )
    return StudyResult("efficiency", out, rows, held, verdict, figures, inconclusive)


def judge(rows: list[dict]) -> tuple[bool, str, list[dict]]:
    dense = [r for r in rows if r["family"] == "DenseNet"]
    pairs, ok = [], []
    for r in (r for r in rows if r["family"] == "ResNet"):
        smaller = [d for d in dense if d["params"] < r["params"]]
        best = max(smaller, key=lambda d: d["test_accuracy"], default=None)
        matched = best is not None and best["test_accuracy"] >= r["test_accuracy"] - TOLERANCE
        ok.append(matched)
        pairs.append(
            {
                "resnet": r["model"],
                "resnet_acc": r["test_accuracy"],
                "densenet": best["model"] if best else "-",
                "densenet_acc": best["test_accuracy"] if best else "-",
                "params_ratio": round(best["params"] / r["params"], 3) if best else "-",
                "macs_ratio": round(best["macs"] / r["macs"], 3) if best else "-",
                "time_ratio": round(best["train_seconds"] / r["train_seconds"], 2) if best else "-",
                "matched": matched,
            }
        )
    held = all(ok)
    verdict = (
        f"{sum(ok)} of {len(ok)} ResNets are matched by a DenseNet with fewer parameters"
        + (
            ": " + ", ".join(f"{p['resnet']} by {p['densenet']}" for p in pairs if p["matched"])
            if any(ok)
            else ""
        )
        + "."
    )
    return held, verdict, pairs


def plot(rows: list[dict], out: Path) -> list[Path]:
    from matplotlib.ticker import NullFormatter

    figures = []
    for key, label, fname in (
        ("params", "parameters", "accuracy_vs_params.png"),
        ("macs", "multiply-adds per image", "accuracy_vs_macs.png"),
        ("train_seconds", "training time (s)", "accuracy_vs_time.png"),
    ):
        fig, (ax,) = new_axes(5, 3.6)
        for fam, color, marker in (("ResNet", "#1f77b4", "o"), ("DenseNet", "#d62728", "s")):
            pts = sorted((r for r in rows if r["family"] == fam), key=lambda r: r[key])
            ax.plot(
                [r[key] for r in pts],
                [r["test_accuracy"] for r in pts],
                marker=marker,
                ls="",
                color=color,
                label=fam,
            )
            for r in pts:
                ax.annotate(
                    r["model"],
                    (r[key], r["test_accuracy"]),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # on a short log range they overprint each other
        ax.margins(0.12)  # room for the labels
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
        figures.append(save_figure(fig, out / fname))
    return figures
