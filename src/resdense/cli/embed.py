"""``resdense embed``: features of image files and folders, as .npy (+ the file list) or parquet."""

from __future__ import annotations

import json

from .predict import add_weights_args, load_model_for, paths_with_weights


def add_parser(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="features of image files and folders (pooled, or a stage's), for search and clustering",
        description="Write the features a model computes for every image (the pooled features its classifier "
        "reads, or --layer STAGE's, averaged over positions): F.npy (N x D, float32) and F.txt (row i's file "
        "on line i), or F.parquet where pyarrow is installed. Folders are read recursively, a batch at a time.",
    )
    p.add_argument(
        "model", metavar="RUN_OR_WEIGHTS", nargs="?", help="run folder or .safetensors (or --weights)"
    )
    p.add_argument("inputs", nargs="+", metavar="DIR_OR_IMAGE")
    add_weights_args(p)
    p.add_argument("--out", required=True, metavar="F", help="F.npy + F.txt, or F.parquet")
    p.add_argument(
        "--layer", metavar="STAGE", help="a stage's features (e.g. layer3; the list: a wrong name)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..errors import UserError
    from ..serve.embed import check_outputs, embed, write_embeddings
    from ..utils.device import resolve_device
    from ..utils.outputs import escape_name

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    inputs = paths_with_weights(args, args.inputs)
    check_outputs(args.out, force=args.force)  # before any work
    predictor = load_model_for(args, str(resolve_device(args.device)))
    result = embed(predictor, inputs, layer=args.layer, batch_size=args.batch_size)
    for _path, msg in result.errors:
        print(f"resdense embed: error: {escape_name(msg)}", file=sys.stderr)
    if not result.paths:
        raise UserError("no image could be read; nothing written")
    files = write_embeddings(result, args.out, force=args.force)
    n, d = result.features.shape
    if args.json:
        print(
            json.dumps(
                {
                    "files": [str(f) for f in files],
                    "images": n,
                    "dim": d,
                    "layer": result.layer,
                    "errors": [{"path": escape_name(p), "error": escape_name(m)} for p, m in result.errors],
                }
            )
        )
    else:
        print(f"{n:,} images x {d:,} features ({result.layer}) -> {', '.join(str(f) for f in files)}")
    return 1 if result.errors else 0
