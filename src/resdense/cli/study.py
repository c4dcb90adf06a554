"""``resdense study NAME``: one of the studies that make the seed's claims visible, as a folder of runs, a
table, figures and a report that says whether the claim held."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .train import add_setting_options

# the training settings a study takes from the command line (studies.base.StudySettings has them too)
SHARED = ("dataset", "data_dir", "device", "epochs", "train_subset", "test_subset", "batch_size", "lr")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_parser(sub) -> None:
    p = sub.add_parser(
        "study",
        help="run a study of the chapter's claims (degradation, identity, gradients, efficiency)",
        description="Train the runs a study needs (finished runs are reused), then write report.md, figures "
        "and the table (CSV, JSON) into the study folder. --quick: a smoke version (seconds to minutes), too small to "
        "decide a claim (its report says inconclusive).",
    )
    from ..studies import STUDIES

    p.add_argument("name", choices=list(STUDIES), help="which study")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke version (seconds to minutes), as the tests run it; too small to decide the claim",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help="degradation: He et al.'s CIFAR-10 schedule on all of the data set (64k iterations, depths up to "
        "110, 3 seeds; with --dataset cifar10 the paper's own experiment, Fig. 6): a GPU's size "
        "(benchmarks/gpu.sh runs it)",
    )
    p.add_argument("--out", help="study folder (default runs/studies/NAME, or NAME-quick with --quick)")
    # the settings a study shares with training: their options as `resdense train` has them (one declaration,
    # train/config.py); the study's own defaults apply (identity's --epochs: those of the shallow nets)
    add_setting_options(p, only=SHARED, note="default: the study's own")
    p.add_argument(
        "--seeds",
        type=_ints,
        help="seeds, e.g. 0,1,2: degradation and gradients train every net "
        "once per seed and weigh the differences against the seeds' spread (default 0,1,2; "
        "identity and efficiency: one seed, default 0)",
    )
    p.add_argument("--seed", type=int, help="one seed (the same as --seeds N)")
    p.add_argument("--depths", type=_ints, help="degradation: depths, e.g. 20,32,44,56")
    p.add_argument("--depth", type=int, help="identity: the shallow depth; gradients: the depth")
    p.add_argument("--deep-depth", type=int, help="identity: the depth after deepening")
    p.add_argument("--more-epochs", type=int, help="identity: epochs after deepening")
    p.add_argument(
        "--widths",
        type=_ints,
        help="degradation, identity, gradients: stage widths, e.g. 16,32,64 (the paper's)",
    )
    p.add_argument("--models", type=_names, help="efficiency: comma-separated model names")
    p.set_defaults(func=run)


OPTIONS = (
    *SHARED,
    "seeds",
    "seed",
    "depths",
    "depth",
    "deep_depth",
    "more_epochs",
    "widths",
    "models",
)


def run(args) -> int:
    from .. import studies

    overrides = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    size = {}
    if args.paper:
        if args.name != "degradation" or args.quick:
            raise UserError("--paper: only the degradation study has a paper size, and not with --quick")
        size = {"size": "paper"}
    suffix = "-quick" if args.quick else "-paper" if args.paper else ""
    out = args.out or f"runs/studies/{args.name}{suffix}"
    if args.out is not None:  # before any training: a folder (made if missing), not a file
        from ..utils.outputs import check_output

        check_output(args.out, kind="folder")
    try:
        result = studies.STUDIES[args.name](out, quick=args.quick, **size, **overrides)
    except UserError as e:
        raise UserError(str(e)) from None
    if result.inconclusive:
        print(
            f"{args.name}: claim inconclusive: {result.inconclusive} What the numbers show: {result.verdict}"
        )
    else:
        print(f"{args.name}: claim {'held' if result.held else 'NOT held'}. {result.verdict}")
    print(f"report: {result.report}")
    return 0
