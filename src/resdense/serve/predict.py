"""Classify image files and folders with a trained model (``resdense predict``), each image fed as the model
was evaluated in training (its ``Preprocess``: resized by its shorter side or squashed, as the run did, then
the centre crop).

What serving takes as input (:func:`image_paths`: files, and folders expanded; :func:`read_batches`: decoded
a batch at a time, so a folder of any size is never held whole), how each image is read and inverted
(:func:`read_sources`, shared with the HTTP service's uploads), the top classes (:func:`fill_top`), whole
folders a batch at a time (:func:`predict_many`) and the predictions written as CSV or JSON
(:func:`write_predictions`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..data.folder import IMAGE_EXTENSIONS, list_images
from ..data.photo import read_image
from ..errors import UserError
from ..rundir import RunDir
from ..utils.io import write_text
from ..utils.outputs import check_output as check_path
from ..utils.outputs import csv_cell, escape_name

__all__ = [
    "FORMATS",
    "Prediction",
    "check_output",
    "fill_top",
    "has_light_background",
    "image_paths",
    "inverted_for",
    "is_fashion_mnist_model",
    "predict_files",
    "predict_many",
    "predict_sources",
    "read_batches",
    "read_for",
    "read_sources",
    "warn_run_folders",
    "write_predictions",
]

FORMATS = (".csv", ".json")  # what --out writes


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class, probability), most likely first
    error: str | None = None
    inverted: bool = False  # a dark-on-light image was inverted before classifying

    def to_json(self) -> dict:
        # names escaped as in every output (utils.outputs): a name that is not UTF-8 is still valid JSON text
        if self.error:
            return {"path": escape_name(self.path), "error": escape_name(self.error)}
        d = {
            "path": escape_name(self.path),
            "top": [{"class": escape_name(c), "probability": p} for c, p in self.top],
        }
        if self.inverted:
            d["inverted"] = True
        return d


def is_fashion_mnist_model(spec) -> bool:
    """Trained on Fashion-MNIST (its ten class names, grey input): expects light garments on black."""
    from ..data.fashion_mnist import CLASSES

    return tuple(spec.classes) == CLASSES


def has_light_background(image: torch.Tensor) -> bool:
    """Whether a uint8 (1, C, H, W) image is dark-on-light: its border (the outer eighth on each side) is
    brighter than mid-grey. Product photos sit on white; Fashion-MNIST's garments sit on black."""
    x = image.float().mean(1)[0]
    h, w = x.shape
    bh, bw = max(1, h // 8), max(1, w // 8)
    border = torch.cat([x[:bh].flatten(), x[-bh:].flatten(), x[:, :bw].flatten(), x[:, -bw:].flatten()])
    return float(border.mean()) > 127.5


def inverted_for(spec, img: torch.Tensor, invert: str = "auto") -> tuple[torch.Tensor, bool]:
    """A uint8 (1, C, H, W) image as a model with ``spec`` takes it, and whether it was inverted
    (``invert``: see :func:`predict_files`)."""
    flip = invert == "yes" or (
        invert == "auto" and is_fashion_mnist_model(spec) and has_light_background(img)
    )
    return (255 - img if flip else img), flip


def read_for(spec, path, invert: str = "auto") -> tuple[torch.Tensor, bool]:
    """The file as a uint8 (1, C, H, W) image for a model with ``spec``, and whether it was inverted."""
    return inverted_for(spec, read_image(path, spec.preprocess.in_chans, spec.preprocess.resize), invert)


def predict_files(predictor, paths: list[str], top_k: int = 3, invert: str = "no") -> list[Prediction]:
    """One Prediction per path; unreadable files get an error entry and do not stop the others.

    ``invert``: ``"yes"`` inverts every image, ``"auto"`` those with a light background when the model was
    trained on Fashion-MNIST (light-on-dark), ``"no"`` none; each Prediction says whether it was.
    """
    need = predictor.spec.preprocess.resize  # each image reduced right after decoding to what this needs
    return predict_sources(
        predictor, [(str(p), partial(read_image, p, need=need)) for p in paths], top_k, invert
    )


def predict_sources(predictor, sources, top_k: int = 3, invert: str = "no") -> list[Prediction]:
    """:func:`predict_files` for any images: ``sources`` are (name, read) pairs, ``read(in_chans)`` giving a
    uint8 (1, C, H, W) image or raising a UserError (files for the CLI, uploads for the HTTP service)."""
    # each image fitted to the input size right after it is read: the batch holds input-sized images only
    results, fitted = read_sources(predictor.spec, sources, invert, fit=predictor.fit_images)
    if fitted:
        fill_top(results, predictor.predict_fitted_each(fitted), predictor.spec.classes, top_k)
    return results


def read_sources(spec, sources, invert: str = "no", fit=None) -> tuple[list[Prediction], list[torch.Tensor]]:
    """Each source read (and inverted as ``invert`` says): a Prediction per source, without its top classes
    yet, and the images that were read, in order (an unreadable one has its error and no image); each passed
    through ``fit`` (e.g. ``Predictor.fit_images``) as soon as it is read, when given."""
    if invert not in ("auto", "yes", "no"):
        raise ValueError(f"invert must be auto, yes or no, got {invert!r}")
    images, results = [], []
    for name, read in sources:
        try:
            img, flip = inverted_for(spec, read(spec.preprocess.in_chans), invert)
            images.append(img if fit is None else fit(img))
            results.append(Prediction(name, [], inverted=flip))
        except UserError as e:
            results.append(Prediction(name, [], error=str(e)))
    return results, images


def fill_top(results: list[Prediction], logits: torch.Tensor, classes: list[str], top_k: int) -> None:
    """The top ``top_k`` classes by probability for the readable results, from their ``logits`` in order."""
    probs = logits.softmax(1)
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    good = [r for r in results if r.error is None]
    for r, v, i in zip(good, values.tolist(), indices.tolist()):
        r.top = [(classes[j], float(pv)) for pv, j in zip(v, i)]


# -- files and folders, a batch at a time (predict DIR, embed) ------------------------------------------


def image_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Every input as files: a file stays (whatever its name: a bad one is reported when read); a folder
    gives its image files, recursively, sorted, hidden ones left out. A folder without images, or a path
    that does not exist, is a one-line :class:`UserError`."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = list_images(p)
            if not files:
                raise UserError(f"{p}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            warn_run_folders(files)
            out += files
        else:
            out.append(p)  # missing or unreadable: an error entry when read, the others go on
    return out


def warn_run_folders(files: Sequence[Path]) -> list[Path]:
    """The run folders among ``files``' folders, each warned about: a run given as the images once had its
    own figures (curves, confusion matrix) classified without a word (issue 37)."""

    def is_run(folder: Path) -> bool:  # the run's settings and its trained weights (or a checkpoint)
        return (folder / RunDir.CONFIG).is_file() and any(
            (folder / n).is_file() for n in (RunDir.WEIGHTS, RunDir.CHECKPOINT)
        )

    runs = sorted(folder for folder in {f.parent for f in files} if is_run(folder))
    for run in runs:
        logging.getLogger("resdense").warning(
            f"{escape_name(str(run))}: a run folder; its figures are classified as images "
            "(give the run as the model, and the images to classify after it)"
        )
    return runs


def read_batches(
    paths: Sequence[Path], in_chans: int, batch_size: int, need: int | None = None
) -> Iterator[tuple[list[int], list[torch.Tensor], list[tuple[int, str]]]]:
    """``paths`` a batch at a time, decoded only then (a folder of any size is never held whole): per
    batch the indices of the files read, their images (uint8 (1, C, H, W), each its own size) and
    ``(index, message)`` for those that could not be read. ``need``: see :func:`read_image`."""
    for start in range(0, len(paths), batch_size):
        good, images, bad = [], [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                images.append(read_image(paths[i], in_chans, need))
                good.append(i)
            except UserError as e:
                bad.append((i, str(e)))
        yield good, images, bad


def predict_many(
    predictor,
    inputs: Sequence[str | os.PathLike],
    *,
    top_k: int = 3,
    invert: str = "no",
    batch_size: int = 256,
) -> Iterator[Prediction]:
    """One :class:`Prediction` per image of ``inputs`` (files and folders), in order,
    ``batch_size`` files decoded and run at a time."""
    paths = [str(p) for p in image_paths(inputs)]
    for s in range(0, len(paths), batch_size):
        yield from predict_files(predictor, paths[s : s + batch_size], top_k=top_k, invert=invert)


def check_output(out: str | os.PathLike, force: bool = False) -> Path:
    """``--out`` checked before any work (a .csv or .json file in an existing folder; an existing file kept
    unless ``force``)."""
    return check_path(out, suffixes=FORMATS, force=force)


def write_predictions(results: list[Prediction], out: str | os.PathLike) -> Path:
    """``out`` (.csv: path, class, probability, the top classes, error; .json: predict --json's list),
    written atomically; names escaped and cells spreadsheet-safe (:mod:`resdense.utils.outputs`). The
    command checked ``out`` before its work (:func:`check_output`); here it is only told apart by its
    extension."""
    p = Path(out)
    if p.suffix.lower() not in FORMATS:
        raise UserError(f"--out {escape_name(str(p))}: expected a .csv or .json file name")
    if p.suffix.lower() == ".json":
        write_text(p, json.dumps([r.to_json() for r in results], indent=2) + "\n")
        return p
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "class", "probability", "top", "inverted", "error"])
    for r in results:
        best = r.top[0] if r.top else ("", float("nan"))
        top = "; ".join(f"{escape_name(c)} {q:.4f}" for c, q in r.top)
        w.writerow(
            [
                csv_cell(r.path),
                csv_cell(best[0]),
                "" if r.error else f"{best[1]:.4f}",
                csv_cell(top),
                int(r.inverted),
                csv_cell(r.error or ""),
            ]
        )
    write_text(p, buf.getvalue())
    return p
