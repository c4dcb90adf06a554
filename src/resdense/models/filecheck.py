"""Whether weights fit a model: a model's options and a resdense model file checked against the model they
build, before anything real is allocated, and the one state-dict fit check (:func:`state_dict_misfit`) that
the builder's loading uses too, with the key and first-conv adaptations loading applies.

The spec's schema and bounds are :mod:`resdense.modelfile`'s; what only the models know is checked here: the
name is registered, the builder takes the options, and the file's tensors are exactly the built model's (names
and shapes). The model is built on PyTorch's ``meta`` device: shapes without storage, so a file that claims a
huge head costs nothing to refuse. Above the registry, below the weight sources and the builder.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re

import torch
from torch import nn

from ..modelfile import ModelFileError, ModelSpec
from .registry import UnknownModelError, get_model_info


class ModelOptionError(ValueError):
    """Options the model's builder does not take, or values of the wrong type; the message says which."""


def _fits(value, annotation: str) -> bool:
    """Whether a JSON ``value`` fits a builder's parameter annotation (as written: ``float``, ``int``, ``bool``,
    ``str``, ``Sequence[int]``, ``X | None``); annotations of other kinds accept anything."""
    kinds = [a.strip() for a in annotation.split("|")]
    if value is None:
        return "None" in kinds or not annotation
    for kind in kinds:
        if kind == "bool" and isinstance(value, bool):
            return True
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            return math.isfinite(value)
        if kind == "str" and isinstance(value, str):
            return True
        ints = isinstance(value, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        if (kind.endswith("[int]") or kind.startswith("tuple[int")) and ints:
            return True
        if kind not in ("bool", "int", "float", "str", "None") and "[int" not in kind:
            return True  # a type this check does not know: the builder is the judge
    return False


@contextlib.contextmanager
def _no_init():
    """torch.nn.init's in-place initialisers as no-ops: on the meta device there is nothing to fill, and
    torch's meta ``normal_`` would import torch._dynamo (seconds) on first use."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


def build_on_meta(name: str, options: dict) -> nn.Module:
    """The model ``name`` with ``options``, built on the meta device (shapes, no storage), its options'
    types checked against its class's parameters. :class:`UnknownModelError` or :class:`ModelOptionError`."""
    info = get_model_info(name)
    try:
        with torch.device("meta"), _no_init():
            model = info.builder(**options)
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        RuntimeError,
        IndexError,
        ZeroDivisionError,
    ) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelOptionError(text[:160]) from None
    params = inspect.signature(type(model).__init__).parameters
    for key, value in options.items():
        p = params.get(key)
        annotation = p.annotation if p is not None and isinstance(p.annotation, str) else ""
        if annotation and not _fits(value, annotation):
            raise ModelOptionError(f"option {key} must be {annotation}, got {value!r}")
    return model


def _keys(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:3]) + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")


def state_dict_misfit(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading into a model whose state dict is ``own``, as phrases naming up to
    three keys each ("wrong shape: ...", "missing: ...", "unexpected: ..."); empty when it fits. Batch norm's
    ``num_batches_tracked`` never counts (older files lack it; it changes no output)."""
    missing = {k for k in set(own) - set(state) if not k.endswith("num_batches_tracked")}
    unexpected = {k for k in set(state) - set(own) if not k.endswith("num_batches_tracked")}
    wrong = {k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape)}
    return [
        f"{what}: {_keys(keys)}"
        for what, keys in (("wrong shape", wrong), ("missing", missing), ("unexpected", unexpected))
        if keys
    ]


# torchvision's DenseNet files predate PyTorch 0.4's naming ("norm.1" for "norm1"); torchvision renames them
OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)


def remap_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Common key spellings to ours: DDP's ``module.`` prefix, DenseNet's old torchvision keys."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    out = {}
    for k, v in state.items():
        m = OLD_DENSENET_KEY.match(k)
        out[m.group(1) + m.group(2) + "." + m.group(3) if m else k] = v
    return out


def adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """A first-convolution weight (out, c, kh, kw) for ``in_chans`` input channels instead of c.

    From 3 (RGB) to 1 channel: the sum over RGB, so a grey image gives the output its RGB copy gave. To more
    channels: the RGB filters repeated and scaled by 3/in_chans, so the response to a grey image repeated
    over all channels stays the same (timm's rule).
    """
    out, c, kh, kw = weight.shape
    if in_chans == c:
        return weight
    dtype = weight.dtype
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    elif c == 1:
        w = w.repeat(1, in_chans, 1, 1) / in_chans
    else:
        reps = -(-in_chans // c)
        w = w.repeat(1, reps, 1, 1)[:, :in_chans] * (c / in_chans)
    return w.to(dtype)


def check_model_file(spec: ModelSpec, state: dict[str, torch.Tensor], path) -> None:
    """One-line :class:`ModelFileError` naming ``path`` when ``state`` is not what ``spec`` builds."""
    try:
        model = build_on_meta(spec.model, spec.options)
    except UnknownModelError as e:
        raise ModelFileError(f"{path}: its spec names {e}") from None
    except ModelOptionError as e:
        raise ModelFileError(f"{path}: its spec's options do not build {spec.model} ({e})") from None
    parts = state_dict_misfit(model.state_dict(), state)
    if parts:
        raise ModelFileError(
            f"{path}: its tensors are not those of the {spec.model} its spec describes; " + "; ".join(parts)
        )
    cfg = getattr(model, "pretrained_cfg", None)
    head = getattr(cfg, "num_classes", None)
    if spec.classes and isinstance(head, int) and head and head != len(spec.classes):
        raise ModelFileError(f"{path}: {len(spec.classes)} class names for a head of {head} classes")
