"""Pretrained weights by source: what others trained, loaded into a resdense model.

``create_model(name, weights=SRC)`` (as torchvision's ``resnet18(weights=...)``) accepts as ``SRC``:

* a torchvision weight name for that architecture (``IMAGENET1K_V1``, ``IMAGENET1K_V2``, ``DEFAULT``, also
  spelled ``ResNet50_Weights.IMAGENET1K_V2``), found under torchvision's own file name in the PyTorch hub
  cache (``$TORCH_HOME/hub/checkpoints``), so a file torchvision already fetched is used as it is, and
  otherwise downloaded from the official URL and checked against the hash in its name;
* a state-dict file: ``.pth``/``.pt``/``.bin`` (read with ``torch.load(weights_only=True)``: tensors only,
  never code) or ``.safetensors``, with torchvision's or timm's key names (our ResNet and DenseNet families
  share their layout; DenseNet's pre-2018 torchvision keys ``norm.1`` are renamed ``norm1``);
* a resdense run folder, its ``model.safetensors`` or a TorchScript export (``resdense export``);
* ``fashion-mnist`` (``fashion-mnist:best``, ``fashion-mnist:fast``): ResNet-20s trained by resdense's own
  recipes, shipped inside the package.

Loading adapts what can be adapted and says so, once, on the ``resdense`` logger (printed to stderr when
logging is not configured): another ``in_chans`` adapts the first convolution (:func:`adapt_input_conv`),
another ``num_classes`` re-initialises the classifier. Anything else that does not fit (another
architecture, other shapes) is a one-line :class:`PretrainedError` naming up to three offending keys.

This module sits beside the models and needs nothing above them (no data, no training code).
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

__all__ = [
    "SHIPPED",
    "TORCHVISION_WEIGHTS",
    "Pretrained",
    "PretrainedError",
    "TorchvisionWeights",
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


class PretrainedError(UserError):
    """Weights that cannot be found, read or loaded into the model; the message is one line."""


# --- torchvision's catalogue (our own table: torchvision is not needed to use its files) -----------------

_TV_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class TorchvisionWeights:
    """One torchvision weight set: the file (its name holds the SHA-256 prefix) and its preprocessing."""

    model: str
    name: str  # IMAGENET1K_V1 / IMAGENET1K_V2
    file: str  # e.g. resnet50-11ad3fa6.pth
    top1: float  # ImageNet-1K top-1 accuracy (%) as torchvision publishes it
    resize: int = 256  # evaluation: resize the short side to this, then centre-crop 224
    crop: int = 224

    @property
    def url(self) -> str:
        return _TV_URL + self.file

    @property
    def hash_prefix(self) -> str:
        return Path(self.file).stem.rsplit("-", 1)[-1]


def _tv(model: str, v1: tuple[str, float], v2: tuple[str, float] | None = None) -> dict:
    table = {"IMAGENET1K_V1": TorchvisionWeights(model, "IMAGENET1K_V1", *v1)}
    if v2 is not None:
        # the V2 recipes were evaluated at resize 232 (torchvision's "new training recipe")
        table["IMAGENET1K_V2"] = TorchvisionWeights(model, "IMAGENET1K_V2", *v2, resize=232)
    table["DEFAULT"] = table["IMAGENET1K_V2" if v2 else "IMAGENET1K_V1"]
    return table


TORCHVISION_WEIGHTS: dict[str, dict[str, TorchvisionWeights]] = {
    "resnet18": _tv("resnet18", ("resnet18-f37072fd.pth", 69.758)),
    "resnet34": _tv("resnet34", ("resnet34-b627a593.pth", 73.314)),
    "resnet50": _tv("resnet50", ("resnet50-0676ba61.pth", 76.13), ("resnet50-11ad3fa6.pth", 80.858)),
    "resnet101": _tv("resnet101", ("resnet101-63fe2227.pth", 77.374), ("resnet101-cd907fc2.pth", 81.886)),
    "resnet152": _tv("resnet152", ("resnet152-394f9c45.pth", 78.312), ("resnet152-f82ba261.pth", 82.284)),
    "resnext50_32x4d": _tv("resnext50_32x4d", ("resnext50_32x4d-7cdf4587.pth", 77.618),
                           ("resnext50_32x4d-1a0047aa.pth", 81.198)),
    "resnext101_32x8d": _tv("resnext101_32x8d", ("resnext101_32x8d-8ba56ff5.pth", 79.312),
                            ("resnext101_32x8d-110c445d.pth", 82.834)),
    "wide_resnet50_2": _tv("wide_resnet50_2", ("wide_resnet50_2-95faca4d.pth", 78.468),
                           ("wide_resnet50_2-9ba9bcbe.pth", 81.602)),
    "wide_resnet101_2": _tv("wide_resnet101_2", ("wide_resnet101_2-32ee1156.pth", 78.848),
                            ("wide_resnet101_2-d733dc28.pth", 82.51)),
    "densenet121": _tv("densenet121", ("densenet121-a639ec97.pth", 74.434)),
    "densenet161": _tv("densenet161", ("densenet161-8d451a50.pth", 77.138)),
    "densenet169": _tv("densenet169", ("densenet169-b2777c0a.pth", 75.6)),
    "densenet201": _tv("densenet201", ("densenet201-c1103571.pth", 76.896)),
}  # fmt: skip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# the Fashion-MNIST models shipped as package data; "fashion-mnist" alone means the best one
SHIPPED = {
    "best": "fashion_mnist_resnet20_best.safetensors",
    "fast": "fashion_mnist_resnet20_fast.safetensors",
}
SHIPPED_ORDER = ("best", "fast")  # plain "fashion-mnist": the first of these that is installed


def imagenet_classes() -> list[str]:
    """ImageNet-1K's 1,000 class names, in the order of the classifier's outputs."""
    text = resources.files(__package__).joinpath("data", "imagenet_classes.txt").read_text("utf-8")
    return text.splitlines()


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (and so torchvision) keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        home = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(home) / "hub" / "checkpoints"


def shipped_tag(tag: str | None = None) -> str:
    """``tag`` checked, or (None) the best shipped model this installation holds."""
    if tag is None:
        present = [t for t in SHIPPED_ORDER if _shipped_file(t).exists()]
        if not present:
            raise PretrainedError("fashion-mnist: no shipped weights in this installation of resdense")
        return present[0]
    if tag not in SHIPPED:
        raise PretrainedError(f"fashion-mnist:{tag}: no such shipped model; choose from "
                              f"{', '.join('fashion-mnist:' + t for t in SHIPPED)}")  # fmt: skip
    return tag


def _shipped_file(tag: str) -> Path:
    return Path(str(resources.files(__package__).joinpath("data", SHIPPED[tag])))


def shipped_path(tag: str | None = None) -> Path:
    """The shipped weights file for ``fashion-mnist:<tag>`` (None: plain ``fashion-mnist``)."""
    tag = shipped_tag(tag)
    path = _shipped_file(tag)
    if not path.exists():
        raise PretrainedError(f"fashion-mnist:{tag}: {path} is missing from this installation of resdense")
    return path


def list_pretrained(model: str | None = None) -> list[str]:
    """Weight sources known by name: ``model.TAG`` for torchvision's, plus the shipped ``fashion-mnist:*``."""
    names = [f"{m}.{tag}" for m, table in TORCHVISION_WEIGHTS.items() if model in (None, m) for tag in table]
    if model in (None, "resnet20"):
        names += [f"fashion-mnist:{t}" for t in SHIPPED if _shipped_file(t).exists()]
    return names


# --- what a source holds -----------------------------------------------------------------------------


@dataclass
class Pretrained:
    """Weights read from a source, with what the source says about them.

    ``model``/``options``: the architecture when the source names it (resdense files); ``classes``,
    ``mean``/``std``, ``input_size``: preprocessing and output meaning when the source knows them;
    ``spec``: a resdense file's whole spec (``resdense.weights.ModelSpec`` as a dict); ``meta``: anything
    else (a shipped model's recipe, accuracy and command).
    """

    state_dict: dict[str, torch.Tensor]
    source: str  # how to name it in messages
    model: str | None = None
    options: dict = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None  # the square side the network was fed
    resize: int | None = None  # resize to this before centre-cropping input_size (ImageNet evaluation)
    spec: dict | None = None
    meta: dict = field(default_factory=dict)

    def cfg(self) -> dict:
        """What travels with the model as ``model.pretrained_cfg`` (timm's name for it)."""
        return {"source": self.source, "model": self.model, "options": self.options, "classes": self.classes, "mean": self.mean, "std": self.std,
                "input_size": self.input_size, "resize": self.resize, **self.meta}  # fmt: skip


_TV_NAME = re.compile(r"^(?:\w+_weights\.)?(imagenet1k_v[12]|default)$", re.IGNORECASE)


def load_pretrained(src: str | os.PathLike, model: str | None = None, *, progress: bool = True) -> Pretrained:
    """Read the weights ``src`` names (see the module docstring); ``model`` is needed for torchvision names."""
    text = os.fspath(src)
    key = text.strip().lower()
    if key == "fashion-mnist" or key.startswith("fashion-mnist:"):
        tag = shipped_tag(key.partition(":")[2] or None)
        return _from_safetensors(shipped_path(tag), f"fashion-mnist:{tag}")
    m = _TV_NAME.match(text.strip())
    if m and not Path(text).exists():
        return _from_torchvision(model, m.group(1).upper(), progress)
    path = Path(text).expanduser()
    if path.is_dir():
        file = path / "model.safetensors"
        if not file.exists():
            raise PretrainedError(
                f"{path}: no model.safetensors in this folder (is it a finished resdense run?)"
            )
        return _from_safetensors(file, str(path))
    if not path.exists():
        hint = (
            f"; for {model}: {', '.join(TORCHVISION_WEIGHTS[model])}" if model in TORCHVISION_WEIGHTS else ""
        )
        raise PretrainedError(
            f"weights {text!r}: no such file or folder, and not a known name (fashion-mnist, "
            f"fashion-mnist:fast, IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT){hint}"
        )
    return _from_file(path)


def _from_torchvision(model: str | None, tag: str, progress: bool) -> Pretrained:
    if model is None:
        raise PretrainedError(
            f"weights {tag}: torchvision's weights need the architecture (--arch NAME; "
            "model= in Python), e.g. resnet18"
        )
    table = TORCHVISION_WEIGHTS.get(model)
    if table is None:
        known = ", ".join(TORCHVISION_WEIGHTS)
        raise PretrainedError(f"weights {tag}: torchvision has no weights for {model} (it has: {known})")
    if tag not in table:
        raise PretrainedError(f"weights {tag}: not available for {model}; choose from {', '.join(table)}")
    w = table[tag]
    folder = hub_checkpoint_dir()
    path = folder / w.file
    if not path.exists():
        from ..utils.download import download

        try:
            download(w.url, path, progress=progress, desc=f"{model} {w.name}", hash_prefix=w.hash_prefix)
        except UserError as e:
            raise PretrainedError(
                f"{model} {w.name}: {w.file} is not in {folder} and cannot be downloaded from {w.url} "
                f"({_reason(e)}); download it there by hand, or set TORCH_HOME to the folder above hub/"
            ) from None
    p = _from_file(path)
    p.source = f"{model} {w.name} ({w.file})"
    p.model = model
    p.classes = imagenet_classes()
    p.mean, p.std, p.input_size, p.resize = IMAGENET_MEAN, IMAGENET_STD, w.crop, w.resize
    p.meta = {"weights": w.name, "imagenet_top1": w.top1, "url": w.url}
    return p


def _reason(e: Exception) -> str:
    text = str(e)
    return text.split(": ", 1)[1] if text.startswith("cannot download") and ": " in text else text


def _from_file(path: Path) -> Pretrained:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _from_safetensors(path, str(path))
    if suffix == ".onnx":
        raise PretrainedError(f"{path}: ONNX files cannot be read back as weights; use the run folder or "
                              "its model.safetensors")  # fmt: skip
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors under another name
        return _from_safetensors(path, str(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("constants.pkl") for n in names):
            return _from_torchscript(path)
    return _from_torch_file(path)


def _from_safetensors(path: Path, source: str) -> Pretrained:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise PretrainedError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    p = Pretrained(state, source)
    if "resdense" in meta:
        try:
            spec = json.loads(meta["resdense"])
            pre = spec["preprocess"]
            p.spec = spec
            p.model, p.options = spec["model"], dict(spec["options"])
            p.classes = list(spec.get("classes", []))
            p.mean, p.std, p.input_size = tuple(pre["mean"]), tuple(pre["std"]), pre.get("size")
        except (ValueError, KeyError, TypeError) as e:
            raise PretrainedError(f"{path}: unreadable resdense metadata ({e})") from None
    if "resdense_pretrained" in meta:
        p.meta = json.loads(meta["resdense_pretrained"])
    return p


def _from_torchscript(path: Path) -> Pretrained:
    import warnings

    extra = {"resdense.json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as e:
        raise PretrainedError(f"{path}: not a readable TorchScript file ({_first_line(e)})") from None
    p = Pretrained({k: v.detach() for k, v in module.state_dict().items()}, str(path))
    if extra["resdense.json"]:
        spec = json.loads(extra["resdense.json"])
        p.spec, p.model, p.options = spec, spec["model"], dict(spec["options"])
        p.classes = list(spec.get("classes", []))
    return p


def _from_torch_file(path: Path) -> Pretrained:
    import pickle

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise PretrainedError(
                f"{path}: refused, the file holds Python objects or code, not only tensors (read with "
                "weights_only=True); save a plain state_dict instead"
            ) from None
        raise PretrainedError(f"{path}: not a readable PyTorch file ({_first_line(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise PretrainedError(f"{path}: not a readable PyTorch file, truncated or corrupt ({_first_line(e)})"
                              ) from None  # fmt: skip
    # checkpoints wrap the state dict: {"state_dict": ...} (Lightning, timm), {"model": ...} (resdense)
    for k in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return Pretrained(dict(obj), str(path))


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


# --- fitting a state dict to a model ------------------------------------------------------------------

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
    """Copy ``pretrained`` into ``model``, adapting the first conv and the classifier; returns what was adapted
    (also said once on the ``resdense`` logger). One-line :class:`PretrainedError` when the weights do not fit.
    """
    label = name or type(model).__name__
    if pretrained.model and name and pretrained.model != name:
        raise PretrainedError(f"{pretrained.source}: weights for {pretrained.model}, not {name}")
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
    cfg = pretrained.cfg()
    if head:
        cfg["classes"] = []  # a new classifier: the weights' class names no longer apply
    c = own[conv].shape[1] if conv in own else None
    if c is not None and cfg["mean"] is not None and len(cfg["mean"]) != c:
        # one grey channel made from RGB: the channel average of the RGB statistics
        cfg["mean"] = (sum(cfg["mean"]) / len(cfg["mean"]),) * c
        cfg["std"] = (sum(cfg["std"]) / len(cfg["std"]),) * c
    model.pretrained_cfg = cfg
    if notes:
        log.warning("%s: %s", pretrained.source, "; ".join(notes))
    return notes
