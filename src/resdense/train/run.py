"""A run, start to end: its folder, resuming, the random state, the distributed group and the callbacks
around the :class:`~resdense.train.trainer.Trainer`. :func:`train` is the Python twin of ``resdense train``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import torch

from ..data.dataset import Dataset
from ..errors import UserError
from ..modelfile import unwrap
from ..rundir import RunDir
from ..utils.device import resolve_device
from ..utils.system import freed_memory_kept
from . import distributed as dist_utils
from .callbacks import Callback, default_callbacks
from .config import TrainConfig, check_types, validate
from .setup import load_run_dataset
from .sizing import folder_input_size
from .trainer import Trainer, TrainResult


def default_out_dir(model: str) -> Path:
    return Path("runs") / f"{model}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def train(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
    initial_state: dict | None = None,
) -> TrainResult:
    """Train a model as ``cfg`` says; the Python twin of ``resdense train``.

    ``resume``: a run folder whose checkpoint to continue (its config is used; ``cfg`` is ignored).
    ``dataset``: an already loaded :class:`Dataset` (otherwise ``cfg.dataset`` is loaded).
    ``progress``: progress bars (on a terminal, or tqdm's widget in a notebook) and, in a notebook, the live
    figure of the curves. ``callbacks``: your own :class:`~resdense.train.callbacks.Callback` objects, called
    after the run's own on the main process. ``cfg.tensorboard`` also logs to ``<run>/tensorboard``.
    ``initial_state``: a state dict for ``cfg.model`` to start from instead of its fresh initialisation
    (e.g. a trained net made deeper); ignored when resuming, where the checkpoint holds the weights.

    A library call leaves the process as it found it: torch's random state is restored afterwards (the run
    seeds its own from ``cfg.seed``), and the allocator setting that speeds up CPU training is undone.
    """
    if resume is None:
        validate(cfg)  # before anything else: a bad device or value is one line, not a traceback
    elif cfg.device:
        resolve_device(cfg.device)  # a resumed run's other device: the checkpoint's settings come later
    # the run's seeds must not leak into the caller's random stream: fork (save and restore) torch's
    # generators, the CPU's and the training GPU's (under torchrun, the local rank's)
    device = str(cfg.device or "auto")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    index = (torch.device(device).index or 0) if device.startswith("cuda:") else 0
    gpus = [int(os.environ.get("LOCAL_RANK", index))] if cuda else []
    with torch.random.fork_rng(devices=gpus):
        return _train(
            cfg,
            dataset=dataset,
            resume=resume,
            force=force,
            progress=progress,
            callbacks=callbacks,
            initial_state=initial_state,
        )


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
    cfg = saved.with_overrides(epochs=max(cfg.epochs, saved.epochs) if cfg.epochs != saved.epochs else None,
                               device=cfg.device, tensorboard=cfg.tensorboard or None)  # fmt: skip
    try:
        validate(cfg)
    except UserError as e:
        raise UserError(f"--resume {out}: its checkpoint's settings cannot work: {e}") from None
    if ckpt["epoch"] > cfg.epochs:
        raise UserError(
            f"--resume {out}: its checkpoint says epoch {ckpt['epoch']} of a {cfg.epochs}-epoch run"
        )
    return cfg


def _train(cfg, *, dataset, resume, force, progress, callbacks, initial_state) -> TrainResult:
    dist = dist_utils.setup(cfg.device)
    run = None
    try:
        if resume is not None:
            out = Path(resume)
            run = RunDir(out)
            if dist.rank == 0:
                run.prepare(resume=True)
            ckpt = run.load_checkpoint()
            cfg = resumed_config(cfg, ckpt, out)
        else:
            out = Path(cfg.out) if cfg.out else default_out_dir(cfg.model)
            run = RunDir(out)
            if dist.rank == 0:
                run.prepare(force=force)
            cfg = cfg.with_overrides(out=str(out))
            ckpt = None
        run_callbacks = [
            *default_callbacks(progress=progress, tensorboard=cfg.tensorboard),
            *(callbacks or []),
        ]
        pretrained = None
        if cfg.weights is not None:
            from ..models.pretrained import PretrainedError, load_pretrained

            # read (or download) the weights before the data: a wrong source fails at once
            pretrained = load_pretrained(cfg.weights, cfg.model, progress=progress and dist.rank == 0)
            try:
                pretrained.check_for(cfg.model)
            except PretrainedError:
                raise PretrainedError(f"--weights {cfg.weights}: weights for {pretrained.model}, not --model "
                                      f"{cfg.model}") from None  # fmt: skip
        if dataset is None and ckpt is None and cfg.dataset == "folder" and cfg.resize is None:
            side, why = folder_input_size(cfg.model, cfg.model_options, pretrained)
            if side:
                cfg = cfg.with_overrides(resize=side)
                if dist.rank == 0:
                    print(f"input size {side}x{side}: {why} (--resize N for another)", flush=True)
        if dataset is None:
            cfg, dataset = load_run_dataset(cfg, dist, run, progress)
        trainer = Trainer(cfg, dataset, out, progress=progress, pretrained=pretrained)
        if initial_state is not None and ckpt is None:
            unwrap(trainer.model).load_state_dict(initial_state)
            if trainer.ema_model is not None:
                trainer.ema_model.load_state_dict(initial_state)
        if ckpt is not None:
            trainer.load_state(ckpt)
            if dist.rank == 0:
                print(f"resuming {out} after epoch {trainer.start_epoch}", flush=True)
        elif dist.rank == 0:
            # trainer.cfg: the settings as run (``amp`` as auto decided it; the reason is in the summary)
            run.write_config({**trainer.cfg.to_dict(), "preprocess": trainer.spec.preprocess.to_dict(),
                                             "classes": list(dataset.classes), "data_source": dataset.source,
                                             "torch": torch.__version__, "world_size": dist.world_size})  # fmt: skip
        # CPU training reuses freed activation memory (see freed_memory_kept); glibc's defaults come back after
        with freed_memory_kept(trainer.device.type == "cpu"):
            return trainer.fit(run_callbacks)
    finally:
        if run is not None:
            run.unlock()
        dist_utils.teardown()
