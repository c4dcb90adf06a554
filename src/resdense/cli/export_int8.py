"""``resdense export --format onnx --int8``: the fp32 export, quantized, and its own check against fp32 on the
run's test set (accuracy) and on this CPU (speed)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def run_int8(args, model, spec, out: Path) -> int:
    from ..errors import UserError
    from ..serve import load_predictor
    from ..serve.evaluate import load_test_set
    from ..serve.export import export_onnx
    from ..serve.quantize import calibration_images, int8_report, quantize_onnx
    from ..utils.io import human_size

    # the run's own data: a run folder (or its weights file), else Fashion-MNIST for shipped weights
    where = args.run if args.run is not None else (args.weights if Path(args.weights).exists() else None)
    with tempfile.TemporaryDirectory(prefix="resdense-int8-") as tmp:
        fp32 = export_onnx(
            model, spec, Path(tmp) / "fp32.onnx", fuse=args.fuse_bn, opset=args.opset, exporter=args.exporter
        )
        calibration = calibration_images(where, spec.preprocess, args.calibration)
        try:
            quantize_onnx(fp32, out, calibration, spec)
        except OSError as e:
            raise UserError(f"{out}: cannot write ({e.strerror or e})") from None
        print(
            f"wrote {out} ({human_size(out.stat().st_size)}, onnx int8: QDQ, uint8 activations, per-channel "
            f"int8 weights; calibrated on {len(calibration):,} training images; fp32 "
            f"{human_size(fp32.stat().st_size)})"
        )
        test_set = load_test_set(where, preprocess=spec.preprocess)
        report = int8_report(load_predictor(fp32), load_predictor(out), test_set)
    for line in report.lines():
        print(line)
    return 0
