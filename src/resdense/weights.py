"""Trained models on disk: ``model.safetensors`` holds the weights and, in its metadata, everything needed to
rebuild and feed the model (registry name, builder options, preprocessing, class names). A run folder holds
one; ``load_trained`` accepts either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .data.transforms import Preprocess
from .errors import UserError
from .models import create_model
from .utils.io import atomic_path

WEIGHTS_NAME = "model.safetensors"


@dataclass
class ModelSpec:
    """What a trained model is: how to build it, how to feed it, what its outputs mean."""

    model: str
    options: dict  # keyword options for create_model (num_classes, in_chans, ...)
    preprocess: Preprocess
    classes: list[str] = field(default_factory=list)
    tta_flip: bool = False  # average the logits of each image and its mirror image

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "options": self.options,
            "preprocess": self.preprocess.to_dict(),
            "classes": self.classes,
            "tta_flip": self.tta_flip,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        return cls(
            d["model"],
            dict(d["options"]),
            Preprocess.from_dict(d["preprocess"]),
            list(d["classes"]),
            bool(d.get("tta_flip", False)),
        )

    def build(self) -> nn.Module:
        return create_model(self.model, **self.options)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers, whose state-dict names are the stable ones."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_trained(path: str | Path, model: nn.Module, spec: ModelSpec) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"resdense": json.dumps(spec.to_dict())})


def resolve_weights(path: str | Path) -> Path:
    """A run folder or a weights file -> the weights file; a one-line UserError when there is none."""
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
        if not p.exists():
            raise UserError(f"{path}: no {WEIGHTS_NAME} in this folder (is it a finished resdense run?)")
    elif not p.exists():
        raise UserError(f"{path}: no such run folder or weights file")
    return p


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild a trained model (in eval mode) from a run folder or a ``.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    p = resolve_weights(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(p), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{p}: not a readable safetensors file ({e})") from None
    if "resdense" not in meta:
        raise UserError(f"{p}: no resdense metadata; it was not saved by resdense")
    spec = ModelSpec.from_dict(json.loads(meta["resdense"]))
    model = spec.build()
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), spec


def model_from_weights(
    src: str | Path, model: str | None = None, device: str | torch.device = "cpu", *, progress: bool = True
) -> tuple[nn.Module, ModelSpec]:
    """A model (eval mode) and its spec from any weights source (see :mod:`resdense.models.pretrained`).

    resdense's own files (``fashion-mnist``, run folders, ``model.safetensors``) carry their spec; other
    sources (torchvision names, plain state dicts) need ``model``, the architecture, and bring what they
    know (ImageNet's class names and preprocessing for torchvision's weights).
    """
    from .models.pretrained import PretrainedError, load_pretrained, shipped_path

    key = str(src).strip().lower()
    if key == "fashion-mnist" or key.startswith("fashion-mnist:"):
        path = shipped_path(key.partition(":")[2] or None)
        net, spec = load_trained(path, device)
        if model is not None and model != spec.model:
            raise PretrainedError(f"{src}: weights for {spec.model}, not {model}")
        return net, spec
    p = Path(src)
    if model is None:
        if p.exists():
            return load_trained(p, device)
        load_pretrained(src)  # a one-line error for what is neither a file nor a known name
        raise UserError(f"weights {src}: torchvision's weights need the architecture (--arch NAME on the "
                        "command line, model= in Python), e.g. resnet18")  # fmt: skip
    pre = load_pretrained(src, model, progress=progress)
    net = create_model(model, weights=pre, progress=progress)
    cfg = net.pretrained_cfg
    if pre.spec is not None:
        return net.to(device).eval(), ModelSpec.from_dict(pre.spec)
    in_chans = net.default_cfg.input_size[0]
    size = cfg["resize"] or cfg["input_size"] or net.default_cfg.input_size[-1]
    crop = cfg["input_size"] if cfg["resize"] else None
    mean = tuple(cfg["mean"] or net.default_cfg.mean)
    std = tuple(cfg["std"] or net.default_cfg.std)
    n = net.get_classifier().out_features if hasattr(net.get_classifier(), "out_features") else 0
    classes = cfg["classes"] or [str(i) for i in range(n)]
    spec = ModelSpec(model, {"num_classes": len(classes), "in_chans": in_chans}, Preprocess(size, mean, std, in_chans, crop),
                     classes)  # fmt: skip
    return net.to(device).eval(), spec
