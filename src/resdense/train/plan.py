"""A run settled before its first step: :func:`settle` turns the settings, the data and the machine into one
frozen :class:`RunPlan` (the device, the precision, the batch, the sizes, the preprocessing, the splits, the
run folder, the model built once) that the loop reads and never rewrites. What ``auto`` and the data decided
(``amp`` yes/no, ``in_memory`` yes/no, a folder's input size, the batch capped to a small training set, the
run folder) is written into the settings here, in one place, so ``config.json`` and the checkpoint record the
run as it ran and a resume repeats it rather than deciding again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import Dataset
from ..data.stream import StreamedFolder
from ..errors import UserError
from ..modelfile import ModelSpec
from ..rundir import RunDir
from ..utils.amp import AmpDecision, amp_mode, decide_amp
from ..utils.device import resolve_device
from . import distributed as dist_utils
from .balance import capped_batch_size
from .config import TrainConfig, check_types, validate
from .setup import RunData, build_model, load_run_dataset, prepare_data
from .sizing import folder_input_size

__all__ = ["RunPlan", "check_batch_norm", "check_scorable", "default_out_dir", "resumed_config", "settle"]


def default_out_dir(model: str) -> Path:
    return Path("runs") / f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@dataclass(frozen=True)
class RunPlan:
    """Everything a run is, settled before its first step (made by :func:`settle`; the trainer only reads it)."""

    cfg: TrainConfig  # the settings as run: amp, in_memory, resize, batch_size and out as settled
    run: RunDir  # the run folder (the only RunDir of the run)
    dist: dist_utils.DistState  # this process's place in a torchrun group (one process: disabled)
    device: torch.device  # the training device, resolved once
    amp: AmpDecision  # bf16 autocast or fp32, and why
    dataset: Dataset | StreamedFolder
    data: RunData  # the splits and their preprocessing (training and served)
    model: nn.Module  # built once, seeded by cfg.seed, on the CPU as built
    spec: ModelSpec  # how the saved model is to be fed and read
    params: int
    macs: int
    pretrained: object | None = None  # the --weights the model started from
    checkpoint: dict | None = None  # the checkpoint a resumed run continues from
    progress: bool = True  # progress bars on this process

    @property
    def batch_per_process(self) -> int:
        return self.cfg.batch_size // self.dist.world_size

    @property
    def input_size(self) -> int | None:
        return self.data.preprocess.input_size

    @property
    def classes(self) -> list[str]:
        return list(self.data.classes)

    def record(self) -> dict:
        """config.json: the settings flat at the top (a valid ``--config`` file), the facts a run folder has
        always recorded beside them, and what the plan settled under ``"plan"``."""
        data = self.data
        return {
            **self.cfg.to_dict(),
            "preprocess": self.spec.preprocess.to_dict(),
            "classes": self.classes,
            "data_source": self.dataset.source,
            "torch": torch.__version__,
            "world_size": self.dist.world_size,
            "plan": {
                "device": str(self.device),
                "precision": self.amp.dtype,
                "precision_reason": self.amp.reason,
                "batch_per_process": self.batch_per_process,
                "input_size": self.input_size,
                "train_images": len(data.train),
                "test_images": len(data.test),
                "val_images": len(data.val) if data.val is not None else 0,
                "params": self.params,
                "macs": self.macs,
            },
        }


def resumed_config(cfg: TrainConfig, ckpt: dict, out: Path) -> TrainConfig:
    """The settings a resumed run continues with: the checkpoint's own (checked as a fresh run's are), given
    more epochs, another device or TensorBoard when ``cfg`` says so; the epoch must lie within the run."""
    try:
        saved = TrainConfig(**{**ckpt["config"], "out": str(out)})
        check_types(saved)
    except TypeError as e:
        raise UserError(f"--resume {out}: its checkpoint's settings are not this version's ({e})") from None
    except UserError as e:
        raise UserError(f"--resume {out}: its checkpoint's settings cannot work: {e}") from None
    # a resumed run may be given more epochs or another device; everything else is the run's own
    resumed = saved.with_overrides(
        epochs=max(cfg.epochs, saved.epochs) if cfg.epochs != saved.epochs else None,
        device=cfg.device,
        tensorboard=cfg.tensorboard or None,
    )
    try:
        validate(resumed)
    except UserError as e:
        raise UserError(f"--resume {out}: its checkpoint's settings cannot work: {e}") from None
    if ckpt["epoch"] > resumed.epochs:
        raise UserError(
            f"--resume {out}: its checkpoint says epoch {ckpt['epoch']} of a {resumed.epochs}-epoch run"
        )
    return resumed


def decide_precision(mode, device: torch.device, dist: dist_utils.DistState) -> AmpDecision:
    """``--amp`` on ``device``; under torchrun rank 0 decides ``auto`` (one probe, not one per process) and
    the others follow."""
    if not dist.enabled or amp_mode(mode, device) != "auto":
        return decide_amp(mode, device)
    mine = decide_amp(mode, device) if dist.rank == 0 else None
    flag = torch.tensor(float(mine.enabled) if mine else 0.0, device=device)
    on = dist.all_reduce_sum(flag).item() > 0
    return mine or AmpDecision(on, "auto: rank 0's decision")


def check_scorable(data: RunData, cfg: TrainConfig) -> None:
    """A run that could train but never be scored is refused before its first step, saying what is
    missing: an empty test split (a folder without ``test/``: it trained, then ended in ZeroDivisionError)."""
    where = f" in {cfg.data_dir}" if cfg.data_dir else ""
    if len(data.train) == 0:
        raise UserError(f"no training images{where}: nothing to train on")
    if len(data.test) == 0:
        raise UserError(
            f"no test images{where}: the run could not be scored (a folder needs test/<class>/ images beside "
            f"train/, e.g. a few per class of its {len(data.classes):,} classes)"
        )


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def check_batch_norm(model: nn.Module, batch: int) -> None:
    """A training batch of one image through batch norm: refused. Its statistics from one image are noise,
    and where a feature map is 1x1 (resnet18 at 28 px) torch cannot train it at all (a ValueError mid-run);
    the last partial batch is already dropped in training, so only the batch size itself can be one."""
    if batch < 2 and any(isinstance(m, BATCH_NORMS) for m in model.modules()):
        raise UserError(
            f"--batch-size {batch}: batch norm needs at least 2 images per step (per process); "
            "use --batch-size 2 or more (the training set must hold at least 2 images)"
        )


def settle(
    cfg: TrainConfig,
    *,
    dataset: Dataset | StreamedFolder | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    dist: dist_utils.DistState | None = None,
    out: str | Path | None = None,
    pretrained=None,
    take_folder: bool = True,
) -> RunPlan:
    """The run ``cfg`` asks for, settled: its folder taken (``take_folder``: locked, refusing another run's
    files unless ``force``; under torchrun by rank 0), the checkpoint read (``resume``: a run folder, whose
    own settings then apply), the weights and the data loaded (unless ``dataset`` is given), the device and
    the precision decided, the splits prepared and the model built. ``out``: the folder (the Trainer's own,
    given apart from the settings); else ``cfg.out``, else a new one under ``runs/``. On an error the folder
    is let go."""
    dist = dist or dist_utils.current()
    if resume is not None:
        folder = Path(resume)
    else:
        folder = Path(out) if out is not None else Path(cfg.out) if cfg.out else default_out_dir(cfg.model)
    run = RunDir(folder)  # the run's only RunDir: the trainer and the callbacks are handed this one
    if take_folder and dist.rank == 0:
        run.prepare(resume=resume is not None, force=force)
    try:
        ckpt = run.load_checkpoint() if resume is not None else None
        settings = resumed_config(cfg, ckpt, folder) if ckpt is not None else cfg
        return _settle(settings, run, dist, ckpt, dataset=dataset, progress=progress, pretrained=pretrained)
    except BaseException:
        run.unlock()
        raise


def _settle(cfg: TrainConfig, run: RunDir, dist, ckpt, *, dataset, progress: bool, pretrained) -> RunPlan:
    main = dist.rank == 0
    say = (lambda msg: print(msg, flush=True)) if main else (lambda msg: None)
    device = dist.device if dist.enabled else resolve_device(cfg.device)
    if pretrained is None and cfg.weights is not None:
        from ..models.pretrained import PretrainedError, load_pretrained

        # read (or download) the weights before the data: a wrong source fails at once
        pretrained = load_pretrained(cfg.weights, cfg.model, progress=progress and main)
        try:
            pretrained.check_for(cfg.model)
        except PretrainedError:
            raise PretrainedError(
                f"--weights {cfg.weights}: weights for {pretrained.model}, not --model {cfg.model}"
            ) from None
    resize = cfg.resize
    if dataset is None and ckpt is None and cfg.dataset == "folder" and resize is None:
        side, why = folder_input_size(cfg.model, cfg.model_options, pretrained)
        if side:
            resize = side
            say(f"input size {side}x{side}: {why} (--resize N for another)")
    if dataset is None:
        dataset = load_run_dataset(cfg, dist, run, progress, device=device, resize=resize)
    # an image folder goes in memory or is streamed: recorded as yes/no, so a resume takes the same path
    in_memory = (
        ("no" if isinstance(dataset, StreamedFolder) else "yes") if cfg.dataset == "folder" else cfg.in_memory
    )
    # bf16 autocast or fp32, decided once and recorded as yes/no: a resumed run repeats the decision
    amp = decide_precision(cfg.amp, device, dist)
    data = prepare_data(cfg, dataset, device, resize=resize)
    check_scorable(data, cfg)
    world = dist.world_size
    if cfg.batch_size % world:
        raise UserError(f"--batch-size {cfg.batch_size} must be divisible by the {world} processes")
    batch = capped_batch_size(cfg.batch_size, len(data.train), world)
    if batch != cfg.batch_size:  # a small folder: one batch of all its images per step, said
        say(f"--batch-size {cfg.batch_size} capped to {batch}: the training set has {len(data.train)} images")
    # the one place the settings change: what the run decided, written into them
    settled = replace(
        cfg,
        out=str(run.path),
        resize=resize,
        in_memory=in_memory,
        amp="yes" if amp.enabled else "no",
        batch_size=batch,
    )
    built = build_model(
        settled, data, pretrained=pretrained, progress=progress and main, say=say, source=str(run.path)
    )
    check_batch_norm(built.model, batch // world)
    return RunPlan(
        settled,
        run,
        dist,
        device,
        amp,
        dataset,
        built.data,
        built.model,
        built.spec,
        built.params,
        built.macs,
        pretrained,
        ckpt,
        progress and main,
    )
