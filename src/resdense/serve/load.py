"""The one door from any source to a model that answers: :func:`load_predictor` (and :func:`load_model` for
the PyTorch module itself). Every caller comes through here: the commands through :func:`load_source` (their
model argument or ``--weights``, and ``--tta``), the Python API's ``explain``/``show_features`` through
:func:`as_predictor` (a Predictor, a resdense model or a source), evaluation, export and the HTTP service
through :func:`load_predictor`.

A source is a run folder, a ``.safetensors`` model file (rebuilt in PyTorch), an ``.onnx`` file (run by
onnxruntime on the CPU), a TorchScript archive (``.pt``/``.ts``, from ``resdense export``), a shipped name
(``fashion-mnist``), or, given the architecture, torchvision's weights or a plain state dict. resdense's
own files carry their :class:`~resdense.modelfile.ModelSpec`; the others bring what they know (ImageNet's
class names and evaluation for torchvision's weights).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..modelfile import SPEC_KEY, ModelSpec, first_line, read_torchscript, sniff
from ..models import create_model
from ..models.pretrained import load_pretrained, shipped_source
from ..models.registry import UnknownModelError
from ..rundir import RunDir
from .predictor import DEFAULT_BATCH_SIZE, Predictor, tta_views

__all__ = ["as_predictor", "load_model", "load_predictor", "load_source", "load_trained"]

_EXPECTED = "expected a run folder or a .safetensors, .onnx or TorchScript .pt/.ts file"


def load_model(
    src: str | Path, arch: str | None = None, device: str | torch.device = "cpu", *, progress: bool = True
) -> tuple[nn.Module, ModelSpec]:
    """A model (eval mode) and its spec from any weights source (see :mod:`resdense.models.pretrained`).

    resdense's own files (``fashion-mnist``, run folders, their model files) name their architecture;
    torchvision's names and plain state dicts need ``arch``.

    ``src``: a run folder, a model file or a weights source; ``device``: where to load it; ``progress``:
    show a progress bar while weights are downloaded.
    """
    pre = load_pretrained(src, arch, progress=progress)
    name = arch or pre.model
    if name is None:
        raise UserError(
            f"weights {src}: they do not say their architecture; name it (--arch NAME on the command "
            "line, arch= in Python), e.g. resnet18"
        )
    try:
        net = create_model(name, weights=pre, progress=progress)
    except UnknownModelError as e:
        raise UserError(f"--arch: {e}") from None
    return net.to(device).eval(), net.pretrained_cfg.spec(name)


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild a trained resdense model (eval mode) from a run folder or its ``.safetensors`` file.

    ``path``: a run folder or a resdense model file; ``device``: where to load it.
    """
    return load_model(RunDir.weights_file(path), None, device)


def load_predictor(
    src: str | Path,
    device: str | torch.device = "cpu",
    *,
    arch: str | None = None,
    weights: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> Predictor:
    """A :class:`Predictor` for any source (see the module docstring); a one-line :class:`UserError` naming
    it when it is none of these or cannot be read. ``weights``: ``src`` is a weights source (``--weights``),
    so a name that is no file is looked up as weights. ONNX files always run on onnxruntime's CPU provider.

    ``device``: where to run; ``arch``: the architecture, for torchvision weight names; ``batch_size``:
    images per forward pass; ``progress``: show a progress bar while weights are downloaded.
    """
    p = Path(src)
    kind = "weights" if p.is_dir() else None
    if not p.exists():
        if not weights and shipped_source(src) is None and arch is None:
            raise UserError(f"{src}: no such run folder or model file")
        kind = "weights"  # a name: fashion-mnist, or torchvision's with arch
    if kind is None:
        kind = sniff(p)
    if kind == "torchscript":
        module, spec = read_torchscript(p, device)
        if spec is None:
            raise UserError(
                f"{p}: no resdense spec in its TorchScript extra files; it was not exported by resdense"
            )
        return Predictor(spec, "torchscript", module, device=device, path=p, batch_size=batch_size)
    if kind == "torch" and arch is None:
        raise UserError(
            f"{p}: a torch.save file (a state dict or checkpoint), not a TorchScript model (make one "
            "with `resdense export RUN --format torchscript`, or name its architecture)"
        )
    if kind in ("weights", "safetensors", "torch") or (kind == "unknown" and arch is not None):
        model, spec = load_model(src, arch, device, progress=progress)
        return Predictor.for_model(model, spec, device, path=p if p.exists() else None, batch_size=batch_size)
    spec, session = _load_onnx(p, known=kind == "onnx")
    return Predictor(spec, "onnxruntime", session, device="cpu", path=p, batch_size=batch_size)


def load_source(
    model: str | Path | None = None,
    *,
    weights: str | Path | None = None,
    arch: str | None = None,
    device: str | torch.device = "cpu",
    tta: str | None = "auto",
) -> Predictor:
    """The Predictor that a command's model (a run folder or model file) or its ``weights`` (``--weights``:
    shipped, torchvision's with ``arch``, a state dict, ``hf-hub:``) name, predicting with the test-time
    views ``tta`` ("auto": the model file's own). What every serving command loads through.

    ``device``: where to run the loaded model.
    """
    if weights is None:
        if model is None:
            raise UserError("give a run folder or model file, or --weights SRC")
        if arch is not None:
            raise UserError("--arch goes with --weights")
        predictor = load_predictor(model, device=device)
    else:
        predictor = load_predictor(weights, device=device, arch=arch, weights=True)
    if tta not in (None, "auto"):
        predictor.tta = tta_views(tta)  # the views every prediction averages over
    return predictor


def as_predictor(
    source: Predictor | nn.Module | str | Path, arch: str | None = None, device: str | torch.device = "cpu"
) -> Predictor:
    """What the Python API's look-inside functions (``explain``, ``show_features``) take, as a
    :class:`Predictor`: a Predictor as it is, a resdense model (``create_model``: its ``pretrained_cfg`` says
    how to feed it), or any source :func:`load_predictor` takes, read as weights (``arch`` for those that do
    not name one).

    ``device``: where to run the model.
    """
    if isinstance(source, Predictor):
        return source
    if isinstance(source, nn.Module):
        cfg = getattr(source, "pretrained_cfg", None)
        if cfg is None:
            raise UserError(
                f"{type(source).__name__}: give a resdense model or a Predictor (it says how to feed it)"
            )
        return Predictor.for_model(source, cfg.spec(cfg.model or type(source).__name__), device)
    return load_predictor(source, device=device, arch=arch, weights=True)


def _load_onnx(p: Path, known: bool = True) -> tuple[ModelSpec, object]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            f"{p}: running ONNX files needs onnxruntime: pip install 'resdense[export]'"
        ) from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unparsable files
        if not known:
            raise UserError(f"{p}: not a model file; {_EXPECTED}") from None
        raise UserError(f"{p}: not a readable ONNX model ({first_line(e)})") from None
    meta = session.get_modelmeta().custom_metadata_map
    return ModelSpec.from_json(meta.get(SPEC_KEY), p, "ONNX metadata"), session
