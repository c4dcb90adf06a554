"""int8 on CPUs: static post-training quantization of an exported ONNX model, and its own check.

The tool is onnxruntime's quantizer (``onnxruntime.quantization.quantize_static``), the ecosystem's
standard for models that run on onnxruntime, which is where ``resdense export`` already sends them.
PyTorch's PT2E flow would need torch.export plus an inductor/x86 backend and serves from PyTorch, not
from the ONNX file every other command reads; so ORT it is.

The settings are the ones that pay on x86 (measured, see benchmarks/RESULTS.md, "Serving on CPUs"):

- **QDQ form** (QuantizeLinear/DequantizeLinear pairs around float ops, which ORT fuses into int8 kernels):
  the portable form, the one ORT's docs recommend for CPUs.
- **U8S8**: uint8 activations, int8 weights. x86's VNNI/AMX instructions multiply u8 by s8; with s8
  activations too (S8S8) ORT falls back to slower paths, and int8 measured *slower* than fp32
  (0.46-0.94x) where U8S8 ran 2-2.7x faster on the same Xeon.
- **per-channel weights** (one scale per output channel of each conv): the usual way to keep a CNN's
  accuracy within a few tenths of a point.
- **MinMax calibration** on a few hundred images from the run's own *training* split, fed exactly as
  evaluation feeds them (the spec's preprocessing, no augmentation): the test split stays unseen.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..modelfile import SPEC_KEY, ModelSpec, first_line
from ..preprocess import Preprocess, normalize
from ..utils.io import atomic_path

__all__ = ["CALIBRATION_SIZE", "Int8Report", "calibration_images", "int8_report", "quantize_onnx"]

CALIBRATION_SIZE = 512  # training images drawn for calibration (seeded)
_CALIBRATION_BATCH = 64


def calibration_images(
    path: str | Path | None,
    preprocess: Preprocess,
    n: int = CALIBRATION_SIZE,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """``n`` images (uint8, fitted to the input size, not normalised) drawn at random from the training split
    of the run at ``path`` (its own data set and folder, as :func:`serve.evaluate.load_test_set` finds
    them; Fashion-MNIST when there is no run). A photo run's files are decoded as its evaluation decodes."""
    from ..data import load_dataset
    from .evaluate import PhotoFiles, run_config

    cfg = run_config(path) if path else {}
    name, folder = dataset or cfg.get("dataset", "fashion-mnist"), data_dir or cfg.get("data_dir")
    g = torch.Generator().manual_seed(seed)
    if name == "folder" and folder and preprocess.fit == "shorter":
        from ..data.folder import index_folder

        train = index_folder(folder).train
        pick = torch.randperm(len(train), generator=g)[:n].tolist()
        files = PhotoFiles([train[i][0] for i in pick], torch.zeros(len(pick), dtype=torch.int64), preprocess)
        return files.images_at(torch.arange(len(pick)))
    train = load_dataset(name, folder).train
    pick = torch.randperm(len(train), generator=g)[:n]
    return preprocess.fit_images(train.images[pick].cpu())


@contextlib.contextmanager
def _quiet_root_logger():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: ``get_next()`` -> {input name: batch} or None."""

    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self._feeds = iter([{input_name: b} for b in batches])

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):  # pragma: no cover - called by some calibrators only
        pass


def quantize_onnx(fp32: str | Path, out: str | Path, calibration: torch.Tensor, spec: ModelSpec) -> Path:
    """Write the int8 (QDQ, U8S8, per-channel, MinMax-calibrated) version of the ONNX file ``fp32`` at
    ``out`` (atomically), calibrated on ``calibration`` (uint8 images fitted to the input size), with the
    spec in its metadata like any exported file."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise UserError("int8 export needs onnx and onnxruntime: pip install 'resdense[export]'") from None
    pre = spec.preprocess
    x = normalize(calibration, pre.mean, pre.std).numpy()
    batches = [x[s : s + _CALIBRATION_BATCH] for s in range(0, len(x), _CALIBRATION_BATCH)]
    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    out = Path(out)
    with atomic_path(out) as tmp:
        prepped = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            try:
                # shape inference and graph clean-up first, as ORT's quantization guide advises
                quant_pre_process(str(fp32), str(prepped), skip_symbolic_shape=True)
                source = prepped
            except Exception:  # an optional step: quantize the exported graph as it is
                source = Path(fp32)
            # onnxruntime logs per-tensor notes (a DenseNet's standalone batch norms) on the root logger
            with _quiet_root_logger():
                quantize_static(
                    str(source),
                    str(tmp),
                    _Reader(input_name, batches),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax,
                )
        except Exception as e:
            raise UserError(f"{out}: onnxruntime could not quantize the model ({first_line(e)})") from None
        finally:
            prepped.unlink(missing_ok=True)
        model = onnx.load(str(tmp))
        keep = [(m.key, m.value) for m in model.metadata_props if m.key != SPEC_KEY]
        del model.metadata_props[:]
        for key, value in [*keep, (SPEC_KEY, spec.to_json())]:
            model.metadata_props.add(key=key, value=value)
        onnx.save_model(model, str(tmp))
    return out


@dataclass
class Int8Report:
    fp32_accuracy: float
    int8_accuracy: float
    n: int  # test images scored
    fp32_images_per_s: float
    int8_images_per_s: float
    batch: int

    @property
    def speedup(self) -> float:
        return self.int8_images_per_s / self.fp32_images_per_s

    def lines(self) -> list[str]:
        delta = 100 * (self.int8_accuracy - self.fp32_accuracy)
        return [
            f"int8 check: test accuracy int8 {self.int8_accuracy:.4f} vs fp32 {self.fp32_accuracy:.4f} "
            f"({delta:+.2f} points) on {self.n:,} test images",
            f"int8 speed: {self.int8_images_per_s:,.0f} vs {self.fp32_images_per_s:,.0f} images/s at batch "
            f"{self.batch} on this CPU ({self.speedup:.2f}x fp32, onnxruntime, median of interleaved rounds)",
        ]


def _median_seconds(runners: dict, x: torch.Tensor, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in runners}
    for run in runners.values():
        run(x)  # warm-up
    for _ in range(rounds):  # interleaved: a busy machine slows both alike
        for key, run in runners.items():
            t0 = time.perf_counter()
            run(x)
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def int8_report(fp32, int8, test_set, *, batch: int = 64, rounds: int = 7) -> Int8Report:
    """Test accuracy of the two predictors (fp32 and int8 ONNX) on ``test_set`` and their speed on one
    batch of its images, measured in interleaved rounds."""
    from .evaluate import evaluate

    acc = {
        k: evaluate(p.path, test_set=test_set, predictor=p).accuracy
        for k, p in [("fp32", fp32), ("int8", int8)]
    }
    batch = min(batch, len(test_set))
    images = (
        test_set.images[:batch] if hasattr(test_set, "images") else test_set.images_at(torch.arange(batch))
    )
    pre = fp32.spec.preprocess
    x = normalize(pre.fit_images(images.cpu()), pre.mean, pre.std)
    secs = _median_seconds({"fp32": fp32.forward, "int8": int8.forward}, x, rounds)
    n = len(x)
    return Int8Report(acc["fp32"], acc["int8"], len(test_set), n / secs["fp32"], n / secs["int8"], n)
