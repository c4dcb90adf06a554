"""Is a run's test accuracy held back by its batch-norm running statistics rather than by its weights?

Scores each run folder's saved model on its test split as saved, then again after every batch-norm layer's
running mean and variance are re-estimated in fp32 from the first ``--images`` training images (train mode,
cumulative average, no gradient, nothing else changed). Why: the d2l DenseNet trained under bf16 autocast
ended 3-4 points under fp32 on the test set with the same training loss (RESULTS sections 18 and 21); the
running statistics are the one part of the model that a test pass uses and a training pass does not.

    python benchmarks/bn_stats.py RUN [RUN ...] [--images 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import update_bn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from resdense.data import load_dataset  # noqa: E402
from resdense.serve.evaluate import evaluate  # noqa: E402
from resdense.serve.load import load_predictor  # noqa: E402


def reestimate(predictor, images: torch.Tensor, batch: int = 256) -> None:
    """Every batch-norm layer's running statistics anew, in fp32, from ``images`` (uint8, N x C x H x W), each
    batch fed as the model's own preprocessing says. torch's ``update_bn`` does the bookkeeping (reset, a
    cumulative average instead of the momentum one, train mode for the pass, everything restored after)."""
    batches = (predictor.spec.preprocess(images[s : s + batch]) for s in range(0, len(images), batch))
    update_bn(batches, predictor.model, predictor.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--images", type=int, default=20000, help="training images to re-estimate from")
    args = ap.parse_args()
    print(machine())
    data = load_dataset("fashion-mnist", progress=False)
    for run in args.runs:
        t = time.perf_counter()
        predictor = load_predictor(run)
        before = evaluate(run, predictor=predictor).accuracy
        reestimate(predictor, data.train.images[: args.images])
        after = evaluate(run, predictor=predictor).accuracy
        print(f"{run}: test acc as saved {before:.4f}, batch-norm statistics re-estimated in fp32 from "
              f"{args.images} training images {after:.4f} ({time.perf_counter() - t:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
