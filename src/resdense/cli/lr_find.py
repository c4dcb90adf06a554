"""``resdense lr-find``: the learning-rate range test (train/lr_find.py) on the run the training options
describe; prints the suggested learning rate and writes the figure."""

from __future__ import annotations

import json

from ..train.config import TrainConfig
from ..train.recipes import DEFAULT_RECIPE, RECIPES, get_recipe
from .train import add_setting_options, settings_for


def add_parser(sub) -> None:
    p = sub.add_parser(
        "lr-find",
        help="the learning-rate range test (fastai's lr_find): the loss against an exponential lr sweep",
        description="Train for --num-it batches while the learning rate grows exponentially from --start-lr "
        "to --end-lr, stop once the smoothed loss diverges, and suggest fastai's 'valley' learning rate. The "
        "model, data, augmentation and optimizer are those the training options describe (--lr and the "
        "schedule are replaced by the sweep); nothing is written but the figure.",
    )
    p.add_argument("--recipe", choices=list(RECIPES), help=f"named settings (default: {DEFAULT_RECIPE})")
    p.add_argument("--config", metavar="FILE", help="settings from a JSON, TOML or YAML file")
    p.add_argument(
        "--start-lr", type=float, default=1e-7, help="the sweep's first learning rate (default: 1e-7)"
    )
    p.add_argument("--end-lr", type=float, default=10.0, help="the sweep's last learning rate (default: 10)")
    p.add_argument("--num-it", type=int, default=100, metavar="N", help="batches in the sweep (default: 100)")
    p.add_argument("--plot", metavar="PNG", default="lr_find.png", help="the figure (default: lr_find.png)")
    p.add_argument("--json", action="store_true", help="print the sweep as JSON instead of one line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_setting_options(p, TrainConfig, shown=get_recipe(DEFAULT_RECIPE))
    p.set_defaults(func=run, resume=None, print_config=False)


def run(args) -> int:
    from ..train.lr_find import lr_find

    cfg = settings_for(args)
    result = lr_find(
        cfg,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_it=args.num_it,
        plot=args.plot,
        progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    stop = ", stopped where the loss diverged" if result.diverged else ""
    print(
        f"suggested learning rate (valley): {result.valley:.2e} from {len(result.lrs)} iterations{stop}; "
        f"figure: {args.plot}"
    )
    return 0
