"""Do resdense's features make sense? Nearest neighbours on Fashion-MNIST share the query's class far more
often than chance (10%).

The pooled features (``resdense.serve.embed.embed_images``, what ``resdense embed`` writes) of the shipped
``fashion-mnist`` ResNet-20 for a gallery of training images and for test-image queries; for each query its
k nearest gallery images by cosine similarity; the share of those neighbours of the query's own class.
Baselines measured in the same run: the raw pixels, and the same network untrained (random weights).

    python benchmarks/neighbours.py [--gallery 10000] [--queries 2000] [--k 5] [--figure docs/img/neighbours.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump, machine  # noqa: E402
from resdense.data import load_fashion_mnist  # noqa: E402
from resdense.serve import load_predictor  # noqa: E402
from resdense.serve.embed import embed_images  # noqa: E402
from resdense.serve.predictor import Predictor  # noqa: E402


def neighbours(gallery: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (Q, k) of each query's k most cosine-similar gallery rows."""
    g = torch.nn.functional.normalize(gallery.float(), dim=1)
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    return (q @ g.T).topk(k, dim=1).indices


def share(idx: torch.Tensor, g_labels: torch.Tensor, q_labels: torch.Tensor) -> float:
    return float((g_labels[idx] == q_labels[:, None]).float().mean())


def figure(path: Path, q_imgs, g_imgs, idx, q_labels, g_labels, classes, rows: int = 8) -> None:
    from resdense.plots import new_figure, save_figure

    k = idx.shape[1]
    fig = new_figure((1.1 * (k + 1), 1.25 * rows))
    axes = fig.subplots(rows, k + 1, squeeze=False)
    picks = torch.linspace(0, len(q_labels) - 1, rows).long()
    for r, qi in enumerate(picks.tolist()):
        cells = [(q_imgs[qi], f"query\n{classes[q_labels[qi]]}", "k")]
        for j in idx[qi].tolist():
            same = g_labels[j] == q_labels[qi]
            cells.append((g_imgs[j], classes[g_labels[j]], "g" if same else "r"))
        for ax, (img, title, colour) in zip(axes[r], cells):
            ax.imshow(img[0].numpy(), cmap="gray")
            ax.set_title(title, fontsize=6, color=colour)
            ax.axis("off")
    fig.suptitle("each row: a test image and its nearest training images (green: same class)", fontsize=8)
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gallery", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--data-dir")
    ap.add_argument("--figure", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print(machine())
    data = load_fashion_mnist(args.data_dir, progress=False)
    g_imgs, g_labels = data.train.images[: args.gallery], data.train.labels[: args.gallery]
    q_imgs, q_labels = data.test.images[: args.queries], data.test.labels[: args.queries]
    trained = load_predictor("fashion-mnist", weights=True)
    torch.manual_seed(0)
    import resdense

    fresh = resdense.create_model("resnet20", in_chans=1, num_classes=10, widths=(16, 32, 64)).eval()
    untrained = Predictor.for_model(fresh, trained.spec)  # fed exactly as the trained one
    results = {"chance": 1 / len(data.classes)}
    idx_trained = None
    for name, feats in [
        ("raw pixels", lambda x: x.flatten(1).float()),
        ("resnet20, random weights", lambda x: embed_images(untrained, x)),
        ("resnet20, fashion-mnist weights", lambda x: embed_images(trained, x)),
    ]:
        t0 = time.perf_counter()
        idx = neighbours(feats(g_imgs), feats(q_imgs), args.k)
        results[name] = share(idx, g_labels, q_labels)
        print(
            f"{name:<34} {results[name]:.4f} of the {args.k} nearest neighbours share the class "
            f"({results[name] / results['chance']:.1f}x chance; {time.perf_counter() - t0:.1f}s)"
        )
        idx_trained = idx
    base = results["raw pixels"]
    print(f"trained features vs raw pixels: {results['resnet20, fashion-mnist weights'] / base:.3f}x")
    if args.figure:
        figure(args.figure, q_imgs, g_imgs, idx_trained, q_labels.tolist(), g_labels.tolist(), data.classes)
        print(f"figure: {args.figure}")
    if args.json:
        dump(
            args.json,
            {
                "machine": machine(),
                "k": args.k,
                "gallery": args.gallery,
                "queries": args.queries,
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
