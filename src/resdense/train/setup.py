"""What a run is made of before its first step: its data (in memory or streamed, normalised by its own
statistics, augmented as the settings say) and its model (built, perhaps from pretrained weights, perhaps
partly frozen), with the spec the model will be saved and served under.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..data.augment import PHOTO_AUGMENT, BatchAugment
from ..data.dataset import Dataset, ImageSet
from ..data.split import holdout
from ..data.stream import StreamedFolder
from ..errors import UserError
from ..modelfile import ModelSpec
from ..models import PretrainedCfg, create_model
from ..models.registry import UnknownModelError
from ..models.summary import count_macs, count_params
from ..preprocess import Preprocess, channel_stats
from ..preprocess import resize as resize_images
from ..rundir import RunDir
from .config import TrainConfig
from .optim import freeze
from .tricks import WHITEN_IMAGES, apply_init


@dataclass(frozen=True)
class RunData:
    """The splits a run reads (each behind the batch protocol of :mod:`resdense.data.dataset`), how its
    batches are fed, and how the saved model is to be fed (``served``)."""

    train: object
    test: object
    val: ImageSet | None
    preprocess: Preprocess  # what every batch goes through (training and evaluation)
    augment: BatchAugment  # preprocess + the augmentation policy, for training batches
    served: Preprocess  # what predict and evaluate do to a file or an image later
    classes: list[str]
    channels: int


def prepare_data(
    cfg: TrainConfig, dataset: Dataset | StreamedFolder, device: torch.device, *, resize: int | None = None
) -> RunData:
    """The splits of ``dataset`` on ``device`` as ``cfg`` says; ``resize``: the input side as the plan settled
    it (``cfg.resize`` when not given)."""
    resize = cfg.resize if resize is None else resize
    photo = False  # evaluated as photos: the streamed folders' random-resized-crop runs
    if isinstance(dataset, StreamedFolder):
        # Data streamed from the files, decoded batch by batch at the input size (data/stream.py); the
        # workers take the evaluation's centre crop themselves, so the batch is not cropped again
        train, test = dataset.streams(
            size=cfg.crop or resize,
            augment=cfg.augment,
            workers=cfg.workers,
            pin_memory=device.type == "cuda",
        )
        if cfg.val_split:
            raise UserError("--val-split: not available for streamed folders; give the folder a val/ split")
        train_set, val, test_set = train.subset(cfg.train_subset), None, test.subset(cfg.test_subset)
        c, size, crop, policy = train.channels, train.size, None, train.batch_augment
        photo = cfg.augment == PHOTO_AUGMENT
    else:
        # In memory: resized once, up front, on the device; what remains per batch is augmentation.
        train, val = dataset.train, None
        if cfg.val_split:  # held out first: the validation images do not depend on --train-subset
            if cfg.val_split >= len(train):
                raise UserError(f"--val-split {cfg.val_split}: the training set has only {len(train)} images")
            train, val = holdout(train, cfg.val_split)
        train = train.subset(cfg.train_subset)
        c = dataset.image_shape[0]
        size, crop, policy = resize or dataset.image_shape[1], cfg.crop, cfg.augment
        check_fits(
            cfg, resize, dataset, [train, dataset.test, *([val] if val is not None else [])], c, size, device
        )

        def on_device(s: ImageSet) -> ImageSet:
            return ImageSet(resize_images(s.images.to(device), resize), s.labels.to(device))

        train_set, test_set = on_device(train), on_device(dataset.test.subset(cfg.test_subset))
        val = None if val is None else on_device(val)
    # the statistics of what training sees (a streamed split decodes a sample of its files: only when needed)
    mean, std = channel_stats(train.sample()) if cfg.normalize else ((0.0,) * c, (1.0,) * c)
    pre = Preprocess(size, mean, std, c, crop)
    # photos are evaluated as photos (shorter side to size / CROP_PCT, the centre crop): models saved from
    # such a run are fed the same way by predict and evaluate
    served = Preprocess.centre(size, mean, std, c) if photo else pre
    return RunData(
        train_set,
        test_set,
        val,
        pre,
        BatchAugment(
            policy,
            pre,
            cfg.crop_padding,
            cfg.alt_flip,
            cfg.auto_augment,
            cfg.random_erasing,
            cfg.erasing_scale,
            cfg.erasing_ratio,
            cfg.seed,
        ),
        served,
        list(dataset.classes),
        c,
    )


def check_fits(
    cfg: TrainConfig, resize: int | None, dataset, splits, c: int, size: int, device: torch.device
) -> None:
    """What validate() cannot know before the data: the crop against the images' side, and whether the
    resized splits fit in memory (a huge --resize is one line, not the kernel's OOM killer)."""
    from ..data.stream import memory_budget

    if cfg.crop is not None and cfg.crop > size:
        raise UserError(
            f"--crop {cfg.crop} is larger than the images ({size}x{size} pixels); "
            "use --resize to enlarge them first"
        )
    need = sum(len(s) for s in splits) * c * size * size
    budget = memory_budget(device)
    if resize is not None and need > budget:
        raise UserError(
            f"--resize {resize}: {dataset.name}'s images at {size}x{size} need {need / 2**30:,.1f} "
            f"GiB, more than the {budget / 2**30:,.1f} GiB this run may hold; choose a smaller side"
        )


def xavier_init(model: nn.Module) -> None:
    """d2l's ``init_weights``: Xavier-uniform weights for every conv and linear layer."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


@dataclass
class RunModel:
    model: nn.Module
    data: RunData  # the splits as the model is fed (the weights' mean/std, if adopted)
    spec: ModelSpec
    params: int
    macs: int


def build_model(
    cfg: TrainConfig, data: RunData, *, pretrained=None, progress: bool = True, say=None, source: str = ""
) -> RunModel:
    """The run's model, seeded by ``cfg.seed``; with ``cfg.weights`` fed as the weights were (their mean and
    std replace the data's in ``data``'s preprocessing) and with their builder options."""
    say = say or (lambda msg: None)
    c = data.channels
    torch.manual_seed(cfg.seed)
    try:
        model = create_model(
            cfg.model,
            num_classes=len(data.classes),
            in_chans=c,
            weights=pretrained if pretrained is not None else cfg.weights,
            progress=progress,
            **cfg.model_options,
        )
    except UnknownModelError as e:
        raise UserError(f"--model: {e}") from None
    except TypeError as e:
        raise UserError(f"--model {cfg.model}: bad model option ({e})") from None
    options = dict(cfg.model_options)
    if cfg.init == "xavier" and cfg.weights is None:
        xavier_init(model)
    if cfg.whiten_init or cfg.dirac_init or cfg.bn_momentum is not None:
        sample = data.preprocess(data.train.sample(WHITEN_IMAGES)) if cfg.whiten_init else None
        apply_init(cfg, model, sample)
    if cfg.weights is not None:
        data, options = _adopt_pretrained(model, data, options, say)
    trainable = freeze(model, cfg.freeze)
    if cfg.freeze != "none":
        say(f"--freeze {cfg.freeze}: {trainable:,} of {count_params(model):,} parameters train")
    spec = ModelSpec(
        cfg.model,
        {"num_classes": len(data.classes), "in_chans": c, **options},
        data.served,
        list(data.classes),
        cfg.tta_flip,
    )
    # the model now carries how this run feeds it, as a model loaded from the run's file will
    model.pretrained_cfg = PretrainedCfg.from_spec(spec, source or cfg.out or "")
    try:
        side = data.preprocess.input_size
        macs = count_macs(model, (c, side, side))
    except ValueError as e:
        raise UserError(f"--model {cfg.model}: {e}") from None
    return RunModel(model, data, spec, count_params(model), macs)


def _adopt_pretrained(model: nn.Module, data: RunData, options: dict, say) -> tuple[RunData, dict]:
    """The data fed as the weights were fed (their mean/std); the builder options they came with."""
    pcfg = model.pretrained_cfg
    pre = data.preprocess
    if pcfg.known_input and len(pcfg.mean) == pre.in_chans and tuple(pcfg.mean) != pre.mean:
        norm = {"mean": tuple(pcfg.mean), "std": tuple(pcfg.std)}
        pre = replace(pre, **norm)
        data = replace(
            data,
            preprocess=pre,
            served=replace(data.served, **norm),
            augment=replace(data.augment, preprocess=pre),
        )
        say(f"normalising with the weights' mean {_fmt(pcfg.mean)} and std {_fmt(pcfg.std)}")
    known = list(pcfg.classes)
    if known and known != list(data.classes) and len(known) == len(data.classes):
        # the same number of classes, but other ones: their output layer means nothing here
        model.reset_classifier(len(data.classes))
        say(
            f"classifier re-initialised: the weights' classes ({', '.join(known[:3])}, ...) are not this data "
            f"set's ({', '.join(data.classes[:3])}, ...)"
        )
    return data, {**pcfg.options, **options}


def load_run_dataset(
    cfg: TrainConfig, dist, run: RunDir, progress: bool, *, device: torch.device, resize: int | None
) -> object:
    """The run's data set. An image folder goes in memory or is streamed (by ``cfg.in_memory``; at the
    input side ``resize``), after a header scan for bad files; those left out by
    ``--skip-bad-images`` are listed in the run folder. Under torchrun one process per machine fetches a
    missing data set; the others wait for it."""
    from ..data import load_dataset
    from ..data.stream import load_folder, memory_budget

    first = not dist.enabled or dist.local_rank == 0
    if not first:
        dist.barrier()
    if cfg.dataset == "folder":
        if cfg.data_dir is None:
            raise UserError("--dataset folder needs --data-dir (a folder of class sub-folders)")
        dataset, bad = load_folder(
            cfg.data_dir,
            in_memory=cfg.in_memory,
            budget_bytes=memory_budget(device),
            augment=cfg.augment,
            skip_bad_images=cfg.skip_bad_images,
            image_size=resize,
        )
        if bad and dist.rank == 0:
            run.write_bad_images(bad)
            files = "file" if len(bad) == 1 else "files"
            print(f"left out {len(bad):,} bad image {files} (listed in {run.bad_images})", flush=True)
    else:
        dataset = load_dataset(cfg.dataset, cfg.data_dir, progress=progress and dist.rank == 0)
    if first:
        dist.barrier()
    return dataset
