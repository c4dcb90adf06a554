"""``resdense train``: a recipe, then a settings file, then the options given, each overriding the last.

Every training setting's option is derived from its field's declaration (train/config.py): ``--x-y`` for
``x_y``, typed by the annotation, with its help, choices and unit. Only the options that are not settings
are written here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

from ..errors import UserError
from ..train.config import TrainConfig, validate
from ..train.recipes import DEFAULT_RECIPE, RECIPES, get_recipe, resolve_settings
from ..train.settings import declaration, default_of, kinds, option

# the fields with no option of their own: the recipe is --recipe (a name among RECIPES, the base of the rest)
NOT_OPTIONS = {"recipe"}
# metavars by unit, where a unit says more than the type
UNIT_METAVARS = {"pixels": "PX", "images": "N", "epochs": "N", "steps": "N"}


class _NoneGiven:
    """An option given as 'none' (set the setting to None), told apart from an option not given (None)."""

    def __repr__(self) -> str:
        return "none"


NONE = _NoneGiven()


def _json_obj(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"drop_rate\": 0.1}'")
    return value


def _or_none(parse, words: tuple[str, ...]):
    """``parse``, or NONE for one of ``words``: a numeric setting that may be None."""

    def convert(text: str):
        if text.strip().lower() in words:
            return NONE
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {parse.__name__} or {' / '.join(map(repr, words))}, got {text!r}"
            ) from None

    convert.__name__ = parse.__name__
    return convert


def _shown(value) -> str:
    return "none" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)


def add_setting_options(
    p: argparse.ArgumentParser, cls: type = TrainConfig, shown=None, *, only=None, note: str = ""
) -> None:
    """One option per field of the settings dataclass ``cls`` (but NOT_OPTIONS; ``only``: just these
    fields), from its declaration. Every option's default is None (not given), so that only what the user
    typed overrides the recipe and the file; ``shown``, settings whose values the help gives as the defaults
    (the default recipe's); ``note``, said instead of a default (a command whose defaults are its own)."""
    for f in fields(cls):
        if f.name in NOT_OPTIONS or (only is not None and f.name not in only):
            continue
        s, allowed = declaration(f), kinds(cls, f.name)
        value = getattr(shown, f.name, default_of(f))
        text = f"{s.help} ({note or f'default: {_shown(value)}'})".replace(
            "%", "%%"
        )  # argparse formats with %
        kw: dict = {"dest": f.name, "default": None, "help": text}
        if allowed == (bool,):
            p.add_argument(option(f.name), action=argparse.BooleanOptionalAction, **kw)
            continue
        if dict in allowed:
            kw.update(type=_json_obj, metavar="JSON")
        elif str in allowed:  # a string (or a string that older runs saved as a bool: amp)
            if s.choices:
                kw["choices"] = s.choices
            else:
                kw["metavar"] = s.metavar
        else:
            parse = int if int in allowed else float
            kw["type"] = _or_none(parse, s.none_words) if type(None) in allowed else parse
            kw["metavar"] = s.metavar or (UNIT_METAVARS.get(s.unit or "", "N") if parse is int else "X")
        p.add_argument(option(f.name), **kw)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (default: a small ResNet on Fashion-MNIST, minutes on a laptop CPU)",
        description="Train on Fashion-MNIST or your own images. A --recipe sets everything, a --config file "
        "overrides it and any option overrides both. Recipes: "
        f"{', '.join(RECIPES)}; the defaults shown are the {DEFAULT_RECIPE} recipe's.",
    )
    p.add_argument(
        "--recipe",
        choices=list(RECIPES),
        help=f"named settings (default: the --config file's recipe, else {DEFAULT_RECIPE})",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="settings from a JSON, TOML or YAML file (--print-config writes one; a run's own "
        "config.json is one, its folder not taken over)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings (recipe, file, options) as JSON for --config, and stop",
    )
    add_setting_options(p, TrainConfig, shown=get_recipe(DEFAULT_RECIPE))
    # before "auto" existed, --no-amp was the way to ask for fp32: kept working, not advertised
    p.add_argument("--no-amp", dest="amp", action="store_const", const="no", help=argparse.SUPPRESS)
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def overrides_from(args, cls: type = TrainConfig) -> dict:
    """The settings the options given set (an option given as 'none' sets None; one not given, nothing)."""
    given = {f.name: getattr(args, f.name, None) for f in fields(cls) if f.name not in NOT_OPTIONS}
    return {k: (None if v is NONE else v) for k, v in given.items() if v is not None}


# the settings a resumed run may be given (train.plan.resumed_config applies exactly these)
RESUME_TAKES = {"epochs", "device", "tensorboard"}


def settings_for(args, cls: type = TrainConfig) -> TrainConfig:
    """The run's settings from the command line, in one place: recipe < --config file < options. A resumed
    run keeps its own settings: only --epochs (more of them) and --device, when given, change it; the
    recipe's defaults must not (they would stretch a 4-epoch run to the recipe's 12 epochs), so epochs 0
    and device None mean "the run's own" to train()."""
    overrides = overrides_from(args, cls)
    if args.resume:
        if args.config or args.print_config:
            which = "--config" if args.config else "--print-config"
            raise UserError(f"{which} and --resume: a resumed run keeps its own settings (its config.json)")
        # what a resume cannot take is refused, not ignored (issue 37: --lr 5 --model resnet56 were silent)
        ignored = sorted(set(overrides) - RESUME_TAKES) + (["recipe"] if args.recipe else [])
        if ignored:
            names = ", ".join("--" + k.replace("_", "-") for k in ignored)
            raise UserError(
                f"--resume {args.resume}: {names} cannot change a resumed run (it keeps its own settings; "
                "only --epochs, --device and --tensorboard apply); drop them, or start a new run"
            )
        overrides |= {"epochs": args.epochs or 0, "device": args.device}
    return resolve_settings(args.recipe, args.config, overrides, cls=cls)


def run(args) -> int:
    from ..train import train

    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: pick one")
    if args.resume and args.out and args.out != args.resume:
        raise UserError("--out is the resumed run's own folder; give only --resume DIR")
    cfg = settings_for(args)
    if args.print_config:
        validate(cfg, here=False)  # settings that cannot work are refused here too, wherever they will run
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    train(cfg, resume=args.resume, force=args.force, progress=not args.no_progress)
    return 0
