"""A resdense model file checked against the model its spec builds, before anything real is allocated.

The spec's schema and bounds are :mod:`resdense.modelfile`'s; what only the models know is checked here: the
name is registered, the builder takes the options, and the file's tensors are exactly the built model's (names
and shapes). The model is built on PyTorch's ``meta`` device: shapes without storage, so a file that claims a
huge head costs nothing to refuse.
"""

from __future__ import annotations

import torch

from ..modelfile import ModelFileError, ModelSpec
from .registry import UnknownModelError, get_model_info


def _keys(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:3]) + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")


def check_model_file(spec: ModelSpec, state: dict[str, torch.Tensor], path) -> None:
    """One-line :class:`ModelFileError` naming ``path`` when ``state`` is not what ``spec`` builds."""
    try:
        info = get_model_info(spec.model)
    except UnknownModelError as e:
        raise ModelFileError(f"{path}: its spec names {e}") from None
    try:
        with torch.device("meta"):
            model = info.builder(**spec.options)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, IndexError, ZeroDivisionError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: its spec's options do not build {spec.model} ({text[:160]})") from None
    own = model.state_dict()
    # files from before batch norm counted its steps lack num_batches_tracked: it never matters
    missing = {k for k in set(own) - set(state) if not k.endswith("num_batches_tracked")}
    unexpected = {k for k in set(state) - set(own) if not k.endswith("num_batches_tracked")}
    wrong = {k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)}
    if missing or unexpected or wrong:
        parts = [f"{what}: {_keys(keys)}" for what, keys in
                 (("wrong shape", wrong), ("missing", missing), ("unexpected", unexpected)) if keys]  # fmt: skip
        raise ModelFileError(f"{path}: its tensors are not those of the {spec.model} its spec describes; "
                             + "; ".join(parts))  # fmt: skip
    cfg = getattr(model, "pretrained_cfg", None)
    head = getattr(cfg, "num_classes", None)
    if spec.classes and isinstance(head, int) and head and head != len(spec.classes):
        raise ModelFileError(f"{path}: {len(spec.classes)} class names for a head of {head} classes")
