"""``resdense export``: a trained model to ONNX or TorchScript, with a self-check against PyTorch."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import UserError
from ..rundir import RunDir
from ..serve.export import EXPORTERS, FORMATS
from ..serve.share import DEFAULT_LICENSE, HUB_FORMAT
from ..utils.io import human_size
from .predict import add_weights_args

CHECK_BATCH = 4


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained model to ONNX or TorchScript",
        description="Export a trained model (run folder or .safetensors) to ONNX or TorchScript. The file "
        "carries the model's spec (preprocessing, class names), so `resdense predict` and `resdense "
        "evaluate` accept it; the output is checked against PyTorch on a random batch.",
    )
    p.add_argument(
        "run",
        metavar="RUN_OR_WEIGHTS",
        nargs="?",
        help="run folder or .safetensors weights file (or --weights)",
    )
    add_weights_args(p)
    p.add_argument(
        "--format",
        required=True,
        choices=sorted([*FORMATS, HUB_FORMAT]),
        help="output format: an ONNX or TorchScript file, or (hub) a Hugging Face Hub folder of a run: its "
        "model file, a timm-shaped config.json and a model card, what `resdense push` uploads",
    )
    p.add_argument(
        "--fuse-bn", action="store_true", help="fold each conv's following batch norm into the conv first"
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="output file (default: model.onnx / model.pt in the run folder, or beside the weights file; "
        "for --weights, named after them in the current folder)",
    )
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the exporter's own)")
    p.add_argument(
        "--repo", metavar="ORG/NAME", help="--format hub: the Hub repository the card's loading examples name"
    )
    p.add_argument(
        "--license",
        metavar="ID",
        help=f"--format hub: the card's license (default {DEFAULT_LICENSE})",
    )
    p.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="auto",
        help="ONNX exporter: torch's older TorchScript-based one (legacy, fast), its torch.export-based one "
        "(dynamo, needs onnxscript), or legacy falling back to dynamo when it fails (auto, default)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="ONNX only: quantize to int8 (onnxruntime, static, QDQ, uint8 activations and per-channel int8 "
        "weights), calibrated on the run's training images; reports int8 vs fp32 test accuracy and speed",
    )
    p.add_argument(
        "--calibration",
        type=int,
        default=512,
        metavar="N",
        help="--int8: training images to calibrate on (default 512)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing --out (--format hub: replace an earlier export folder)",
    )
    p.set_defaults(func=run_export)


def default_out(src: str | Path, fmt: str, int8: bool = False) -> Path:
    """``<run>/model.onnx`` for a run folder, ``<dir>/<stem>.onnx`` for a weights file (``.pt`` likewise;
    ``.int8.onnx`` for int8)."""
    src = Path(src)
    suffix = (".int8" if int8 else "") + FORMATS[fmt]
    if src.is_dir():
        return src / f"model{suffix}"
    return src.with_suffix(suffix)


def check_writable(out: Path, force: bool = False) -> None:
    """Fail early, with a one-line UserError naming ``out``, when the file surely cannot be written (or
    exists, unless ``force``)."""
    if out.exists() and not out.is_dir() and not force:
        raise UserError(f"--out {out}: exists; use --force to overwrite it")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give a file name with --out")
    parent = out.parent
    # the nearest existing ancestor must be a folder we may write in (atomic_path creates the rest)
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{out}: cannot write here ({parent} is a file, not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot write here ({parent} is not writable)")


def run_export(args) -> int:
    from ..serve import Predictor, load_model, load_predictor
    from ..serve.export import export_onnx, export_torchscript

    if args.format == HUB_FORMAT:
        return run_export_hub(args)
    if args.repo is not None or args.license is not None:
        raise UserError("--repo and --license apply to --format hub only")
    if args.opset is not None and args.format != "onnx":
        raise UserError("--opset applies to --format onnx only")
    if args.int8 and args.format != "onnx":
        raise UserError("--int8 applies to --format onnx only")
    if args.int8 and args.calibration < 1:
        raise UserError(f"--calibration must be at least 1, got {args.calibration}")
    if args.opset is not None and args.opset < 7:
        raise UserError(f"--opset must be at least 7, got {args.opset}")
    if args.weights is not None:
        if args.run is not None:
            raise UserError(f"give either a run/weights file ({args.run}) or --weights, not both")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(args.weights).stem or args.weights).strip("-")
        out = (
            Path(args.out)
            if args.out is not None
            else Path(stem + (".int8" if args.int8 else "") + FORMATS[args.format])
        )
        check_writable(out, args.force or args.out is None)  # a default name is the command's own
        model, spec = load_model(args.weights, args.arch)
    else:
        if args.run is None:
            raise UserError("give a run folder or weights file, or --weights SRC")
        weights = RunDir.weights_file(args.run)
        out = Path(args.out) if args.out is not None else default_out(args.run, args.format, args.int8)
        if out.exists() and weights.exists() and out.resolve() == weights.resolve():
            raise UserError(f"{out}: would overwrite the weights being exported; choose another --out")
        check_writable(out, args.force or args.out is None)  # a default name is the command's own
        model, spec = load_model(weights)

    if args.int8:
        from .export_int8 import run_int8

        return run_int8(args, model, spec, out)
    try:
        if args.format == "onnx":
            export_onnx(model, spec, out, fuse=args.fuse_bn, opset=args.opset, exporter=args.exporter)
        else:
            export_torchscript(model, spec, out, fuse=args.fuse_bn)
    except OSError as e:
        raise UserError(f"{out}: cannot write ({e.strerror or e})") from None

    # self-check: the exported file, loaded as `resdense predict` would load it, against the PyTorch model
    size = spec.preprocess.input_size or model.default_cfg.input_size[-1]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (CHECK_BATCH, spec.preprocess.in_chans, size, size), generator=g)
    images = images.to(torch.uint8)
    reference = Predictor.for_model(model, spec).predict_logits(images)
    exported = load_predictor(out).predict_logits(images)
    diff = (exported - reference).abs().max().item()
    scale = reference.abs().max().item()

    print(
        f"wrote {out} ({human_size(out.stat().st_size)}, {args.format}{', BN fused' if args.fuse_bn else ''})"
    )
    print(
        f"self-check: max |exported - pytorch| = {diff:.2e} on {CHECK_BATCH} random images (logits up to {scale:.2g})"
    )
    if not diff <= 1e-3 * max(1.0, scale):
        print("warning: the exported model's outputs differ from PyTorch's more than float rounding explains")
        return 1
    return 0


def run_export_hub(args) -> int:
    from ..serve.share import export_hub

    if args.weights is not None or args.run is None:
        raise UserError("--format hub exports a run folder: give the run (its card is made from the run)")
    if args.int8 or args.opset is not None or args.fuse_bn:
        raise UserError("--int8, --opset and --fuse-bn apply to onnx/torchscript, not --format hub")
    if args.out is None:
        raise UserError("--format hub needs --out DIR (the folder to write)")
    folder = export_hub(
        args.run,
        args.out,
        force=args.force,
        repo_id=args.repo,
        license=args.license or DEFAULT_LICENSE,
        say=print,
    )
    files = sorted(p.name for p in folder.iterdir())
    print(f"wrote {folder}: {', '.join(files)} (upload it with `resdense push {args.run} --repo ORG/NAME`)")
    return 0
