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
``default_cfg``). This module reads sources; loading them into a model is :mod:`resdense.models.builder`'s
(``create_model(weights=...)``, ``load_weights_into``), which adapts what can be adapted and says so, once,
on the ``resdense`` logger: another ``in_chans`` adapts the first convolution (:func:`adapt_input_conv`),
another ``num_classes`` re-initialises the classifier. Anything else that does not fit is a one-line
:class:`PretrainedError` naming up to three offending keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..modelfile import ModelFileError, check_finite, first_line, read_safetensors, read_torchscript, sniff
from ..rundir import RunDir
from .filecheck import adapt_input_conv, check_model_file, remap_keys
from .hub import PretrainedError, ShippedWeights, TorchvisionWeights, hub_checkpoint_dir, imagenet_classes
from .pretrained_cfg import PretrainedCfg
from .registry import get_model_info, model_entries

__all__ = [
    "Pretrained",
    "PretrainedError",
    "adapt_input_conv",
    "hub_checkpoint_dir",
    "imagenet_classes",
    "list_pretrained",
    "load_pretrained",
    "read_weights_file",
    "remap_keys",
    "shipped_path",
    "shipped_tag",
]

SHIPPED_PREFIX = "fashion-mnist"
SHIPPED_ORDER = ("best", "fast")  # plain "fashion-mnist": the first of these that is installed


# --- the shipped models ------------------------------------------------------------------------------------


def _shipped() -> dict[str, tuple[str, ShippedWeights]]:
    """tag -> (model, entry), from the weight tables of the registered models."""
    return {
        w.tag: (info.name, w)
        for info in model_entries()
        for w in info.weights.values()
        if isinstance(w, ShippedWeights)
    }


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
        raise PretrainedError(
            f"{SHIPPED_PREFIX}:{tag}: no such shipped model; choose from "
            f"{', '.join(f'{SHIPPED_PREFIX}:{t}' for t in table)}"
        )
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
    for info in model_entries():
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

        return load_from_hub(text, model, progress=progress, read=read_weights_file)
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
    return read_weights_file(path)


def _torchvision_table(model: str) -> dict[str, TorchvisionWeights]:
    try:
        info = get_model_info(model)
    except KeyError:
        return {}
    return {t: w for t, w in info.weights.items() if isinstance(w, TorchvisionWeights)}


def _from_torchvision(model: str | None, tag: str, progress: bool) -> Pretrained:
    if model is None:
        raise PretrainedError(
            f"weights {tag}: torchvision's weights need the architecture (--arch NAME on the "
            "command line, model= in Python), e.g. resnet18"
        )
    table = _torchvision_table(model)
    if not table:
        known = ", ".join(info.name for info in model_entries() if _torchvision_table(info.name))
        raise PretrainedError(f"weights {tag}: torchvision has no weights for {model} (it has: {known})")
    if tag not in table:
        raise PretrainedError(f"weights {tag}: not available for {model}; choose from {', '.join(table)}")
    w = table[tag]
    p = read_weights_file(w.fetch(progress=progress))
    p.source = f"{model} {w.name} ({w.file})"
    classes = tuple(imagenet_classes())
    p.cfg = PretrainedCfg(
        input_size=(3, w.crop, w.crop),
        mean=w.mean,
        std=w.std,
        num_classes=len(classes),
        resize=w.resize,
        fit="shorter",
        classes=classes,
        source=p.source,
        known_input=True,
        model=model,
        meta={"weights": w.name, "imagenet_top1": w.top1, "url": w.url},
    )
    return p


def read_weights_file(path: Path) -> Pretrained:
    """The weights in a file of any kind resdense reads (safetensors, a PyTorch state dict or checkpoint, a
    TorchScript export), as a :class:`Pretrained`; a one-line :class:`PretrainedError` otherwise."""
    try:
        kind = sniff(path)
    except ModelFileError as e:
        raise PretrainedError(str(e)) from None
    if kind == "onnx":
        raise PretrainedError(
            f"{path}: ONNX files cannot be read back as weights; use the run folder or its {RunDir.WEIGHTS}"
        )
    if kind == "safetensors":
        return _from_safetensors(path, str(path))
    if kind == "torchscript":
        return _from_torchscript(path)
    return _from_torch_file(path)


def _from_safetensors(path: Path, source: str) -> Pretrained:
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
        raise PretrainedError(
            f"{path}: not a readable PyTorch file, truncated or corrupt ({first_line(e)})"
        ) from None
    # checkpoints wrap the state dict: {"state_dict": ...} (Lightning, timm), {"model": ...} (resdense)
    for k in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(k), dict):
            obj = obj[k]
            break
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise PretrainedError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    try:
        check_finite(obj, path)
    except ModelFileError as e:
        raise PretrainedError(str(e)) from None
    return Pretrained(dict(obj), str(path))
