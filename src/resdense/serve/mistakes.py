"""Which test images a model gets wrong, by name: every mistake with its file (or its index in the test set),
the true and predicted classes and their probabilities, worst first (fastai's ``plot_top_losses``), and the
class pairs most often confused (fastai's ``most_confused``); written as the run folder's mistakes.csv.

Each reads an :class:`~resdense.serve.evaluate.EvalResult` (its predictions, logits, confusion matrix and
classes); :mod:`.evaluate` builds on this module, not the other way round."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from ..rundir import RunDir
from ..utils.io import write_text
from ..utils.outputs import csv_cell, escape_name

__all__ = ["Mistake", "find_mistakes", "most_confused", "write_mistakes_csv"]


@dataclass
class Mistake:
    index: int  # position in the test split
    file: str  # the image file, or "" for a data set without files (Fashion-MNIST)
    true: str
    predicted: str
    p_predicted: float
    p_true: float  # low: a confident mistake (a large loss), listed first

    def to_json(self) -> dict:
        # names escaped as in every output (utils.outputs): a file name that is not UTF-8 is still JSON text
        d = asdict(self)
        return {**d, **{k: escape_name(d[k]) for k in ("file", "true", "predicted")}}


def find_mistakes(result, labels, files: list[str] | None = None) -> list[Mistake]:
    """Every misclassified test image, the most confident mistakes (lowest probability of the true class)
    first."""
    labels = labels.cpu()
    wrong = (result.predictions != labels).nonzero().flatten().tolist()
    probs = result.logits.softmax(1) if result.logits is not None else None
    out = []
    for i in wrong:
        t, p = int(labels[i]), int(result.predictions[i])
        pp = float(probs[i, p]) if probs is not None else float("nan")
        pt = float(probs[i, t]) if probs is not None else float("nan")
        out.append(Mistake(i, files[i] if files else "", result.classes[t], result.classes[p], pp, pt))
    return sorted(out, key=lambda m: (m.p_true, m.index))


def most_confused(result, top: int = 10) -> list[tuple[str, str, int]]:
    """``(true, predicted, count)`` of the off-diagonal cells of the confusion matrix, largest first."""
    m = result.confusion
    # the non-zero cells only (row by row, as before): a loop over every cell took hours at 10,000 classes
    cells = m.nonzero()
    cells = cells[cells[:, 0] != cells[:, 1]]
    counts = m[cells[:, 0], cells[:, 1]]
    order = (-counts).sort(stable=True).indices[:top]
    c = result.classes
    return [(c[int(cells[i, 0])], c[int(cells[i, 1])], int(counts[i])) for i in order]


def write_mistakes_csv(mistakes: list[Mistake], out_dir: str | Path) -> Path:
    """``out_dir``/mistakes.csv, one row per mistake (columns as :class:`Mistake`), written atomically; names
    escaped and spreadsheet-safe (:func:`~resdense.utils.outputs.csv_cell`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "file", "true", "predicted", "p_predicted", "p_true"])
    for m in mistakes:
        names = [csv_cell(m.file), csv_cell(m.true), csv_cell(m.predicted)]
        w.writerow([m.index, *names, f"{m.p_predicted:.4f}", f"{m.p_true:.4f}"])
    path = Path(out_dir) / RunDir.MISTAKES_CSV
    write_text(path, buf.getvalue())
    return path
