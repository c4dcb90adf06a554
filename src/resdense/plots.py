"""Every figure resdense draws (training curves, evaluation, comparison, the studies'): built with matplotlib's object API, written as files, shown inline in a notebook.

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas: nothing here selects a backend,
writes rcParams or touches pyplot's figure list, so a user's notebook or GUI session keeps its own plotting
state (d2l readers plot inline right after training).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .record import EpochRecord
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


def _drawable(s):
    if isinstance(s, str) and any("\udc80" <= c <= "\udcff" for c in s):
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return s


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG, atomically."""
    # a file or class name that is not UTF-8 (os.fsdecode's surrogates) is drawn as its bytes, \xNN, as the
    # output files write it (utils.outputs): no font takes a surrogate, it was a TypeError at the save
    for text in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "set_text")):
        text.set_text(_drawable(text.get_text()))
    for ax in fig.axes:  # tick labels are made from the formatter's list when drawn
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t.get_text() for t in axis.get_ticklabels()]
            if any(_drawable(s) != s for s in labels):
                axis.set_ticks(axis.get_ticklocs(), [_drawable(s) for s in labels])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def curves_figure(rows: Sequence[EpochRecord], title: str = "", epochs: int | None = None):
    """d2l's Animator picture: train loss, train acc and test acc against epochs, on one axis.

    ``epochs``: the run's length, to fix the x axis while the run is still going (the live figure).
    """
    rows = [EpochRecord.from_dict(r) for r in rows]  # a run's records, or rows read back from metrics.csv
    fig = new_figure((4.5, 3.2))
    ax = fig.add_subplot()
    x = [r.epoch for r in rows]
    ax.plot(x, [r.train_loss for r in rows], "-", label="train loss")
    ax.plot(x, [r.train_acc for r in rows], "m--", label="train acc")
    scored = [r for r in rows if r.test_acc is not None]  # epochs without a score (--eval-every) are left out
    ax.plot([r.epoch for r in scored], [r.test_acc for r in scored], "g-.", label="test acc")
    integer_epochs(ax)
    last = max([*x, epochs or 0, 1])
    ax.set_xlim(0.5, last + 0.5)
    ax.grid(True, alpha=0.4)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def compare_figure(runs: Sequence[tuple[str, Sequence[dict]]]):
    """Test accuracy against epochs for several runs, one line each.

    A run scored at fewer than two epochs (progressive resizing scores only at the end) would be a lone dot:
    its training accuracy is drawn as a dashed line in the same colour, ending at its test score.
    """
    fig = new_figure((5, 3.4))
    ax = fig.add_subplot()
    for label, rows in runs:
        rows = [EpochRecord.from_dict(r) for r in rows]
        scored = [r for r in rows if r.test_acc is not None]
        x, y = [r.epoch for r in scored], [r.test_acc for r in scored]
        if len(scored) >= 2 or not rows:
            ax.plot(x, y, marker="o", ms=3, label=label)
            continue
        (line,) = ax.plot(x, y, marker="o", ms=5, ls="", label=f"{label} (test, scored at the end)")
        ax.plot(
            [r.epoch for r in rows],
            [r.train_acc for r in rows],
            ls="--",
            lw=1,
            color=line.get_color(),
            label=f"{label} (train acc)",
        )
    integer_epochs(ax)
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
    return fig


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
    total = int(matrix.sum())
    if total:
        ax.set_title(f"accuracy {float(matrix.diagonal().sum()) / total:.4f} on {total:,} images", fontsize=9)
    return fig


def reliability_figure(bins: Sequence[dict], ece: float):
    """Guo et al. 2017's reliability diagram: each confidence bin's accuracy as a bar against the diagonal
    (perfect calibration), the gap to the bin's mean confidence shaded, and how many images each bin holds
    beneath. ``bins``: rows of ``lo``, ``hi``, ``count``, ``accuracy``, ``confidence`` (None when empty)."""
    fig = new_figure((4.6, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    full = [b for b in bins if b["count"]]
    width = bins[0]["hi"] - bins[0]["lo"] if bins else 1.0
    lefts = [b["lo"] for b in full]
    top.bar(
        lefts,
        [b["accuracy"] for b in full],
        width=width,
        align="edge",
        color="tab:blue",
        edgecolor="k",
        linewidth=0.5,
        label="accuracy",
    )
    # the gap between the bin's mean confidence and its accuracy, drawn from the accuracy to the confidence
    top.bar(
        lefts,
        [b["confidence"] - b["accuracy"] for b in full],
        bottom=[b["accuracy"] for b in full],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        linewidth=0.5,
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfectly calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"reliability: ECE {ece:.4f} ({len(bins)} bins)", fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar([b["lo"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="0.6")
    bottom.set_yscale("symlog")  # one bin near 1.0 holds most images of a good model
    bottom.set_ylabel("images")
    bottom.set_xlabel("confidence (top-1 probability)")
    fig.set_layout_engine("tight")
    return fig


def _show_image(ax, img) -> None:
    """A uint8 (C, H, W) image on ``ax``: grey for one channel, colour for three."""
    if img.shape[0] == 1:
        ax.imshow(img[0].cpu().numpy(), cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(img.permute(1, 2, 0).cpu().numpy())


def _overlay(ax, img, cam) -> None:
    """``cam`` ((h, w) in [0, 1], any size) as a heat map over the image, stretched to cover it."""
    _show_image(ax, img)
    h, w = img.shape[-2:]
    ax.imshow(
        cam.cpu().numpy(),
        cmap="jet",
        alpha=0.45,
        vmin=0,
        vmax=1,
        interpolation="bilinear",
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),
    )


def _no_mistakes(fig, n: int | None) -> None:
    ax = fig.add_subplot()
    ax.axis("off")
    said = f"all {n:,} images classified right" if n else "nothing was misclassified"
    ax.text(0.5, 0.5, f"no mistakes\n({said})", ha="center", va="center", fontsize=11)


def _rgb(img):
    """uint8 (C, H, W) -> float (H, W, 3) in [0, 1] (numpy)."""
    x = img.float().cpu() / 255
    return (x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]).permute(1, 2, 0).numpy()


def _heat_tile(img, cam):
    """The image in grey with ``cam`` (resized to it) blended over it in the jet colour map (numpy)."""
    import numpy as np
    import torch
    from matplotlib import colormaps

    h, w = img.shape[-2:]
    cam = torch.nn.functional.interpolate(cam.float()[None, None], size=(h, w), mode="bilinear")[0, 0]
    grey = _rgb(img).mean(2, keepdims=True)
    return 0.55 * np.repeat(grey, 3, 2) + 0.45 * colormaps["jet"](cam.clamp(0, 1).numpy())[..., :3]


def heat_png(img, cam, scale: int = 4) -> bytes:
    """:func:`_heat_tile` as PNG bytes, enlarged ``scale`` times (nearest pixels: a 28x28 map stays legible)."""
    import io

    import numpy as np
    from PIL import Image

    tile = Image.fromarray((np.clip(_heat_tile(img, cam), 0, 1) * 255).astype(np.uint8))
    tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    tile.save(buf, format="PNG")
    return buf.getvalue()


def mistakes_figure(
    images, true, pred, classes: Sequence[str], cols: int = 8, cams=None, n: int | None = None
):
    """A grid of misclassified images titled 'true -> predicted', like d2l's show_images; with ``cams``
    (one (h, w) map each, in [0, 1]) a heat-map row under each row of images: where the model looked when it
    said the wrong class. No images: a figure that says so. ``n``: how many images were scored.

    The grid is one mosaic image with the titles as text (a few hundred milliseconds, where one axes per image
    took seconds)."""
    import numpy as np

    k_images = len(images)
    if k_images == 0:
        fig = new_figure((4, 1.4))
        _no_mistakes(fig, n)
        return fig
    cols = min(cols, k_images)
    rows = -(-k_images // cols)
    h, w = images[0].shape[-2:]
    gap, title = max(1, w // 10), int(h * 0.45)  # between tiles; above each image, for its two-line title
    per = [title + h] + ([gap + h] if cams is not None else [])
    band = sum(per) + gap
    mosaic = np.ones((rows * band, cols * (w + gap) - gap, 3))
    fig = new_figure((1.3 * cols, 1.3 * cols * mosaic.shape[0] / mosaic.shape[1]))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    for k in range(k_images):
        r, c = divmod(k, cols)
        y, x = r * band + title, c * (w + gap)
        mosaic[y : y + h, x : x + w] = _rgb(images[k])
        ax.text(
            x + w / 2,
            y - 1,
            f"{classes[true[k]]}\n-> {classes[pred[k]]}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
        if cams is not None:
            mosaic[y + h + gap : y + 2 * h + gap, x : x + w] = _heat_tile(images[k], cams[k])
    ax.imshow(mosaic.clip(0, 1), interpolation="nearest")
    if cams is not None:
        ax.set_title("each image, then where the model looked for the wrong class (Grad-CAM)", fontsize=8)
    return fig


METHOD_LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


def explanation_figure(explanations: Sequence, methods: Sequence[str]):
    """One column per image: the image as the network saw it, titled with its prediction, then one heat map
    over it per method, for the class explained (``resdense explain``)."""
    n = len(explanations)
    fig = new_figure((2.1 * n + 0.9, 2.2 * (1 + len(methods))))
    axes = fig.subplots(1 + len(methods), n, squeeze=False)
    for j, e in enumerate(explanations):
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
        _show_image(axes[0, j], e.image)
        name = (
            "/".join(Path(e.path).parts[-2:]) if e.path else f"image {j + 1}"
        )  # the folder may be the class
        axes[0, j].set_title(f"{name}\npredicted {e.predicted} {e.probability:.2f}", fontsize=8)
        for i, m in enumerate(methods, 1):
            _overlay(axes[i, j], e.image, e.cams[m])
            axes[i, j].set_title(f"where it sees {e.target}", fontsize=8)
    axes[0, 0].set_ylabel("input", fontsize=9)
    for i, m in enumerate(methods, 1):
        axes[i, 0].set_ylabel(f"{METHOD_LABELS.get(m, m)}\nat {explanations[0].layer}", fontsize=9)
    fig.set_layout_engine("tight")
    return fig


def feature_maps_figure(image, maps: Sequence, channels: int = 8, title: str = ""):
    """What each stage sees: the input, then one row per stage with its ``channels`` most active channels
    (largest mean activation), each scaled to its own range (bright: strong response)."""
    cols = channels
    fig = new_figure((1.25 * cols + 1.6, 1.3 * (1 + len(maps)) + 0.4))
    axes = fig.subplots(1 + len(maps), cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    _show_image(axes[0, 0], image)
    c, h, w = image.shape
    axes[0, 0].set_ylabel(f"input\n{c}x{h}x{w}", fontsize=8, rotation=0, ha="right", va="center")
    for i, fm in enumerate(maps, 1):
        m = fm.maps
        order = m.mean((1, 2)).argsort(descending=True)[:cols].tolist()
        for j, ch in enumerate(order):
            x = m[ch]
            lo, hi = float(x.min()), float(x.max())
            axes[i, j].imshow(
                ((x - lo) / (hi - lo if hi > lo else 1.0)).numpy(), cmap="viridis", vmin=0, vmax=1
            )
            axes[i, j].set_title(f"ch {ch}", fontsize=6, pad=2)
        shape = "x".join(map(str, m.shape))
        name = f"stem ({fm.name})" if getattr(fm, "stem", False) else f"{fm.name} ({fm.kind})"
        axes[i, 0].set_ylabel(f"{name}\n{shape}", fontsize=8, rotation=0, ha="right", va="center")
    note = f"each row: a stage's {cols} most active channels, each scaled to its own range (bright: strong)"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    fig.set_layout_engine("tight")
    return fig
