"""Export a trained model to ONNX or TorchScript, with its ``ModelSpec`` inside the file.

An exported file is self-describing, like a run's model file: the spec (registry name, builder options,
preprocessing, class names) travels as JSON under the key ``"resdense"`` -- in the ONNX model's
``metadata_props``, or as the TorchScript archive's extra file ``resdense.json``. Neither needs resdense to
run: onnxruntime or a bare ``torch.jit.load`` will do. :func:`resdense.serve.load_predictor` reads all
three formats.

The exported graph takes the *preprocessed* float input (N, C, H, W) -- what ``spec.preprocess`` makes of
uint8 images -- and returns logits; the batch dimension is dynamic. Export runs in eval mode without grad,
so memory-efficient DenseNets export their plain (non-checkpointed) forward pass.

ONNX exporters: torch 2.9+ defaults to the ``torch.export``-based exporter (``dynamo=True``, needs
``onnxscript``); the older TorchScript-based one (``dynamo=False``) is deprecated but still present, and on
these CNNs it gives the same graphs (both fold conv-BN pairs, both agree with PyTorch to ~1e-6) about ten
times faster (0.1-3 s against 3-30 s per model on a small CPU). ``exporter="auto"`` (the default) therefore
uses the legacy exporter and falls back to the dynamo one when the legacy one fails or is gone;
``"dynamo"`` or ``"legacy"`` forces one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..modelfile import SPEC_KEY, TORCHSCRIPT_EXTRA, ModelSpec, first_line, unwrap, write_torchscript
from ..utils.io import atomic_path

__all__ = [
    "EXPORTERS",
    "FORMATS",
    "META_KEY",
    "TORCHSCRIPT_EXTRA",
    "example_input",
    "export_onnx",
    "export_torchscript",
]

META_KEY = SPEC_KEY  # the ONNX metadata_props key holding the spec JSON
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}  # format -> file suffix
EXPORTERS = ("auto", "dynamo", "legacy")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def example_input(model: nn.Module, spec: ModelSpec, batch: int = 2) -> torch.Tensor:
    """A random preprocessed batch of the size ``spec`` feeds ``model`` (the model's default size when the
    spec keeps images at their stored size)."""
    size = spec.preprocess.input_size
    if size is None:
        cfg = getattr(model, "default_cfg", None)
        size = cfg.input_size[-1] if cfg is not None else 224
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, spec.preprocess.in_chans, size, size, generator=g).to(device)


@contextlib.contextmanager
def _inference_model(model: nn.Module, spec: ModelSpec, fuse: bool):
    """The model to export: unwrapped, eval mode, optionally BN-fused; the caller's mode is restored."""
    model = unwrap(model)
    was_training = model.training
    try:
        model.eval()
        if fuse:
            from .fuse import fuse_bn

            yield fuse_bn(model, example_input(model, spec, batch=1))
        else:
            yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def quiet_torch():
    """Silence torch's deprecation chatter and exporter/tracer warnings, which say nothing about the model."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        yield


@contextlib.contextmanager
def quiet_native_output():
    """Send what native code writes to stdout/stderr to /dev/null for the block. torch's legacy ONNX
    exporter switches its C++ log on whatever is asked (its ``setup_onnx_logging`` tests the function object
    ``_jit_is_onnx_log_enabled``, always true, not its result), so a failed export prints the whole graph,
    some 200 lines, before its one-line error; Python's own output and exceptions are unaffected."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no file descriptors to redirect (an embedded interpreter): say nothing more
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _have_onnxscript() -> bool:
    return importlib.util.find_spec("onnxscript") is not None


def _export_dynamo(m: nn.Module, x: torch.Tensor, spec: ModelSpec, opset: int | None):
    dims = {0: torch.export.Dim("batch")}
    if spec.preprocess.input_size is None:
        dims.update({2: torch.export.Dim("height"), 3: torch.export.Dim("width")})
    with quiet_torch():
        program = torch.onnx.export(
            m,
            (x,),
            None,
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=(dims,),
            opset_version=opset,
            verbose=False,
        )
    return program.model_proto


def _export_legacy(m: nn.Module, x: torch.Tensor, spec: ModelSpec, opset: int | None):
    import io

    import onnx

    axes = {0: "batch", 2: "height", 3: "width"} if spec.preprocess.input_size is None else {0: "batch"}
    with quiet_torch(), quiet_native_output():
        buf = io.BytesIO()  # in memory: only Python's own write touches the disk (a full one is one line)
        torch.onnx.export(
            m,
            (x,),
            buf,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
        )
    return onnx.load_from_string(buf.getvalue())


def export_onnx(
    model: nn.Module,
    spec: ModelSpec,
    path: str | Path,
    *,
    fuse: bool = False,
    opset: int | None = None,
    exporter: str = "auto",
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically) and return the path.

    The batch dimension is dynamic (so are height and width when ``spec.preprocess.size`` is None); the spec
    JSON is stored in ``metadata_props["resdense"]``. ``fuse`` folds conv-BN pairs first (both ONNX
    exporters already fold these in eval mode, so it mostly changes nothing here). ``opset`` defaults to
    the exporter's own. ``exporter``: ``"legacy"`` (TorchScript-based), ``"dynamo"`` (torch.export-based,
    needs onnxscript) or ``"auto"`` (legacy, falling back to dynamo when legacy fails; see the module doc).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if importlib.util.find_spec("onnx") is None:
        raise UserError("ONNX export needs the onnx package: pip install 'resdense[export]'")
    if exporter == "dynamo" and not _have_onnxscript():
        raise UserError("the dynamo ONNX exporter needs onnxscript: pip install 'resdense[export]'")

    path = Path(path)
    with _inference_model(model, spec, fuse) as m, torch.no_grad():
        x = example_input(m, spec)
        with atomic_path(path) as tmp:
            try:
                if exporter == "auto":
                    try:
                        proto = _export_legacy(m, x, spec, opset)
                    except Exception:
                        # the legacy exporter is deprecated in torch; it may be gone or fail in newer versions.
                        # With an explicit opset the opset is the likelier culprit: no second try then.
                        if opset is not None or not _have_onnxscript():
                            raise
                        proto = _export_dynamo(m, x, spec, opset)
                elif exporter == "legacy":
                    proto = _export_legacy(m, x, spec, opset)
                else:
                    proto = _export_dynamo(m, x, spec, opset)
            except Exception as e:
                if opset is None:
                    raise
                # an explicit opset is the likely culprit: say so in one line
                raise UserError(f"cannot export at ONNX opset {opset} ({first_line(e)})") from None
            written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
            if opset is not None and written != opset:
                # the dynamo exporter converts to other opsets on a best-effort basis and may not manage
                raise UserError(
                    f"cannot export at ONNX opset {opset} (the exporter produced opset {written})"
                )
            # the spec for resdense, and beside it the same facts in flat keys any onnxruntime user reads
            # (pixel scale, resize, interpolation, crop, mean/std, classes: ModelSpec.describe)
            ours = {META_KEY: spec.to_json(), **spec.describe()}
            keep = [(e.key, e.value) for e in proto.metadata_props if e.key not in ours]
            del proto.metadata_props[:]
            for key, value in [*keep, *ours.items()]:
                proto.metadata_props.add(key=key, value=value)
            proto.doc_string = f"{spec.model}: {len(spec.classes)} classes; see metadata_props for the input"
            tmp.write_bytes(proto.SerializeToString())  # Python's write: a full disk is one line
    return path


def export_torchscript(model: nn.Module, spec: ModelSpec, path: str | Path, *, fuse: bool = False) -> Path:
    """Write ``model`` as a traced TorchScript archive at ``path`` (atomically) and return the path.

    The spec JSON is the archive's extra file ``resdense.json``; the file loads with a bare
    ``torch.jit.load`` (pass ``_extra_files={"resdense.json": ""}`` to read the spec). Tracing records the
    eval-mode, no-grad forward pass; any batch size runs.
    """
    path = Path(path)
    with _inference_model(model, spec, fuse) as m, torch.no_grad():
        x = example_input(m, spec)
        with quiet_torch():
            traced = torch.jit.trace(m, (x,), check_trace=False)
            write_torchscript(path, traced, spec)
    return path
