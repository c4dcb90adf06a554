"""What each block sees: the outputs of a model's stages (``stage_names``: each family's
``feature_stages()``), as timm's ``forward_intermediates`` returns them (the final feature map and the list
of intermediates) and as one figure for one image (``resdense inspect MODEL|RUN --image FILE``).
Pooled embeddings of whole folders are ``serve.embed``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

__all__ = [
    "FeatureMap",
    "feature_maps",
    "forward_intermediates",
    "resolve_stages",
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


def _stage_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    named = dict(model.named_modules())
    return [(n, named[n]) for n in stage_names(model)]


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
        raise UserError(f"{where}: {what} need the PyTorch model (a run folder, .safetensors or --weights), "
                        f"not a {getattr(predictor, 'backend', 'exported')} export")  # fmt: skip
    return model


def stage_names(model: nn.Module) -> list[str]:
    """The model's stages, input side first, as module names (what ``--layer`` and ``indices`` choose from):
    the family's own ``feature_stages()`` (the stem, then a ResNet's stages, a DenseNet's dense blocks and
    transitions, the book's ``b1``..``b5``; the stem first, as timm's feature_info lists it), or for any
    other module its top-level children less the classifier."""
    if hasattr(model, "feature_stages"):
        return list(model.feature_stages())
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return [n for n, m in model.named_children() if m is not head]


def resolve_stages(model: nn.Module, layers: Sequence[int | str] | None) -> list[str]:
    """The module names ``layers`` names (positions in :func:`stage_names` or module names; None: every
    stage); a one-line :class:`UserError` listing the stages for one the model does not have."""
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
            raise UserError(f"--layer {layer}: no such stage; choose from {', '.join(stages)} (or any module "
                            "name of the model)")  # fmt: skip
    return names


def forward_intermediates(
    model: nn.Module,
    x: torch.Tensor,
    indices: Sequence[int | str] | None = None,
    *,
    intermediates_only: bool = False,
):
    """``(final, intermediates)``: ``forward_features(x)`` and the outputs of the stages ``indices`` names
    (positions in :func:`stage_names` or module names; None: every stage), in that order. With
    ``intermediates_only`` the list alone (timm's ``forward_intermediates`` contract)."""
    names = resolve_stages(model, indices)
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
    """The outputs of the model's stages for the normalised batch ``x`` of one image (1, C, H, W); stages
    whose output is no feature map (a flatten, a classifier) are left out."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image (1, C, H, W), got {tuple(x.shape)}")
    got: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in _stage_modules(model):
        # a copy: a later in-place op (ReLU(inplace=True)) must not change what was seen here
        hooks.append(module.register_forward_hook(lambda _m, _i, out, n=name: got.setdefault(n, out.clone())))
    try:
        with evaluating(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    stages = _stage_modules(model)
    kinds = {n: type(m).__name__ for n, m in stages}
    first = (
        stages[0][0] if stages and hasattr(model, "feature_stages") else None
    )  # the families start with it
    return [FeatureMap(n, kinds[n], t[0].float().cpu(), n == first) for n, t in got.items() if t.dim() == 4]


def show_features(
    source,
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
    saw it (uint8 (C, H, W)) and the maps."""
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
    fig = feature_maps_figure(fitted[0].cpu(), maps, channels=channels,
                              title=title or f"{predictor.spec.model} on {label}: what each stage sees")  # fmt: skip
    if out is not None:
        save_figure(fig, out)
    show_figure(fig)
    return fitted[0].cpu(), maps
