"""Score a trained model on a test set: accuracy, per-class accuracy, confusion matrix, its mistakes.

:func:`evaluate_source` is ``resdense evaluate`` whole (the command only parses its options): load the model,
read its test set, score it, write the confusion matrix, the worst mistakes and ``mistakes.csv``, and return
an :class:`EvalReport`. The pieces (:func:`load_test_set`, :func:`evaluate`, :func:`write_figures`) serve
training's own scoring, the int8 check and the notebook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import ImageSet
from ..data.photo import PhotoTransform
from ..errors import StorageError, UserError
from ..preprocess import Preprocess
from ..rundir import RunDir
from ..utils.device import resolve_device
from ..utils.progress import ProgressBar
from .metrics import classification_metrics
from .mistakes import Mistake, find_mistakes, most_confused, write_mistakes_csv

__all__ = [
    "EvalReport",
    "EvalResult",
    "PhotoFiles",
    "evaluate",
    "evaluate_source",
    "load_test_set",
    "score",
    "test_files",
    "worst_mistakes",
    "write_figures",
]


@dataclass
class EvalResult:
    accuracy: float
    per_class: dict[str, float]
    confusion: torch.Tensor  # (classes, classes): rows true, columns predicted
    predictions: torch.Tensor
    classes: list[str]
    n: int
    logits: torch.Tensor | None = field(default=None, repr=False)  # (n, classes), for the worst mistakes
    predictor: object = field(default=None, repr=False, compare=False)  # what scored it (for the maps)
    # top-5, per-class precision/recall/F1, macro-F1, ECE and its bins (serve.metrics), from the same logits
    metrics: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "n": self.n,
            "per_class_accuracy": self.per_class,
            "confusion": self.confusion.tolist(),
            "classes": self.classes,
            **self.metrics,
        }


def run_config(path: str | Path) -> dict:
    """The run's settings when ``path`` is (or sits in) a run folder, else {}."""
    run = RunDir.holding(path)
    return run.read_config() if run is not None and run.config.exists() else {}


def score(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> tuple[float, dict, torch.Tensor]:
    pred = logits.argmax(1).cpu()
    labels = labels.cpu()
    k = len(classes)
    confusion = torch.bincount(labels * k + pred, minlength=k * k).view(k, k)
    # counts divided in Python (double precision), as training computes the summary's test_accuracy
    per_class = {c: int(confusion[i, i]) / max(1, int(confusion[i].sum())) for i, c in enumerate(classes)}
    return int((pred == labels).sum()) / max(1, len(labels)), per_class, confusion


# images scored per step of evaluate's progress bar (the predictor batches within it)
SCORE_CHUNK = 2048


@dataclass
class PhotoFiles:
    """A folder's test split as files, each fed as a photo run's evaluation fed it (its ``Preprocess``:
    the shorter side, then the centre crop), never squashed into a square in memory first."""

    paths: list[Path]
    labels: torch.Tensor
    preprocess: Preprocess
    batch_size: int = 256

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, n: int) -> PhotoFiles:
        """The first ``n`` files (``n`` <= 0 keeps all), as ``ImageSet.subset``."""
        if not n or n >= len(self):
            return self
        return replace(self, paths=self.paths[:n], labels=self.labels[:n])

    def _fitted(self, paths) -> torch.Tensor:
        """The files decoded exactly as the streamed evaluation decodes them (the same transform), so the
        score equals the run's own."""
        pre = self.preprocess
        side = pre.input_size
        t = PhotoTransform.evaluating(pre)
        # writable and contiguous (a decoder may hand back a read-only array; torch warns on those)
        arrays = [torch.from_numpy(np.require(t(p), requirements="CW")).permute(2, 0, 1) for p in paths]
        return torch.stack(arrays) if arrays else torch.empty(0, pre.in_chans, side, side, dtype=torch.uint8)

    def logits(self, predictor, bar=None) -> torch.Tensor:
        bs = self.batch_size
        out = []
        for s in range(0, len(self), bs):
            out.append(predictor.predict_fitted(self._fitted(self.paths[s : s + bs])))
            if bar is not None:
                bar.update(min(s + bs, len(self)))
        return torch.cat(out)

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """The files at ``idx`` as the network saw them (uint8, fitted, not normalised)."""
        return self._fitted([self.paths[i] for i in idx.tolist()])


def _folder_index(folder, cfg: dict):
    """An image folder's index (its splits and classes), less the test files a run with ``cfg`` (its
    config.json) left out as bad images: they are left out of its test set here too."""
    from ..data.folder import index_folder, scan_images

    index = index_folder(folder)
    if cfg.get("skip_bad_images"):
        index = index.without(b.path for b in scan_images([p for p, _ in index.test]).bad)
    return index


def load_test_set(
    path: str | Path | None,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    preprocess: Preprocess | None = None,
    classes: list[str] | None = None,
) -> ImageSet | PhotoFiles:
    """The test split a model is scored on: the run's own data set unless ``dataset``/``data_dir`` say else
    (``path`` None: no run, Fashion-MNIST unless they say else). A folder scored by a model that is fed
    photos (``preprocess.fit == "shorter"``) is read file by file (:class:`PhotoFiles`). ``classes``: the
    model's; a folder's labels are then matched to them by name (:mod:`.classmatch`)."""
    from ..data import load_dataset
    from .classmatch import match_by_name

    cfg = run_config(path) if path else {}
    name, folder = dataset or cfg.get("dataset", "fashion-mnist"), data_dir or cfg.get("data_dir")

    def by_name(labels, folder_classes):
        return (
            match_by_name(folder_classes, classes, labels, folder) if classes and name == "folder" else labels
        )

    if name == "folder" and folder and preprocess is not None and preprocess.fit == "shorter":
        index = _folder_index(folder, cfg)
        labels = torch.tensor([y for _, y in index.test], dtype=torch.int64)
        return PhotoFiles([p for p, _ in index.test], by_name(labels, index.classes), preprocess)
    if name == "folder" and cfg.get("skip_bad_images") and folder:
        from ..data.stream import load_folder

        # the files the run left out (listed in its folder) are left out here too
        data = load_folder(folder, in_memory="yes", skip_bad_images=True)[0]
    else:
        data = load_dataset(name, folder)
    return ImageSet(data.test.images, by_name(data.test.labels, data.classes))


def evaluate(
    path: str | Path,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    test_set: ImageSet | PhotoFiles | None = None,
    predictor=None,
    progress: bool = False,
) -> EvalResult:
    """Accuracy of a run folder, weights file or exported model on its data set's test split.

    For a run folder the data set and the evaluation settings are the run's own, so the figure equals
    the run's summary. ``predictor``: the model already loaded from ``path``.
    """
    from .load import load_predictor

    if predictor is None:
        predictor = load_predictor(path, device=device)
    spec = predictor.spec
    if test_set is None:
        test_set = load_test_set(
            path, dataset=dataset, data_dir=data_dir, preprocess=spec.preprocess, classes=spec.classes
        )
    n_classes = int(test_set.labels.max()) + 1
    if n_classes > len(spec.classes):
        raise UserError(f"{path}: the model knows {len(spec.classes)} classes, the test set has {n_classes}")
    # scoring 10,000 images (twice with the flip) takes a while on a CPU: a bar on a terminal
    bar = ProgressBar(len(test_set), "scoring", enabled=progress)
    if isinstance(test_set, PhotoFiles):
        logits = test_set.logits(predictor, bar)
    else:
        chunks = []
        for s in range(0, len(test_set), SCORE_CHUNK):
            chunks.append(predictor.predict_logits(test_set.images[s : s + SCORE_CHUNK].to(device)))
            bar.update(min(s + SCORE_CHUNK, len(test_set)))
        logits = torch.cat(chunks) if chunks else torch.empty(0, len(spec.classes))
    bar.close()
    acc, per_class, confusion = score(logits, test_set.labels, spec.classes)
    metrics = classification_metrics(logits.cpu(), test_set.labels.cpu(), spec.classes)
    return EvalResult(
        acc,
        per_class,
        confusion,
        logits.argmax(1).cpu(),
        spec.classes,
        len(test_set),
        logits.cpu(),
        predictor,
        metrics,
    )


# above this many classes the confusion matrix is no readable figure (its side grows with the classes)
CONFUSION_FIGURE_MAX_CLASSES = 100


def write_figures(
    result: EvalResult, test_set: ImageSet | PhotoFiles, out_dir: Path, max_mistakes: int = 32, predictor=None
) -> list[Path]:
    """The confusion matrix and the mistakes as figures in ``out_dir``; in a notebook they are shown inline too.

    The mistakes are the worst ones (the least probability left for the true class) and, when the model is a PyTorch
    one (``predictor``, default: the one that scored ``result``), each has its Grad-CAM map of the wrong class
    under it."""
    from ..plots import confusion_figure, mistakes_figure, save_figure
    from ..utils.notebook import show_figure
    from .explain import mistake_maps

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrong = worst_mistakes(result, test_set.labels, max_mistakes)
    images = test_set.images_at(wrong) if isinstance(test_set, PhotoFiles) else test_set.images[wrong].cpu()
    images, cams = mistake_maps(
        predictor or result.predictor, images, isinstance(test_set, PhotoFiles), result.predictions[wrong]
    )
    figures = {}
    if len(result.classes) <= CONFUSION_FIGURE_MAX_CLASSES:
        figures[RunDir.CONFUSION] = confusion_figure(result.confusion, result.classes)
    else:  # one cell per class pair: 10,000 classes was a MemoryError after the score (issue 37)
        logging.getLogger("resdense").warning(
            f"{RunDir.CONFUSION} not drawn: {len(result.classes):,} classes (a figure holds up to "
            f"{CONFUSION_FIGURE_MAX_CLASSES}); mistakes.csv lists every mistake"
        )
    figures.update(reliability_figures(result))
    figures[RunDir.MISTAKES] = mistakes_figure(
        images,
        test_set.labels[wrong].tolist(),
        result.predictions[wrong].tolist(),
        result.classes,
        cams=cams,
        n=result.n,
    )
    for name, fig in figures.items():
        save_figure(fig, out_dir / name)
        show_figure(fig)
    return [out_dir / name for name in figures]


def reliability_figures(result: EvalResult) -> dict:
    """The reliability diagram (:func:`resdense.plots.reliability_figure`) by its file name, when the
    result has its calibration bins (an empty test set has none)."""
    from ..plots import reliability_figure

    calibration = result.metrics.get("calibration")
    if not calibration or not result.n:
        return {}
    return {RunDir.RELIABILITY: reliability_figure(calibration["reliability"], result.metrics["ece"])}


def metrics_line(metrics: dict) -> str:
    """``top-5 0.9990  macro-F1 0.9301  ECE 0.0123`` (top-5 only where there are more than 5 classes)."""
    parts = [f"top-5 {metrics['top5_accuracy']:.4f}"] if "top5_accuracy" in metrics else []
    return "  ".join([*parts, f"macro-F1 {metrics['macro_f1']:.4f}", f"ECE {metrics['ece']:.4f}"])


def worst_mistakes(result: EvalResult, labels: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of up to ``k`` misclassified images, the worst first (the highest loss: the least
    probability left for the true class), in test-set order when the result has no logits."""
    labels = labels.cpu()
    wrong = (result.predictions != labels).nonzero().flatten()
    if result.logits is not None and len(wrong):
        loss = -result.logits[wrong].float().log_softmax(1).gather(1, labels[wrong, None])[:, 0]
        wrong = wrong[loss.argsort(descending=True, stable=True)]
    return wrong[:k]


def test_files(
    where, test_set, *, dataset: str | None = None, data_dir: str | None = None
) -> list[str] | None:
    """The test split's files in the order the split holds them, when it comes from an image folder."""
    if isinstance(test_set, PhotoFiles):
        return [str(p) for p in test_set.paths]
    cfg = run_config(where) if where else {}
    name, folder = dataset or cfg.get("dataset"), data_dir or cfg.get("data_dir")
    if name != "folder" or not folder:
        return None
    files = [str(p) for p, _ in _folder_index(folder, cfg).test]
    return files if len(files) == len(test_set) else None


@dataclass
class EvalReport:
    """What ``resdense evaluate`` reports: the score (:class:`EvalResult`), the test-time views it was scored
    with, every mistake (worst first), the class pairs most confused and the files written."""

    model: str  # the source as given (run folder, model file or weights)
    result: EvalResult
    views: str
    mistakes: list[Mistake]
    most_confused: list[tuple[str, str, int]]  # (true, predicted, count), largest first
    figures: list[Path]  # the confusion matrix, the mistakes figure and mistakes.csv; [] when none written

    def headline(self) -> str:
        views = "" if self.views == "none" else f" (test-time views: {self.views})"
        return f"{self.model}: test accuracy {self.result.accuracy:.4f} on {self.result.n:,} images{views}"

    def lines(self) -> list[str]:
        """The report as ``resdense evaluate`` prints it: the accuracy, a bar per class, the pairs most
        confused, the five worst mistakes, the files written."""
        r = self.result
        w = max(len(c) for c in r.classes)
        out = [self.headline()]
        if r.metrics:
            out.append("  " + metrics_line(r.metrics))
        out += [f"  {c:<{w}}  {a:.4f}  {'#' * round(a * 30)}" for c, a in r.per_class.items()]
        if self.most_confused:
            out.append(
                "most confused: " + ", ".join(f"{t} -> {p} {n:,}" for t, p, n in self.most_confused[:5])
            )
        out += [
            f"  {m.file or f'test image {m.index}'}: {m.true} taken for {m.predicted} ({m.p_predicted:.2f})"
            for m in self.mistakes[:5]
        ]
        if self.figures:
            out.append("figures: " + ", ".join(str(f) for f in self.figures))
        return out

    def to_json(self) -> dict:
        """``resdense evaluate --json``'s object."""
        return {
            "model": self.model,
            **self.result.to_json(),
            "tta": self.views,
            "figures": [str(f) for f in self.figures],
            "most_confused": [{"true": t, "predicted": p, "count": n} for t, p, n in self.most_confused],
            "mistakes": [m.to_json() for m in self.mistakes],
        }


def evaluate_source(
    model: str | Path | None = None,
    *,
    weights: str | Path | None = None,
    arch: str | None = None,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    tta: str = "auto",
    device: str = "cpu",
    test_subset: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
    on_scored: Callable[[EvalReport], None] | None = None,
) -> EvalReport:
    """``resdense evaluate``: score ``model`` (a run folder, .safetensors, .onnx or TorchScript file) or
    ``weights`` (with ``arch`` where they do not name it) on the test split of its run's data set (or
    ``dataset``/``data_dir``; Fashion-MNIST for weights from no run), with the test-time views ``tta``
    ("auto": the model file's own, so a run's figure is its summary's), on the first ``test_subset`` images
    when > 0. The confusion matrix, the worst mistakes and mistakes.csv go to ``out`` (default: beside the
    model; for ``weights`` only when ``out`` is given). ``progress``: a bar while scoring. ``say``: where the
    score goes when those files cannot be written (a full or read-only folder), before the error is raised,
    so that it is not lost (the command prints it; default: the ``resdense`` logger's warning).

    ``device``: where to run the model. ``on_scored``: called with the report as soon as the score is
    known, before any figure is drawn (``resdense evaluate`` prints the accuracy then: with many classes the
    figures take long, or are skipped with a warning that must not come first)."""
    from .load import load_source

    if weights is not None and model is not None:
        raise UserError(f"give either a run/model file ({model}) or --weights, not both")
    if test_subset < 0:
        raise UserError(f"--test-subset must be >= 0, got {test_subset}")
    device = str(resolve_device(device))
    # the model first: a wrong path is reported before any data is read (or downloaded)
    predictor = load_source(model, weights=weights, arch=arch, device=device, tta=tta)
    name = model if model is not None else weights
    # weights: the data set is the weights' own run's when they come from one, else Fashion-MNIST
    where = model if model is not None else (weights if Path(weights).exists() else None)
    test_set = load_test_set(
        where,
        dataset=dataset,
        data_dir=data_dir,
        preprocess=predictor.spec.preprocess,
        classes=predictor.spec.classes,  # a folder's classes matched to the model's by name (issue 19)
    )
    files = test_files(where, test_set, dataset=dataset, data_dir=data_dir)
    if test_subset:
        test_set = test_set.subset(test_subset)
        files = files[: len(test_set)] if files else files
    result = evaluate(name, device=device, test_set=test_set, predictor=predictor, progress=progress)
    report = EvalReport(
        str(name),
        result,
        predictor.views,
        find_mistakes(result, test_set.labels, files),
        most_confused(result),
        [],
    )
    if on_scored is not None:  # the accuracy first, before the figures (which take long for many classes)
        on_scored(report)
    if out is None and model is None:
        return report  # shipped or cached weights: nowhere of the user's to write to unless out says
    src = Path(model or ".")
    folder = Path(out) if out else (src if src.is_dir() else src.parent)
    if test_subset and not out:
        # a subset's figures and mistakes.csv go beside the full test's, never over them (issue 37)
        folder = folder / f"test-subset-{test_subset}"
    try:
        report.figures = write_figures(result, test_set, folder)
        report.figures.append(write_mistakes_csv(report.mistakes, folder))
    except (StorageError, OSError):
        # a read-only or full folder: the score computed is said, not lost, before the error
        (say or logging.getLogger("resdense").warning)(
            f"{name}: test accuracy {result.accuracy:.4f} on {result.n:,} images (no figures written)"
        )
        raise
    return report
