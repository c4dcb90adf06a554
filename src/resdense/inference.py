"""One way to run a trained model, whatever its file: ``load_predictor(path).predict_logits(images)``.

``path`` may be a run folder or a ``.safetensors`` file (rebuilt in PyTorch), an ``.onnx`` file (run by
onnxruntime on the CPU) or a TorchScript archive (``.pt``/``.ts``, from ``resdense export``). Each carries
its ``ModelSpec``, so the predictor knows how to preprocess raw uint8 images and what the outputs mean.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .weights import ModelSpec, load_trained

__all__ = ["BACKENDS", "DEFAULT_BATCH_SIZE", "Predictor", "load_predictor"]

BACKENDS = ("torch", "onnxruntime", "torchscript")
DEFAULT_BATCH_SIZE = 256
_EXPECTED = "expected a run folder or a .safetensors, .onnx or TorchScript .pt/.ts file"
_TORCHSCRIPT_SUFFIXES = {".pt", ".ts", ".pth", ".jit", ".torchscript"}


class Predictor:
    """A loaded model with its spec: uint8 images in, logits out.

    ``backend`` is ``"torch"`` (``model`` is the ``nn.Module``), ``"onnxruntime"`` or ``"torchscript"``
    (``model`` is None for both; the runtime object is ``runner``).
    """

    def __init__(
        self,
        spec: ModelSpec,
        backend: str,
        runner,
        *,
        device: str | torch.device = "cpu",
        model: nn.Module | None = None,
        path: Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.spec = spec
        self.backend = backend
        self.runner = runner
        self.device = torch.device(device)
        self.model = model
        self.path = path
        self.batch_size = batch_size

    @property
    def classes(self) -> list[str]:
        return self.spec.classes

    def __repr__(self) -> str:
        return f"Predictor({self.spec.model!r}, backend={self.backend!r}, path={str(self.path)!r})"

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "onnxruntime":
            name = self.runner.get_inputs()[0].name
            out = self.runner.run(None, {name: x.detach().cpu().numpy()})[0]
            return torch.from_numpy(out)
        return self.runner(x)

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> float32 logits (N, classes) on the CPU.

        Each batch of ``batch_size`` (default 256) images is preprocessed with ``spec.preprocess`` (resize,
        channel matching, normalisation) on the predictor's device, then run without grad.
        """
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"expected a uint8 tensor (N, C, H, W), got {shape}")
        if images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got {images.dtype}")
        bs = batch_size or self.batch_size
        outs = []
        for start in range(0, images.shape[0], bs):
            batch = images[start : start + bs].to(self.device)
            try:
                x = self.spec.preprocess(batch)
            except ValueError as e:  # e.g. 4-channel images for a 3-channel model
                raise UserError(f"{self.path or self.spec.model}: {e}") from None
            logits = self._run(x).float()
            if self.spec.tta_flip:
                # the mirror-image test-time augmentation the model was scored with in training
                logits = 0.5 * (logits + self._run(x.flip(-1)).float())
            outs.append(logits.cpu())
        if not outs:
            return torch.empty(0, len(self.spec.classes) or 0)
        return torch.cat(outs)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> predicted class indices (N,)."""
        return self.predict_logits(images, batch_size).argmax(1)


def _kind(p: Path) -> str:
    """What a model file is, by suffix, else by its first bytes."""
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".onnx":
        return "onnx"
    if suffix in _TORCHSCRIPT_SUFFIXES:
        return "torchscript"
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror})") from None
    if zipfile.is_zipfile(p):
        return "torchscript"
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header
        return "safetensors"
    return "unknown"  # perhaps ONNX under another name; tried as such


def _spec_from_json(p: Path, text: str | bytes | None, where: str) -> ModelSpec:
    if not text:
        raise UserError(f"{p}: no resdense spec in its {where}; it was not exported by resdense")
    try:
        return ModelSpec.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{p}: unreadable resdense spec in its {where} ({e})") from None


def _load_onnx(p: Path, known: bool = True) -> tuple[ModelSpec, object]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            f"{p}: running ONNX files needs onnxruntime: pip install 'resdense[export]'"
        ) from None
    from .export import META_KEY

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unparsable files
        if not known:
            raise UserError(f"{p}: not a model file; {_EXPECTED}") from None
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{p}: not a readable ONNX model ({msg[:200]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    return _spec_from_json(p, meta.get(META_KEY), "ONNX metadata"), session


def _load_torchscript(p: Path, device: torch.device) -> tuple[ModelSpec, object]:
    from .export import TORCHSCRIPT_EXTRA, quiet_torch

    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        names = None  # torch.jit.load below says what is wrong
    if names is not None and not any(n.endswith("constants.pkl") for n in names):
        raise UserError(
            f"{p}: a torch.save checkpoint, not a TorchScript model "
            "(make one with `resdense export RUN --format torchscript`)"
        )
    extra = {TORCHSCRIPT_EXTRA: ""}
    try:
        with quiet_torch():
            module = torch.jit.load(str(p), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{p}: not a readable TorchScript file ({msg[:200]})") from None
    return _spec_from_json(p, extra[TORCHSCRIPT_EXTRA], "TorchScript extra files"), module.eval()


def load_predictor(
    path: str | Path, device: str | torch.device = "cpu", *, batch_size: int = DEFAULT_BATCH_SIZE
) -> Predictor:
    """A :class:`Predictor` for a run folder, ``.safetensors``, ``.onnx`` or TorchScript ``.pt``/``.ts``
    file; a one-line :class:`UserError` naming the file when it is none of these or cannot be read.

    ONNX files always run on onnxruntime's CPU provider, whatever ``device`` says.
    """
    p = Path(path)
    if p.is_dir():
        model, spec = load_trained(p, device)
        return Predictor(spec, "torch", model, device=device, model=model, path=p, batch_size=batch_size)
    if not p.exists():
        raise UserError(f"{path}: no such run folder or model file")
    kind = _kind(p)
    if kind == "safetensors":
        model, spec = load_trained(p, device)
        return Predictor(spec, "torch", model, device=device, model=model, path=p, batch_size=batch_size)
    if kind == "torchscript":
        spec, module = _load_torchscript(p, torch.device(device))
        return Predictor(spec, "torchscript", module, device=device, path=p, batch_size=batch_size)
    spec, session = _load_onnx(p, known=kind == "onnx")
    return Predictor(spec, "onnxruntime", session, device="cpu", path=p, batch_size=batch_size)
