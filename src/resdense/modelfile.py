"""The model file: what a trained model is (:class:`ModelSpec`, pure data) and the files that carry it.

* a safetensors file (a run's model file): the weights, and in the metadata under ``"resdense"`` the spec as JSON (registry
  name, builder options, preprocessing, class names, test-time flip); shipped models add
  ``"resdense_pretrained"`` (their recipe, accuracy and command);
* a TorchScript archive (``resdense export``): the traced model, the spec as the extra file ``resdense.json``;
* an ONNX file (``resdense export``): the spec in ``metadata_props["resdense"]`` (read by the serving side,
  which owns onnxruntime).

This module reads and writes the first two, tells any path's kind from its bytes (:func:`sniff`), and turns
an unreadable spec into a one-line error naming the file. It knows nothing of the model classes: building a
model from a spec is the models' job.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .preprocess import Preprocess
from .utils.io import atomic_path

SPEC_KEY = "resdense"  # safetensors metadata key and ONNX metadata_props key of the spec JSON
SHIPPED_KEY = "resdense_pretrained"  # safetensors metadata key of a shipped model's recipe and accuracy
TORCHSCRIPT_EXTRA = "resdense.json"  # the TorchScript archive's extra file holding the spec JSON
TORCHSCRIPT_SUFFIXES = {".pt", ".ts", ".pth", ".jit", ".torchscript"}
KINDS = ("safetensors", "torchscript", "torch", "onnx", "unknown")


class ModelFileError(UserError):
    """A model or weights file that cannot be read as what it claims to be; the message names it."""


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

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes | None, path: str | Path, where: str) -> ModelSpec:
        """The spec stored in ``path`` (``where``: the part of the file it sits in); one-line errors."""
        if not text:
            raise ModelFileError(f"{path}: no resdense spec in its {where}; it was not saved by resdense")
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as e:
            raise ModelFileError(f"{path}: unreadable resdense spec in its {where} ({e})") from None


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile wrappers, whose state-dict names are the stable ones."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


# -- safetensors + spec -------------------------------------------------------------------------------------


def write_safetensors(path: str | Path, model: nn.Module, spec: ModelSpec, extra: dict | None = None) -> Path:
    """The model's weights and its spec, atomically; ``extra``: a shipped model's recipe and accuracy."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    meta = {SPEC_KEY: spec.to_json()}
    if extra:
        meta[SHIPPED_KEY] = json.dumps(extra)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(path)


@dataclass
class SafetensorsFile:
    state_dict: dict[str, torch.Tensor]
    spec: ModelSpec | None  # None: a plain state dict (timm's, someone else's)
    extra: dict  # SHIPPED_KEY's contents, or {}


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> SafetensorsFile:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    spec = ModelSpec.from_json(meta[SPEC_KEY], path, "metadata") if SPEC_KEY in meta else None
    try:
        extra = json.loads(meta[SHIPPED_KEY]) if SHIPPED_KEY in meta else {}
    except ValueError:
        raise ModelFileError(f"{path}: unreadable {SHIPPED_KEY} metadata") from None
    return SafetensorsFile(state, spec, extra)


# -- TorchScript + spec -------------------------------------------------------------------------------------


def write_torchscript(path: str | Path, traced, spec: ModelSpec) -> Path:
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_EXTRA: spec.to_json()})
    return Path(path)


def read_torchscript(path: str | Path, device: str | torch.device = "cpu") -> tuple[object, ModelSpec | None]:
    """The archive's module (eval mode) and its spec (None when it has none)."""
    import warnings

    extra = {TORCHSCRIPT_EXTRA: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation chatter says nothing about the file
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelFileError(f"{path}: not a readable TorchScript file ({first_line(e)})") from None
    text = extra[TORCHSCRIPT_EXTRA]
    spec = ModelSpec.from_json(text, path, "TorchScript extra files") if text else None
    return module.eval(), spec


# -- what a path holds --------------------------------------------------------------------------------------


def _is_torchscript_zip(path: Path) -> bool | None:
    """True for a TorchScript archive, False for a ``torch.save`` zip, None for no zip at all."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return None


def sniff(path: str | Path) -> str:
    """What a file is, from its bytes (the suffix breaks no tie the bytes can settle): ``safetensors``,
    ``torchscript``, ``torch`` (a ``torch.save`` zip: a state dict or a checkpoint), ``onnx`` (by suffix;
    onnxruntime is the judge) or ``unknown`` (an ONNX file under another name, a legacy ``torch.save``, or
    nothing of ours: the reader that is tried says which). A one-line error when it cannot be read at all."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except IsADirectoryError:
        raise ModelFileError(f"{p}: is a folder, not a model file") from None
    except OSError as e:
        raise ModelFileError(f"{p}: cannot read ({e.strerror})") from None
    if (
        len(head) >= 9
        and head[8:9] == b"{"
        and 0 < int.from_bytes(head[:8], "little") <= p.stat().st_size - 8
    ):
        return "safetensors"  # a u64 header length that fits the file, then the JSON header
    zipped = _is_torchscript_zip(p) if head[:2] == b"PK" else None
    if zipped is not None:
        return "torchscript" if zipped else "torch"
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".safetensors":
        return "safetensors"  # whatever it holds, the safetensors reader names the problem
    return "unknown"
