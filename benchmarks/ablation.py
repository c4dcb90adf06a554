"""One ingredient at a time against the default recipe, judged on a validation split (never the test set).

Every variant is the ``fast`` recipe with one change, trained on the training set minus 10,000 held-out
images (``--val-split 10000``, the same images for every variant) for the same number of epochs unless the
change is the epochs. The figure that decides is the final validation accuracy; images/s and wall time say
what the change costs. Test accuracy is printed too, for the record only: choosing on it is what this script
exists to avoid. One variant at a time, each in its own process, in the order given. On a machine shared
with other jobs set ``OMP_NUM_THREADS=1``: two threads that wait for each other lose most of their time there.

    python benchmarks/ablation.py [--variants base,ema,...] [--seed 0] [--budget '--epochs 3'] [--json F]
    python benchmarks/ablation.py --report F [--plot P.png]     (each variant over its seeds, against base)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from resdense.data.fashion_mnist import COUNTS  # noqa: E402
from resdense.studies.base import mean_sd  # noqa: E402

VAL_SPLIT = 10_000

# name: (what changes, resdense train options that make the change)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("the fast recipe as it is", []),
    "ema": ("EMA of the weights (decay 0.99) for evaluation", ["--ema", "0.99"]),
    "bs256": ("batch 256, lr 0.2", ["--batch-size", "256", "--lr", "0.2"]),
    "bs64": ("batch 64, lr 0.05", ["--batch-size", "64", "--lr", "0.05"]),
    "ls0": ("no label smoothing", ["--label-smoothing", "0"]),
    "erase": ("flips + random erasing", ["--augment", "flip-erase"]),
    "crop": ("flips + random crops", ["--augment", "flip-crop"]),
    "crop-erase": ("flips + random crops + random erasing", ["--augment", "flip-crop-erase"]),
    "lr0.2": ("peak lr 0.2", ["--lr", "0.2"]),
    "wide": ("resnet20 at 24/48/96 channels", ["--model-options", '{"widths": [24, 48, 96]}']),
    "wide32": ("resnet20 at 32/64/128 channels", ["--model-options", '{"widths": [32, 64, 128]}']),
    "w20": ("resnet20 at 20/40/80 channels", ["--model-options", '{"widths": [20, 40, 80]}']),
    "wide-e5": (
        "resnet20 at 24/48/96 channels, 5 epochs (about fast's time on a bf16 CPU)",
        ["--model-options", '{"widths": [24, 48, 96]}', "--epochs", "5"],
    ),
    "wide-e9": (
        "resnet20 at 24/48/96 channels, 9 epochs",
        ["--model-options", '{"widths": [24, 48, 96]}', "--epochs", "9"],
    ),
    "resnet32": ("resnet32 (deeper)", ["--model", "resnet32"]),
    "notta": ("no test-time flip", ["--no-tta-flip"]),
    # the epochs (fast has 12 since 2026-12-05; the rows of RESULTS sections 9-16 were measured against 7,
    # section 17's against 10: its e12 is today's base, its rows keep their commands)
    "e6": ("6 epochs", ["--epochs", "6"]),
    "e7": ("7 epochs (fast until 2026-12-04)", ["--epochs", "7"]),
    "e8": ("8 epochs", ["--epochs", "8"]),
    "e10": ("10 epochs (fast on 2026-12-05, before 12)", ["--epochs", "10"]),
    "e9p12": (
        "9 epochs, progressive resizing from 12 px (about e8's cost)",
        ["--epochs", "9", "--progressive-from", "12"],
    ),
    # the speed records' tricks (issue 20; train/tricks.py says what each does), one at a time over `fast`
    "whiten": ("patch-whitening init of the first convolution", ["--whiten-init"]),
    "dirac": ("identity (dirac) init of every other convolution", ["--dirac-init"]),
    "bnbias64": ("batch-norm biases at 64x the learning rate", ["--bn-bias-lr-mult", "64"]),
    "bnbias8": ("batch-norm biases at 8x the learning rate", ["--bn-bias-lr-mult", "8"]),
    # airbench: lookahead helps only with a fast batch-norm momentum, and vice versa, so they go together
    "lookahead": (
        "lookahead every 5 steps (alpha 0.5) + batch-norm momentum 0.4",
        ["--lookahead", "5", "--bn-momentum", "0.4"],
    ),
    "altflip": ("each image mirrored every other epoch, not at random", ["--alt-flip"]),
    "logit": ("the loss sees the logits / 9 (hlb-cifar10, airbench)", ["--logit-scale", str(1 / 9)]),
    "ls0.2": ("label smoothing 0.2 (airbench)", ["--label-smoothing", "0.2"]),
    "noprog": (
        "no progressive resizing, 6 epochs (the default before 2026-11-28)",
        ["--progressive-from", "0", "--epochs", "6"],
    ),
}


def training_macs(config: dict, train_images: int, side: int = 28) -> float:
    """Multiply-accumulates of a run's training: each epoch's forward MACs at its side (progressive
    resizing shrinks the first epochs') times the images, times 3 for the backward pass (the usual rule:
    the gradients of the activations and of the weights each cost about one forward)."""
    from resdense.models import create_model
    from resdense.models.summary import count_macs
    from resdense.train.config import TrainConfig, setting_names
    from resdense.train.schedule import size_at

    cfg = TrainConfig(**{k: config[k] for k in setting_names() if k in config})  # config.json holds more
    model = create_model(cfg.model, num_classes=10, in_chans=1, **cfg.model_options)
    per_side: dict[int, int] = {}
    total = 0
    for epoch in range(cfg.epochs):
        s = size_at(cfg, epoch, side)
        if s not in per_side:
            per_side[s] = count_macs(model, (1, s, s))
        total += per_side[s]
    return 3.0 * total * train_images


def run_variant(
    name: str, seed: int, data_dir: str | None, budget: list[str], val_split: int, keep: Path | None = None
) -> dict:
    extra = budget + VARIANTS[name][1]  # the variant's own options last: they win
    with tempfile.TemporaryDirectory() as tmp:
        out = (keep or Path(tmp)) / f"{name}-seed{seed}"
        cmd = ["train", "--recipe", "fast", "--val-split", str(val_split), "--seed", str(seed), *extra]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "resdense", *cmd, "--out", str(out), "--no-progress", "--force"],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
        s = json.loads((out / "summary.json").read_text())
        config = json.loads((out / "config.json").read_text())
        macs = training_macs(config, config["train_subset"] or COUNTS["train"] - val_split)
    return {
        "variant": name,
        "change": VARIANTS[name][0],
        "seed": seed,
        "val_acc": s["val_accuracy"],
        "test_acc": s["test_accuracy"],
        "images_per_s": s["images_per_s"],
        "wall_s": wall,
        "train_tmacs": macs / 1e12,
        "command": "resdense " + " ".join(cmd),
    }


def report(rows: list[dict]) -> list[dict]:
    """Per variant over its seeds: mean validation accuracy, its standard error, the gain over ``base`` and
    that gain's standard error (independent runs: the two errors add in quadrature), mean wall seconds and
    training MACs. One seed has no spread of its own: its error is borrowed from ``base``'s seeds."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["variant"], []).append(r)

    def stats(rs: list[dict]) -> tuple[float, float | None]:
        mean, sd = mean_sd([r["val_acc"] for r in rs])
        return mean, sd / math.sqrt(len(rs)) if len(rs) > 1 else None

    base_mean, base_se = stats(by["base"]) if "base" in by else (None, None)
    base_sd = None if base_se is None else base_se * math.sqrt(len(by["base"]))
    out = []
    for name, rs in by.items():
        mean, se = stats(rs)
        if se is None and base_sd is not None:
            se = base_sd / math.sqrt(len(rs))  # borrowed: the noise of one run of the recipe
        gain = gain_se = None
        if base_mean is not None and name != "base":
            gain = mean - base_mean
            gain_se = None if se is None or base_se is None else math.hypot(se, base_se)
        out.append(
            {
                "variant": name,
                "seeds": len(rs),
                "val_acc": mean,
                "se": se,
                "gain": gain,
                "gain_se": gain_se,
                "wall_s": statistics.fmean(r["wall_s"] for r in rs),
                "train_tmacs": rs[0].get("train_tmacs"),
                "change": rs[0]["change"],
            }
        )
    return out


def plot(summary: list[dict], path: Path) -> None:
    """Validation accuracy against training MACs, one point per variant (its seeds' mean, 2-SE bars)."""
    from resdense.plots import new_axes, save_figure

    fig, (ax,) = new_axes(7, 4.5)
    for r in summary:
        if r["train_tmacs"] is None:
            continue
        ax.errorbar(
            r["train_tmacs"],
            100 * r["val_acc"],
            yerr=None if r["se"] is None else 200 * r["se"],
            fmt="o",
            ms=4,
            capsize=2,
        )
        ax.annotate(
            r["variant"],
            (r["train_tmacs"], 100 * r["val_acc"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("training MACs (10^12, forward x 3)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Fashion-MNIST, 10,000 held-out training images: accuracy per training FLOP", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def print_report(summary: list[dict]) -> None:
    def pts(x: float | None) -> str:
        return "   -  " if x is None else f"{100 * x:+6.2f}"

    print("variant     seeds  val acc    SE   gain vs base   SE   train TMACs  wall s  change")
    for r in summary:
        se = "  -  " if r["se"] is None else f"{100 * r['se']:5.2f}"
        gse = "  -  " if r["gain_se"] is None else f"{100 * r['gain_se']:5.2f}"
        macs = "   -" if r["train_tmacs"] is None else f"{r['train_tmacs']:6.1f}"
        print(
            f"{r['variant']:<11} {r['seeds']:5d}  {100 * r['val_acc']:6.2f}  {se}  {pts(r['gain'])}       "
            f"{gse}  {macs}      {r['wall_s']:6.0f}  {r['change']}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="base,bs256,ema,ls0,erase,wide")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--val-split", type=int, default=VAL_SPLIT, help=f"held-out images (default {VAL_SPLIT:,})"
    )
    ap.add_argument("--data-dir")
    ap.add_argument(
        "--budget",
        default="",
        help="options every variant gets, e.g. '--train-subset 10000 --epochs 3' for a cheaper "
        "proxy of the full recipe (default: the full recipe)",
    )
    ap.add_argument("--keep", type=Path, help="keep the run folders here (default: thrown away)")
    ap.add_argument("--json", type=Path, help="append one JSON line per variant here, as each finishes")
    ap.add_argument(
        "--report",
        type=Path,
        metavar="JSONL",
        help="train nothing: summarise the rows of an earlier --json file over their seeds",
    )
    ap.add_argument("--plot", type=Path, help="with --report: accuracy against training MACs, drawn here")
    args = ap.parse_args()
    if args.report:
        try:
            rows = [json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as e:
            ap.error(f"--report {args.report}: not a readable --json file ({e})")
        if not rows or not all(
            isinstance(r, dict) and {"variant", "val_acc", "wall_s"} <= r.keys() for r in rows
        ):
            ap.error(
                f"--report {args.report}: expected the JSON lines of ablation.py --json, one row per run"
            )
        summary = report(rows)
        print_report(summary)
        if args.plot:
            plot(summary, args.plot)
        return
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    print(
        f"machine: {machine()}; validation split {args.val_split:,} images; seed {args.seed}; "
        f"budget: {args.budget or 'the recipe'}",
        flush=True,
    )
    print("variant   val acc  test acc  img/s  wall s  change", flush=True)
    for name in names:
        r = run_variant(name, args.seed, args.data_dir, args.budget.split(), args.val_split, args.keep)
        print(
            f"{name:<9} {r['val_acc']:7.4f}  {r['test_acc']:8.4f}  {r['images_per_s']:5.0f}  "
            f"{r['wall_s']:6.1f}  {r['change']}",
            flush=True,
        )
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
