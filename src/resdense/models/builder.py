"""Building a registered model and loading weights into it: ``create_model`` (timm's and torchvision's
call), above the registry, the fit check (:mod:`.filecheck`) and the weight sources (:mod:`.pretrained`,
:mod:`.hf_hub`), which it asks for what ``weights=`` names.

Loading adapts what can be adapted and says so, once, on the ``resdense`` logger: another ``in_chans`` adapts
the first convolution (the one the model's ``pretrained_cfg`` names as ``first_conv``), another
``num_classes`` re-initialises the classifier (``pretrained_cfg``'s ``classifier``). Anything else that does
not fit is a one-line :class:`PretrainedError` naming up to three offending keys (:func:`state_dict_misfit`,
the one check, which model files are checked with too).
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Sequence
from dataclasses import replace

from torch import nn

from ..errors import UserError
from ._contract import FeatureListNet, PretrainedCfg, first_conv
from .filecheck import adapt_input_conv, remap_keys, state_dict_misfit
from .hub import PretrainedError, ShippedWeights, TorchvisionWeights
from .pretrained import SHIPPED_PREFIX, Pretrained, load_pretrained
from .registry import get_model_info

__all__ = ["create_model", "default_weights", "load_weights_into"]

log = logging.getLogger("resdense")


def default_weights(name: str) -> str:
    """What ``pretrained=True`` loads for model ``name``: torchvision's ``DEFAULT`` where its table has
    weights, the shipped ``fashion-mnist`` ones for the models shipped so; a one-line error otherwise."""
    kinds = {type(w) for w in get_model_info(name).weights.values()}
    if TorchvisionWeights in kinds:
        return "DEFAULT"
    if ShippedWeights in kinds:
        return SHIPPED_PREFIX
    raise PretrainedError(
        f"{name}: pretrained=True, but {name} has no default weights (give weights=FILE|RUN, "
        "or pretrained=False for a fresh model)"
    )


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    weights: str | os.PathLike | Pretrained | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | int | None = None,
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

    As timm's: ``pretrained=True`` loads the model's default weights (:func:`default_weights`),
    ``pretrained=False`` (the default) gives a fresh model; ``features_only=True`` gives a
    :class:`~resdense.models._contract.FeatureListNet` whose forward returns the feature maps at
    ``out_indices`` (positions in ``feature_info``; default: all) and whose ``feature_info`` has
    ``channels()`` and ``reduction()``.

    ``progress``: show a progress bar while weights are downloaded.
    """
    check_arguments(name, num_classes=num_classes, in_chans=in_chans)
    if not isinstance(pretrained, bool):
        raise TypeError(
            f"{name}: pretrained must be True or False, got {pretrained!r} (weights=SRC names a source)"
        )
    if pretrained and weights is not None:
        raise ValueError(f"{name}: give pretrained=True or weights={weights!r}, not both")
    if out_indices is not None and not features_only:
        raise ValueError(f"{name}: out_indices goes with features_only=True")
    info = get_model_info(name)
    if pretrained:
        weights = default_weights(name)
    pre = None
    if weights is not None:
        pre = (
            weights if isinstance(weights, Pretrained) else load_pretrained(weights, name, progress=progress)
        )
        pre.check_for(name)
        for k, v in pre.options.items():
            options.setdefault(k, v)  # the weights' architecture options (e.g. widths)
        head_from_weights = num_classes is None and pre.num_classes is not None
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
        # a head sized by the weights' own config must be the head they hold: re-initialising it would
        # answer from random weights (a Hub config saying 1,000 classes beside a 10-class classifier)
        load_weights_into(model, pre, name=name, refit_head=not head_from_weights)
    if features_only:
        return FeatureListNet(model, out_indices)
    return model


class ModelArgumentError(UserError, TypeError, ValueError):
    """An argument ``create_model`` cannot take, in one line (a TypeError and ValueError too: what such
    arguments raised before, so callers catching those still do)."""


def check_arguments(name, *, num_classes=None, in_chans=None) -> None:
    """The one-line :class:`ModelArgumentError` for what ``create_model`` cannot take, naming the argument: a name that
    is not a string, a ``num_classes`` or ``in_chans`` that is not a whole number in range."""
    if not isinstance(name, str) or not name:
        raise ModelArgumentError(
            f"create_model: name must be a model name (see resdense.list_models()), got {name!r}"
        )
    for arg, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ModelArgumentError(f"{name}: {arg} must be a whole number of at least {low}, got {value!r}")


def classifier_prefix(model: nn.Module) -> str | None:
    """State-dict prefix of the classifier (``fc.``, ``classifier.``, ``7.``): the name the model's
    ``pretrained_cfg`` gives (timm's ``classifier``), else found from ``get_classifier()``."""
    name = getattr(getattr(model, "pretrained_cfg", None), "classifier", None)
    if name:
        return f"{name}."
    get = getattr(model, "get_classifier", None)
    if get is None:
        return None
    head = get()
    return next((f"{n}." for n, m in model.named_modules() if m is head and n), None)


def load_weights_into(
    model: nn.Module, pretrained: Pretrained, *, name: str | None = None, refit_head: bool = True
) -> list[str]:
    """Copy ``pretrained`` into ``model``, adapting the first conv and the classifier, and give the model the
    weights' config as its ``pretrained_cfg``; returns what was adapted (also said once on the ``resdense``
    logger). One-line :class:`PretrainedError` when the weights do not fit.
    """
    label = name or type(model).__name__
    if name:
        pretrained.check_for(name)
    state = remap_keys(pretrained.state_dict)
    own = model.state_dict()
    notes: list[str] = []
    try:
        conv = first_conv(model)[0] + ".weight"
    except ValueError:
        conv = None
    if (
        conv in state
        and conv in own
        and state[conv].dim() == 4
        and state[conv].shape[1] != own[conv].shape[1]
    ):
        c_in, c_to = state[conv].shape[1], own[conv].shape[1]
        state[conv] = adapt_input_conv(c_to, state[conv])
        how = "the sum over RGB" if c_to == 1 and c_in == 3 else "repeated and rescaled"
        notes.append(f"first conv adapted from {c_in} to {c_to} input channels ({how})")
    prefix = classifier_prefix(model)
    head = {k for k in (*own, *state) if prefix and k.startswith(prefix)}
    own_head, src_head = head & set(own), head & set(state)
    if src_head and not own_head:
        notes.append("classifier dropped (num_classes=0: a feature extractor)")
    elif own_head and (own_head != src_head or any(own[k].shape != state[k].shape for k in own_head)):
        n_src = next((state[k].shape[0] for k in sorted(src_head) if k.endswith("weight")), None)
        n_own = next((own[k].shape[0] for k in sorted(own_head) if k.endswith("weight")), 0)
        was = f" (the weights have {n_src})" if n_src is not None else ""
        if not refit_head:
            raise PretrainedError(
                f"{pretrained.source}: num_classes {n_own} in its config, but its classifier has "
                f"{n_src if n_src is not None else 'no'} outputs; refusing to re-initialise the classifier "
                "and answer from it (give num_classes= to fine-tune a new head)"
            )
        notes.append(f"classifier re-initialised for {n_own} classes{was}")
    else:
        head = set()  # the weights' classifier fits and is loaded
    for k in head:
        state.pop(k, None)  # the model's own freshly initialised classifier stays
    parts = state_dict_misfit({k: v for k, v in own.items() if k not in head}, state)
    if parts:
        arch = f" (weights for {pretrained.model})" if pretrained.model and pretrained.model != name else ""
        raise PretrainedError(f"{pretrained.source}: do not fit {label}{arch}; {'; '.join(parts)}")
    for k in set(state) - set(own):
        del state[k]  # only stray num_batches_tracked remain here
    for k in set(own) - set(state):
        state[k] = own[k]  # the fresh classifier, and num_batches_tracked where the file lacks it
    model.load_state_dict(state, strict=True)
    model.pretrained_cfg = _cfg_after_loading(model, pretrained, name, own, conv, bool(head))
    if notes:
        log.warning("%s: %s", pretrained.source, "; ".join(notes))
    return notes


def _cfg_after_loading(model, pretrained: Pretrained, name, own, conv, new_head: bool) -> PretrainedCfg:
    """The loaded model's config: the weights' own (a plain state dict: the architecture's, with the source
    named), for the model's channels and classes; the layer names (first conv, classifier) the model's."""
    arch = getattr(model, "pretrained_cfg", None) or PretrainedCfg()
    cfg = pretrained.cfg or replace(arch, known_input=False)
    cfg = replace(
        cfg,
        source=pretrained.source,
        model=cfg.model or name,
        first_conv=arch.first_conv,
        classifier=arch.classifier,
    )
    if conv in own:
        cfg = cfg.for_channels(own[conv].shape[1])
    if new_head:  # a fresh classifier: the weights' class names no longer apply, whatever their number
        return replace(cfg, num_classes=arch.num_classes, classes=())
    return cfg.for_classes(arch.num_classes)
