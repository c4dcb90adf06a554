"""``resdense list`` and ``resdense inspect``."""

from __future__ import annotations

import json

import torch

from ..errors import UserError
from ..models import create_model, list_models
from ..models.registry import UnknownModelError, get_model_info
from ..models.summary import InputTooSmallError, count_params, summarize


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list the models with their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_list)

    p = sub.add_parser("inspect", help="layer-by-layer output shapes, parameters and MACs of a model")
    p.add_argument("model", help="registered model name (see `resdense list`), or a run folder / model file")
    p.add_argument(
        "--input-size", nargs=3, type=int, metavar=("C", "H", "W"), help="default: the model's own"
    )
    p.add_argument("--depth", type=int, default=1, help="module depth to list (1 = direct children)")
    p.add_argument("--num-classes", type=int, help="classifier size (default: the model's own)")
    p.add_argument(
        "--weights",
        metavar="SRC",
        help="load these weights and say what they are (IMAGENET1K_V1, DEFAULT, fashion-mnist, a file, a run)",
    )
    p.add_argument(
        "--image",
        metavar="FILE",
        help="draw what each stage sees of this image: its feature maps after every stage, one figure",
    )
    p.add_argument(
        "--out", metavar="FILE", help="the --image figure (default: features.png here, or in the run)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_inspect)


def _build(name: str, **kwargs):
    from pathlib import Path

    if Path(name).exists():  # a run folder or model file: its trained model
        from ..serve.load import load_model

        if kwargs.get("weights") is not None:
            raise UserError(f"{name}: a trained model already; --weights goes with a model name")
        return load_model(name)[0]
    try:
        return create_model(name, **kwargs)
    except UnknownModelError as e:
        raise UserError(str(e)) from None
    except TypeError as e:
        raise UserError(f"{name}: {e}") from None


def _weights_line(cfg) -> str:
    """What the weights are and how they are fed, from the model's typed ``pretrained_cfg``."""
    parts = [f"weights: {cfg.source}"]
    if cfg.classes:
        parts.append(f"{len(cfg.classes)} classes ({', '.join(cfg.classes[:3])}, ...)")
    side = cfg.input_size[-1]
    if cfg.resize:
        how = "shorter side" if cfg.fit == "shorter" else "square"
        parts.append(f"resize {cfg.resize} ({how}), centre crop {side}")
    else:
        parts.append(f"{side} px")
    if cfg.known_input:
        parts.append("mean " + "/".join(f"{v:.3f}" for v in cfg.mean))
    for key, label in (("test_accuracy", "test accuracy"), ("imagenet_top1", "ImageNet top-1 %")):
        if cfg.meta.get(key) is not None:
            parts.append(f"{label} {cfg.meta[key]}")
    if cfg.meta.get("recipe"):
        parts.append(f"recipe {cfg.meta['recipe']}")
    return ", ".join(parts)


def run_list(args) -> int:
    rows = []
    for name in list_models(args.pattern):
        info = get_model_info(name)
        with torch.device("meta"):  # shapes only: counting parameters needs no memory and no init
            model = create_model(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "params": count_params(model),
                "input_size": list(model.default_cfg.input_size),
                "source": info.source,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        raise UserError(f"no model matches {args.pattern!r}")
    w = max(len(r["name"]) for r in rows)
    print(f"{'model':<{w}}  {'params':>12}  {'input':<13}  source")
    for r in rows:
        size = "x".join(map(str, r["input_size"]))
        print(f"{r['name']:<{w}}  {r['params']:>12,}  {size:<13}  {r['source']}")
    return 0


def run_inspect(args) -> int:
    if args.depth < 1:
        raise UserError(f"--depth must be at least 1, got {args.depth}")
    kwargs = {}
    if args.input_size:
        c, h, w = args.input_size
        if min(c, h, w) < 1:
            raise UserError(f"--input-size must be positive, got {c} {h} {w}")
        kwargs["in_chans"] = c
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.weights is not None:
        kwargs["weights"] = args.weights
    model = _build(args.model, **kwargs)
    if args.image is not None:
        from .features import run_features

        return run_features(args, model)
    pretrained = model.pretrained_cfg if args.weights is not None else None
    size = tuple(args.input_size) if args.input_size else None
    if size is None and pretrained is not None:  # the size the weights are fed at (the crop, if any)
        size = tuple(pretrained.input_size)
    try:
        s = summarize(model, size, args.depth, name=args.model)
    except InputTooSmallError as e:
        raise UserError(str(e)) from None
    if args.json:
        d = s.to_json()
        print(
            json.dumps(
                {
                    "model": d["model"],
                    "input_size": d["input_size"],
                    "layers": [
                        {k: row[k] for k in ("name", "type", "output_shape", "params", "macs")}
                        for row in d["layers"]
                    ],
                    "total_params": d["total_params"],
                    "macs": d["macs"],
                    # the feature points (forward_intermediates, --layer, inspect --image), as timm's feature_info
                    "feature_info": list(getattr(model, "feature_info", [])),
                    **({"weights": pretrained.to_dict()} if pretrained else {}),
                },
                indent=2,
                default=list,
            )
        )
    else:
        print(s.table())
        if pretrained:
            print(_weights_line(pretrained))
    return 0
