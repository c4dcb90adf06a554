"""A run folder, as one object: the only place that knows its file names and how each is written and read.

::

    config.json        the settings, the preprocessing, the classes, the data's source (written at the start)
    checkpoint.pt      model, optimizer, epoch and metrics so far (after every epoch; resumable)
    metrics.csv        one row per epoch
    curves.png         d2l's training curves
    model.safetensors  the final weights and their spec (what predict, evaluate and export read)
    summary.json       the result (its presence marks a finished run)
    bad_images.txt     image files left out by --skip-bad-images
    tensorboard/       TensorBoard's event files (--tensorboard)
    confusion.png, mistakes.png, mistakes.csv   written by ``resdense evaluate``

Every file is written atomically (a temporary file beside it, then renamed): a run folder never holds a
half-written file, whatever kills the process. Randomness needs no saved state: every random choice of an
epoch derives from (seed, epoch), so resuming after epoch k replays epochs k+1... exactly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from pathlib import Path

from .errors import UserError
from .utils.io import atomic_path, write_json, write_text

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds", "images_per_s")


class RunDir:
    """The files of one run folder (``RunDir(path)``; nothing is touched until asked)."""

    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.pt"
    METRICS = "metrics.csv"
    CURVES = "curves.png"
    WEIGHTS = "model.safetensors"
    SUMMARY = "summary.json"
    BAD_IMAGES = "bad_images.txt"
    TENSORBOARD = "tensorboard"
    CONFUSION = "confusion.png"
    MISTAKES = "mistakes.png"
    MISTAKES_CSV = "mistakes.csv"  # every misclassified test image (its file, when it has one), worst first
    # what a training run writes; prepare(force=True) removes these (and evaluate's figures of the old model)
    # before another run takes the folder
    TRAINING_FILES = (CONFIG, CHECKPOINT, METRICS, CURVES, WEIGHTS, SUMMARY, BAD_IMAGES)
    EVALUATION_FILES = (CONFUSION, MISTAKES, MISTAKES_CSV)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    config = property(lambda self: self.path / self.CONFIG)
    checkpoint = property(lambda self: self.path / self.CHECKPOINT)
    metrics = property(lambda self: self.path / self.METRICS)
    curves = property(lambda self: self.path / self.CURVES)
    weights = property(lambda self: self.path / self.WEIGHTS)
    summary = property(lambda self: self.path / self.SUMMARY)
    bad_images = property(lambda self: self.path / self.BAD_IMAGES)
    tensorboard = property(lambda self: self.path / self.TENSORBOARD)

    @property
    def finished(self) -> bool:
        return self.summary.exists()

    @property
    def resumable(self) -> bool:
        return self.checkpoint.exists()

    # -- finding one -----------------------------------------------------------------------------------

    @classmethod
    def holding(cls, path: str | os.PathLike) -> RunDir | None:
        """The run folder ``path`` is, or whose file it names (a run's ``model.safetensors``); else None."""
        p = Path(path)
        folder = p if p.is_dir() else p.parent
        run = cls(folder)
        return run if run.config.exists() or run.weights.exists() else None

    @staticmethod
    def weights_file(path: str | os.PathLike) -> Path:
        """A run folder or a model file -> the model file; a one-line UserError when there is none."""
        p = Path(path)
        if p.is_dir():
            f = p / RunDir.WEIGHTS
            if not f.exists():
                raise UserError(
                    f"{path}: no {RunDir.WEIGHTS} in this folder (is it a finished resdense run?)"
                )
            return f
        if not p.exists():
            raise UserError(f"{path}: no such run folder or model file")
        return p

    # -- making one ready --------------------------------------------------------------------------------

    def prepare(self, *, resume: bool = False, force: bool = False, option: str = "--out") -> None:
        """Refuse to mix two runs in one folder unless asked to: ``resume`` needs a checkpoint; ``force``
        removes another run's files (and only those) first."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise UserError(f"{option} {out}: exists and is not a folder")
        if resume:
            if not self.resumable:
                raise UserError(f"--resume {out}: no {self.CHECKPOINT} in this folder, nothing to resume")
            return
        if out.exists() and any(out.iterdir()):
            if not force:
                raise UserError(f"{option} {out}: folder holds another run; use --resume to continue it or "
                                "--force to overwrite it")  # fmt: skip
            for name in self.TRAINING_FILES + self.EVALUATION_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
            shutil.rmtree(self.tensorboard, ignore_errors=True)  # another run's logs would mix with ours
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{option} {out}: cannot create the folder ({e.strerror})") from None

    # -- the files -----------------------------------------------------------------------------------------

    def _read_json(self, path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{self.path}: no {path.name} (is it a finished resdense run?)") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg})") from None

    def read_config(self) -> dict:
        return self._read_json(self.config)

    def write_config(self, config: dict) -> None:
        write_json(self.config, config)

    def read_summary(self) -> dict:
        return self._read_json(self.summary)

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary, summary)

    def write_metrics(self, rows: list[dict]) -> None:
        """metrics.csv, rewritten whole after each epoch; ``val_acc`` only for runs with a validation split."""
        buf = io.StringIO()
        cols = METRIC_COLUMNS + (("val_acc",) if any("val_acc" in r for r in rows) else ())
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        write_text(self.metrics, buf.getvalue())

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics)

    def save_checkpoint(self, state: dict) -> None:
        import torch

        with atomic_path(self.checkpoint) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> dict:
        return load_checkpoint(self.checkpoint)

    def write_bad_images(self, bad) -> None:
        """bad_images.txt: one ``path<TAB>reason`` line per file left out."""
        write_text(self.bad_images, "".join(f"{b.path}\t{b.reason}\n" for b in bad))

    def read(self) -> dict:
        """summary.json, config.json and metrics.csv of a finished run (what ``compare`` shows)."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: not a run folder")
        for name in (self.SUMMARY, self.CONFIG, self.METRICS):
            if not (self.path / name).exists():
                raise UserError(f"{self.path}: no {name} (is it a finished resdense run?)")
        return {"path": str(self.path), "summary": self.read_summary(), "config": self.read_config(),
                "metrics": self.read_metrics()}  # fmt: skip


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a metrics.csv; an empty cell is an epoch that was not scored (--eval-every): the key is
    left out, as in training."""
    with open(path, newline="") as f:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint, read with ``weights_only=True`` (tensors and plain data, never code)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint is either whole or unreadable: say which file, not a traceback
        raise UserError(f"{path}: not a readable resdense checkpoint ({type(e).__name__})") from None
