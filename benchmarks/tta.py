"""Test-time views of trained runs, scored on the validation split (never on the test set).

Each run folder's model (trained with ``--val-split 10000``, e.g. kept by ``ablation.py --keep DIR``) scores
the same 10,000 held-out training images with every view of ``resdense.serve.TTA_VIEWS`` (``none``, ``flip``:
the recipes' ``tta_flip``, ``flip-translate``: the multi-crop), through the one function that training,
``predict`` and ``evaluate`` use (``tta_forward``), so what this measures is what they do.

    python benchmarks/tta.py RUN [RUN ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resdense.data import load_dataset
from resdense.data.split import holdout
from resdense.errors import UserError
from resdense.serve.load import load_trained
from resdense.serve.predictor import TTA_VIEWS, predict_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--val-split", type=int, default=10_000)
    ap.add_argument("--json", type=Path, help="append one JSON line per run here")
    args = ap.parse_args()
    models = []
    for run in args.runs:  # every run read before the data: a wrong folder fails at once, in one line
        try:
            models.append((run, load_trained(run)))
        except (UserError, OSError) as e:
            ap.error(f"{run}: not a resdense run folder or model file ({e})")
    _, val = holdout(load_dataset("fashion-mnist", None, progress=False).train, args.val_split)
    for run, (model, spec) in models:
        model.eval()
        acc = {}
        for views in TTA_VIEWS:
            logits = predict_logits(model, val.images, spec.preprocess, tta_flip=views, batch_size=1000)
            acc[views] = (logits.argmax(1) == val.labels).float().mean().item()
        print(run, "  ".join(f"{k} {a:.4f}" for k, a in acc.items()), flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps({"run": str(run), **acc}) + "\n")


if __name__ == "__main__":
    main()
