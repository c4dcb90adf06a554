"""``resdense evaluate``: test accuracy, per-class accuracy, confusion matrix and mistakes of a model."""

from __future__ import annotations

import json
from pathlib import Path

from ..data import DATASETS
from ..rundir import RunDir
from .predict import add_tta_arg, add_weights_args, load_model_for


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="score a run, weights file or exported ONNX model on its test set")
    p.add_argument(
        "model",
        metavar="RUN_OR_WEIGHTS",
        nargs="?",
        help="run folder, .safetensors, .onnx or TorchScript file (or --weights)",
    )
    add_weights_args(p)
    p.add_argument("--dataset", choices=DATASETS, help="default: the run's own")
    p.add_argument("--data-dir", help="default: the run's own")
    add_tta_arg(p)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--test-subset", type=int, default=0, metavar="N", help="score the first N test images only"
    )
    p.add_argument(
        "--out",
        help=f"folder for {RunDir.CONFUSION} and {RunDir.MISTAKES} (default: beside the model; none for --weights)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import StorageError, UserError
    from ..serve.evaluate import evaluate, load_test_set, write_figures
    from ..serve.mistakes import find_mistakes, most_confused, test_files, write_mistakes_csv
    from ..utils.device import resolve_device

    if args.weights is not None and args.model is not None:
        raise UserError(f"give either a run/model file ({args.model}) or --weights, not both")
    if args.test_subset < 0:
        raise UserError(f"--test-subset must be >= 0, got {args.test_subset}")
    device = str(resolve_device(args.device))
    # the model first: a wrong path is reported before any data is read (or downloaded)
    predictor = load_model_for(args, device)
    name = args.model or args.weights
    # --weights: the data set is the weights' own run's when they come from one, else Fashion-MNIST
    where = args.model or (args.weights if Path(args.weights).exists() else None)
    test_set = load_test_set(
        where,
        dataset=args.dataset,
        data_dir=args.data_dir,
        preprocess=predictor.spec.preprocess,
        classes=predictor.spec.classes,  # a folder's classes matched to the model's by name (issue 19)
    )
    files = test_files(where, test_set, dataset=args.dataset, data_dir=args.data_dir)
    if args.test_subset:
        test_set = test_set.subset(args.test_subset)
        files = files[: len(test_set)] if files else files
    result = evaluate(name, device=device, test_set=test_set, predictor=predictor, progress=not args.json)
    mistakes = find_mistakes(result, test_set.labels, files)
    if args.out or args.model:
        src = Path(args.model or ".")
        out = Path(args.out) if args.out else (src if src.is_dir() else src.parent)
        try:
            figures = write_figures(result, test_set, out)
            figures.append(write_mistakes_csv(mistakes, out))
        except (StorageError, OSError):
            # a read-only or full folder: the result computed is printed, not lost
            print(f"{name}: test accuracy {result.accuracy:.4f} on {result.n:,} images (no figures written)")
            raise
    else:
        figures = []  # shipped or cached weights: nowhere of the user's to write to unless --out says
    confused = most_confused(result)
    if args.json:
        print(json.dumps({"model": str(name), **result.to_json(), "tta": predictor.views,
                          "figures": [str(f) for f in figures],
                          "most_confused": [{"true": t, "predicted": p, "count": n} for t, p, n in confused],
                          "mistakes": [m.to_json() for m in mistakes]}))  # fmt: skip
        return 0
    views = "" if predictor.views == "none" else f" (test-time views: {predictor.views})"
    print(f"{name}: test accuracy {result.accuracy:.4f} on {result.n:,} images{views}")
    w = max(len(c) for c in result.classes)
    for c, a in result.per_class.items():
        print(f"  {c:<{w}}  {a:.4f}  {'#' * round(a * 30)}")
    if confused:
        print("most confused: " + ", ".join(f"{t} -> {p} {n:,}" for t, p, n in confused[:5]))
    for m in mistakes[:5]:
        print(
            f"  {m.file or f'test image {m.index}'}: {m.true} taken for {m.predicted} ({m.p_predicted:.2f})"
        )
    if figures:
        print("figures: " + ", ".join(str(f) for f in figures))
    return 0
