"""bf16 autocast against fp32: training images/s of a recipe's own epoch, on this machine, in one run.

Two trainers of the recipe (``--amp yes`` and ``--amp no``, everything else the recipe's) on the same
Fashion-MNIST subset take turns: one warm-up epoch each, then ``--repeats`` rounds of one epoch each,
interleaved (a noisy neighbour hits both alike); the table gives the medians, the range and the ratio. Also
what ``--amp auto`` decides here and why (resdense.utils.amp), and the CPU's bf16 flags.

    python benchmarks/amp.py [--recipes fast] [--subset 6400] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402
from resdense.data import load_dataset  # noqa: E402
from resdense.train import Trainer, get_recipe  # noqa: E402
from resdense.utils.amp import cpu_flags, decide_amp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="fast")
    ap.add_argument("--subset", type=int, default=6400, help="training images per epoch (default 6,400)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    dev = torch.device(args.device)
    auto = decide_amp("auto", dev)
    print(f"machine: {machine()}; bf16 flags: {', '.join(cpu_flags()) or 'none'}")
    print(f"--amp auto here: {auto.dtype} ({auto.reason})", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes.split(","):
            base = get_recipe(recipe).with_overrides(train_subset=args.subset, device=args.device, epochs=1)
            data = load_dataset(base.dataset, base.data_dir, progress=False)
            sides = {
                m: Trainer(base.with_overrides(amp=m), data, Path(tmp) / f"{recipe}-{m}", progress=False)
                for m in ("no", "yes")
            }
            speeds: dict[str, list[float]] = {m: [] for m in sides}
            for t in sides.values():
                t.train_epoch(0)  # warm-up: oneDNN's kernels, the allocator
            for _ in range(args.repeats):
                for m, t in sides.items():
                    speeds[m].append(t.train_epoch(0)["images_per_s"])
            fp32, bf16 = statistics.median(speeds["no"]), statistics.median(speeds["yes"])
            results.append(
                {"recipe": recipe, "fp32": speeds["no"], "bf16": speeds["yes"], "ratio": bf16 / fp32}
            )
            print(
                f"{recipe}: fp32 {fp32:,.0f} img/s [{min(speeds['no']):,.0f}-{max(speeds['no']):,.0f}], "
                f"bf16 {bf16:,.0f} img/s [{min(speeds['yes']):,.0f}-{max(speeds['yes']):,.0f}]: "
                f"{bf16 / fp32:.2f}x",
                flush=True,
            )
    dump(args.json, {"machine": machine(), "flags": cpu_flags(), "auto": auto.reason, "results": results})


if __name__ == "__main__":
    main()
