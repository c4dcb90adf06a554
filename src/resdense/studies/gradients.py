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
    MARGIN,
    StudyResult,
    StudySettings,
    check_positive,
    load_data,
    markdown_table,
    mean_sd,
    one_seed,
    run,
    why_inconclusive,
    write_report,
    write_table,
)

CLAIM = (
    "With batch norm, a deep plain network's gradients do not vanish: at initialisation they *explode* "
    "towards the input (Yang et al. 2019, a mean-field theory of batch norm), its first third of layers "
    "getting gradients more than 10x larger than its last third, and in training they keep healthy norms, "
    "the first third's no more than 10x below the last third's (He et al. 2015, section 4.1: \"neither "
    'forward nor backward signals vanish"). The residual network of the same depth keeps every third '
    "within a factor of 10 of the others, at initialisation and in training (its shortcuts carry the "
    "gradient of each block's output straight to its input)."
)
SPREAD_LIMIT = 10.0
# The criterion, fixed before the runs: on log10 of the early/late ratio, the seeds' mean must lie on the
# claimed side of each bound by more than MARGIN standard errors (the spread over the seeds).
CRITERION = (
    "held when, over the seeds (mean of log10 early/late, by more than {m:g} standard errors): plain at "
    "initialisation above 10x (explodes); plain after training above 1/10x (does not vanish); residual at "
    "both times between 1/10x and 10x"
)


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
        """The paper's widths, three seeds (three initialisations), measured at initialisation and after two
        epochs of the degradation study's recipe (its step decay, on 10,000 images)."""
        return cls(
            epochs=2,
            train_subset=10000,
            test_subset=2000,
            batch_size=128,
            probe_images=512,
            schedule="step",
            weight_decay=1e-4,
            seeds=(0, 1, 2),
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
    norms = [
        (name, m.weight.grad.norm().item())
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    model.zero_grad(set_to_none=True)
    return norms


def early_late_ratio(norms: list[float]) -> float:
    """Geometric mean of the first third of the layers' gradient norms over that of the last third."""
    k = max(1, len(norms) // 3)
    return gmean(norms[:k]) / gmean(norms[-k:])


def _probe(data: Dataset, n: int, preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    return preprocess(data.train.images[:n]), data.train.labels[:n]


def gradients(out: str | Path = "runs/studies/gradients", *, quick: bool = False, **overrides) -> StudyResult:
    """Per-layer gradient norms of plain and residual nets, at initialisation and after training, per seed.

    ``out``: the study's folder; ``quick``: the smoke size, seconds, which decides nothing.
    """
    settings = (GradientSettings.quick() if quick else GradientSettings.full()).with_overrides(**overrides)
    check_positive(settings)
    if settings.depth not in (20, 32, 44, 56, 110):
        raise UserError(f"--depth must be one of 20, 32, 44, 56, 110, got {settings.depth}")
    if settings.probe_images < 2:
        raise UserError(f"--probe-images must be at least 2, got {settings.probe_images}")
    out = Path(out)
    data = load_data(settings)
    options = {"widths": tuple(settings.widths)} if settings.widths else {}
    trained_when = f"epoch {settings.epochs}"
    whens = ("init", trained_when)

    # (kind, when) -> one list of (layer, norm) per seed
    per_layer: dict[tuple[str, str], list[list[tuple[str, float]]]] = {}
    summary_rows = []
    for kind in ("plain", "resnet"):
        name = f"{kind}{settings.depth}"
        for seed in settings.seeds:
            cfg = settings.recipe(name, seed=seed, model_options=options)
            folder = out / "runs" / f"{name}-seed{seed}"
            run(cfg, folder, data)
            trained, spec = load_trained(folder)
            # the very network the run started from: the run seeds torch with its seed, then builds the model
            torch.manual_seed(cfg.seed)
            initial = create_model(name, **spec.options)
            x, y = _probe(data, settings.probe_images, spec.preprocess)
            for when, model in (("init", initial), (trained_when, trained)):
                norms = layer_gradient_norms(model, x, y)
                per_layer.setdefault((kind, when), []).append(norms)
                values = [v for _, v in norms]
                summary_rows.append(
                    {
                        "net": name,
                        "seed": seed,
                        "when": when,
                        "layers": len(values),
                        "first_layer": values[0],
                        "last_conv": values[-2],
                        "early_late_ratio": early_late_ratio(values),
                        "max_min_ratio": max(values) / max(min(values), 1e-30),
                    }
                )

    rows = []
    names = [n for n, _ in per_layer[("plain", "init")][0]]
    for i, layer in enumerate(names):
        row = {"index": i, "layer": layer}
        for kind in ("plain", "resnet"):
            for when in whens:
                row[f"{kind}_{when.replace(' ', '')}"] = gmean(
                    [norms[i][1] for norms in per_layer[(kind, when)]]
                )
        rows.append(row)

    held, verdict = judge(summary_rows, trained_when)
    inconclusive = why_inconclusive(
        quick,
        one_seed(settings.seeds) if not quick else "",
        settings.depth < DECISIVE_DEPTH
        and f"at depth {settings.depth} a plain net with batch norm still passes its gradient along (the "
        f"paper's plain nets part from the residual ones between 20 and 56 layers): use --depth "
        f"{DECISIVE_DEPTH} or more",
    )
    figure = plot(per_layer, settings, whens, out / "gradients.png")
    write_table(out, rows)
    write_table(out, summary_rows, name="summary")
    write_report(
        out,
        title="Gradient norms through depth: plain versus residual",
        claim=CLAIM,
        held=held,
        verdict=verdict,
        settings=settings,
        inconclusive=inconclusive,
        table=markdown_table(summary_rows) + "\n\nPer-layer norms (geometric mean over the seeds): "
        "`table.csv` / `table.json`.",
        figures=[figure],
        notes=f"The criterion, fixed before the runs: {CRITERION.format(m=MARGIN)}.\n\n"
        f"Norms of the gradient of the mean cross-entropy on the first {settings.probe_images} training "
        "images with respect to each conv / linear weight (the model in training mode), input side "
        "first. `early_late_ratio`: geometric mean of the first third of the layers' norms over the "
        f"last third's. The trained weights are each run's `{RunDir.WEIGHTS}`; the initial ones are "
        "rebuilt from the run's seed.",
    )
    return StudyResult("gradients", out, rows, held, verdict, [figure], inconclusive)


def gmean(values) -> float:
    """The geometric mean (norms can underflow to 0: floored at 1e-30)."""
    return math.exp(sum(math.log(max(v, 1e-30)) for v in values) / len(values))


def log_ratios(summary_rows: list[dict], kind: str, when: str) -> list[float]:
    return [
        math.log10(max(r["early_late_ratio"], 1e-30))
        for r in summary_rows
        if r["net"].startswith(kind) and r["when"] == when
    ]


def judge(summary_rows: list[dict], trained_when: str | None = None) -> tuple[bool, str]:
    """The claim as the seeds decide it (see CRITERION): each bound on the mean log10 ratio, by MARGIN
    standard errors of that mean."""
    trained_when = trained_when or next(r["when"] for r in summary_rows if r["when"] != "init")
    bound = math.log10(SPREAD_LIMIT)

    def stats(kind, when):
        values = log_ratios(summary_rows, kind, when)
        m, sd = mean_sd(values)
        return m, MARGIN * sd / math.sqrt(len(values))

    checks = []  # (holds, sentence)
    for kind, when, test, yes, no in (
        ("plain", "init", lambda m, e: m - e > bound, "explode (above 10x)", "do not clearly explode"),
        (
            "plain",
            trained_when,
            lambda m, e: m - e > -bound,
            "do not vanish (above 1/10x)",
            "vanish (not clearly above 1/10x)",
        ),
        ("resnet", "init", lambda m, e: -bound < m - e and m + e < bound, "stay within 10x", "leave 10x"),
        (
            "resnet",
            trained_when,
            lambda m, e: -bound < m - e and m + e < bound,
            "stay within 10x",
            "leave 10x",
        ),
    ):
        m, e = stats(kind, when)
        ok = test(m, e)
        span = f"{10**m:.3g}x" + (f" [{10 ** (m - e):.3g}-{10 ** (m + e):.3g}]" if e else "")
        checks.append(
            (ok, f"{kind} at {when}: early layers' gradients {span} the late ones' ({yes if ok else no})")
        )
    held = all(ok for ok, _ in checks)
    return held, "; ".join(text for _, text in checks) + "."


def plot(per_layer: dict, settings: GradientSettings, whens, path: Path) -> Path:
    fig, axes = new_axes(10, 3.8, ncols=2, sharey=True)
    for ax, when in zip(axes, whens):
        for kind, color in (("plain", "#d62728"), ("resnet", "#1f77b4")):
            seeds = per_layer[(kind, when)]
            for norms in seeds:  # each seed thin, their geometric mean bold
                ax.plot(range(len(norms)), [v for _, v in norms], "-", color=color, lw=0.6, alpha=0.45)
            mean = [gmean([s[i][1] for s in seeds]) for i in range(len(seeds[0]))]
            ax.plot(
                range(len(mean)),
                mean,
                ".-",
                color=color,
                lw=1.6,
                label=f"{kind}{settings.depth} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
            )
        ax.set_yscale("log")
        ax.set_title(f"at {'initialisation' if when == 'init' else 'the end of ' + when}")
        ax.set_xlabel("layer (input -> output)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("gradient norm")
    return save_figure(fig, path)
