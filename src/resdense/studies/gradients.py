"""Gradients through depth: the norm of the loss gradient at every conv layer of a plain and a residual net of
the same depth, at initialisation and after the first epoch. A shortcut hands the gradient of a block's
output straight to its input; without shortcuts it must pass through every layer's weights and normalisers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import Dataset
from ..errors import UserError
from ..models import create_model
from ..plots import new_axes, save_figure
from ..rundir import RunDir
from ..serve.load import load_trained
from .base import (
    StudyResult,
    StudySettings,
    check_positive,
    load_data,
    markdown_table,
    run,
    why_inconclusive,
    write_report,
    write_table,
)

CLAIM = (
    "The gradient signal does not pass through the depth of a plain network unchanged: the per-layer "
    "gradient norms of its first third of layers and of its last third differ by more than a factor of 10 "
    "(vanishing or exploding), while in the residual network of the same depth they stay within a factor of "
    "10 - at initialisation and after the first epoch."
)
SPREAD_LIMIT = 10.0


# The shallowest depth at which the paper's plain nets are clearly worse than its residual ones (Fig. 6:
# plain-56 above plain-20); below it the comparison cannot show the claim.
DECISIVE_DEPTH = 56


@dataclass(frozen=True)
class GradientSettings(StudySettings):
    depth: int = 56
    probe_images: int = 512  # the fixed training batch the gradients are measured on
    widths: tuple[int, ...] | None = None

    @classmethod
    def full(cls) -> GradientSettings:
        return cls(
            epochs=1, train_subset=2000, test_subset=1000, batch_size=32, probe_images=256, widths=(8, 16, 32)
        )

    @classmethod
    def quick(cls) -> GradientSettings:
        return cls(
            epochs=1,
            train_subset=512,
            test_subset=500,
            batch_size=64,
            depth=20,
            probe_images=128,
            widths=(8, 16, 32),
        )


def layer_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[str, float]]:
    """(name, L2 norm of d loss / d weight) for every conv and linear layer, input to output.

    The model is in training mode (batch statistics), as it is when the optimiser uses these gradients.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    norms = [(name, m.weight.grad.norm().item()) for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d | nn.Linear)]  # fmt: skip
    model.zero_grad(set_to_none=True)
    return norms


def early_late_ratio(norms: list[float]) -> float:
    """Geometric mean of the first third of the layers' gradient norms over that of the last third."""
    k = max(1, len(norms) // 3)

    def gmean(v):
        return math.exp(sum(math.log(max(n, 1e-30)) for n in v) / len(v))

    return gmean(norms[:k]) / gmean(norms[-k:])


def _probe(data: Dataset, n: int, preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    return preprocess(data.train.images[:n]), data.train.labels[:n]


def gradients(out: str | Path = "runs/studies/gradients", *, quick: bool = False, **overrides) -> StudyResult:
    """Per-layer gradient norms of plain and residual nets, at initialisation and after the first epoch."""
    settings = (GradientSettings.quick() if quick else GradientSettings.full()).with_overrides(**overrides)
    check_positive(settings)
    if settings.depth not in (20, 32, 44, 56, 110):
        raise UserError(f"--depth must be one of 20, 32, 44, 56, 110, got {settings.depth}")
    if settings.probe_images < 2:
        raise UserError(f"--probe-images must be at least 2, got {settings.probe_images}")
    out = Path(out)
    data = load_data(settings)
    options = {"widths": tuple(settings.widths)} if settings.widths else {}

    per_layer: dict[tuple[str, str], list[tuple[str, float]]] = {}
    summary_rows = []
    for kind in ("plain", "resnet"):
        name = f"{kind}{settings.depth}"
        cfg = settings.recipe(name, model_options=options)
        run(cfg, out / "runs" / name, data)
        trained, spec = load_trained(out / "runs" / name)
        # the very network the run started from: the run seeds torch with its seed, then builds the model
        torch.manual_seed(cfg.seed)
        initial = create_model(name, **spec.options)
        x, y = _probe(data, settings.probe_images, spec.preprocess)
        for when, model in (("init", initial), (f"epoch {settings.epochs}", trained)):
            norms = layer_gradient_norms(model, x, y)
            per_layer[(kind, when)] = norms
            values = [v for _, v in norms]
            summary_rows.append({
                "net": name, "when": when, "layers": len(values), "first_layer": values[0],
                "last_conv": values[-2], "early_late_ratio": early_late_ratio(values),
                "max_min_ratio": max(values) / max(min(values), 1e-30),
            })  # fmt: skip

    rows = []
    whens = ("init", f"epoch {settings.epochs}")
    names = [n for n, _ in per_layer[("plain", "init")]]
    for i, layer in enumerate(names):
        row = {"index": i, "layer": layer}
        for kind in ("plain", "resnet"):
            for when in whens:
                row[f"{kind}_{when.replace(' ', '')}"] = per_layer[(kind, when)][i][1]
        rows.append(row)

    held, verdict = judge(summary_rows)
    inconclusive = why_inconclusive(
        quick,
        settings.depth < DECISIVE_DEPTH
        and f"at depth {settings.depth} a plain net with batch norm still passes its gradient along (the "
        f"paper's plain nets part from the residual ones between 20 and 56 layers): use --depth "
        f"{DECISIVE_DEPTH} or more",
    )
    figure = plot(per_layer, settings, whens, out / "gradients.png")
    write_table(out, rows)
    write_table(out, summary_rows, name="summary")
    write_report(
        out, title="Gradient norms through depth: plain versus residual", claim=CLAIM, held=held,
        verdict=verdict, settings=settings, inconclusive=inconclusive,
        table=markdown_table(summary_rows) + "\n\nPer-layer norms: `table.csv` / `table.json`.",
        figures=[figure],
        notes=f"Norms of the gradient of the mean cross-entropy on the first {settings.probe_images} training "
              "images with respect to each conv / linear weight (the model in training mode), input side "
              "first. `early_late_ratio`: geometric mean of the first third of the layers' norms over the "
              f"last third's. The trained weights are each run's `{RunDir.WEIGHTS}`.",
    )  # fmt: skip
    return StudyResult("gradients", out, rows, held, verdict, [figure], inconclusive)


def judge(summary_rows: list[dict]) -> tuple[bool, str]:
    def off(r):
        ratio = r["early_late_ratio"]
        return ratio > SPREAD_LIMIT or ratio < 1 / SPREAD_LIMIT

    plain = [r for r in summary_rows if r["net"].startswith("plain")]
    res = [r for r in summary_rows if r["net"].startswith("resnet")]
    held = all(off(r) for r in plain) and not any(off(r) for r in res)

    def say(r) -> str:
        ratio = r["early_late_ratio"]
        trend = "larger" if ratio > 1 else "smaller"
        return f"{r['net']} at {r['when']}: early layers' gradients {ratio:.3g}x the late ones' ({trend})"

    return held, "; ".join(say(r) for r in summary_rows) + "."


def plot(per_layer: dict, settings: GradientSettings, whens, path: Path) -> Path:
    fig, axes = new_axes(9, 3.6, ncols=2, sharey=True)
    for ax, when in zip(axes, whens):
        for kind, color in (("plain", "#d62728"), ("resnet", "#1f77b4")):
            norms = [v for _, v in per_layer[(kind, when)]]
            ax.plot(range(len(norms)), norms, ".-", color=color, label=f"{kind}{settings.depth}")
        ax.set_yscale("log")
        ax.set_title(f"at {'initialisation' if when == 'init' else 'the end of ' + when}")
        ax.set_xlabel("layer (input -> output)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("gradient norm")
    return save_figure(fig, path)
