"""Nested function classes: a trained ResNet made deeper by residual blocks whose last batch-norm scale is zero
computes exactly the same function, so the deeper net starts where the shallow one ended and can only be
trained on from there (d2l 8.6.1: "only if larger function classes contain the smaller ones are we
guaranteed that increasing them strictly increases the expressive power").

The same deepening of a plain net, with freshly initialised plain blocks (the only thing a new plain layer
can start as without hand-made weights), does not start there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import Dataset
from ..errors import UserError
from ..models import create_model
from ..models.resnet import BasicBlock, ResNet
from ..plots import integer_epochs, new_axes, save_figure
from ..serve.load import load_trained
from ..serve.predictor import predict_logits
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
    "A trained ResNet deepened with residual blocks whose last batch-norm scale is zero computes exactly the "
    "same function (so starts at the shallow net's accuracy) and improves with further training; the same "
    "deepening of a plain net with new plain blocks does not start at its shallow net's accuracy."
)


@dataclass(frozen=True)
class IdentitySettings(StudySettings):
    depth: int = 20  # the shallow net
    deep_depth: int = 32  # the deepened net
    more_epochs: int = 3  # training after the deepening
    widths: tuple[int, ...] | None = None

    @classmethod
    def full(cls) -> IdentitySettings:
        return cls(
            epochs=2, more_epochs=2, train_subset=2000, test_subset=1000, batch_size=32, widths=(8, 16, 32)
        )

    @classmethod
    def quick(cls) -> IdentitySettings:
        return cls(
            epochs=1, more_epochs=1, train_subset=512, test_subset=500, batch_size=64, widths=(8, 16, 32)
        )


def deepen(shallow: ResNet, deep: ResNet) -> ResNet:
    """Copy ``shallow`` into ``deep`` (same stages, more blocks per stage): the shallow net's blocks keep
    their places at the start of each stage, the extra blocks go at the end of each stage.

    Extra residual blocks get a zero last batch-norm scale (and zero shift): their branch outputs exactly
    zero, the block returns ``relu(0 + x) = x`` for the non-negative ``x`` it receives, so ``deep`` computes
    what ``shallow`` did. Extra plain blocks keep ``deep``'s own fresh initialisation. Returns ``deep``.
    """
    src = shallow.state_dict()
    dst = deep.state_dict()
    misfits = [k for k, v in src.items() if k not in dst or dst[k].shape != v.shape]
    if misfits or shallow.num_stages != deep.num_stages:
        raise ValueError(f"cannot deepen: {misfits[:1] or 'different stages'} does not fit the deeper net")
    for key, value in src.items():
        dst[key] = value.clone()
    deep.load_state_dict(dst)
    old = {name for name, _ in shallow.named_modules()}
    for name, m in deep.named_modules():
        if name not in old and type(m) is BasicBlock:
            nn.init.zeros_(m.bn2.weight)
            nn.init.zeros_(m.bn2.bias)
    return deep


def _accuracy(model: nn.Module, data: Dataset, preprocess) -> float:
    model.eval()
    logits = predict_logits(model, data.test.images, preprocess, batch_size=500)
    return (logits.argmax(1) == data.test.labels).double().mean().item()


def identity(out: str | Path = "runs/studies/identity", *, quick: bool = False, **overrides) -> StudyResult:
    """Train shallow plain and residual nets, deepen each, check the residual one is unchanged, train on.

    ``out``: the study's folder; ``quick``: the smoke size, seconds, which decides nothing.
    """
    settings = (IdentitySettings.quick() if quick else IdentitySettings.full()).with_overrides(**overrides)
    check_positive(settings)
    single_seed(settings, "identity")
    if settings.more_epochs < 1:
        raise UserError(f"--more-epochs must be at least 1, got {settings.more_epochs}")
    registered = (20, 32, 44, 56, 110)
    if settings.depth not in registered or settings.deep_depth not in registered:
        raise UserError(f"--depth and --deep-depth must be among {registered}")
    if settings.deep_depth <= settings.depth:
        raise UserError(
            f"--deep-depth ({settings.deep_depth}) must be larger than --depth ({settings.depth})"
        )
    out = Path(out)
    data = load_data(settings)
    options = {"widths": tuple(settings.widths)} if settings.widths else {}

    rows, curves = [], {}
    for kind in ("resnet", "plain"):
        shallow_name, deep_name = f"{kind}{settings.depth}", f"{kind}{settings.deep_depth}"
        shallow_run = run(
            settings.recipe(shallow_name, model_options=options), out / "runs" / shallow_name, data
        )
        shallow, spec = load_trained(out / "runs" / shallow_name)
        shallow.eval()
        torch.manual_seed(settings.seed)
        deep = deepen(shallow, create_model(deep_name, **spec.options)).eval()

        # The check: the same outputs, bit for bit, in evaluation mode (the function the accuracy measures).
        x = spec.preprocess(data.test.images[:256])
        with torch.no_grad():
            a, b = shallow(x), deep(x)
        identical = bool(torch.equal(a, b))
        max_diff = (a - b).abs().max().item()
        acc_shallow = _accuracy(shallow, data, spec.preprocess)
        acc_start = _accuracy(deep, data, spec.preprocess)

        deep_name_run = f"{deep_name}-from-{shallow_name}"
        deep_run = run(
            settings.recipe(deep_name, model_options=options, epochs=settings.more_epochs),
            out / "runs" / deep_name_run,
            data,
            initial_state=deep.state_dict(),
        )
        curves[kind] = (shallow_run["history"], acc_start, deep_run["history"])
        rows.append(
            {
                "net": "residual" if kind == "resnet" else "plain",
                "shallow": shallow_name,
                "deepened": deep_name,
                "identical_outputs": identical,
                "max_abs_diff": max_diff,
                "shallow_test_acc": acc_shallow,
                "deepened_start_test_acc": acc_start,
                "deepened_final_test_acc": deep_run["summary"]["test_accuracy"],
            }
        )

    held, verdict = judge(rows)
    figure = plot(curves, settings, out / "identity.png")
    write_table(out, rows)
    inconclusive = why_inconclusive(quick)
    write_report(
        out,
        title="Nested function classes: deepening a trained network",
        claim=CLAIM,
        held=held,
        inconclusive=inconclusive,
        verdict=verdict,
        settings=settings,
        table=markdown_table(rows),
        figures=[figure],
        notes=f"The shallow nets train {settings.epochs} epoch(s); each is deepened from depth {settings.depth} "
        f"to {settings.deep_depth} by adding blocks at the end of every stage, then trained "
        f"{settings.more_epochs} more epoch(s) with the same recipe. `identical_outputs`: "
        "`torch.equal` of the logits of 256 test images in evaluation mode (exact, no tolerance: a "
        "zero batch-norm scale makes the new branch output exact zeros, and adding zero changes no "
        "bit). Accuracies are on the study's test images.",
    )
    return StudyResult("identity", out, rows, held, verdict, [figure], inconclusive)


def judge(rows: list[dict]) -> tuple[bool, str]:
    res = next(r for r in rows if r["net"] == "residual")
    plain = next(r for r in rows if r["net"] == "plain")
    same = res["identical_outputs"] and res["deepened_start_test_acc"] == res["shallow_test_acc"]
    improves = res["deepened_final_test_acc"] > res["shallow_test_acc"]
    plain_off = (
        plain["deepened_start_test_acc"] != plain["shallow_test_acc"] and not plain["identical_outputs"]
    )
    held = same and improves and plain_off
    verdict = (
        f"Deepened ResNet: outputs {'identical' if res['identical_outputs'] else 'NOT identical'} "
        f"(max difference {res['max_abs_diff']:.3g}), start accuracy {res['deepened_start_test_acc']:.4f} vs "
        f"shallow {res['shallow_test_acc']:.4f}, after training {res['deepened_final_test_acc']:.4f} "
        f"({'better' if improves else 'not better'}). Deepened plain net: starts at "
        f"{plain['deepened_start_test_acc']:.4f} vs its shallow net's {plain['shallow_test_acc']:.4f}."
    )
    return held, verdict


def plot(curves: dict, settings: IdentitySettings, path: Path) -> Path:
    fig, axes = new_axes(9, 3.6, ncols=2, sharey=True)
    for ax, kind, title in zip(axes, ("resnet", "plain"), ("residual", "plain")):
        shallow, start, deep = curves[kind]
        e0 = len(shallow)
        ax.plot(
            [h["epoch"] for h in shallow],
            [h["test_acc"] for h in shallow],
            "o-",
            color="#1f77b4",
            label=f"{kind}{settings.depth}",
        )
        ax.plot(
            [e0] + [e0 + h["epoch"] for h in deep],
            [start] + [h["test_acc"] for h in deep],
            "s-",
            color="#d62728",
            label=f"deepened to {settings.deep_depth}",
        )
        ax.axvline(e0, color="gray", lw=0.8, ls=":")
        ax.set_title(f"{title}: deepened after epoch {e0}")
        integer_epochs(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy")
    return save_figure(fig, path)
