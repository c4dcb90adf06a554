"""``--balance`` on a deliberately unbalanced Fashion-MNIST: which evens the classes out better, the
class-weighted loss or the class-balanced sampler?

Training set: from Fashion-MNIST's training images, ``--major`` images of each of classes 0-4 and ``--minor``
of each of classes 5-9 (20x fewer by default). Scored on a balanced validation split: ``--val`` other
training images of each class (never the test set: this chooses a setting). The same run (the ``fast``
recipe's optimizer and augmentation, the same seed and number of epochs) three times: ``--balance none``,
``loss`` and ``sampler``; each scored by ``resdense.serve.evaluate`` (its per-class accuracy).

    python benchmarks/balance.py [--major 1000] [--minor 50] [--val 200] [--epochs 8] [--seeds 0] [--widths 16,32,64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402
from resdense.data import Dataset, ImageSet, load_fashion_mnist  # noqa: E402
from resdense.serve.evaluate import evaluate  # noqa: E402
from resdense.train import get_recipe, train  # noqa: E402

MINOR = range(5, 10)


def draw(s: ImageSet, counts: list[int], skip: list[int], seed: int) -> ImageSet:
    """``counts[c]`` images of class c after the first ``skip[c]`` of a seeded shuffle (disjoint draws)."""
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c, n in enumerate(counts):
        mine = (s.labels == c).nonzero().flatten()
        mine = mine[torch.randperm(len(mine), generator=g)]
        idx.append(mine[skip[c] : skip[c] + n])
    idx = torch.cat(idx)
    idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + 1))]
    return ImageSet(s.images[idx], s.labels[idx])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir")
    ap.add_argument("--major", type=int, default=1000)
    ap.add_argument("--minor", type=int, default=50)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--widths", default="16,32,64", help="the ResNet-20's stage widths")
    ap.add_argument("--out", type=Path, default=Path("runs/balance"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print(machine())
    full = load_fashion_mnist(args.data_dir, progress=False)
    k = len(full.classes)
    counts = [args.minor if c in MINOR else args.major for c in range(k)]
    rows = []
    for seed in map(int, args.seeds.split(",")):
        val = draw(full.train, [args.val] * k, [0] * k, seed)
        tr = draw(full.train, counts, [args.val] * k, seed)
        ds = Dataset("fashion-mnist, unbalanced", tr, val, list(full.classes), source=str(full.source))
        for balance in ("none", "loss", "sampler"):
            out = args.out / f"{balance}-seed{seed}"
            cfg = get_recipe("fast").with_overrides(
                epochs=args.epochs,
                seed=seed,
                balance=balance,
                out=str(out),
                device="cpu",
                progressive_from=0,
                eval_every=0,
                model_options={"widths": [int(w) for w in args.widths.split(",")]},
            )
            t = time.perf_counter()
            train(cfg, dataset=ds, progress=False, force=True)
            secs = time.perf_counter() - t
            res = evaluate(out, test_set=val)
            per = list(res.per_class.values())
            minor = sum(per[c] for c in MINOR) / len(MINOR)
            major = sum(per[c] for c in range(k) if c not in MINOR) / (k - len(MINOR))
            row = {
                "seed": seed,
                "balance": balance,
                "val_accuracy": res.accuracy,
                "minority": minor,
                "majority": major,
                "per_class": res.per_class,
                "seconds": round(secs, 1),
            }
            rows.append(row)
            print(
                f"seed {seed} --balance {balance:<7}: val accuracy {res.accuracy:.4f} (classes 5-9 {minor:.4f}, "
                f"0-4 {major:.4f}; {secs:.0f}s)",
                flush=True,
            )
    print("\n| --balance | val accuracy (balanced) | classes 5-9 (minority) | classes 0-4 | vs none |")
    print("|---|---|---|---|---|")
    for r in rows:
        base = next(b for b in rows if b["seed"] == r["seed"] and b["balance"] == "none")
        print(
            f"| {r['balance']} (seed {r['seed']}) | {r['val_accuracy']:.4f} | {r['minority']:.4f} | "
            f"{r['majority']:.4f} | {r['val_accuracy'] / base['val_accuracy']:.3f}x |"
        )
    names = list(full.classes)
    print("\nper class (validation):\n| --balance | " + " | ".join(names) + " |")
    print("|---|" + "---|" * k)
    for r in rows:
        print(
            f"| {r['balance']} (seed {r['seed']}) | "
            + " | ".join(f"{r['per_class'][c]:.2f}" for c in names)
            + " |"
        )
    dump(args.json, {"machine": machine(), "counts": counts, "val_per_class": args.val, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
