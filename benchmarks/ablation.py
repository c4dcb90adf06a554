"""One ingredient at a time against the default recipe, judged on a validation split (never the test set).

Every variant is the ``fast`` recipe with one change, trained on the training set minus 10,000 held-out
images (``--val-split 10000``, the same images for every variant) for the same number of epochs unless the
change is the epochs. The figure that decides is the final validation accuracy; images/s and wall time say
what the change costs. Test accuracy is printed too, for the record only: choosing on it is what this script
exists to avoid. One variant at a time, each in its own process, in the order given. On a machine shared
with other jobs set ``OMP_NUM_THREADS=1``: two threads that wait for each other lose most of their time there.

    python benchmarks/ablation.py [--variants base,ema,...] [--seed 0] [--budget '--epochs 3'] [--json F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

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
    "resnet32": ("resnet32 (deeper)", ["--model", "resnet32"]),
    "notta": ("no test-time flip", ["--no-tta-flip"]),
    "e6": ("6 epochs instead of 7", ["--epochs", "6"]),
    "e8": ("8 epochs instead of 7", ["--epochs", "8"]),
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
        proc = subprocess.run([sys.executable, "-m", "resdense", *cmd, "--out", str(out), "--no-progress", "--force"],
                              capture_output=True, text=True)  # fmt: skip
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
        s = json.loads((out / "summary.json").read_text())
    return {"variant": name, "change": VARIANTS[name][0], "seed": seed, "val_acc": s["val_accuracy"],
            "test_acc": s["test_accuracy"], "images_per_s": s["images_per_s"], "wall_s": wall,
            "command": "resdense " + " ".join(cmd)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="base,bs256,ema,ls0,erase,wide")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--val-split", type=int, default=VAL_SPLIT, help=f"held-out images (default {VAL_SPLIT:,})"
    )
    ap.add_argument("--data-dir")
    ap.add_argument("--budget", default="",
                    help="options every variant gets, e.g. '--train-subset 10000 --epochs 3' for a cheaper "
                    "proxy of the full recipe (default: the full recipe)")  # fmt: skip
    ap.add_argument("--keep", type=Path, help="keep the run folders here (default: thrown away)")
    ap.add_argument("--json", type=Path, help="append one JSON line per variant here, as each finishes")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    print(f"machine: {machine()}; validation split {args.val_split:,} images; seed {args.seed}; "
          f"budget: {args.budget or 'the recipe'}", flush=True)  # fmt: skip
    print("variant   val acc  test acc  img/s  wall s  change", flush=True)
    for name in names:
        r = run_variant(name, args.seed, args.data_dir, args.budget.split(), args.val_split, args.keep)
        print(f"{name:<9} {r['val_acc']:7.4f}  {r['test_acc']:8.4f}  {r['images_per_s']:5.0f}  "
              f"{r['wall_s']:6.1f}  {r['change']}", flush=True)  # fmt: skip
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
