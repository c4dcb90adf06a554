"""Name -> builder registry, in the manner of timm's ``create_model`` / ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from . import d2l, densenet, resnet


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    source: str  # where the architecture comes from


_REGISTRY: dict[str, ModelInfo] = {}


def register(name: str, builder: Callable[..., nn.Module], family: str, source: str) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelInfo(name, builder, family, source)


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:
        return str(self.args[0])


for _name, _src in [
    ("d2l_resnet18", "d2l 8.6"),
    ("d2l_densenet", "d2l 8.7"),
]:
    register(_name, getattr(d2l, _name), "d2l", _src)
for _name in [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2",
]:  # fmt: skip
    register(_name, getattr(resnet, _name), "resnet", "torchvision")
for _name in ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]:
    register(_name, getattr(resnet, _name), "resnet", "He et al. 2015 (CIFAR)")
for _name in ["plain20", "plain32", "plain44", "plain56", "plain110"]:
    register(_name, getattr(resnet, _name), "plain", "He et al. 2015 (CIFAR plain nets)")
register("d2l_plain18", d2l.d2l_plain18, "plain", "d2l 8.6 without shortcuts")
register("preact_resnet18", resnet.preact_resnet18, "resnet", "He et al. 2016 (pre-activation)")
for _name in ["densenet121", "densenet161", "densenet169", "densenet201"]:
    register(_name, getattr(densenet, _name), "densenet", "torchvision")
for _name in ["densenet_bc_40", "densenet_bc_64", "densenet_bc_100"]:
    register(_name, getattr(densenet, _name), "densenet", "Huang et al. 2017 (CIFAR, BC, k=12)")


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Registered model names matching a shell-style ``pattern``, optionally of one family."""
    return [
        n
        for n, info in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern) and (family is None or info.family == family)
    ]


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
    the weights' own; other values adapt the first conv or re-initialise the classifier, and say so. What
    the weights know about their input and classes is in ``model.pretrained_cfg``.
    """
    info = get_model_info(name)
    pre = None
    if weights is not None:
        from .pretrained import Pretrained, PretrainedError, load_pretrained

        pre = (
            weights if isinstance(weights, Pretrained) else load_pretrained(weights, name, progress=progress)
        )
        if pre.model and pre.model != name:
            raise PretrainedError(f"{pre.source}: weights for {pre.model}, not {name}")
        for k, v in pre.options.items():
            if k not in ("num_classes", "in_chans"):
                options.setdefault(k, v)  # the weights' architecture options (e.g. widths)
        if num_classes is None:
            num_classes = pre.options.get("num_classes") or (len(pre.classes) if pre.classes else None)
        if in_chans is None:
            in_chans = pre.options.get("in_chans")
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
