"""A run folder, as one object: the only place that knows its file names and how each is written and read.

::

    config.json        the settings as settled, the preprocessing, the classes, the data's source, and under
                       "plan" what the run settled (device, precision, batch per process, sizes; at the start)
    checkpoint.pt      model, optimizer, epoch and metrics so far (after every epoch; resumable)
    metrics.csv        one row per epoch (an EpochRecord, resdense/record.py, less its curve)
    curves.png         d2l's training curves
    model.safetensors  the final weights and their spec (what predict, evaluate and export read)
    summary.json       the result (its presence marks a finished run)
    bad_images.txt     image files left out by --skip-bad-images
    tensorboard/       TensorBoard's event files (--tensorboard)
    confusion.png, mistakes.png, mistakes.csv   written by ``resdense evaluate``
    explain.png, features.png     written by ``resdense explain`` and ``resdense inspect --image``
    .lock              the PID of the process training in the folder (a POSIX lock, released when it ends or dies)

Every file is written atomically (a temporary file beside it, then renamed): a run folder never holds a
half-written file, whatever kills the process; the temporary files a killed run left are removed when the
folder is next taken. One process at a time trains in a folder (the lock); ``--force`` removes only files a
run writes, and never the current folder; a full or read-only disk is one line naming the folder. Randomness needs no saved state: every random choice of an
epoch derives from (seed, epoch), so resuming after epoch k replays epochs k+1... exactly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError
from .record import EpochRecord
from .utils.io import (
    STORAGE_ERRNOS,
    remove_temp_files,
    storage_error,
    temp_files,
    write_bytes,
    write_json,
    write_text,
)

try:
    import fcntl
except ImportError:  # not POSIX: no lock (one process per folder is then the user's to keep)
    fcntl = None

log = logging.getLogger("resdense")
_HELD: dict[Path, int] = {}  # run folders this process holds the lock of -> the lock file's descriptor

# metrics.csv's columns: fields of an EpochRecord (record.py), its within-epoch curve going to steps.csv
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds", "images_per_s")
# steps.csv: the training loss and accuracy over windows of steps (a history row's "curve"), against the
# optimizer step that ends each window: He et al.'s Fig. 6 plots training error against iterations
STEP_COLUMNS = ("step", "epoch", "train_loss", "train_acc", "lr")


class RunDir:
    """The files of one run folder (``RunDir(path)``; nothing is touched until asked)."""

    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.pt"
    METRICS = "metrics.csv"
    STEPS = "steps.csv"  # training loss/accuracy within epochs, against the step (windows of steps)
    CURVES = "curves.png"
    WEIGHTS = "model.safetensors"
    SUMMARY = "summary.json"
    BAD_IMAGES = "bad_images.txt"
    TENSORBOARD = "tensorboard"
    CONFUSION = "confusion.png"
    MISTAKES = "mistakes.png"
    EXPLAIN = "explain.png"  # resdense explain: class-activation maps over the images
    FEATURES = "features.png"  # resdense inspect --image: the feature maps after each stage
    MISTAKES_CSV = "mistakes.csv"  # every misclassified test image (its file, when it has one), worst first
    RELIABILITY = "reliability.png"  # resdense evaluate: the reliability diagram (calibration)
    # what a training run writes; prepare(force=True) removes these (and evaluate's figures of the old model)
    # before another run takes the folder
    TRAINING_FILES = (CONFIG, CHECKPOINT, METRICS, STEPS, CURVES, WEIGHTS, SUMMARY, BAD_IMAGES)
    EVALUATION_FILES = (CONFUSION, MISTAKES, MISTAKES_CSV, EXPLAIN, FEATURES, RELIABILITY)
    LOCK = ".lock"
    # what a run that never reached its first checkpoint leaves; a fresh start takes such a folder over
    UNFINISHED_FILES = (CONFIG, BAD_IMAGES, TENSORBOARD, LOCK)

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
    steps = property(lambda self: self.path / self.STEPS)
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

    @classmethod
    def own_names(cls) -> set[str]:
        """Every name a run folder may hold that resdense writes (the upper-case names of this class)."""
        return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}

    def foreign_files(self) -> list[str]:
        """What the folder holds that no resdense command wrote (a ``--force`` must never delete it)."""
        own = self.own_names()
        temps = {t.name for name in own for t in temp_files(self.path, name)}
        return sorted(p.name for p in self.path.iterdir() if p.name not in own and p.name not in temps)

    def prepare(self, *, resume: bool = False, force: bool = False, option: str = "--out") -> None:
        """Take the folder for a run (its lock; the temporary files a killed run left are removed), refusing
        to mix two runs in one folder unless asked to: ``resume`` needs a checkpoint; ``force`` removes
        another run's files (and only those: a folder holding anything else, or the current folder, is
        refused). A run that ended before its first checkpoint is taken over without ``force``."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise UserError(f"{option} {out}: exists and is not a folder")
        if resume:
            option = "--resume"
            if not self.resumable:
                if out.is_dir() and self.config.exists():
                    raise UserError(
                        f"--resume {out}: the run ended before its first checkpoint (no "
                        f"{self.CHECKPOINT}), so there is nothing to resume; start it again with the same command, without --resume"
                    )
                raise UserError(f"--resume {out}: no {self.CHECKPOINT} in this folder, nothing to resume")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno in STORAGE_ERRNOS:
                raise storage_error(out, e) from None
            raise UserError(f"{option} {out}: cannot create the folder ({e.strerror})") from None
        self.lock(option)
        try:
            self._take(resume, force, option)
        except BaseException:
            self.unlock()
            raise

    def _take(self, resume: bool, force: bool, option: str) -> None:
        out = self.path
        for name in self.TRAINING_FILES:  # the lock is ours: no one else writes these now
            remove_temp_files(out, name, older_than=0)
        if resume:
            return
        entries = {p.name for p in out.iterdir()} - {self.LOCK}
        if not entries:
            return
        if entries <= set(self.UNFINISHED_FILES) and self.config.exists():
            log.info("%s %s: starting again (the run there ended before its first checkpoint)", option, out)
        elif not force:
            raise UserError(
                f"{option} {out}: folder holds another run; use --resume to continue it or "
                "--force to overwrite it"
            )
        else:
            here = Path.cwd().resolve()
            if out.resolve() in (here, *here.parents):
                raise UserError(
                    f"{option} {out}: --force refuses the current folder (or one above it); "
                    "give the run its own folder"
                )
            foreign = self.foreign_files()
            if foreign:
                more = f" (and {len(foreign) - 3} more)" if len(foreign) > 3 else ""
                raise UserError(
                    f"{option} {out}: --force would delete files resdense did not write "
                    f"({', '.join(foreign[:3])}{more}); choose another folder"
                )
        for name in self.own_names() - {self.LOCK, self.TENSORBOARD}:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
            remove_temp_files(out, name, older_than=0)
        shutil.rmtree(self.tensorboard, ignore_errors=True)  # another run's logs would mix with ours

    # -- one process at a time ---------------------------------------------------------------------------

    def lock(self, option: str = "--out") -> None:
        """Hold the folder's lock (a POSIX record lock on ``.lock``, which names our PID) until :meth:`unlock`
        or exit; a one-line UserError naming the other process's PID when one holds it.

        A POSIX lock, not an flock: an flock is shared with forked children (the stream's decoding workers),
        which outlive a killed trainer for a moment and kept the folder locked against its own resume; a
        POSIX lock belongs to the process alone and goes with it."""
        key = self.path.resolve()
        if fcntl is None or key in _HELD:
            return
        path = self.path / self.LOCK
        try:
            fd = _open_lock(path)
        except OSError as e:
            if e.errno in STORAGE_ERRNOS:
                raise storage_error(self.path, e, "its lock file") from None
            raise
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{option} {self.path}: another resdense process (PID {other}) is using this "
                "folder; wait for it to end, or give this run another folder"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            os.close(fd)
            if e.errno in STORAGE_ERRNOS:
                raise storage_error(self.path, e, "its lock file") from None
            raise
        _HELD[key] = fd

    def unlock(self) -> None:
        fd = _HELD.pop(self.path.resolve(), None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing releases the lock; the file stays (removing it would race a locker)

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

    def write_metrics(self, rows: Sequence[EpochRecord]) -> None:
        """metrics.csv, rewritten whole after each epoch; ``val_acc`` only for runs with a validation split."""
        rows = [EpochRecord.from_dict(r) for r in rows]
        buf = io.StringIO()
        cols = METRIC_COLUMNS + (("val_acc",) if any(r.val_acc is not None for r in rows) else ())
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.to_dict().items()})
        write_text(self.metrics, buf.getvalue())

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics)

    def write_steps(self, rows: Sequence[EpochRecord]) -> None:
        """steps.csv from the records' ``curve`` (``[step, loss, acc, lr]`` per window of steps)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(STEP_COLUMNS)
        for r in map(EpochRecord.from_dict, rows):
            for step, loss, acc, lr in r.curve:
                w.writerow([int(step), r.epoch, f"{loss:.6g}", f"{acc:.6g}", f"{lr:.6g}"])
        write_text(self.steps, buf.getvalue())

    def read_steps(self) -> list[dict]:
        """The rows of steps.csv (``[]`` for a run made before it existed)."""
        if not self.steps.exists():
            return []
        return read_metrics(self.steps, key="step")

    def save_checkpoint(self, state: dict) -> None:
        import torch

        buf = (
            io.BytesIO()
        )  # torch's C++ writer on a full disk fails obscurely; Python's write says it in a line
        torch.save(state, buf)
        write_bytes(self.checkpoint, buf.getbuffer())

    def load_checkpoint(self) -> dict:
        return load_checkpoint(self.checkpoint)

    def write_bad_images(self, bad) -> None:
        """bad_images.txt: one ``path<TAB>reason`` line per file left out, each escaped as every output's
        names are (``utils.outputs.escape_name``: a name that is not UTF-8 or holds a newline or tab)."""
        from .utils.outputs import escape_name

        write_text(self.bad_images, "".join(f"{escape_name(b.path)}\t{escape_name(b.reason)}\n" for b in bad))

    def read(self) -> dict:
        """summary.json, config.json and metrics.csv of a finished run (what ``compare`` shows)."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: not a run folder")
        for name in (self.SUMMARY, self.CONFIG, self.METRICS):
            if not (self.path / name).exists():
                raise UserError(f"{self.path}: no {name} (is it a finished resdense run?)")
        return {
            "path": str(self.path),
            "summary": self.read_summary(),
            "config": self.read_config(),
            "metrics": self.read_metrics(),
        }


def _open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)


def read_metrics(path: str | os.PathLike, key: str = "epoch") -> list[dict]:
    """The rows of a metrics.csv (or steps.csv, ``key="step"``); an empty cell is an epoch that was not
    scored (--eval-every): the key is left out, as in training."""
    ints = ("epoch", "step")
    try:
        with open(path, newline="") as f:
            rows = [
                {k: (int(v) if k in ints else float(v)) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)
            ]
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (ValueError, TypeError, csv.Error, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable metrics file ({str(e).splitlines()[0][:120]})") from None
    if any(None in r or key not in r for r in rows):
        raise UserError(f"{path}: not a readable metrics file (a row without its {key}, or extra cells)")
    return rows


CHECKPOINT_KEYS = {"epoch": int, "model": dict, "optimizer": dict, "history": list, "config": dict}


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint, read with ``weights_only=True`` (tensors and plain data, never code), and checked: the
    keys a run writes with their types, tensors for weights, one history row per epoch done, each an epoch's
    record."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint is either whole or unreadable: say which file, not a traceback
        raise UserError(f"{path}: not a readable resdense checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: not a resdense checkpoint (it holds a {type(ckpt).__name__})")
    for key, kind in CHECKPOINT_KEYS.items():
        if key not in ckpt:
            raise UserError(
                f"{path}: not a resdense checkpoint (no {key!r}; written by another tool or version?)"
            )
        if not isinstance(ckpt[key], kind) or (kind is int and isinstance(ckpt[key], bool)):
            raise UserError(f"{path}: not a resdense checkpoint ({key!r} is a {type(ckpt[key]).__name__})")
    for key in ("model", "ema"):
        weights = ckpt.get(key)
        if weights is not None and (
            not isinstance(weights, dict)
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())
        ):
            raise UserError(f"{path}: not a resdense checkpoint ({key!r} is not a state dict)")
    epoch, history = ckpt["epoch"], ckpt["history"]
    if epoch < 1 or len(history) != epoch or not all(isinstance(r, dict) for r in history):
        raise UserError(f"{path}: damaged checkpoint (epoch {epoch}, {len(history)} rows of metrics)")
    try:
        for row in history:
            EpochRecord.from_dict(row)  # each row an epoch's record (what the trainer reads back)
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: damaged checkpoint (a row of its metrics: {e})") from None
    if not isinstance(ckpt.get("elapsed", 0.0), int | float):
        raise UserError(f"{path}: damaged checkpoint (elapsed is not a number)")
    return ckpt
