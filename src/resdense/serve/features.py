"""What each block sees: the outputs of a model's feature points (``stage_names``: the model's own
``feature_stages()``, its ``feature_info``), through the model's ``forward_intermediates`` (timm's method,
the one owner of the points), as one figure for one image (``resdense inspect MODEL|RUN --image FILE``), and
by name for ``--layer`` (any module, a point or not). Pooled embeddings of whole folders are
``serve.embed``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .predictor import Predictor

__all__ = [
    "FeatureMap",
    "feature_maps",
    "forward_intermediates",
    "resolve_layers",
    "show_features",
    "stage_names",
]


@dataclass
class FeatureMap:
    """One stage's output for one image: ``maps`` is (C, H, W), float."""

    name: str
    kind: str  # the module's class name (Sequential, DenseBlock, Residual, ...)
    maps: torch.Tensor
    stem: bool = False  # the model's stem (its first stage, before the blocks)

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.kind, "shape": list(self.maps.shape)}


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """``model`` in eval mode (batch norm's running statistics, no dropout), given back in the mode it was."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def torch_model(predictor, what: str, needs: str | None = None) -> nn.Module:
    """The predictor's PyTorch model, or one line saying that ``what`` needs one (an ONNX/TorchScript export
    has no layers to hook): the one check for features, feature maps and explanations. ``needs``: a method
    the model must have as well (embeddings call ``forward_features``)."""
    model = getattr(predictor, "model", None)
    if not isinstance(model, nn.Module) or (needs is not None and not hasattr(model, needs)):
        where = getattr(predictor, "path", None) or predictor.spec.model
        raise UserError(
            f"{where}: {what} need the PyTorch model (a run folder, .safetensors or --weights), "
            f"not a {getattr(predictor, 'backend', 'exported')} export"
        )
    return model


def stage_names(model: nn.Module) -> list[str]:
    """The model's feature points, input side first, as module names (what ``--layer`` and ``indices``
    choose from): its own ``feature_stages()`` (the names in its ``feature_info``), or for any other module
    its top-level children less the classifier."""
    if hasattr(model, "feature_stages"):
        return list(model.feature_stages())
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return [n for n, m in model.named_children() if m is not head]


def resolve_layers(model: nn.Module, layers: Sequence[int | str] | None) -> list[str]:
    """Module names for ``layers``: positions in :func:`stage_names` (negative from the end) or any module
    name of the model (None: every point); a one-line UserError listing the points otherwise."""
    stages = stage_names(model)
    if layers is None:
        return stages
    modules = dict(model.named_modules())
    names = []
    for layer in layers:
        if isinstance(layer, int):
            if not -len(stages) <= layer < len(stages):
                raise UserError(
                    f"stage index {layer}: the model has {len(stages)} stages ({', '.join(stages)})"
                )
            names.append(stages[layer])
        elif layer in modules and layer:
            names.append(layer)
        else:
            raise UserError(
                f"--layer {layer}: no such stage; choose from {', '.join(stages)} (or any module "
                "name of the model)"
            )
    return names


def forward_intermediates(
    model: nn.Module,
    x: torch.Tensor,
    indices: Sequence[int | str] | None = None,
    *,
    intermediates_only: bool = False,
):
    """``(final, intermediates)``: ``forward_features(x)`` and the outputs named by ``indices`` (positions
    in :func:`stage_names` or module names; None: every point), in that order; with ``intermediates_only``
    the list alone. The points come from the model's own ``forward_intermediates``; a module that is not a
    point (``--layer layer3.1``), or a model without the method, is read by a forward hook."""
    names = resolve_layers(model, indices)
    points = stage_names(model)
    if hasattr(model, "forward_intermediates") and all(n in points for n in names):
        final, got = model.forward_intermediates(x, [points.index(n) for n in names])
        return got if intermediates_only else (final, got)
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o)) for n in names]
    try:
        final = model.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in names if n not in seen]
    if missing:
        raise UserError(f"--layer {missing[0]}: not run by the model's forward_features")
    out = [seen[n] for n in names]
    return out if intermediates_only else (final, out)


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> list[FeatureMap]:
    """The outputs of the model's feature points for the normalised batch ``x`` of one image (1, C, H, W),
    in eval mode; points whose output is no feature map (a flatten, a classifier) are left out."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got {tuple(x.shape)}")
    names = stage_names(model)
    modules = dict(model.named_modules())
    if hasattr(model, "forward_intermediates"):
        with evaluating(model):
            maps = model.forward_intermediates(x, intermediates_only=True)
    else:
        got: dict[str, torch.Tensor] = {}
        # a copy: a later in-place op (ReLU(inplace=True)) must not change what was seen here
        hooks = [
            modules[n].register_forward_hook(lambda _m, _i, out, n=n: got.setdefault(n, out.clone()))
            for n in names
        ]
        try:
            with evaluating(model):
                model(x)
        finally:
            for h in hooks:
                h.remove()
        names = list(got)
        maps = [got[n] for n in names]
    first = names[0] if names and hasattr(model, "feature_stages") else None  # the families start with it
    return [
        FeatureMap(n, type(modules[n]).__name__, t[0].float().cpu(), n == first)
        for n, t in zip(names, maps)
        if t.dim() == 4
    ]


def show_features(
    source: Predictor | nn.Module | str | Path,
    image: str | Path | torch.Tensor,
    *,
    out: str | Path | None = None,
    channels: int = 8,
    invert: str = "auto",
    title: str | None = None,
) -> tuple[torch.Tensor, list[FeatureMap]]:
    """The feature maps of ``image`` (a file or a uint8 (C, H, W) tensor) after each stage of ``source``
    (a resdense model, a Predictor or any source ``load_predictor`` takes), fed as ``predict`` feeds it.

    Draws them as one figure (the input, then a row per stage: its ``channels`` most active channels),
    written to ``out`` (a file) when given and shown inline in a notebook. Returns the image as the network
    saw it (uint8 (C, H, W)) and the maps.

    ``invert``: as ``predict``'s (``auto``, ``yes``, ``no``); ``title``: the figure's title.
    """
    from ..plots import feature_maps_figure, save_figure
    from ..preprocess import normalize
    from ..utils.notebook import show_figure
    from .load import as_predictor
    from .predict import read_for

    predictor = as_predictor(source)
    torch_model(predictor, "feature maps")
    if isinstance(image, torch.Tensor):
        img, label = (image if image.dim() == 4 else image[None]), "image"
    else:
        img, label = read_for(predictor.spec, image, invert)[0], Path(image).name
    fitted = predictor.fit_images(img)
    pre = predictor.spec.preprocess
    maps = feature_maps(predictor.model, normalize(fitted, pre.mean, pre.std))
    fig = feature_maps_figure(
        fitted[0].cpu(),
        maps,
        channels=channels,
        title=title or f"{predictor.spec.model} on {label}: what each stage sees",
    )
    if out is not None:
        save_figure(fig, out)
    show_figure(fig)
    return fitted[0].cpu(), maps
