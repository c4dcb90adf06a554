"""``resdense train``: a recipe, overridden by any option given."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from ..data import DATASETS
from ..data.augment import AUGMENTATIONS
from ..data.stream import IN_MEMORY
from ..errors import UserError
from ..rundir import RunDir
from ..train.balance import BALANCE
from ..train.config import OPTIMIZERS, SCHEDULES, setting_names
from ..train.optim import FREEZE_HELP
from ..train.recipes import DEFAULT_RECIPE, RECIPES, get_recipe
from ..utils.amp import AMP_MODES


def _size(text: str) -> int:
    """Pixels, or 0 for 'none' (keep the data's own size)."""
    if text.lower() in ("none", "0", "native"):
        return 0
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or 'none', got {text!r}") from None


def _json_obj(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"drop_rate\": 0.1}'")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (default: a small ResNet on Fashion-MNIST, minutes on a laptop CPU)",
        description="Train on Fashion-MNIST or your own images. A --recipe sets everything; any option "
        f"overrides it. Recipes: {', '.join(RECIPES)} (default {DEFAULT_RECIPE}).",
    )
    p.add_argument("--recipe", default=DEFAULT_RECIPE, choices=list(RECIPES), help="named settings")
    p.add_argument("--model", help="registered model name (see `resdense list`)")
    p.add_argument("--model-options", type=_json_obj, help="extra builder options as JSON")
    p.add_argument("--dataset", choices=DATASETS, help="default fashion-mnist")
    p.add_argument("--data-dir", help="where the data is (default: searched, then downloaded)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size (split across torchrun processes)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float)
    p.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--resize", type=_size, help="square input side in pixels, or 'none' for the data's own "
                   "(image folders: default the weights' or the model's own input size, said at the start)")  # fmt: skip
    p.add_argument("--augment", choices=AUGMENTATIONS)
    p.add_argument("--crop-padding", type=int, metavar="PX", help="random crops: zero padding (default 2)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="test-time mirror augmentation")  # fmt: skip
    p.add_argument("--ema", type=float, help="weight EMA decay for evaluation (0: off)")
    p.add_argument("--progressive-from", type=int, metavar="PX",
                   help="progressive resizing: start training on PX x PX images, growing to the full size "
                   "(0: off)")  # fmt: skip
    p.add_argument("--progressive-until", type=float, metavar="FRAC",
                   help="progressive resizing: the fraction of the epochs after which the full size is used "
                   "(default 0.75)")  # fmt: skip
    p.add_argument("--init", choices=["default", "xavier"])
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile")
    p.add_argument("--amp", choices=AMP_MODES,
                   help="bf16 autocast: auto (default: where it measures faster, on CUDA and on CPUs with a "
                   "native bf16 unit such as AMX; fp32 elsewhere), yes, no")  # fmt: skip
    p.add_argument("--no-amp", dest="amp", action="store_const", const="no", help=argparse.SUPPRESS)
    p.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm under torchrun")
    p.add_argument("--train-subset", type=int, metavar="N",
                   help="train on the first N images only (a folder's classes are taken in turn)")  # fmt: skip
    p.add_argument("--test-subset", type=int, metavar="N", help="score on the first N test images only")
    p.add_argument(
        "--weights",
        metavar="SRC",
        help="start from these weights: IMAGENET1K_V1, DEFAULT (torchvision's, for --model), fashion-mnist, "
        "a .pth/.safetensors state dict, a run folder or hf-hub:ORG/NAME; new classes or channels are "
        "adapted, and said",
    )
    p.add_argument("--freeze", metavar="WHAT", help=f"train only part of the model: {FREEZE_HELP}")
    p.add_argument("--head-lr-mult", type=float, metavar="X", help="the classifier's lr is X times --lr")
    p.add_argument("--freeze-epochs", type=int, metavar="N",
                   help="staged fine-tune (fastai's fine_tune): the first N epochs train the classifier alone, "
                   "then the whole net at --unfreeze-lr-mult times the lr (default 0: off)")  # fmt: skip
    p.add_argument("--unfreeze-lr-mult", type=float, metavar="X",
                   help="--freeze-epochs: the lr multiplier once the whole net trains (default 0.5)")  # fmt: skip
    p.add_argument(
        "--crop", type=int, metavar="PX", help="evaluate on the centre PX x PX of the resized image"
    )
    p.add_argument("--in-memory", choices=IN_MEMORY,
                   help="image folders: decode the whole set into memory (yes) or stream it from the files "
                   "batch by batch (no); auto (default) keeps it in memory when the decoded images take at "
                   "most a quarter of the RAM (per process; and, on a GPU, half its memory) and streams "
                   "otherwise, or when --augment rrc-flip needs the files")  # fmt: skip
    p.add_argument("--skip-bad-images", action="store_true", default=None,
                   help="image folders: leave out unreadable, empty, non-image and decompression-bomb files "
                   f"(listed in the run folder's {RunDir.BAD_IMAGES}) instead of stopping")  # fmt: skip
    p.add_argument("--workers", type=int, metavar="N",
                   help="streamed folders: decoding processes per training process (default: the cores, "
                   "at most 8)")  # fmt: skip
    p.add_argument("--val-split", type=int, metavar="N",
                   help="hold N training images out as a validation set (val_acc per epoch)")  # fmt: skip
    p.add_argument("--eval-every", type=int, metavar="N",
                   help="score the test set after every N-th epoch and the last (0: the last only); epochs "
                   "on downscaled images (--progressive-from) are not scored")  # fmt: skip
    p.add_argument("--balance", choices=BALANCE,
                   help="unbalanced classes: weight the loss by class (loss) or draw the training images "
                   "class-balanced (sampler, in memory only); default none")  # fmt: skip
    p.add_argument("--eval-batch-size", type=int, metavar="N", help="images per batch when scoring")
    # the speed records' tricks (resdense/train/tricks.py), all off by default
    p.add_argument(
        "--whiten-init",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="first conv: whitening filters of the training images' patches (airbench, Page)",
    )
    p.add_argument(
        "--dirac-init",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="every other conv starts as the identity (airbench)",
    )
    p.add_argument(
        "--bn-bias-lr-mult", type=float, metavar="X", help="batch-norm biases train at X times --lr"
    )
    p.add_argument(
        "--bn-momentum", type=float, help="every batch norm's momentum (PyTorch's sense: 0.1 default)"
    )
    p.add_argument(
        "--lookahead", type=int, metavar="N", help="Lookahead: sync slow weights every N steps (0: off)"
    )
    p.add_argument(
        "--lookahead-alpha", type=float, help="Lookahead: how far the slow weights move (default 0.5)"
    )
    p.add_argument(
        "--alt-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip policies: mirror each image every other epoch, not at random (airbench)",
    )
    p.add_argument("--logit-scale", type=float, help="the loss sees the logits times this (airbench: 1/9)")
    p.add_argument("--bn-recalibrate", type=int, metavar="N",
                   help="after the last step, re-estimate the batch norms' running statistics from N "
                   "training images (precise BN; 0: off)")  # fmt: skip
    p.add_argument("--out", help="run folder (default runs/<model>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log to OUT/tensorboard for `tensorboard --logdir runs` (extra: tensorboard)")  # fmt: skip
    p.set_defaults(func=run)


# the settings an option overrides: every TrainConfig field has an option of the same name (the recipe's
# name and --resize, whose "none" means None, are handled in run())
NOT_OPTIONS = {"recipe", "resize"}


def overrides_from(args) -> dict:
    return {k: getattr(args, k) for k in setting_names() if k not in NOT_OPTIONS and hasattr(args, k)}


def _weights_model(src: str) -> str | None:
    """The architecture a resdense weights source names (shipped, run folder, its model file), else None."""
    from pathlib import Path

    from ..models.pretrained import load_pretrained, shipped_source

    if shipped_source(src) is not None or Path(src).exists() or src.strip().lower().startswith("hf-hub:"):
        return load_pretrained(src).model
    return None


def run(args) -> int:
    from ..train import train

    cfg = get_recipe(args.recipe)
    overrides = overrides_from(args)
    if args.model and args.model != cfg.model and args.model_options is None:
        overrides["model_options"] = {}  # the recipe's options belong to the recipe's model
    if args.weights and not args.model:
        # resdense's own weights name their architecture: --weights fashion-mnist needs no --model
        overrides["model"] = _weights_model(args.weights) or cfg.model
        if overrides["model"] != cfg.model and args.model_options is None:
            overrides["model_options"] = {}
    cfg = cfg.with_overrides(**overrides)
    if args.resize is not None:
        cfg = replace(cfg, resize=args.resize or None)
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: pick one")
    if args.resume and args.out and args.out != args.resume:
        raise UserError("--out is the resumed run's own folder; give only --resume DIR")
    if args.resume:
        # A resumed run keeps its own settings: only --epochs (more of them) and --device, when given, change
        # it. The recipe's defaults must not (they would stretch a 4-epoch run to the recipe's 8 epochs);
        # epochs 0 and device None mean "the run's own" to train().
        cfg = replace(cfg, epochs=args.epochs or 0, device=args.device)
    train(cfg, resume=args.resume, force=args.force, progress=not args.no_progress)
    return 0
