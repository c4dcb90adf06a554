"""``resdense explain``: where the model looked (Grad-CAM and Grad-CAM++ over each image), as one PNG."""

from __future__ import annotations

import json
from pathlib import Path

from ..rundir import RunDir
from .predict import add_weights_args, load_model_for


def add_parser(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="where the model looked: class-activation maps (Grad-CAM, Grad-CAM++) over image files",
        description="Draw, over each image, where the model found the evidence for its top class (or --class). "
        f"Writes {RunDir.EXPLAIN} (the images, then one row of heat maps per method) into --out.",
    )
    p.add_argument(
        "model",
        metavar="RUN_OR_WEIGHTS",
        nargs="?",
        help="run folder or .safetensors file (omit it with --weights)",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_weights_args(p)
    p.add_argument(
        "--class", dest="class_name", metavar="NAME", help="explain this class (default: the top one)"
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help="the module to look at, as named by `resdense inspect --depth N` (default: the model's "
        "own choice: a ResNet's last stage, a DenseNet's last dense block)",
    )
    p.add_argument(
        "--method",
        choices=("both", "gradcam", "gradcam++"),
        default="both",
        help="which maps to draw (default: both)",
    )
    p.add_argument(
        "--invert", choices=("auto", "yes", "no"), default="auto", help="as for `resdense predict`"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help=f"folder for {RunDir.EXPLAIN} (default: the run folder; the current folder for --weights)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..serve.explain import METHODS, explain
    from ..utils.device import resolve_device
    from ..utils.outputs import check_output, escape_name

    if args.out is not None:  # before any work: a folder (made if missing), not a file
        check_output(args.out, kind="folder")

    images = list(args.images)
    if args.weights is not None and args.model is not None:
        images.insert(0, args.model)  # with --weights every path is an image
        args.model = None
    predictor = load_model_for(args, str(resolve_device(args.device)))
    if args.out:
        out = Path(args.out)
    elif args.model:
        src = Path(args.model)
        out = src if src.is_dir() else src.parent
    else:
        out = Path(".")
    methods = METHODS if args.method == "both" else (args.method,)
    result = explain(
        predictor,
        images,
        class_name=args.class_name,
        layer=args.layer,
        out=out,
        methods=methods,
        invert=args.invert,
    )
    figure = out / RunDir.EXPLAIN
    for e in result:
        if e.inverted:
            print(
                f"{escape_name(e.path)}: light background, inverted to match the training images (--invert no to keep it)",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps({"figure": str(figure), "images": [e.to_json() for e in result]}, indent=2))
        return 0
    for e in result:
        y, x = e.peak(methods[0])
        print(
            f"{escape_name(e.path)}: predicted {escape_name(e.predicted)} {e.probability:.3f}; "
            f"map of {escape_name(e.target)} at {e.layer}, "
            f"strongest at {y:.0%} down, {x:.0%} across"
        )
    print(f"figure: {figure}")
    return 0
