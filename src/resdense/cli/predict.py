"""``resdense predict``: top classes for image files."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="classify image files (PNG/JPEG, any size, colour or grey)")
    p.add_argument(
        "model", metavar="RUN_OR_WEIGHTS", help="run folder, .safetensors, .onnx or TorchScript file"
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=3, help="how many classes to show (default 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..errors import UserError
    from ..inference import load_predictor
    from ..predict import predict_files
    from ..train.engine import resolve_device

    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    predictor = load_predictor(args.model, device=str(resolve_device(args.device)))
    results = predict_files(predictor, args.images, top_k=args.top)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                continue
            tops = ", ".join(f"{c} {p:.3f}" for c, p in r.top)
            print(f"{r.path}: {tops}")
    for r in results:
        if r.error:
            print(f"resdense predict: error: {r.error}", file=sys.stderr)
    # exit 1 when some image could not be read, after answering all the others
    return 1 if any(r.error for r in results) else 0
