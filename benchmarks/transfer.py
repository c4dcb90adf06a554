"""Transfer learning on real Fashion-MNIST: does a model that learnt classes 0-4 learn classes 5-9 from few
images better than the same model from scratch?

1. Pretrain a ResNet-20 on the training images of classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat).
2. For each shot count (50 and 500 images per class of classes 5-9: Sandal, Shirt, Sneaker, Bag, Ankle
   boot), train on those few images twice with the same settings and the same number of optimizer steps:
   from the step-1 weights (``--weights RUN``; a new classifier, since the classes differ) and from scratch.
3. Score both on *all* 5,000 test images of classes 5-9 (final weights, no picking an epoch on the test set).

    python benchmarks/transfer.py [--data-dir DIR] [--pretrain-epochs 2] [--seeds 0] [--json out.json]
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
from resdense.serve import load_predictor  # noqa: E402
from resdense.train import get_recipe, train  # noqa: E402

SOURCE, TARGET = range(0, 5), range(5, 10)


def classes_subset(s: ImageSet, classes: range) -> ImageSet:
    """The images of ``classes``, relabelled 0..len-1."""
    keep = (s.labels >= classes.start) & (s.labels < classes.stop)
    return ImageSet(s.images[keep], s.labels[keep] - classes.start)


def few_shot(s: ImageSet, per_class: int, seed: int) -> ImageSet:
    """``per_class`` images of each class, drawn at random (seeded), shuffled together."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat(
        [
            (s.labels == c)
            .nonzero()
            .flatten()[torch.randperm(int((s.labels == c).sum()), generator=g)[:per_class]]
            for c in range(int(s.labels.max()) + 1)
        ]
    )
    idx = idx[torch.randperm(len(idx), generator=g)]
    return ImageSet(s.images[idx], s.labels[idx])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", help="Fashion-MNIST folder (default: searched as resdense train does)")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--widths", help="stage widths of a CIFAR ResNet, e.g. 8,16,32 (default: the model's)")
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument(
        "--pretrain-subset", type=int, default=0, help="pretrain on the first N images (smoke tests)"
    )
    ap.add_argument("--shots", default="50,500", help="images per target class, comma-separated")
    ap.add_argument("--steps", default="150,200", help="optimizer steps for each shot count (same for both)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of the few-shot draws and runs")
    ap.add_argument("--lr", type=float, default=0.05, help="peak lr of both (the fast recipe's schedule)")
    ap.add_argument("--out", type=Path, default=Path("runs/transfer"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    full = load_fashion_mnist(args.data_dir, progress=False)
    names = list(full.classes)
    src = Dataset(
        "fashion-mnist 0-4",
        classes_subset(full.train, SOURCE),
        classes_subset(full.test, SOURCE),
        names[: SOURCE.stop],
        source=str(full.source),
    )
    tgt_train, tgt_test = classes_subset(full.train, TARGET), classes_subset(full.test, TARGET)
    # training evaluates every epoch; a token test set keeps that cheap, the real score is taken after
    token = ImageSet(tgt_test.images[:64], tgt_test.labels[:64])
    options = {"widths": [int(w) for w in args.widths.split(",")]} if args.widths else {}
    base = get_recipe("fast").with_overrides(
        model=args.model, model_options=options, lr=args.lr, device="cpu", tta_flip=True
    )

    t0 = time.perf_counter()
    pre = train(
        base.with_overrides(
            epochs=args.pretrain_epochs, out=str(args.out / "pretrain"), train_subset=args.pretrain_subset
        ),
        dataset=src,
        progress=False,
        force=True,
    )
    pre_secs = time.perf_counter() - t0
    print(f"pretrained on classes 0-4: test accuracy {pre.summary['test_accuracy']:.4f} ({pre_secs:.0f}s)")

    rows = []
    for seed in map(int, args.seeds.split(",")):
        for shots, steps in zip(map(int, args.shots.split(",")), map(int, args.steps.split(","))):
            few = few_shot(tgt_train, shots, seed)
            batch = min(128, len(few) // 5)  # at least five steps an epoch
            epochs = max(1, round(steps / (len(few) // batch)))
            ds = Dataset("fashion-mnist 5-9", few, token, names[TARGET.start :], source=str(full.source))
            row = {
                "shots_per_class": shots,
                "seed": seed,
                "images": len(few),
                "batch": batch,
                "epochs": epochs,
                "steps": epochs * (len(few) // batch),
            }
            for how, weights in (("scratch", None), ("finetuned", str(pre.out_dir))):
                out = args.out / f"{how}-{shots}-seed{seed}"
                cfg = base.with_overrides(
                    epochs=epochs, batch_size=batch, seed=seed, out=str(out), weights=weights
                )
                t = time.perf_counter()
                train(cfg, dataset=ds, progress=False, force=True)
                secs = time.perf_counter() - t
                logits = load_predictor(out).predict_logits(tgt_test.images)
                acc = int((logits.argmax(1) == tgt_test.labels).sum()) / len(tgt_test)
                row[how], row[f"{how}_seconds"] = acc, round(secs, 1)
                print(
                    f"{shots:>4} images/class seed {seed}, {how:>9}: test accuracy on classes 5-9 {acc:.4f} "
                    f"({row['steps']} steps, {secs:.0f}s)",
                    flush=True,
                )
            rows.append(row)

    print("\n| images per class (classes 5-9) | steps | from scratch | fine-tuned from classes 0-4 |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['shots_per_class']} (seed {r['seed']}) | {r['steps']} | {r['scratch']:.4f} | "
            f"{r['finetuned']:.4f} |"
        )
    dump(
        args.json,
        {
            "machine": machine(),
            "pretrain": {
                "epochs": args.pretrain_epochs,
                "test_accuracy_0_4": pre.summary["test_accuracy"],
                "seconds": pre_secs,
            },
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
