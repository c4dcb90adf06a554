"""Training settings: one frozen :class:`TrainConfig`, and :func:`validate`, the one place that says which
settings cannot work (before any data is read). The command line's options are derived from its fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import UserError
from ..modelfile import MAX_SIDE

OPTIMIZERS = ("sgd", "nesterov", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle", "linear", "step")


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "fast"
    model: str = "resnet20"
    model_options: dict = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 256  # the global batch: split across processes under torchrun
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    resize: int | None = None  # square input side; None keeps the data's own size
    normalize: bool = True  # standardise with the training set's mean/std (d2l does not)
    augment: str = "none"
    crop_padding: int = 2
    init: str = "default"  # "xavier": d2l's xavier_uniform_ on conv and linear weights
    tta_flip: bool = False  # evaluate on the image and its mirror, average the logits
    ema: float = 0.0  # decay of an exponential moving average of the weights used for evaluation
    # progressive resizing (FFCV, fast.ai): the first epochs train on batches downscaled to this side, the
    # side grows linearly to the full size, reached after ``progressive_until`` of the epochs; 0: off
    progressive_from: int = 0
    progressive_until: float = 0.75
    seed: int = 0
    device: str = "auto"
    train_subset: int = 0
    test_subset: int = 0  # score on the first N test images only (0: all); a short run's scoring is quicker
    val_split: int = 0  # hold out this many training images (fixed draw) and report accuracy on them
    channels_last: bool = True
    compile: bool = False
    # bf16 autocast: "auto" where it measures faster (CUDA; a CPU with a native bf16 unit such as AMX, see
    # utils/amp.py), "yes", "no". A run records what auto decided ("yes"/"no"), so a resume repeats it.
    amp: str | bool = "auto"  # bool: a run saved before "auto" (utils.amp.amp_mode keeps its meaning)
    sync_bn: bool = False
    eval_batch_size: int = 1024
    # score the test (and validation) set after every eval_every-th epoch and the last; 0: the last only.
    # Epochs trained on downscaled images (progressive resizing) are never scored: see schedule.evaluates_at
    eval_every: int = 1
    in_memory: str = "auto"  # image folders: "yes", "no" (streamed from the files) or "auto" (by size)
    skip_bad_images: bool = False  # image folders: leave out bad files (listed in the run folder)
    workers: int | None = None  # streamed folders: decoding processes per training process (None: auto)
    out: str | None = None
    tensorboard: bool = False  # also log to <out>/tensorboard (needs the "tensorboard" extra)
    # fine-tuning (train/optim.py): start from these weights (see resdense.models.pretrained), freeze part
    # of the body, train the classifier at head_lr_mult times the learning rate; crop: evaluate on a centre
    # crop of this side from the resized image (the "rrc-flip" augmentation trains on random crops of it)
    weights: str | None = None
    freeze: str = "none"
    head_lr_mult: float = 1.0
    crop: int | None = None
    # lopsided classes (train/balance.py): "loss" weights each class's examples by N / (K * n_class),
    # "sampler" draws the training examples class-balanced; "none" leaves the data as it is
    balance: str = "none"
    # a staged fine-tune (train/finetune.py, fastai's fine_tune): the first freeze_epochs epochs train the
    # classifier alone, then the whole net trains at unfreeze_lr_mult times the learning rate; 0: off
    freeze_epochs: int = 0
    unfreeze_lr_mult: float = 0.5
    # the speed records' tricks (airbench, Page's ResNet-9; train/tricks.py says what each does): all off
    whiten_init: bool = False  # first conv: whitening filters of the training patches (+ their negatives)
    dirac_init: bool = False  # every other conv starts as the identity on its first in-channels filters
    bn_bias_lr_mult: float = 1.0  # batch-norm biases train at this times the learning rate
    bn_momentum: float | None = None  # every batch norm's momentum (PyTorch's sense); None: the model's
    lookahead: int = 0  # every N steps the slow weights move lookahead_alpha towards the fast ones; 0: off
    lookahead_alpha: float = 0.5
    alt_flip: bool = False  # the flip policies mirror each image every other epoch instead of at random
    logit_scale: float = 1.0  # the loss sees logits times this; folded into the saved classifier
    # after the last step, every batch norm's running statistics re-estimated from N training images spread
    # over the split, as evaluation feeds them (Wu & Johnson's "precise BN"); 0: off, the momentum average is kept
    bn_recalibrate: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **overrides) -> TrainConfig:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def setting_names() -> list[str]:
    """Every field of :class:`TrainConfig`: what ``with_overrides`` and the command line accept."""
    return [f.name for f in fields(TrainConfig)]


def validate(cfg: TrainConfig) -> None:
    """One-line errors for settings that cannot work, before any data is read."""
    from ..data import DATASETS, dataset_key
    from ..data.augment import AUGMENTATIONS
    from ..data.stream import IN_MEMORY

    check_types(cfg)  # every field its type, every number finite (issue 19): the checks below can compare
    if cfg.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.eval_batch_size < 1:
        raise UserError(f"--eval-batch-size must be at least 1, got {cfg.eval_batch_size}")
    if cfg.crop_padding < 0:
        raise UserError(f"--crop-padding must be >= 0, got {cfg.crop_padding}")
    if not cfg.lr > 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")  # (and finite: check_types)
    if cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer: unknown {cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"--schedule: unknown {cfg.schedule!r}; choose from {', '.join(SCHEDULES)}")
    if cfg.augment not in AUGMENTATIONS:
        raise UserError(f"--augment: unknown {cfg.augment!r}; choose from {', '.join(AUGMENTATIONS)}")
    if dataset_key(cfg.dataset) not in DATASETS:
        raise UserError(f"--dataset: unknown {cfg.dataset!r}; choose from {', '.join(DATASETS)}")
    if not 0 <= cfg.label_smoothing < 1:
        raise UserError(f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.resize is not None and not 8 <= cfg.resize <= MAX_SIDE:
        raise UserError(f"--resize must be between 8 and {MAX_SIDE} pixels, got {cfg.resize}")
    if cfg.train_subset < 0:
        raise UserError(f"--train-subset must be >= 0, got {cfg.train_subset}")
    if cfg.test_subset < 0:
        raise UserError(f"--test-subset must be >= 0, got {cfg.test_subset}")
    if not cfg.head_lr_mult > 0:
        raise UserError(f"--head-lr-mult must be positive, got {cfg.head_lr_mult}")
    if cfg.crop is not None and (cfg.crop < 8 or (cfg.resize is not None and cfg.crop > cfg.resize)):
        raise UserError(f"--crop must be between 8 and --resize ({cfg.resize}), got {cfg.crop}")
    if cfg.workers is not None and cfg.workers < 0:
        raise UserError(f"--workers must be >= 0, got {cfg.workers}")
    if cfg.val_split < 0:
        raise UserError(f"--val-split must be >= 0, got {cfg.val_split}")
    if cfg.progressive_from and cfg.progressive_from < 8:
        raise UserError(
            f"--progressive-from must be 0 (off) or at least 8 pixels, got {cfg.progressive_from}"
        )
    if cfg.eval_every < 0:
        raise UserError(f"--eval-every must be >= 0 (0: the last epoch only), got {cfg.eval_every}")
    if not 0 < cfg.progressive_until <= 1:
        raise UserError(f"--progressive-until must be in (0, 1], got {cfg.progressive_until}")
    if cfg.in_memory not in IN_MEMORY:
        raise UserError(f"--in-memory: expected one of {', '.join(IN_MEMORY)}, got {cfg.in_memory!r}")
    from .balance import BALANCE

    if cfg.balance not in BALANCE:
        raise UserError(f"--balance: unknown {cfg.balance!r}; choose from {', '.join(BALANCE)}")
    if cfg.freeze_epochs and not 0 < cfg.freeze_epochs < cfg.epochs:
        raise UserError(f"--freeze-epochs must be between 0 and --epochs - 1 ({cfg.epochs - 1}), got "
                        f"{cfg.freeze_epochs}")  # fmt: skip
    if cfg.freeze_epochs and cfg.freeze != "none":
        raise UserError(f"--freeze-epochs freezes the body itself for its epochs; drop --freeze {cfg.freeze}")
    if not cfg.unfreeze_lr_mult > 0:
        raise UserError(f"--unfreeze-lr-mult must be positive, got {cfg.unfreeze_lr_mult}")
    _validate_records_tricks(cfg)
    if cfg.in_memory == "no" and cfg.dataset != "folder":
        raise UserError(f"--in-memory no: only image folders are streamed; {cfg.dataset} is held in memory")
    check_ranges(cfg)


# -- every field's type and the ranges of the numbers (issue 19) ------------------------------------------------

_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "dict": (dict,)}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_types(cfg: TrainConfig) -> None:
    """Each field of the type its annotation names (``int``, ``float``, ``bool``, ``str``, ``dict``, ``| None``),
    numbers finite: a value from Python, a recipe or a checkpoint is checked as the command line's are."""
    import math

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        kinds = [k.strip() for k in str(f.type).split("|")]
        if value is None and "None" in kinds:
            continue
        allowed = tuple(t for k in kinds for t in _TYPES.get(k, ()))
        if not allowed:
            continue
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise UserError(f"{_option(f.name)}: expected {' or '.join(kinds)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{_option(f.name)} must be a finite number, got {value}")


def check_ranges(cfg: TrainConfig) -> None:
    """The numbers the checks above do not bound, the device, and the model's options (built on the meta
    device: an unknown name or an option of the wrong type is one line before any data is read)."""
    from ..models.filecheck import ModelOptionError, build_on_meta
    from ..models.registry import UnknownModelError
    from ..utils.device import resolve_device

    if not 0 <= cfg.momentum < 1:
        raise UserError(f"--momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.weight_decay < 0:
        raise UserError(f"--weight-decay must be >= 0, got {cfg.weight_decay}")
    if cfg.warmup_epochs < 0:
        raise UserError(f"--warmup-epochs must be >= 0, got {cfg.warmup_epochs}")
    if not 0 <= cfg.ema < 1:
        raise UserError(f"--ema must be in [0, 1) (0: off), got {cfg.ema}")
    if cfg.seed < 0:
        raise UserError(f"--seed must be >= 0, got {cfg.seed}")
    if cfg.progressive_from > MAX_SIDE:
        raise UserError(f"--progressive-from must be at most {MAX_SIDE} pixels, got {cfg.progressive_from}")
    if cfg.crop is not None and cfg.crop > MAX_SIDE:
        raise UserError(f"--crop must be at most {MAX_SIDE} pixels, got {cfg.crop}")
    resolve_device(cfg.device)
    try:
        build_on_meta(cfg.model, dict(cfg.model_options))
    except UnknownModelError as e:
        raise UserError(f"--model: {e}") from None
    except ModelOptionError as e:
        raise UserError(f"--model-options for {cfg.model}: {e}") from None


def _validate_records_tricks(cfg: TrainConfig) -> None:
    """Issue 20's settings: bf16 autocast and the speed records' training tricks (kept apart to ease merges)."""
    from ..utils.amp import AMP_MODES, amp_mode

    if amp_mode(cfg.amp) not in AMP_MODES:
        raise UserError(f"--amp: expected one of {', '.join(AMP_MODES)}, got {cfg.amp!r}")
    if (cfg.whiten_init or cfg.dirac_init) and cfg.weights is not None:
        which = "--whiten-init" if cfg.whiten_init else "--dirac-init"
        raise UserError(f"{which} initialises a fresh model; drop it or --weights {cfg.weights}")
    if not cfg.bn_bias_lr_mult > 0:
        raise UserError(f"--bn-bias-lr-mult must be positive, got {cfg.bn_bias_lr_mult}")
    if cfg.bn_momentum is not None and not 0 < cfg.bn_momentum <= 1:
        raise UserError(f"--bn-momentum must be in (0, 1], got {cfg.bn_momentum}")
    if cfg.lookahead < 0:
        raise UserError(f"--lookahead must be >= 0 steps (0: off), got {cfg.lookahead}")
    if not 0 < cfg.lookahead_alpha <= 1:
        raise UserError(f"--lookahead-alpha must be in (0, 1], got {cfg.lookahead_alpha}")
    if cfg.alt_flip and "flip" not in cfg.augment:
        raise UserError(f"--alt-flip changes how images are flipped; --augment {cfg.augment} flips none")
    if not cfg.logit_scale > 0:
        raise UserError(f"--logit-scale must be positive, got {cfg.logit_scale}")
    if cfg.bn_recalibrate < 0:
        raise UserError(f"--bn-recalibrate must be >= 0 images (0: off), got {cfg.bn_recalibrate}")
