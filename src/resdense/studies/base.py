"""What every study shares: its data, its runs (ordinary run folders, reused when finished), its table files,
its figures and its report.

A study folder holds ``runs/<name>/`` (one ``resdense train`` run folder each: ``evaluate`` and ``compare``
work on them), ``table.csv`` / ``table.json``, figures as PNG and ``report.md``.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TypeVar

from ..data import load_dataset
from ..data.dataset import Dataset
from ..errors import UserError
from ..rundir import RunDir
from ..train import TrainConfig, train
from ..train.settings import check_field
from ..utils.io import write_json, write_text


def training_default(name: str):
    """A training setting's default, asked of its ``TrainConfig`` declaration (never restated here)."""
    return next(f.default for f in fields(TrainConfig) if f.name == name)


_S = TypeVar("_S", bound="StudySettings")  # a study's own settings class, kept by with_overrides


@dataclass(frozen=True)
class StudySettings:
    """Settings every study has; each study adds its own fields."""

    epochs: int = 4
    train_subset: int = 10000  # the first N training images (0: all 60,000)
    test_subset: int = 0  # the first N test images (0: all 10,000)
    batch_size: int = 128
    lr: float = 0.1
    seeds: tuple[int, ...] = (0,)  # every net trains once per seed; verdicts weigh the means by the spread
    schedule: str = "onecycle"
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    augment: str = "none"
    crop_padding: int = 2
    data_dir: str | None = None
    device: str = "cpu"
    dataset: str = training_default(
        "dataset"
    )  # --dataset: fashion-mnist, or cifar10 for the paper's own data

    def with_overrides(self: _S, **overrides) -> _S:
        seed = overrides.pop("seed", None)
        if seed is not None:  # one seed, as studies took it before they took several (and --seed N)
            if overrides.get("seeds") is not None:
                raise UserError("--seed and --seeds: give one of them")
            overrides["seeds"] = (seed,)
        known = {f.name for f in fields(self)}
        for key in overrides:
            if key not in known:
                raise UserError(f"--{key.replace('_', '-')} does not apply to this study (it has no {key})")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def seed(self) -> int:
        """The one seed of a study that trains each net once (identity, efficiency)."""
        return self.seeds[0]

    def recipe(self, model: str, seed: int | None = None, **overrides) -> TrainConfig:
        """One recipe for every run of a study: SGD with momentum, no label smoothing and (unless a size asks
        for the paper's) no augmentation, so that the training error is the plain error on the training
        images. Scored every epoch, on the test subset, without test-time flips."""
        cfg = TrainConfig(
            recipe="study",
            model=model,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer="sgd",
            momentum=0.9,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            augment=self.augment,
            crop_padding=self.crop_padding,
            label_smoothing=0.0,
            tta_flip=False,
            seed=self.seed if seed is None else seed,
            device=self.device,
            train_subset=self.train_subset,
            data_dir=self.data_dir,
            dataset=self.dataset,
        )
        return cfg.with_overrides(**overrides)

    def to_dict(self) -> dict:
        return asdict(self)


# Said by every --quick report: it is the smoke version, sized to finish in minutes, not to decide anything.
QUICK_NOTE = (
    "--quick is the smoke version of this study, too small to decide the claim (run it without --quick)"
)


@dataclass
class StudyResult:
    """What a study returns: its ``name`` and folder (``out_dir``), the ``table`` (one row per net), whether
    the claim ``held`` and the ``verdict`` saying why, the ``figures`` written, and why the numbers cannot
    decide the claim (``inconclusive``, empty when they can)."""

    name: str
    out_dir: Path
    table: list[dict]
    held: bool  # whether the claim held, as the numbers decide it
    verdict: str  # one sentence saying why
    figures: list[Path]
    inconclusive: str = ""  # why these numbers cannot decide the claim ("" when they can)

    @property
    def report(self) -> Path:
        return self.out_dir / "report.md"

    @property
    def outcome(self) -> str:
        """``held``, ``not held`` or ``inconclusive`` (a size or a result that cannot test the claim)."""
        return "inconclusive" if self.inconclusive else ("held" if self.held else "not held")


def near_chance(error: float, num_classes: int = 10) -> bool:
    """An error closer to guessing than to zero: the net has not learned enough to compare it with another."""
    return error > (1 - 1 / num_classes) / 2


def why_inconclusive(quick: bool, *reasons: object) -> str:
    """One sentence out of the reasons that apply: each a string, or a false value (an empty string, or
    the false side of ``condition and "reason"``) for one that did not."""
    found = [QUICK_NOTE] if quick else []
    found += [str(r) for r in reasons if r]
    return "; ".join(found) + "." if found else ""


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """mean(a) - mean(b) and its standard error (Welch's: each side's variance over its count)."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    return ma - mb, math.sqrt(sa**2 / len(a) + sb**2 / len(b))


# How many standard errors a difference of means must exceed to count as a difference (about 95% for a
# normal spread; with 3 seeds a deliberately modest bar, stated in every report that uses it).
MARGIN = 2.0


def clearly_above(a: Sequence[float], b: Sequence[float]) -> bool:
    """mean(a) exceeds mean(b) by more than MARGIN standard errors of the difference."""
    d, se = difference(a, b)
    return d > MARGIN * se and d > 0


def one_seed(seeds: Sequence[int]) -> str:
    """Why a single seed cannot decide a claim weighed against the seeds' spread ("" for two or more)."""
    return (
        ""
        if len(seeds) > 1
        else "one seed gives no spread to weigh the differences against (use --seeds 0,1,2)"
    )


def single_seed(settings: StudySettings, study: str) -> None:
    """The studies that train each net once say so, rather than quietly use the first of several seeds."""
    if len(settings.seeds) != 1:
        raise UserError(
            f"--seeds: the {study} study trains one seed, got {','.join(map(str, settings.seeds))}"
        )


def check_positive(settings: StudySettings) -> None:
    """One-line errors for study settings that cannot work. The settings a study shares with training
    (epochs, lr, batch_size, schedule, ...) are checked by their TrainConfig declarations, the rules a
    training run's are checked by; then the study's own (seeds, widths)."""
    shared = {f.name for f in fields(TrainConfig)}
    for f in fields(settings):
        if f.name in shared:
            check_field(TrainConfig, f.name, getattr(settings, f.name))
    for seed in settings.seeds:
        check_field(TrainConfig, "seed", seed, label="--seeds")
    if not settings.seeds or len(set(settings.seeds)) != len(settings.seeds):
        raise UserError(f"--seeds: give distinct seeds, got {','.join(map(str, settings.seeds))}")
    widths = getattr(settings, "widths", None)
    if widths is not None and (len(widths) != 3 or min(widths) < 1):
        raise UserError(
            f"--widths: the CIFAR nets have three stages, give three positive widths, got {widths}"
        )


def load_data(settings: StudySettings) -> Dataset:
    """The study's data set (Fashion-MNIST unless ``dataset`` says else) with its test subset applied (training
    subsets are the recipe's own)."""
    ds = load_dataset(settings.dataset, settings.data_dir, progress=False)
    return replace(ds, test=ds.test.subset(settings.test_subset))


def run(cfg: TrainConfig, out: Path, dataset: Dataset, initial_state: dict | None = None) -> dict:
    """Train ``cfg`` into the run folder ``out``, or reuse it: a finished run (one with a summary) is read back,
    an interrupted one (a checkpoint) resumed. Returns ``{"summary": ..., "history": [...]}``."""
    run_dir = RunDir(out)
    if run_dir.config.exists():
        _check_same_recipe(cfg, run_dir)
    if run_dir.finished:
        print(f"reusing the finished run {out}", flush=True)
    elif run_dir.resumable:
        train(cfg, dataset=dataset, resume=out, progress=False)
    else:
        cfg = cfg.with_overrides(out=str(out))
        train(cfg, dataset=dataset, force=True, progress=False, initial_state=initial_state)
    # read back from the run folder either way, so a reused run gives the very same numbers
    return {
        "summary": run_dir.read_summary(),
        "history": run_dir.read_metrics(),
        "steps": run_dir.read_steps(),
    }


_RECIPE_KEYS = (
    "model",
    "model_options",
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "train_subset",
    "seed",
    "resize",
    "schedule",
    "weight_decay",
    "warmup_epochs",
    "augment",
    "crop_padding",
)


def _check_same_recipe(cfg: TrainConfig, run_dir: RunDir) -> None:
    """A run folder is reused only for the recipe it was made with: changed settings must not mix in."""
    import json

    out = run_dir.path
    saved = run_dir.read_config()
    wanted = json.loads(json.dumps(cfg.to_dict()))  # tuples -> lists, as saved
    for key in _RECIPE_KEYS:
        if saved.get(key) != wanted.get(key):
            raise UserError(
                f"{out}: this run was made with {key}={saved.get(key)!r}, the study now asks for "
                f"{wanted.get(key)!r}; use another --out or delete the folder"
            )


def write_table(out_dir: Path, rows: Sequence[dict], name: str = "table") -> None:
    write_json(out_dir / f"{name}.json", list(rows))
    buf = io.StringIO()
    columns = list(rows[0]) if rows else []
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / f"{name}.csv", buf.getvalue())


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    *,
    title: str,
    claim: str,
    held: bool,
    verdict: str,
    settings: StudySettings,
    inconclusive: str = "",
    table: str,
    figures: Sequence[Path],
    notes: str = "",
) -> None:
    """report.md: the claim and whether it held (from the numbers), the settings, the table, the figures."""
    lines = [
        f"# {title}",
        "",
        f"**Claim:** {claim}",
        "",
        (
            f"**Result: inconclusive.** {inconclusive} What these numbers show: {verdict}"
            if inconclusive
            else f"**Result: {'held' if held else 'not held'}.** {verdict}"
        ),
        "",
        "## Settings",
        "",
        *(f"- {k}: `{v}`" for k, v in settings.to_dict().items()),
        "",
        "## Table",
        "",
        table,
        "",
    ]
    if figures:
        lines += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    lines += [
        "Runs: `runs/` (ordinary run folders: `resdense evaluate` and `resdense compare` work on them).",
        "",
    ]
    write_text(out_dir / "report.md", "\n".join(lines))
