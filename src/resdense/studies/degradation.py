"""Degradation: add layers to a plain network and its *training* error goes up; a residual network of the same
depth keeps improving (He et al. 2015, Fig. 1 and Fig. 6; d2l 8.6.1).

Plain and residual CIFAR nets of each depth train with one recipe on Fashion-MNIST (or, with
``dataset="cifar10"``, the paper's own CIFAR-10), once per seed; the
figure is the paper's Fig. 6 from this project's own runs: training error against iterations (thin, the
seeds' mean with their range shaded), test error at the end of each epoch (bold), plain left, residual right.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError
from ..plots import new_axes, save_figure
from .base import (
    MARGIN,
    StudyResult,
    StudySettings,
    check_positive,
    clearly_above,
    difference,
    load_data,
    markdown_table,
    mean_sd,
    near_chance,
    one_seed,
    run,
    why_inconclusive,
    write_report,
    write_table,
)

CLAIM = (
    "A deeper plain network ends with a *higher training error* than a shallower one, while the residual "
    "network of the same depths does not: the deepest ResNet trains to an error at or below the shallowest "
    "ResNet's, and below the plain net of its own depth (He et al. 2015, Fig. 6)."
)
# The criterion, fixed before the runs (the seeds' mean training errors at the end of the last epoch, each
# difference weighed against its standard error over the seeds):
CRITERION = (
    f"held when (1) the deepest plain net's mean training error exceeds the shallowest plain net's by more "
    f"than {MARGIN:g} standard errors of the difference, (2) the deepest ResNet's mean is not above the "
    f"shallowest ResNet's by more than {MARGIN:g} standard errors (at or below it, within the seeds' noise), "
    f"and (3) the deepest ResNet's mean is below the deepest plain net's by more than {MARGIN:g} standard "
    "errors"
)
DEPTHS = (20, 32, 44, 56, 110)  # the registered plain and residual CIFAR nets
# He et al. train their CIFAR-10 nets for 64k iterations of batch 128, the lr / 10 at 32k and 48k (the step
# schedule's 1/2 and 3/4)
PAPER_ITERATIONS, PAPER_BATCH = 64_000, 128


def paper_epochs(train_images: int) -> int:
    """The epochs that make the paper's 64k iterations of 128 images: 164 on CIFAR-10's 50,000 training images
    (the paper's own run), 137 on Fashion-MNIST's 60,000."""
    return max(1, round(PAPER_ITERATIONS * PAPER_BATCH / train_images))


@dataclass(frozen=True)
class DegradationSettings(StudySettings):
    depths: tuple[int, ...] = (20, 32, 44, 56)
    widths: tuple[int, ...] | None = None  # stage widths; None: the paper's 16/32/64

    @classmethod
    def full(cls) -> DegradationSettings:
        """Sized to finish within about an hour on a 2-vCPU machine (docs/studies.md has the measured
        times) and to show the claim there: the paper's widths, batch, learning rate, weight decay and its
        step decay (lr / 10 at 1/2 and 3/4 of training), three seeds, scored every epoch on 2,000 test
        images. A one-epoch linear warm-up for every net: the paper warms its 110-layer net up; at this
        short budget the 56-layer ResNet needs it too (without it, a pilot of 6 epochs ended ResNet-56 at
        17.7% training error against ResNet-20's 10.6%, with it at 9.9% against 9.8%: docs/studies.md)."""
        return cls(
            epochs=9,
            train_subset=10000,
            test_subset=2000,
            batch_size=128,
            lr=0.1,
            schedule="step",
            weight_decay=1e-4,
            warmup_epochs=1.0,
            seeds=(0, 1, 2),
        )

    @classmethod
    def paper(cls) -> DegradationSettings:
        """He et al.'s CIFAR-10 schedule on the whole data set, for a GPU: 64k iterations at batch 128
        (137 epochs of Fashion-MNIST's 60,000 images; :func:`degradation` makes them 164 of CIFAR-10's 50,000),
        lr 0.1 / 10 at 32k and 48k, weight decay 1e-4, 4-pixel padded crops and flips, depths up to 110 (a
        one-epoch warm-up: the paper warms ResNet-110 up at lr 0.01)."""
        return cls(
            epochs=137,
            train_subset=0,
            test_subset=0,
            batch_size=128,
            lr=0.1,
            schedule="step",
            weight_decay=1e-4,
            warmup_epochs=1.0,
            augment="flip-crop",
            crop_padding=4,
            seeds=(0, 1, 2),
            depths=(20, 32, 44, 56, 110),
            device="auto",
        )

    @classmethod
    def quick(cls) -> DegradationSettings:
        return cls(
            epochs=2, train_subset=512, test_subset=500, batch_size=64, depths=(20, 32), widths=(8, 16, 32)
        )


SIZES = {
    "full": DegradationSettings.full,
    "paper": DegradationSettings.paper,
    "quick": DegradationSettings.quick,
}


def degradation(
    out: str | Path = "runs/studies/degradation", *, quick: bool = False, size: str | None = None, **overrides
) -> StudyResult:
    """Train plain and residual nets at each depth, once per seed; return the table (one row per net, the
    seeds' mean and spread) and the verdict. ``size``: "full" (the default), "paper" (a GPU's) or "quick".

    ``out``: the study's folder (its runs, report.md, figures, table).
    """
    size = size or ("quick" if quick else "full")
    settings = SIZES[size]().with_overrides(**overrides)
    check_positive(settings)
    depths = tuple(sorted(set(settings.depths)))
    if len(depths) < 2 or not set(depths) <= set(DEPTHS):
        raise UserError(f"--depths: need at least two of {', '.join(map(str, DEPTHS))}, got {depths}")
    out = Path(out)
    data = load_data(settings)
    if size == "paper" and overrides.get("epochs") is None:
        # 64k iterations whatever the data set: the epochs follow from its training images
        settings = replace(settings, epochs=paper_epochs(len(data.train)))
    options = {"widths": tuple(settings.widths)} if settings.widths else {}

    # seed by seed, so that a study stopped early (a lent GPU's minutes) has whole sets of nets to show and
    # continues where it stopped: finished runs are reused, an interrupted one resumes from its checkpoint
    runs: dict[tuple[str, int], list[dict]] = {}
    for seed in settings.seeds:
        for kind in ("resnet", "plain"):
            for depth in depths:
                model = f"{kind}{depth}"
                cfg = settings.recipe(model, seed=seed, model_options=options)
                runs.setdefault((kind, depth), []).append(
                    run(cfg, out / "runs" / f"{model}-seed{seed}", data)
                )
    rows = [table_row(kind, depth, runs[(kind, depth)]) for kind in ("plain", "resnet") for depth in depths]

    held, verdict = judge(rows)
    inconclusive = undecided(rows, size == "quick", settings.seeds)
    figure = plot(runs, depths, out / "degradation.png")
    write_table(out, rows)
    columns = [
        "model",
        "depth",
        "params",
        "train_error",
        "train_error_sd",
        "test_error",
        "test_error_sd",
        "train_errors",
        "seconds",
    ]
    write_report(
        out,
        title="Degradation: plain versus residual networks",
        claim=CLAIM,
        held=held,
        verdict=verdict,
        settings=settings,
        inconclusive=inconclusive,
        table=markdown_table(rows, columns),
        figures=[figure],
        notes=f"The criterion, fixed before the runs: {CRITERION}.\n\n"
        "Training error is the running error over the last epoch's batches (the network in training "
        "mode, as in the paper's curves); test error is measured after the epoch. Means over the seeds "
        f"{', '.join(map(str, settings.seeds))}; `_sd` is their standard deviation, `train_errors` each "
        f"seed's. The recipe: SGD with momentum 0.9, learning rate {settings.lr} ({settings.schedule} "
        f"schedule), weight decay {settings.weight_decay:g}, batch {settings.batch_size}, augmentation "
        f"{settings.augment}, on {data.name} at {data.image_shape[1]}x{data.image_shape[2]}; stage widths {settings.widths or (16, 32, 64)} (the paper's are "
        "16/32/64). `steps.csv` in each run folder holds its training curve against iterations.",
    )
    return StudyResult("degradation", out, rows, held, verdict, [figure], inconclusive)


def table_row(kind: str, depth: int, seed_runs: list[dict]) -> dict:
    """One net over its seeds: the final training and test errors' mean and spread, each seed's."""
    train = [1 - r["history"][-1]["train_acc"] for r in seed_runs]
    test = [1 - r["history"][-1]["test_acc"] for r in seed_runs]
    (train_mean, train_sd), (test_mean, test_sd) = mean_sd(train), mean_sd(test)
    return {
        "model": f"{kind}{depth}",
        "kind": "plain" if kind == "plain" else "residual",
        "depth": depth,
        "params": seed_runs[0]["summary"]["params"],
        "seeds": len(seed_runs),
        "train_error": train_mean,
        "train_error_sd": train_sd,
        "test_error": test_mean,
        "test_error_sd": test_sd,
        "train_errors": " ".join(f"{e:.4f}" for e in train),
        "test_errors": " ".join(f"{e:.4f}" for e in test),
        "seconds": sum(r["summary"]["seconds"] for r in seed_runs),
    }


def _errors(row: dict) -> list[float]:
    """A row's per-seed training errors (the table keeps them as text, so the CSV stays one cell each)."""
    return (
        [float(e) for e in str(row["train_errors"]).split()]
        if "train_errors" in row
        else [row["train_error"]]
    )


def judge(rows: list[dict]) -> tuple[bool, str]:
    """The claim as the seeds' final training errors decide it (see CRITERION)."""
    plain = {r["depth"]: _errors(r) for r in rows if r["kind"] == "plain"}
    res = {r["depth"]: _errors(r) for r in rows if r["kind"] == "residual"}
    lo, hi = min(plain), max(plain)
    plain_rises = clearly_above(plain[hi], plain[lo])
    d_res, se_res = difference(res[hi], res[lo])
    residual_no_worse = d_res <= MARGIN * se_res
    residual_beats_plain = clearly_above(plain[hi], res[hi])

    def pm(values) -> str:
        m, sd = mean_sd(values)
        return f"{m:.2%}" + (f" (sd {sd:.2%})" if len(values) > 1 else "")

    def diff(a, b) -> str:
        d, se = difference(a, b)
        return f"{d:+.2%}" + (f" +/- {se:.2%}" if se else "")

    held = plain_rises and residual_no_worse and residual_beats_plain
    verdict = (
        f"Plain training error {pm(plain[lo])} at depth {lo}, {pm(plain[hi])} at depth {hi}: "
        f"{diff(plain[hi], plain[lo])} ({'rises' if plain_rises else 'does not clearly rise'}); residual "
        f"{pm(res[lo])} -> {pm(res[hi])}: {diff(res[hi], res[lo])} "
        f"({'at or below' if d_res <= 0 else 'above, within the noise' if residual_no_worse else 'worse'}); at "
        f"depth {hi} the residual net is {diff(res[hi], plain[hi])} from the plain one "
        f"({'below' if residual_beats_plain else 'not clearly below'})."
    )
    return held, verdict


def undecided(rows: list[dict], quick: bool, seeds: tuple[int, ...] | None = None) -> str:
    """Why these rows cannot decide the claim ("" when they can): --quick, one seed (when ``seeds`` is
    given), or shallow nets near chance."""
    lo = min(r["depth"] for r in rows)
    shallow = [r for r in rows if r["depth"] == lo and near_chance(r["train_error"])]
    return why_inconclusive(
        quick,
        one_seed(seeds) if seeds is not None and not quick else "",
        shallow
        and f"the depth-{lo} nets end at "
        + ", ".join(f"{r['train_error']:.0%}" for r in shallow)
        + " training error, near chance (90%): a net that has not learned cannot show what depth costs",
    )


COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def mean_curve(seed_runs: list[dict]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Training error against the step: the seeds' mean, lowest and highest (steps every run has)."""
    per_seed = [{s["step"]: 1 - s["train_acc"] for s in r["steps"]} for r in seed_runs]
    steps = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    values = [[p[s] for p in per_seed] for s in steps]
    return steps, [sum(v) / len(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def smooth(values: list, points: int = 5) -> list:
    """A running mean over ``points`` windows (steps.csv keeps about 20 windows an epoch, a few steps each:
    noisy at a few hundred images a window); the step axis is smoothed alike, so the curve keeps its place."""
    if len(values) < 10 * points:
        return list(values)
    return [sum(values[i - points + 1 : i + 1]) / points for i in range(points - 1, len(values))]


def lr_drops(steps: list[dict]) -> list[int]:
    """The steps after which the learning rate fell tenfold or more (the step schedule's decays)."""
    return [b["step"] for a, b in zip(steps, steps[1:]) if 0 < b["lr"] <= a["lr"] / 10 + 1e-12]


def epoch_test_errors(seed_runs: list[dict]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Test error (%) after each scored epoch, placed at its last step (at its epoch for runs without
    steps.csv): the seeds' mean, lowest and highest."""
    first = seed_runs[0]
    per_epoch = first["steps"][-1]["step"] // len(first["history"]) if first["steps"] else 1
    epochs = [h["epoch"] for h in first["history"] if "test_acc" in h]
    errors = [
        [100 * (1 - next(h["test_acc"] for h in r["history"] if h["epoch"] == e)) for r in seed_runs]
        for e in epochs
    ]
    return (
        [e * per_epoch for e in epochs],
        [sum(v) / len(v) for v in errors],
        [min(v) for v in errors],
        [max(v) for v in errors],
    )


def plot(runs: dict, depths: tuple[int, ...], path: Path) -> Path:
    """He et al.'s Fig. 6 from these runs: error (%) against iterations, plain left, residual right."""
    fig, axes = new_axes(10, 4.0, ncols=2, sharey=True)
    for ax, kind, title in zip(axes, ("plain", "resnet"), ("plain", "residual (ResNet)")):
        for i, depth in enumerate(depths):
            seed_runs, c = runs[(kind, depth)], COLORS[i % len(COLORS)]
            label = f"{'plain' if kind == 'plain' else 'ResNet'}-{depth}"
            steps, mean, low, high = (smooth(v) for v in mean_curve(seed_runs))
            if steps:
                ax.plot(steps, [100 * v for v in mean], color=c, lw=0.8, ls="--")
                ax.fill_between(
                    steps, [100 * v for v in low], [100 * v for v in high], color=c, alpha=0.15, lw=0
                )
            x, mean, low, high = epoch_test_errors(seed_runs)
            ax.errorbar(
                x,
                mean,
                yerr=[[m - lo for m, lo in zip(mean, low)], [hi - m for m, hi in zip(mean, high)]],
                color=c,
                lw=2.2,
                capsize=2,
                label=label,
            )
        drops = lr_drops(runs[(kind, depths[0])][0]["steps"])
        for step in drops:
            ax.axvline(step, color="0.5", lw=0.8, ls=":")
        ax.set_title(title + " (dotted: lr / 10)" if drops else title)
        ax.set_xlabel("iterations" if any(r["steps"] for v in runs.values() for r in v) else "epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, title="dashed: train, bold: test", title_fontsize=7)
    axes[0].set_ylabel("error (%)")
    # the end of training is what the claim is about: up to three times the worst final test error
    final = [100 * (1 - r["history"][-1]["test_acc"]) for v in runs.values() for r in v]
    axes[0].set_ylim(0, min(100, max(10, 3 * max(final))))
    return save_figure(fig, path)
