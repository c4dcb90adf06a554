"""Name -> builder registry, in the manner of timm's ``register_model`` / ``create_model`` / ``list_models``.

Each family's file registers its builders with :func:`register_model`, beside them, together with the weight
table of each (torchvision's, shipped ones); adding a model touches its own file only.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    source: str  # where the architecture comes from
    weights: dict = field(default_factory=dict)  # tag -> TorchvisionWeights / ShippedWeights


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(family: str, source: str, *, weights: dict | None = None, name: str | None = None):
    """Decorator: register the builder under its own name (or ``name``), of ``family``, with its weights."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = ModelInfo(key, builder, family, source, dict(weights or {}))
        return builder

    return add


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:
        return str(self.args[0])


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Registered model names matching a shell-style ``pattern``, optionally of one family."""
    return [
        n
        for n, info in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern) and (family is None or info.family == family)
    ]


def list_families() -> list[str]:
    return sorted({info.family for info in _REGISTRY.values()})


def get_model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `resdense list`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    weights: str | os.PathLike | None = None,
    progress: bool = True,
    **options,
) -> nn.Module:
    """Build a registered model. ``num_classes``/``in_chans`` default to the model's own (e.g. 1000 and 3
    for the ImageNet models, 10 and 1 for the d2l ones); other keyword options go to the family's class
    (``zero_init_residual``, ``memory_efficient``, ``drop_rate``, ...).

    ``weights``: start from pretrained weights, as torchvision's ``resnet18(weights=...)``: a torchvision
    name (``"IMAGENET1K_V1"``, ``"DEFAULT"``), a state-dict or safetensors file, a resdense run folder, or
    ``"fashion-mnist"`` (see :mod:`resdense.models.pretrained`). ``num_classes``/``in_chans`` then default to
    the weights' own; other values adapt the first conv or re-initialise the classifier, and say so. How to
    feed the result is its ``default_cfg`` (the same object as ``pretrained_cfg``): the weights' own.
    """
    info = get_model_info(name)
    pre = None
    if weights is not None:
        from .pretrained import Pretrained, load_pretrained

        pre = (
            weights if isinstance(weights, Pretrained) else load_pretrained(weights, name, progress=progress)
        )
        pre.check_for(name)
        for k, v in pre.options.items():
            options.setdefault(k, v)  # the weights' architecture options (e.g. widths)
        if num_classes is None:
            num_classes = pre.num_classes
        if in_chans is None:
            in_chans = pre.in_chans
    if num_classes is not None:
        options["num_classes"] = num_classes
    if in_chans is not None:
        options["in_chans"] = in_chans
    try:
        model = info.builder(**options)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None
    if pre is not None:
        from .pretrained import load_weights_into

        load_weights_into(model, pre, name=name)
    return model
