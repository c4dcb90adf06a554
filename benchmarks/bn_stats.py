"""Is a run's accuracy held back by its batch-norm running statistics rather than by its weights?

Scores each run folder's saved model as saved, then again after every batch-norm layer's running mean and
variance are re-estimated in fp32 from ``--images`` training images, exactly as ``resdense train
--bn-recalibrate N`` does after a run's last step (train/tricks.py: the same images, the same batches, the
same averaging). The option changes nothing before that step, so its effect on a finished run is this one,
paired: the same weights with and without it, no seed-to-seed noise in the difference.

A run with a validation split (``--val-split N``) is scored on it as well, and re-estimated from the rest of
the training set, as its training would have: choose on that figure, not the test set's. A run with a
weight EMA (``--ema``) is scored twice, its saved EMA weights and the live ones of its checkpoint (the EMA
copies the live model's running statistics, which belong to other weights: the case re-estimation is for).

Why: the d2l DenseNet's last-epoch test accuracy varied by 3-4 points between runs with the same training
loss (RESULTS sections 18, 21 and 22); the running statistics are the one part of the model that a test pass
uses and a training pass does not.

    python benchmarks/bn_stats.py RUN [RUN ...] [--images 20000] [--json F]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402
from resdense.data import load_dataset  # noqa: E402
from resdense.data.split import holdout  # noqa: E402
from resdense.rundir import RunDir, load_checkpoint  # noqa: E402
from resdense.serve.evaluate import evaluate  # noqa: E402
from resdense.serve.load import load_predictor  # noqa: E402
from resdense.train.tricks import recalibrate_from  # noqa: E402


def reestimate(predictor, train, n: int, batch_size: int) -> None:
    """``--bn-recalibrate n`` on a loaded run: ``train`` is its training split, ``batch_size`` its batch."""
    recalibrate_from(predictor.model, train, n, batch_size, predictor.spec.preprocess)


def scores(run: str, predictor, val) -> dict:
    out = {"test": evaluate(run, predictor=predictor).accuracy}
    if val is not None:
        out["val"] = evaluate(run, test_set=val, predictor=predictor).accuracy
    return out


def _run_folder(text: str) -> str:
    if not (Path(text) / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a run folder (no config.json in it)")
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number >= 1")
    return int(text)


def runs_parser(doc: str, images: int) -> argparse.ArgumentParser:
    """The options of this script and bn_bf16.py: run folders, the images to re-estimate from, --json."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=_run_folder)
    ap.add_argument("--images", type=_positive, default=images, help="training images to re-estimate from")
    ap.add_argument("--json", type=Path)
    return ap


def main() -> None:
    args = runs_parser(__doc__, 20000).parse_args()
    print(machine())
    data = load_dataset("fashion-mnist", progress=False)
    rows = []
    for run in args.runs:
        config = RunDir(run).read_config()
        train, val = (
            holdout(data.train, config["val_split"]) if config.get("val_split") else (data.train, None)
        )
        weights = {"saved": None}
        if config.get("ema"):
            weights = {"ema (saved)": None, "live": load_checkpoint(RunDir(run).checkpoint)["model"]}
        for which, state in weights.items():
            t = time.perf_counter()
            predictor = load_predictor(run, progress=False)
            if state is not None:
                predictor.model.load_state_dict(state)
            before = scores(run, predictor, val)
            reestimate(predictor, train, args.images, config["batch_size"])
            after = scores(run, predictor, val)
            rows.append(
                {
                    "run": run,
                    "weights": which,
                    "images": args.images,
                    "as_saved": before,
                    "recalibrated": after,
                }
            )
            line = ", ".join(f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in before)
            print(
                f"{run} [{which}]: {line} (batch-norm statistics re-estimated in fp32 from {args.images} "
                f"training images; {time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    dump(args.json, {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
