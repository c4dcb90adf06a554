"""``resdense evaluate``: test accuracy, per-class accuracy, confusion matrix and mistakes of a model; the
options parsed here, the work done by :func:`resdense.serve.evaluate.evaluate_source`."""

from __future__ import annotations

import json

from ..data import DATASETS
from ..rundir import RunDir
from .predict import add_tta_arg, add_weights_args


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
    from ..serve.evaluate import evaluate_source
    from ..utils.outputs import check_output

    if args.out is not None:  # before any work: a folder (made if missing), not a file
        check_output(args.out, kind="folder")

    report = evaluate_source(
        args.model,
        weights=args.weights,
        arch=args.arch,
        dataset=args.dataset,
        data_dir=args.data_dir,
        tta=args.tta,
        device=args.device,
        test_subset=args.test_subset,
        out=args.out,
        progress=not args.json,
        say=print,  # a folder that cannot take the figures: the score on stdout, then the one-line error
        # the accuracy as soon as it is known, before the figures are drawn (issue 37: many classes)
        on_scored=None if args.json else (lambda r: print(r.headline(), flush=True)),
    )
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print("\n".join(report.lines()[1:]))  # the headline is printed already
    return 0
