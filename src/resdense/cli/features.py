"""``resdense inspect MODEL|RUN --image FILE``: what each stage of the model sees of one image, as a figure."""

from __future__ import annotations

import json
from pathlib import Path

from ..rundir import RunDir


def run_features(args, model) -> int:
    from ..errors import UserError
    from ..serve.features import show_features
    from ..utils.outputs import check_output

    if args.input_size:
        raise UserError("--input-size goes without --image (the image is fed as the model's own input)")
    src = Path(args.model)
    if args.out is not None:
        out = args.out
    else:
        out = (src if src.is_dir() else src.parent if src.exists() else Path(".")) / RunDir.FEATURES
    # before any work: a PNG file name in an existing folder (a figure: rewritten as the command is rerun)
    out = check_output(out, suffixes=(".png",), overwrite_ok=True)
    name = model.pretrained_cfg.model or args.model
    _, maps = show_features(
        model,
        args.image,
        out=out,
        title=f"{name} on {'/'.join(Path(args.image).parts[-2:])}: what each stage sees",
    )
    if args.json:
        print(
            json.dumps(
                {
                    "model": name,
                    "image": args.image,
                    "figure": str(out),
                    "stages": [m.to_json() for m in maps],
                },
                indent=2,
            )
        )
        return 0
    w = max(len(m.name) for m in maps) if maps else 5
    print(f"{name} on {args.image}: the feature maps after each stage")
    for m in maps:
        print(f"  {m.name:<{w}}  {m.kind:<12}  {'x'.join(map(str, m.maps.shape))}")
    print(f"figure: {out}")
    return 0
