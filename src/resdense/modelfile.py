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

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .preprocess import FITS, INTERPOLATIONS, Preprocess
from .utils.io import write_bytes

SPEC_KEY = "resdense"  # safetensors metadata key and ONNX metadata_props key of the spec JSON
SHIPPED_KEY = "resdense_pretrained"  # safetensors metadata key of a shipped model's recipe and accuracy
DIGEST_KEY = "resdense_sha256"  # safetensors metadata key: sha256 of the spec, the extra and every tensor
# bounds a file's metadata must keep before anything is built from it: a file claiming 6e7 classes or a
# 100000-pixel side is refused in one line, not allocated (ImageNet-21k has 21,843 classes)
MAX_CLASSES = 100_000
MAX_CHANNELS = 64
MAX_SIDE = 4096
TORCHSCRIPT_EXTRA = "resdense.json"  # the TorchScript archive's extra file holding the spec JSON
# the TorchScript archive's extra file holding ModelSpec.describe() (how to feed it, readable without resdense)
TORCHSCRIPT_META = "metadata.json"
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
        """The spec a file's JSON describes, checked field by field (ValueError names what is wrong)."""
        check_spec_dict(d)
        return cls(
            d["model"],
            dict(d["options"]),
            Preprocess.from_dict(d["preprocess"]),
            list(d["classes"]),
            bool(d.get("tta_flip", False)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def describe(self) -> dict[str, str]:
        """The file's self-description in flat string keys (ONNX ``metadata_props``, TorchScript's extra
        file, the Hub card): the preprocessing (:meth:`Preprocess.describe`), the class names in output
        order, and the test-time views (``tta``: ``flip`` averages the logits of the image and its mirror)."""
        return {
            **self.preprocess.describe(),
            "classes": json.dumps(self.classes),
            "num_classes": str(len(self.classes) or self.options.get("num_classes", "")),
            "tta": "flip" if self.tta_flip else "none",
            "architecture": self.model,
        }

    @classmethod
    def from_json(cls, text: str | bytes | None, path: str | Path, where: str) -> ModelSpec:
        """The spec stored in ``path`` (``where``: the part of the file it sits in); one-line errors."""
        if not text:
            raise ModelFileError(f"{path}: no resdense spec in its {where}; it was not saved by resdense")
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise ModelFileError(
                f"{path}: unreadable resdense spec in its {where} ({first_line(e)})"
            ) from None


def _int_in(d: dict, key: str, low: int, high: int, where: str) -> None:
    v = d.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ValueError(f"{where}{key} must be an integer in [{low}, {high}], got {v!r}")


def check_spec_dict(d) -> None:
    """The spec's schema and bounds (what a reader can trust before it allocates anything)."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    missing = [k for k in ("model", "options", "preprocess", "classes") if k not in d]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if not isinstance(d["model"], str) or not d["model"]:
        raise ValueError(f"model must be a name, got {d['model']!r}")
    opts, pre, classes = d["options"], d["preprocess"], d["classes"]
    if not isinstance(opts, dict):
        raise ValueError(f"options must be an object, got {type(opts).__name__}")
    _int_in(opts, "num_classes", 0, MAX_CLASSES, "options.")
    _int_in(opts, "in_chans", 1, MAX_CHANNELS, "options.")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError("classes must be a list of names")
    n = opts.get("num_classes")
    if classes and n is not None and len(classes) != n:
        raise ValueError(f"{len(classes)} class names for a head of {n} classes")
    if len(classes) > MAX_CLASSES:
        raise ValueError(f"{len(classes)} classes, more than {MAX_CLASSES:,}")
    if not isinstance(pre, dict):
        raise ValueError(f"preprocess must be an object, got {type(pre).__name__}")
    for key in ("size", "resize", "crop"):
        _int_in(pre, key, 1, MAX_SIDE, "preprocess.")
    _int_in(pre, "in_chans", 1, MAX_CHANNELS, "preprocess.")
    if "in_chans" not in pre or not ("size" in pre or "resize" in pre):
        raise ValueError("preprocess needs in_chans and size")
    for key in ("mean", "std"):
        v = pre.get(key)
        if (
            not isinstance(v, list)
            or len(v) != pre["in_chans"]
            or not all(isinstance(x, int | float) and math.isfinite(x) for x in v)
        ):
            raise ValueError(f"preprocess.{key} must be {pre['in_chans']} finite numbers, got {v!r}")
    if not all(x > 0 for x in pre["std"]):
        raise ValueError(f"preprocess.std must be positive, got {pre['std']!r}")
    # absent in files written before they existed: a square resize, bilinear
    for key, allowed in (("fit", FITS), ("interpolation", INTERPOLATIONS)):
        if key in pre and (not isinstance(pre[key], str) or pre[key] not in allowed):
            raise ValueError(f"preprocess.{key} must be one of {', '.join(allowed)}, got {pre[key]!r}")
    if not isinstance(d.get("tta_flip", False), bool):
        raise ValueError(f"tta_flip must be true or false, got {d['tta_flip']!r}")


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
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    # "format": "pt" is what transformers' and other safetensors loaders look for to know the tensors are
    # PyTorch's (the safetensors convention); files without it are refused by some of them
    meta = {"format": "pt", SPEC_KEY: spec.to_json()}
    if extra:
        meta[SHIPPED_KEY] = json.dumps(extra)
    meta[DIGEST_KEY] = digest(state, meta)
    write_bytes(path, save(state, metadata=meta))  # bytes, then Python's write: a full disk is one line
    return Path(path)


@dataclass
class SafetensorsFile:
    state_dict: dict[str, torch.Tensor]
    spec: ModelSpec | None  # None: a plain state dict (timm's, someone else's)
    extra: dict  # SHIPPED_KEY's contents, or {}


def digest(state: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """sha256 of the spec and shipped metadata and of every tensor (name, dtype, shape, bytes): a file with a
    flipped bit is refused instead of predicting the wrong class with confidence."""
    h = hashlib.sha256()
    for key in (SPEC_KEY, SHIPPED_KEY):
        h.update(f"{key}={meta.get(key, '')}\n".encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """A one-line error for weights holding NaN or infinity (they would predict "nan" and exit 0)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ModelFileError(f"{path}: non-finite values (NaN or infinity) in {bad[0]}{more}")


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> SafetensorsFile:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError) as e:
        raise ModelFileError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    if DIGEST_KEY in meta and meta[DIGEST_KEY] != digest(state, meta):
        # files written before the digest existed have none, and still load
        raise ModelFileError(
            f"{path}: corrupt (its tensors or metadata do not match the digest it was written with)"
        )
    check_finite(state, path)
    spec = ModelSpec.from_json(meta[SPEC_KEY], path, "metadata") if SPEC_KEY in meta else None
    try:
        extra = json.loads(meta[SHIPPED_KEY]) if SHIPPED_KEY in meta else {}
    except ValueError:
        raise ModelFileError(f"{path}: unreadable {SHIPPED_KEY} metadata") from None
    return SafetensorsFile(state, spec, extra)


# -- TorchScript + spec -------------------------------------------------------------------------------------


def write_torchscript(path: str | Path, traced, spec: ModelSpec) -> Path:
    import io

    buf = (
        io.BytesIO()
    )  # torch's C++ writer aborts the process on a full disk; Python's write says it in a line
    extra = {TORCHSCRIPT_EXTRA: spec.to_json(), TORCHSCRIPT_META: json.dumps(spec.describe(), indent=1)}
    torch.jit.save(traced, buf, _extra_files=extra)
    write_bytes(path, buf.getbuffer())
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
    except Exception:  # zipfile raises many kinds (BadZipFile, UnicodeDecodeError, ...) on a damaged file
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
