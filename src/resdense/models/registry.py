"""Name -> builder registry, in the manner of timm's ``register_model`` / ``list_models``: the bottom of the
models package (it imports none of it).

Each family's file registers its builders with :func:`register_model`, beside them, together with the weight
table of each (torchvision's, shipped ones); adding a model touches its own file only. Others read it through
:func:`list_models`, :func:`is_model`, :func:`get_model_info` and :func:`model_entries`; building is
:mod:`resdense.models.builder`'s ``create_model``.
"""

from __future__ import annotations

import difflib
import fnmatch
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


def register_model(
    family: str, source: str, *, weights: dict | None = None, name: str | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register the builder under its own name (or ``name``), of ``family``, with its weights.

    ``source``: where the architecture comes from (a paper, a book section), shown by ``resdense list``.
    """

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


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _REGISTRY


def model_entries() -> list[ModelInfo]:
    """Every registered model's :class:`ModelInfo`, in registration order (``resdense list``'s)."""
    return list(_REGISTRY.values())


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``, a registered model's name; an unknown one raises
    :class:`UnknownModelError` naming the close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `resdense list`"
        raise UnknownModelError(f"unknown model {name!r}{hint}") from None
