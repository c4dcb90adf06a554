"""Training settings: one frozen :class:`TrainConfig` whose every field carries its whole declaration (type,
default, help, choices, bounds, unit: :func:`~resdense.train.settings.setting`), and :func:`validate`, the one
place that says which settings cannot work (before any data is read). From the declarations come the
per-field checks, the ``resdense train`` options (cli/train.py) and the settings files
(:func:`read_settings_file`; ``resdense train --config``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..data import DATASETS, dataset_key
from ..data.augment import AUGMENTATIONS
from ..data.autoaugment import AUTO_AUGMENTS
from ..data.stream import IN_MEMORY
from ..errors import UserError
from ..modelfile import MAX_SIDE
from ..rundir import RunDir
from ..utils.amp import AMP_MODES, amp_mode
from .balance import BALANCE
from .optim import FREEZE_HELP
from .settings import (
    check_fields,
    check_type,
    declared,
    option,
    read_mapping,
    setting,
    settings_from_mapping,
    spell_canonically,
)

KEEP = ("last", "best")  # which weights a run saves (train/keep.py)
OPTIMIZERS = ("sgd", "nesterov", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "linear", "step")
INITS = ("default", "xavier")  # "xavier": d2l's xavier_uniform_ on conv and linear weights (train/setup.py)

# What a run's config.json holds besides its settings (written by train/run.py): a run's record is a valid
# settings file, these keys are read past; any other unknown key is an error.
RECORD_KEYS = ("preprocess", "classes", "data_source", "torch", "world_size", "plan")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. Adding one is this one edit: its field, declared with ``setting``
    (the command line's option, the checks and the settings files follow from it)."""

    recipe: str = setting("fast", "the named settings these started from (train/recipes.py)")
    model: str = setting("resnet20", "registered model name (see `resdense list`)")
    model_options: dict = setting({}, "extra builder options as a JSON object, e.g. '{\"drop_rate\": 0.1}'")
    dataset: str = setting("fashion-mnist", "the data set", choices=DATASETS, key=dataset_key)
    data_dir: str | None = setting(None, "where the data is (none: searched, then downloaded)")
    epochs: int = setting(10, "epochs to train", ge=1)
    batch_size: int = setting(256, "global batch size (split across torchrun processes)", ge=1, unit="images")
    lr: float = setting(0.1, "peak learning rate", gt=0)
    optimizer: str = setting(
        "sgd", "the optimizer (nesterov: SGD with Nesterov momentum)", choices=OPTIMIZERS
    )
    momentum: float = setting(0.9, "SGD momentum (nesterov: 0 means 0.9; adamw: unused)", ge=0, lt=1)
    weight_decay: float = setting(0.0, "weight decay (not on biases and batch norms)", ge=0)
    schedule: str = setting("constant", "learning-rate schedule", choices=SCHEDULES)
    warmup_epochs: float = setting(0.0, "linear learning-rate warm-up", ge=0, unit="epochs")
    label_smoothing: float = setting(0.0, "label smoothing of the loss's targets", ge=0, lt=1)
    resize: int | None = setting(
        None,
        "square input side, or 'none' for the data's own (image folders: none picks the weights' or "
        "the model's own input size, said at the start)",
        ge=8,
        le=MAX_SIDE,
        unit="pixels",
        none_words=("none", "native", "0"),
    )
    normalize: bool = setting(True, "standardise with the training set's mean/std (d2l does not)")
    augment: str = setting("none", "training augmentation", choices=AUGMENTATIONS)
    crop_padding: int = setting(2, "random crops: zero padding", ge=0, unit="pixels")
    init: str = setting("default", "weight initialisation (xavier: d2l's xavier_uniform_)", choices=INITS)
    tta_flip: bool = setting(False, "test-time mirror augmentation: evaluate on the image and its mirror")
    ema: float = setting(
        0.0, "decay of an exponential moving average of the weights used for evaluation (0: off)", ge=0, lt=1
    )
    # progressive resizing (FFCV, fast.ai)
    progressive_from: int = setting(
        0,
        "progressive resizing: the first epochs train on batches downscaled to this side, growing to the "
        "full size (0: off)",
        ge=8,
        le=MAX_SIDE,
        off=0,
        unit="pixels",
    )
    progressive_until: float = setting(
        0.75, "progressive resizing: the fraction of the epochs after which the full size is used", gt=0, le=1
    )
    seed: int = setting(0, "random seed", ge=0)
    device: str = setting("auto", "auto, cpu, cuda, cuda:N")
    train_subset: int = setting(
        0,
        "train on the first N images only (0: all; a folder's classes are taken in turn)",
        ge=0,
        unit="images",
    )
    test_subset: int = setting(0, "score on the first N test images only (0: all)", ge=0, unit="images")
    val_split: int = setting(
        0,
        "hold N training images out (fixed draw) as a validation set (val_acc per epoch)",
        ge=0,
        unit="images",
    )
    channels_last: bool = setting(True, "channels-last memory format")
    compile: bool = setting(False, "torch.compile")
    # a run records what auto decided ("yes"/"no"), so a resume repeats it; a bool: a run saved before "auto"
    # (utils.amp.amp_mode keeps its meaning)
    amp: str | bool = setting(
        "auto",
        "bf16 autocast: auto (where it measures faster, on CUDA and on CPUs with a native bf16 unit "
        "such as AMX; fp32 elsewhere), yes, no",
        choices=AMP_MODES,
        key=amp_mode,
    )
    sync_bn: bool = setting(False, "SyncBatchNorm under torchrun")
    eval_batch_size: int = setting(1024, "images per batch when scoring", ge=1, unit="images")
    eval_every: int = setting(
        1,
        "score the test (and validation) set after every N-th epoch and the last (0: the last only); "
        "epochs on downscaled images (progressive resizing) are not scored",
        ge=0,
        unit="epochs",
    )
    in_memory: str = setting(
        "auto",
        "image folders: decode the whole set into memory (yes) or stream it from the files batch by "
        "batch (no); auto keeps it in memory when the decoded images take at most a quarter of the RAM (per "
        "process; and, on a GPU, half its memory) and streams otherwise, or when --augment rrc-flip needs "
        "the files",
        choices=IN_MEMORY,
    )
    skip_bad_images: bool = setting(
        False,
        "image folders: leave out unreadable, empty, non-image and decompression-bomb files (listed in "
        f"the run folder's {RunDir.BAD_IMAGES}) instead of stopping",
    )
    workers: int | None = setting(
        None, "streamed folders: decoding processes per training process (none: the cores, at most 8)", ge=0
    )
    out: str | None = setting(None, "run folder (none: runs/<model>-<time>)")
    tensorboard: bool = setting(
        False, "also log to OUT/tensorboard for `tensorboard --logdir runs` (extra: tensorboard)"
    )
    # fine-tuning (train/optim.py, resdense.models.pretrained)
    weights: str | None = setting(
        None,
        "start from these weights: IMAGENET1K_V1, DEFAULT (torchvision's, for --model), fashion-mnist, "
        "a .pth/.safetensors state dict, a run folder or hf-hub:ORG/NAME; new classes or channels are "
        "adapted, and said",
        metavar="SRC",
    )
    freeze: str = setting("none", f"train only part of the model: {FREEZE_HELP}", metavar="WHAT")
    head_lr_mult: float = setting(1.0, "the classifier's lr is this times --lr", gt=0)
    crop: int | None = setting(
        None,
        "evaluate on the centre PX x PX of the resized image (the rrc-flip augmentation trains on random "
        "crops of it)",
        ge=8,
        le=MAX_SIDE,
        unit="pixels",
    )
    # lopsided classes (train/balance.py)
    balance: str = setting(
        "none",
        "unbalanced classes: weight the loss by class, N / (K * n_class) (loss), or draw the training "
        "images class-balanced (sampler, in memory only)",
        choices=BALANCE,
    )
    # a staged fine-tune (train/finetune.py, fastai's fine_tune)
    freeze_epochs: int = setting(
        0,
        "staged fine-tune: the first N epochs train the classifier alone, then the whole net at "
        "--unfreeze-lr-mult times the lr (0: off)",
        ge=0,
        unit="epochs",
    )
    unfreeze_lr_mult: float = setting(
        0.5, "--freeze-epochs: the lr multiplier once the whole net trains", gt=0
    )
    # the speed records' tricks (airbench, Page's ResNet-9; train/tricks.py says what each does): all off
    whiten_init: bool = setting(
        False,
        "first conv: whitening filters of the training images' patches, and their negatives (airbench, Page)",
    )
    dirac_init: bool = setting(
        False, "every other conv starts as the identity on its first in-channels filters (airbench)"
    )
    bn_bias_lr_mult: float = setting(1.0, "batch-norm biases train at this times --lr", gt=0)
    bn_momentum: float | None = setting(
        None, "every batch norm's momentum, in PyTorch's sense (none: the model's own)", gt=0, le=1
    )
    lookahead: int = setting(
        0,
        "Lookahead: every N steps the slow weights move --lookahead-alpha towards the fast ones (0: off)",
        ge=0,
        unit="steps",
    )
    lookahead_alpha: float = setting(0.5, "Lookahead: how far the slow weights move", gt=0, le=1)
    alt_flip: bool = setting(
        False, "flip policies: mirror each image every other epoch, not at random (airbench)"
    )
    logit_scale: float = setting(
        1.0, "the loss sees the logits times this (airbench: 1/9); folded into the saved classifier", gt=0
    )
    bn_recalibrate: int = setting(
        0,
        "after the last step, re-estimate every batch norm's running statistics from N training images "
        "spread over the split, as evaluation feeds them (precise BN; 0: off)",
        ge=0,
        unit="images",
    )
    # augmentations drawn per image, keyed on (seed, epoch, image) (data/keyed.py, data/mix.py,
    # data/autoaugment.py), on both data paths; timm's option names where it has them
    mixup: float = setting(
        0.0,
        "MixUp: blend each image with another of the batch, its weight drawn per image from "
        "Beta(A, A) (0: off; timm's --mixup)",
        ge=0,
        metavar="A",
    )
    cutmix: float = setting(
        0.0,
        "CutMix: paste a box of another image of the batch, its area drawn per image from Beta(A, A) "
        "(0: off; timm's --cutmix)",
        ge=0,
        metavar="A",
    )
    mixup_switch_prob: float = setting(
        0.5, "with both --mixup and --cutmix: the chance an image gets CutMix rather than MixUp", ge=0, le=1
    )
    auto_augment: str = setting(
        "none",
        "a per-image policy on the uint8 images: rand (RandAugment, 2 operations at magnitude 9), "
        "trivial (TrivialAugmentWide); needs torchvision",
        choices=AUTO_AUGMENTS,
    )
    random_erasing: float = setting(
        0.0,
        "Random Erasing: the chance each image gets a random box set to the data mean (Zhong et al.; "
        "timm's --reprob; 0: off)",
        ge=0,
        le=1,
    )
    erasing_scale: float = setting(
        0.4,
        "Random Erasing: the largest box, as a share of the image (the smallest: 0.02; Zhong et al.'s)",
        gt=0.02,
        le=1,
    )
    erasing_ratio: float = setting(3.3, "Random Erasing: box aspect ratios from 1/R to R", ge=1, metavar="R")
    # the weights a run keeps (train/keep.py)
    keep: str = setting(
        "last",
        "the weights the run saves and scores: last, or best (the scored epoch with the best "
        "validation accuracy; needs a validation split, never the test set)",
        choices=KEEP,
    )
    patience: int = setting(
        0,
        "early stopping: stop after N scored epochs without a better validation accuracy (0: off; needs "
        "a validation split)",
        ge=0,
        unit="epochs",
    )
    # the step (train/steps.py)
    clip_grad: float = setting(
        0.0, "clip the gradients' global L2 norm to this (0: off; timm's --clip-grad)", ge=0
    )
    accum_steps: int = setting(
        1,
        "gradient accumulation: each batch runs as N micro-batches of batch-size/N with one optimizer "
        "step, the same step within rounding at 1/N of the activation memory (batch norm sees each "
        "micro-batch's own statistics, so with batch norm in training mode it differs)",
        ge=1,
        unit="steps",
    )

    def __post_init__(self) -> None:
        spell_canonically(self)  # "Folder" is "folder" everywhere a run compares the data set's name

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **overrides) -> TrainConfig:
        """These settings with the given ones changed; a None leaves a setting as it is."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def setting_names() -> list[str]:
    """Every field of :class:`TrainConfig`: what ``with_overrides`` and the command line accept."""
    return [f.name for f in fields(TrainConfig)]


def check_types(cfg: TrainConfig) -> None:
    """Each field of the type its annotation names, numbers finite: a value from Python, a recipe or a
    checkpoint is checked as the command line's are."""
    for f in fields(cfg):
        check_type(type(cfg), f.name, getattr(cfg, f.name))


def validate(cfg: TrainConfig, *, here: bool = True) -> None:
    """One-line errors for settings that cannot work, before any data is read: every field as its
    declaration says (type, finiteness, choices, bounds), then the rules between settings, the device
    (``here=False`` leaves out what depends on this machine: settings printed for another) and the model's
    options (built on the meta device: an unknown name or an option of the wrong type is one line).

    ``cfg``: the settings to check.
    """
    check_fields(cfg)
    if cfg.crop is not None and cfg.resize is not None and cfg.crop > cfg.resize:
        lo = declared(TrainConfig, "crop").ge  # the crop's own lower bound, as its declaration says
        raise UserError(f"--crop must be between {lo} and --resize ({cfg.resize}), got {cfg.crop}")
    if cfg.freeze_epochs and not cfg.freeze_epochs < cfg.epochs:
        raise UserError(
            f"--freeze-epochs must be between 0 and --epochs - 1 ({cfg.epochs - 1}), got {cfg.freeze_epochs}"
        )
    if cfg.freeze_epochs and cfg.freeze != "none":
        raise UserError(f"--freeze-epochs freezes the body itself for its epochs; drop --freeze {cfg.freeze}")
    if (cfg.whiten_init or cfg.dirac_init) and cfg.weights is not None:
        which = "--whiten-init" if cfg.whiten_init else "--dirac-init"
        raise UserError(f"{which} initialises a fresh model; drop it or --weights {cfg.weights}")
    if cfg.alt_flip and "flip" not in cfg.augment:
        raise UserError(f"--alt-flip changes how images are flipped; --augment {cfg.augment} flips none")
    if cfg.in_memory == "no" and dataset_key(cfg.dataset) != "folder":
        raise UserError(f"--in-memory no: only image folders are streamed; {cfg.dataset} is held in memory")
    if cfg.auto_augment != "none":
        from ..data.autoaugment import functional_ops

        functional_ops()  # torchvision, before any data is read
    if cfg.accum_steps > 1 and cfg.batch_size % cfg.accum_steps:
        raise UserError(f"--accum-steps {cfg.accum_steps} must divide --batch-size ({cfg.batch_size})")
    if cfg.accum_steps > 1 and cfg.balance == "loss":
        raise UserError("--accum-steps: the class-weighted mean of --balance loss does not split; use 1")
    if here:
        from ..utils.device import resolve_device

        resolve_device(cfg.device)
    from ..models.filecheck import ModelOptionError, build_on_meta
    from ..models.registry import UnknownModelError

    try:
        build_on_meta(cfg.model, dict(cfg.model_options))
    except UnknownModelError as e:
        raise UserError(f"{option('model')}: {e}") from None
    except ModelOptionError as e:
        raise UserError(f"{option('model_options')} for {cfg.model}: {e}") from None


def read_settings_file(path: str | Path, cls: type = TrainConfig) -> dict:
    """The settings a JSON, TOML or YAML file gives (``resdense train --config``), each checked as its
    field's declaration says: an unknown key, a wrong type or a value out of bounds is one line naming the
    file and the key. A numeric setting that may be None takes "none" (TOML has no null).

    A run's own ``config.json`` is a valid settings file: its record keys (:data:`RECORD_KEYS`) are read
    past, and its ``out`` is not taken over: the new run gets a folder of its own unless one is given.
    """
    data = read_mapping(path)
    values = settings_from_mapping(cls, data, f"--config {path}", ignore=RECORD_KEYS)
    if any(k in data for k in RECORD_KEYS):
        values.pop("out", None)  # the record's folder is that run's: never train over it by accident
    return values
