"""``resdense predict``: top classes for image files."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files (PNG/JPEG, any size, colour or grey)",
        description="Classify image files with a trained model: a run folder or model file, or --weights "
        "(e.g. `resdense predict --weights fashion-mnist shoe.jpg`, no training needed).",
    )
    p.add_argument(
        "model",
        metavar="RUN_OR_WEIGHTS",
        nargs="?",
        help="run folder, .safetensors, .onnx or TorchScript file (omit it with --weights)",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders (read recursively)")
    add_weights_args(p)
    p.add_argument("--top", type=int, default=3, help="how many classes to show (default 3)")
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="make dark-on-light photos light-on-dark as Fashion-MNIST is (auto: for Fashion-MNIST models, "
        "when the image's border is light)",
    )
    add_tta_arg(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", metavar="F", help="also write the predictions to F (.csv or .json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument(
        "--batch-size", type=int, default=256, help="images decoded and run at a time (default 256)"
    )
    p.set_defaults(func=run)


def add_tta_arg(p) -> None:
    """``--tta [VIEWS]``: the test-time views (serving's one list, ``TTA_VIEWS``), shared by predict and evaluate."""
    from ..serve.predictor import TTA_VIEWS

    p.add_argument(
        "--tta",
        nargs="?",
        const="auto",
        default="auto",
        choices=("auto", *TTA_VIEWS),
        metavar="VIEWS",
        help="test-time augmentation: auto (the default, and --tta alone: the model "
        "file's own views, what training scored with), " + ", ".join(TTA_VIEWS),
    )


def add_weights_args(p) -> None:
    """``--weights SRC`` and ``--arch NAME``, shared by the commands that load a model."""
    p.add_argument(
        "--weights",
        metavar="SRC",
        help="fashion-mnist (fashion-mnist:fast, fashion-mnist:best: shipped with resdense), a run folder, "
        "a .safetensors/.pth state dict, a torchvision name (IMAGENET1K_V1, DEFAULT) with --arch, or "
        "hf-hub:ORG/NAME (timm's ResNets/DenseNets or a resdense model file on the Hugging Face Hub)",
    )
    p.add_argument("--arch", metavar="MODEL", help="the architecture for --weights that do not name one")


def load_model_for(args, device: str):
    """The Predictor the command's positional model or ``--weights`` names (serving's one door)."""
    from ..serve.load import load_source

    tta = getattr(args, "tta", "auto")  # the commands without --tta use the model file's own views
    return load_source(args.model, weights=args.weights, arch=args.arch, device=device, tta=tta)


def paths_with_weights(args, paths) -> list:
    """The input paths: with ``--weights`` the positional model argument is one more of them."""
    paths = list(paths)
    if args.weights is not None and args.model is not None:
        paths.insert(0, args.model)
        args.model = None
    return paths


def run(args) -> int:
    import sys

    from ..errors import UserError
    from ..serve.predict import check_output, predict_many, write_predictions
    from ..utils.device import resolve_device
    from ..utils.outputs import escape_name

    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    images = paths_with_weights(args, args.images)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.out is not None:
        check_output(args.out, force=args.force)  # before any work
    predictor = load_model_for(args, str(resolve_device(args.device)))
    results = list(
        predict_many(predictor, images, top_k=args.top, invert=args.invert, batch_size=args.batch_size)
    )
    if args.out is not None:
        print(f"{len(results):,} predictions -> {write_predictions(results, args.out)}", file=sys.stderr)
    for r in results:
        if r.inverted:
            print(
                f"{escape_name(r.path)}: light background, inverted to match the training images (--invert no to keep it)",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                continue
            tops = ", ".join(f"{escape_name(c)} {p:.3f}" for c, p in r.top)
            print(f"{escape_name(r.path)}: {tops}")
    for r in results:
        if r.error:
            print(f"resdense predict: error: {escape_name(r.error)}", file=sys.stderr)
    # exit 1 when some image could not be read, after answering all the others
    return 1 if any(r.error for r in results) else 0
