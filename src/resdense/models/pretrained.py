"""Pretrained weights by source: what others trained, loaded into a resdense model.

``create_model(name, weights=SRC)`` (as torchvision's ``resnet18(weights=...)``) accepts as ``SRC``:

* a name from the model's weight table (kept beside its builder): torchvision's ``IMAGENET1K_V1``,
  ``IMAGENET1K_V2``, ``DEFAULT`` (also spelled ``ResNet50_Weights.IMAGENET1K_V2``; see :mod:`.hub`), or
  ``fashion-mnist`` (``fashion-mnist:best``, ``fashion-mnist:fast``): ResNet-20s trained by resdense's own
  recipes, shipped inside the package;
* a state-dict file: ``.pth``/``.pt``/``.bin`` (read with ``torch.load(weights_only=True)``: tensors only,
  never code) or ``.safetensors``, with torchvision's or timm's key names (our ResNet and DenseNet families
  share their layout; DenseNet's pre-2018 torchvision keys ``norm.1`` are renamed ``norm1``);
* a resdense run folder, its model file or a TorchScript export (``resdense export``);
* ``hf-hub:ORG/NAME``: timm's weights or a resdense model file on the Hugging Face Hub (:mod:`.hf_hub`).

Whatever the source, what it says about its weights becomes one typed
:class:`~resdense.models._contract.PretrainedCfg`, which the loaded model carries as ``pretrained_cfg`` (and
``default_cfg``). Loading adapts what can be adapted and says so, once, on the ``resdense`` logger: another
``in_chans`` adapts the first convolution (:func:`adapt_input_conv`), another ``num_classes`` re-initialises
the classifier. Anything else that does not fit is a one-line :class:`PretrainedError` naming up to three
offending keys.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..modelfile import ModelFileError, check_finite, first_line, read_safetensors, read_torchscript, sniff
from ..rundir import RunDir
from ._contract import PretrainedCfg
from .hub import PretrainedError, ShippedWeights, TorchvisionWeights, hub_checkpoint_dir, imagenet_classes
from .registry import _REGISTRY, get_model_info

__all__ = [
    "Pretrained",
    "PretrainedError",
    "adapt_input_conv",
    "hub_checkpoint_dir",
    "imagenet_classes",
    "list_pretrained",
    "load_pretrained",
    "load_weights_into",
    "shipped_path",
    "shipped_tag",
]

log = logging.getLogger("resdense")

SHIPPED_PREFIX = "fashion-mnist"
SHIPPED_ORDER = ("best", "fast")  # plain "fashion-mnist": the first of these that is installed


# --- the shipped models ------------------------------------------------------------------------------------


def _shipped() -> dict[str, tuple[str, ShippedWeights]]:
    """tag -> (model, entry), from the weight tables of the registered models."""
    return {w.tag: (info.name, w) for info in _REGISTRY.values() for w in info.weights.values()
            if isinstance(w, ShippedWeights)}  # fmt: skip


def shipped_source(src: str | os.PathLike) -> str | None:
    """The tag part of ``fashion-mnist[:TAG]`` ("" for plain ``fashion-mnist``), or None for other sources:
    the one place that parses the name."""
    key = os.fspath(src).strip().lower()
    if key == SHIPPED_PREFIX:
        return ""
    if key.startswith(SHIPPED_PREFIX + ":"):
        return key.partition(":")[2]
    return None


def shipped_tag(tag: str | None = None) -> str:
    """``tag`` checked, or (None or "") the best shipped model this installation holds."""
    table = _shipped()
    if not tag:
        present = [t for t in SHIPPED_ORDER if t in table and table[t][1].path.exists()]
        if not present:
            raise PretrainedError(f"{SHIPPED_PREFIX}: no shipped weights in this installation of resdense")
        return present[0]
    if tag not in table:
        raise PretrainedError(f"{SHIPPED_PREFIX}:{tag}: no such shipped model; choose from "
                              f"{', '.join(f'{SHIPPED_PREFIX}:{t}' for t in table)}")  # fmt: skip
    return tag


def shipped_path(tag: str | None = None) -> Path:
    """The shipped weights file for ``fashion-mnist:<tag>`` (None: plain ``fashion-mnist``)."""
    tag = shipped_tag(tag)
    path = _shipped()[tag][1].path
    if not path.exists():
        raise PretrainedError(f"{SHIPPED_PREFIX}:{tag}: {path} is missing from this installation of resdense")
    return path


def list_pretrained(model: str | None = None) -> list[str]:
    """Weight sources known by name: ``model.TAG`` for torchvision's, plus the shipped ``fashion-mnist:*``."""
    names = []
    for info in _REGISTRY.values():
        if model in (None, info.name):
            names += [
                f"{info.name}.{tag}" for tag, w in info.weights.items() if isinstance(w, TorchvisionWeights)
            ]
    for tag, (arch, w) in _shipped().items():
        if model in (None, arch) and w.path.exists():
            names.append(f"{SHIPPED_PREFIX}:{tag}")
    return names


# --- what a source holds -----------------------------------------------------------------------------------


@dataclass
class Pretrained:
    """Weights read from a source, and what the source says about them (``cfg``: None when it says
    nothing, as a plain state dict)."""

    state_dict: dict[str, torch.Tensor]
    source: str  # how to name it in messages
    cfg: PretrainedCfg | None = None

    @property
    def model(self) -> str | None:
        return self.cfg.model if self.cfg else None

    @property
    def options(self) -> dict:
        return dict(self.cfg.options) if self.cfg else {}

    @property
    def num_classes(self) -> int | None:
        return self.cfg.num_classes if self.cfg else None

    @property
    def in_chans(self) -> int | None:
        return self.cfg.input_size[0] if self.cfg else None

    def check_for(self, name: str) -> None:
        """The one check that the weights are for architecture ``name``."""
        if self.model and self.model != name:
            raise PretrainedError(f"{self.source}: weights for {self.model}, not {name}")


_TV_NAME = re.compile(r"^(?:\w+_weights\.)?(imagenet1k_v[12]|default)$", re.IGNORECASE)


def load_pretrained(src: str | os.PathLike, model: str | None = None, *, progress: bool = True) -> Pretrained:
    """Read the weights ``src`` names (see the module docstring); ``model`` is needed for torchvision names."""
    text = os.fspath(src)
    if text.strip().lower().startswith("hf-hub:"):
        from .hf_hub import load_from_hub  # the Hub's own module: huggingface_hub is an optional extra

        return load_from_hub(text, model, progress=progress)
    tag = shipped_source(text)
    if tag is not None:
        tag = shipped_tag(tag)
        return _from_safetensors(shipped_path(tag), f"{SHIPPED_PREFIX}:{tag}")
    m = _TV_NAME.match(text.strip())
    if m and not Path(text).exists():
        return _from_torchvision(model, m.group(1).upper(), progress)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / RunDir.WEIGHTS).exists():
            raise PretrainedError(
                f"{path}: no {RunDir.WEIGHTS} in this folder (is it a finished resdense run?)"
            )
        return _from_safetensors(path / RunDir.WEIGHTS, str(path))
    if not path.exists():
        table = _torchvision_table(model) if model else {}
        hint = f"; for {model}: {', '.join(table)}" if table else ""
        raise PretrainedError(
            f"weights {text!r}: no such file or folder, and not a known name (fashion-mnist, "
            f"fashion-mnist:fast, IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT){hint}"
        )
    return _from_file(path)


def _torchvision_table(model: str) -> dict[str, TorchvisionWeights]:
    try:
        info = get_model_info(model)
    except KeyError:
        return {}
    return {t: w for t, w in info.weights.items() if isinstance(w, TorchvisionWeights)}


def _from_torchvision(model: str | None, tag: str, progress: bool) -> Pretrained:
    if model is None:
        raise PretrainedError(f"weights {tag}: torchvision's weights need the architecture (--arch NAME on the "
                              "command line, model= in Python), e.g. resnet18")  # fmt: skip
    table = _torchvision_table(model)
    if not table:
        known = ", ".join(n for n in _REGISTRY if _torchvision_table(n))
        raise PretrainedError(f"weights {tag}: torchvision has no weights for {model} (it has: {known})")
    if tag not in table:
        raise PretrainedError(f"weights {tag}: not available for {model}; choose from {', '.join(table)}")
    w = table[tag]
    p = _from_file(w.fetch(progress=progress))
    p.source = f"{model} {w.name} ({w.file})"
    classes = tuple(imagenet_classes())
    p.cfg = PretrainedCfg(input_size=(3, w.crop, w.crop), mean=w.mean, std=w.std, num_classes=len(classes),
                          resize=w.resize, fit="shorter", classes=classes, source=p.source, known_input=True,
                          model=model, meta={"weights": w.name, "imagenet_top1": w.top1, "url": w.url})  # fmt: skip
    return p


def _from_file(path: Path) -> Pretrained:
    try:
        kind = sniff(path)
    except ModelFileError as e:
        raise PretrainedError(str(e)) from None
    if kind == "onnx":
        raise PretrainedError(f"{path}: ONNX files cannot be read back as weights; use the run folder or "
                              f"its {RunDir.WEIGHTS}")  # fmt: skip
    if kind == "safetensors":
        return _from_safetensors(path, str(path))
    if kind == "torchscript":
        return _from_torchscript(path)
    return _from_torch_file(path)


def _from_safetensors(path: Path, source: str) -> Pretrained:
    from .filecheck import check_model_file

    try:
        f = read_safetensors(path)
        if f.spec is not None:  # a resdense file: its tensors must be exactly what its spec builds
            check_model_file(f.spec, f.state_dict, path)
    except ModelFileError as e:
        raise PretrainedError(str(e)) from None
    cfg = PretrainedCfg.from_spec(f.spec, source, f.extra) if f.spec is not None else None
    return Pretrained(f.state_dict, source, cfg)


def _from_torchscript(path: Path) -> Pretrained:
    try:
        module, spec = read_torchscript(path)
    except ModelFileError as e:
        raise PretrainedError(str(e)) from None
    state = {k: v.detach() for k, v in module.state_dict().items()}
    return Pretrained(state, str(path), PretrainedCfg.from_spec(spec, str(path)) if spec else None)


def _from_torch_file(path: Path) -> Pretrained:
    import pickle

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names every refusal "weights only load failed"; only an unsupported global is Python code
        # or objects, anything else (an unknown opcode, a truncated stream) is a damaged file
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise PretrainedError(
                f"{path}: refused, the file holds Python objects or code, not only tensors (read with "
                "weights_only=True); save a plain state_dict instead"
            ) from None
        raise PretrainedError(f"{path}: not a readable PyTorch file ({first_line(e)})") from None
    except (
        Exception
    ) as e:  # torch's reader raises many kinds (KeyError, IndexError, ...) on files not its own
        raise PretrainedError(f"{path}: not a readable PyTorch file, truncated or corrupt ({first_line(e)})"
                              ) from None  # fmt: skip
    # checkpoints wrap the state dict: {"state_dict": ...} (Lightning, timm), {"model": ...} (resdense)
    for k in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):  # fmt: skip
        raise PretrainedError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    try:
        check_finite(obj, path)
    except ModelFileError as e:
        raise PretrainedError(str(e)) from None
    return Pretrained(dict(obj), str(path))


# --- fitting a state dict to a model ---------------------------------------------------------------------

# torchvision's DenseNet files predate PyTorch 0.4's naming ("norm.1" for "norm1"); torchvision renames them
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)


def remap_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Common key spellings to ours: DDP's ``module.`` prefix, DenseNet's old torchvision keys."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    out = {}
    for k, v in state.items():
        m = _OLD_DENSENET_KEY.match(k)
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


def _first_conv(model: nn.Module) -> str | None:
    """State-dict key of the first convolution's weight."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight"
    return None


def _classifier_prefix(model: nn.Module) -> str | None:
    """State-dict prefix of the classifier (``fc.``, ``classifier.``, ``8.``), from the model contract."""
    get = getattr(model, "get_classifier", None)
    if get is None:
        return None
    head = get()
    return next((f"{name}." for name, m in model.named_modules() if m is head and name), None)


def _keys(keys) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - 3} more)" if len(keys) > 3 else ""
    return ", ".join(keys[:3]) + more


def load_weights_into(model: nn.Module, pretrained: Pretrained, *, name: str | None = None) -> list[str]:
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
    conv = _first_conv(model)
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
    prefix = _classifier_prefix(model)
    head = {k for k in (*own, *state) if prefix and k.startswith(prefix)}
    own_head, src_head = head & set(own), head & set(state)
    if src_head and not own_head:
        notes.append("classifier dropped (num_classes=0: a feature extractor)")
    elif own_head and (own_head != src_head or any(own[k].shape != state[k].shape for k in own_head)):
        n_src = next((state[k].shape[0] for k in sorted(src_head) if k.endswith("weight")), None)
        n_own = next((own[k].shape[0] for k in sorted(own_head) if k.endswith("weight")), 0)
        was = f" (the weights have {n_src})" if n_src is not None else ""
        notes.append(f"classifier re-initialised for {n_own} classes{was}")
    else:
        head = set()  # the weights' classifier fits and is loaded
    for k in head:
        state.pop(k, None)  # the model's own freshly initialised classifier stays
    missing = set(own) - set(state) - head
    unexpected = set(state) - set(own)
    # older files lack num_batches_tracked (and some have it where we do not); neither matters
    missing -= {k for k in missing if k.endswith("num_batches_tracked")}
    unexpected -= {k for k in unexpected if k.endswith("num_batches_tracked")}
    wrong = {k for k in set(own) & set(state) if own[k].shape != state[k].shape}
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"wrong shape: {_keys(wrong)}")
        if missing:
            parts.append(f"missing: {_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected: {_keys(unexpected)}")
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
    named), for the model's channels and classes."""
    arch = getattr(model, "pretrained_cfg", None) or PretrainedCfg()
    cfg = pretrained.cfg or replace(arch, known_input=False)
    cfg = replace(cfg, source=pretrained.source, model=cfg.model or name)
    if conv in own:
        cfg = cfg.for_channels(own[conv].shape[1])
    if new_head:  # a fresh classifier: the weights' class names no longer apply, whatever their number
        return replace(cfg, num_classes=arch.num_classes, classes=())
    return cfg.for_classes(arch.num_classes)
