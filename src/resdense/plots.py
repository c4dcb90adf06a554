"""Every figure resdense draws (training curves, evaluation, comparison, the studies'): built with matplotlib's object API, written as files, shown inline in a notebook.

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas: nothing here selects a backend,
writes rcParams or touches pyplot's figure list, so a user's notebook or GUI session keeps its own plotting
state (d2l readers plot inline right after training).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .utils.io import atomic_path


def new_figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # draws to memory; attached to this figure only, not made the global backend
    return fig


def new_axes(width: float, height: float, ncols: int = 1, sharey: bool = False):
    """A new figure and its ``ncols`` axes side by side (the studies' figures)."""
    fig = new_figure((width, height))
    fig.set_layout_engine("tight")
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def curves_figure(rows: Sequence[dict], title: str = "", epochs: int | None = None):
    """d2l's Animator picture: train loss, train acc and test acc against epochs, on one axis.

    ``epochs``: the run's length, to fix the x axis while the run is still going (the live figure).
    """
    fig = new_figure((4.5, 3.2))
    ax = fig.add_subplot()
    x = [r["epoch"] for r in rows]
    ax.plot(x, [r["train_loss"] for r in rows], "-", label="train loss")
    ax.plot(x, [r["train_acc"] for r in rows], "m--", label="train acc")
    scored = [r for r in rows if "test_acc" in r]  # epochs without a score (--eval-every) are left out
    ax.plot([r["epoch"] for r in scored], [r["test_acc"] for r in scored], "g-.", label="test acc")
    integer_epochs(ax)
    last = max([*x, epochs or 0, 1])
    ax.set_xlim(0.5, last + 0.5)
    ax.grid(True, alpha=0.4)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_curves(rows: Sequence[dict], path: str | Path, title: str = "") -> None:
    save_figure(curves_figure(rows, title), path)


def compare_figure(runs: Sequence[tuple[str, Sequence[dict]]]):
    """Test accuracy against epochs for several runs, one line each."""
    fig = new_figure((5, 3.4))
    ax = fig.add_subplot()
    for label, rows in runs:
        rows = [r for r in rows if "test_acc" in r]
        ax.plot([r["epoch"] for r in rows], [r["test_acc"] for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
    return fig


def plot_compare(runs: Sequence[tuple[str, Sequence[dict]]], path: str | Path) -> None:
    save_figure(compare_figure(runs), path)


def confusion_figure(matrix, classes: Sequence[str]):
    n = len(classes)
    fig = new_figure((1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax = fig.add_subplot()
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
    return fig


def plot_confusion(matrix, classes: Sequence[str], path: str | Path) -> None:
    save_figure(confusion_figure(matrix, classes), path)


def mistakes_figure(images, true, pred, classes: Sequence[str], cols: int = 8):
    """A grid of misclassified images titled 'true -> predicted', like d2l's show_images."""
    n = len(images)
    if n == 0:
        return no_mistakes_figure()
    rows = max(1, -(-n // cols))
    fig = new_figure((1.4 * cols, 1.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            img = images[k]
            if img.shape[0] == 1:
                ax.imshow(img[0].cpu().numpy(), cmap="gray")
            else:
                ax.imshow(img.permute(1, 2, 0).cpu().numpy())
            ax.set_title(f"{classes[true[k]]}\n-> {classes[pred[k]]}", fontsize=7)
    return fig


def no_mistakes_figure(text: str = "no mistakes: every test image was classified correctly"):
    """What mistakes.png shows when there are none (a blank grid would look like a failure)."""
    fig = new_figure((5, 1.2))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11)
    return fig


def plot_mistakes(images, true, pred, classes: Sequence[str], path: str | Path, cols: int = 8) -> None:
    save_figure(mistakes_figure(images, true, pred, classes, cols), path)
