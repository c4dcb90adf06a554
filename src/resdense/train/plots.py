"""Figures written as files (d2l draws them live in Jupyter; a command-line run keeps them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..utils.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers, and no GUI event loop in a training run
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)


def plot_curves(rows: Sequence[dict], path: str | Path, title: str = "") -> None:
    """d2l's Animator picture: train loss, train acc and test acc against epochs, on one axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["train_loss"] for r in rows], "-", label="train loss")
    ax.plot(epochs, [r["train_acc"] for r in rows], "m--", label="train acc")
    ax.plot(epochs, [r["test_acc"] for r in rows], "g-.", label="test acc")
    ax.set_xlabel("epoch")
    ax.set_xlim(0.5, max(epochs[-1], 1) + 0.5) if epochs else None
    ax.grid(True, alpha=0.4)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path)


def plot_compare(runs: Sequence[tuple[str, Sequence[dict]]], path: str | Path) -> None:
    """Test accuracy against epochs for several runs, one line each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, rows in runs:
        ax.plot([r["epoch"] for r in rows], [r["test_acc"] for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_confusion(matrix, classes: Sequence[str], path: str | Path) -> None:
    plt = _pyplot()
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    m = matrix.float()
    ax.imshow((m / m.sum(1, keepdim=True).clamp(min=1)).numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            v = int(matrix[i, j])
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="k")
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _save(fig, path)


def plot_mistakes(images, true, pred, classes: Sequence[str], path: str | Path, cols: int = 8) -> None:
    """A grid of misclassified images titled 'true -> predicted', like d2l's show_images."""
    plt = _pyplot()
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = images[k]
            if img.shape[0] == 1:
                ax.imshow(img[0].cpu().numpy(), cmap="gray")
            else:
                ax.imshow(img.permute(1, 2, 0).cpu().numpy())
            ax.set_title(f"{classes[true[k]]}\n-> {classes[pred[k]]}", fontsize=7)
    _save(fig, path)
