"""Test-time augmentations of trained runs, scored on the validation split (never on the test set).

Each run folder's model (trained with ``--val-split 10000``, e.g. kept by ``ablation.py --keep DIR``) scores
the same 10,000 held-out training images with: no augmentation, the mirror image (the recipes' ``tta_flip``),
and the mirror plus four 1-pixel shifts (each shifted image and its mirror); softmax outputs averaged.

    python benchmarks/tta.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse

import torch

from resdense.data import load_dataset
from resdense.data.split import holdout
from resdense.serve.load import load_trained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--val-split", type=int, default=10_000)
    args = ap.parse_args()
    _, val = holdout(load_dataset("fashion-mnist", None, progress=False).train, args.val_split)
    for run in args.runs:
        model, spec = load_trained(run)
        model.eval()
        with torch.no_grad():
            x = spec.preprocess(val.images)

            def probs(z: torch.Tensor, model=model) -> torch.Tensor:
                return torch.cat([model(c) for c in z.split(1000)]).softmax(1)

            plain, mirror = probs(x), probs(x.flip(-1))
            shifts = sum(
                probs(z) + probs(z.flip(-1))
                for z in (torch.roll(x, s, dims=d) for s in (1, -1) for d in (2, 3))
            )
        scores = {"none": plain, "mirror": plain + mirror, "mirror+4 shifts": plain + mirror + shifts}
        acc = {k: (v.argmax(1) == val.labels).float().mean().item() for k, v in scores.items()}
        print(run, "  ".join(f"{k} {a:.4f}" for k, a in acc.items()), flush=True)


if __name__ == "__main__":
    main()
