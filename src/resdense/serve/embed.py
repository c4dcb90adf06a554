"""Pooled features of any resdense model for images and whole folders (``resdense embed``): the features the
classifier reads, or a stage's output averaged over its positions, read and run a batch at a time, written as
``.npy`` with the list of files (or parquet, where pyarrow is installed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..preprocess import normalize
from ..utils.io import atomic_path
from ..utils.outputs import check_output, escape_name, write_together
from .features import forward_intermediates, resolve_layers, torch_model
from .predict import image_paths, read_batches

__all__ = ["Embeddings", "check_outputs", "embed", "embed_images", "output_files", "write_embeddings"]


@torch.no_grad()
def embed_fitted(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """Float32 features (N, D) of a normalised batch: the pooled features the classifier reads (``layer``
    None), or the named stage's output averaged over its positions."""
    if layer is None:
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
    else:
        (stage,) = forward_intermediates(model, x, [layer], intermediates_only=True)
        feats = stage.float().mean((-2, -1)) if stage.dim() == 4 else stage.flatten(1)
    return feats.float().flatten(1).cpu()


def embed_images(
    predictor, images: torch.Tensor, layer: str | None = None, batch_size: int = 256
) -> torch.Tensor:
    """Features (N, D) of uint8 images (N, C, H, W), each fed as the model's spec says (its preprocess)."""
    model = torch_model(predictor, "features", needs="forward_features")
    pre = predictor.spec.preprocess
    if layer is not None:
        resolve_layers(model, [layer])
    outs = []
    for s in range(0, images.shape[0], batch_size):
        fitted = pre.fit_images(images[s : s + batch_size].to(predictor.device))
        outs.append(embed_fitted(model, normalize(fitted, pre.mean, pre.std), layer))
    return torch.cat(outs) if outs else torch.empty(0, 0)


@dataclass
class Embeddings:
    features: np.ndarray  # float32 (N, D), row i for paths[i]
    paths: list[str]
    layer: str  # "pooled" or the stage's name
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message): files left out


def embed(
    predictor, inputs: Sequence[str | os.PathLike], *, layer: str | None = None, batch_size: int = 256
) -> Embeddings:
    """Features of image files and folders (see :func:`~resdense.serve.predict.image_paths`), read and run
    a batch at a time; unreadable files are left out and listed in ``errors``."""
    model = torch_model(predictor, "features", needs="forward_features")
    if layer is not None:
        layer = resolve_layers(model, [layer])[0]
    paths = image_paths(inputs)
    pre = predictor.spec.preprocess
    rows, kept, errors = [], [], []
    for good, images, bad in read_batches(paths, pre.in_chans, batch_size, pre.resize):
        errors += [(str(paths[i]), msg) for i, msg in bad]
        if not images:
            continue
        try:
            fitted = torch.cat([pre.fit_images(im.to(predictor.device)) for im in images])
        except ValueError as e:
            raise UserError(f"{paths[good[0]]}: {e}") from None
        rows.append(embed_fitted(model, normalize(fitted, pre.mean, pre.std), layer).numpy())
        kept += [str(paths[i]) for i in good]
    feats = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    return Embeddings(feats.astype(np.float32, copy=False), kept, layer or "pooled", errors)


def output_files(out: str | os.PathLike) -> list[Path]:
    """The files ``--out F`` writes: ``F.npy`` and ``F.txt`` (the file list, one path a line, row i on line
    i, each escaped as :func:`~resdense.utils.outputs.escape_name` says so that a name holding a newline is
    still one line), or ``F.parquet`` alone (a ``path`` column and one column per feature)."""
    p = Path(out)
    if p.suffix.lower() == ".parquet":
        return [p]
    p = p if p.suffix.lower() == ".npy" else p.with_name(p.name + ".npy")
    return [p, p.with_suffix(".txt")]


def check_outputs(out: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """``--out`` checked before any work: a file name (not a folder: ``out/`` once wrote ``./out.npy``), in
    an existing folder, and each file it names new unless ``force``."""
    check_output(out, force=True)  # the name itself: a folder, an empty name, a missing parent
    return [check_output(f, force=force) for f in output_files(out)]


def write_embeddings(result: Embeddings, out: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Write ``result`` as :func:`output_files` says, both files or neither (each written to a temporary
    file first, renamed together); an existing output is refused (one line) unless ``force``."""
    files = check_outputs(out, force=force)
    if files[0].suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError(
                f"--out {files[0]}: parquet needs pyarrow (pip install pyarrow), or write .npy"
            ) from None
        cols = {
            "path": [escape_name(p) for p in result.paths],
            **{f"f{j}": result.features[:, j] for j in range(result.features.shape[1])},
        }
        with atomic_path(files[0]) as tmp:
            pq.write_table(pa.table(cols), tmp)
        return files

    def save_array(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, result.features)

    listing = "".join(f"{escape_name(p)}\n" for p in result.paths)
    return write_together([(files[0], save_array), (files[1], lambda tmp: tmp.write_text(listing, "utf-8"))])
