"""Whole folders through ``predict``: image files and folders expanded (:mod:`.inputs`), classified a batch
at a time (a folder of any size is never decoded whole), written as CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import UserError
from ..utils.io import write_text
from .inputs import image_paths
from .predict import Prediction, predict_files

__all__ = ["predict_many", "write_predictions"]

FORMATS = (".csv", ".json")


def predict_many(predictor, inputs: Sequence[str | os.PathLike], *, top_k: int = 3, invert: str = "no",
                 batch_size: int = 256) -> Iterator[Prediction]:  # fmt: skip
    """One :class:`~resdense.serve.predict.Prediction` per image of ``inputs`` (files and folders), in order,
    ``batch_size`` files decoded and run at a time."""
    paths = [str(p) for p in image_paths(inputs)]
    for s in range(0, len(paths), batch_size):
        yield from predict_files(predictor, paths[s : s + batch_size], top_k=top_k, invert=invert)


def check_output(out: str | os.PathLike) -> Path:
    p = Path(out)
    if p.suffix.lower() not in FORMATS:
        raise UserError(f"--out {p}: expected a .csv or .json file name")
    return p


def write_predictions(results: list[Prediction], out: str | os.PathLike) -> Path:
    """``out`` (.csv: path, class, probability, the top classes, error; .json: predict --json's list),
    written atomically."""
    p = check_output(out)
    if p.suffix.lower() == ".json":
        write_text(p, json.dumps([r.to_json() for r in results], indent=2) + "\n")
        return p
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "class", "probability", "top", "inverted", "error"])
    for r in results:
        best = r.top[0] if r.top else ("", float("nan"))
        top = "; ".join(f"{c} {q:.4f}" for c, q in r.top)
        w.writerow(
            [r.path, best[0], "" if r.error else f"{best[1]:.4f}", top, int(r.inverted), r.error or ""]
        )
    write_text(p, buf.getvalue())
    return p
