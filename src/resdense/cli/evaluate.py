"""``resdense evaluate``: test accuracy, per-class accuracy, confusion matrix and mistakes of a model."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a run, weights file or exported ONNX model on its test set")
    p.add_argument(
        "model", metavar="RUN_OR_WEIGHTS", help="run folder, .safetensors, .onnx or TorchScript file"
    )
    p.add_argument("--dataset", choices=["fashion-mnist", "idx", "folder"], help="default: the run's own")
    p.add_argument("--data-dir", help="default: the run's own")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for confusion.png and mistakes.png (default: beside the model)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..evaluate import evaluate, load_test_set, write_figures
    from ..inference import load_predictor
    from ..train.engine import resolve_device

    device = str(resolve_device(args.device))
    # the model first: a wrong path is reported before any data is read (or downloaded)
    predictor = load_predictor(args.model, device=device)
    test_set = load_test_set(args.model, dataset=args.dataset, data_dir=args.data_dir)
    result = evaluate(args.model, device=device, test_set=test_set, predictor=predictor)
    src = Path(args.model)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
    figures = write_figures(result, test_set, out)
    if args.json:
        print(
            json.dumps({"model": str(args.model), **result.to_json(), "figures": [str(f) for f in figures]})
        )
        return 0
    print(f"{args.model}: test accuracy {result.accuracy:.4f} on {result.n:,} images")
    w = max(len(c) for c in result.classes)
    for c, a in result.per_class.items():
        print(f"  {c:<{w}}  {a:.4f}  {'#' * round(a * 30)}")
    print("figures: " + ", ".join(str(f) for f in figures))
    return 0
