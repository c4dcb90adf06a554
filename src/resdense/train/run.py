"""A run, start to end: its folder, resuming, the random state, the distributed group and the callbacks
around the :class:`~resdense.train.trainer.Trainer`. :func:`train` is the Python twin of ``resdense train``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.dataset import Dataset
from ..modelfile import unwrap
from ..utils.device import resolve_device
from ..utils.system import freed_memory_kept
from . import distributed as dist_utils
from .callbacks import Callback, default_callbacks
from .config import TrainConfig, validate
from .plan import default_out_dir, resumed_config, settle
from .trainer import Trainer, TrainResult

__all__ = ["default_out_dir", "resumed_config", "train"]


def train(
    cfg: TrainConfig,
    *,
    dataset: Dataset | None = None,
    resume: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
    initial_state: dict | None = None,
    **unknown,
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

    ``force``: start afresh in an ``out`` folder that holds another run (else it is refused).
    """
    check_call(cfg, callbacks, unknown)  # before the run folder is made: a wrong call names its mistake
    if resume is None:
        validate(cfg)  # before anything else: a bad device or value is one line, not a traceback
    # the run's seeds must not leak into the caller's random stream: fork (save and restore) torch's
    # generators, the CPU's and the training GPU's (under torchrun, the local rank's). A resumed run's
    # device is settled from its checkpoint later (train/plan.py); "auto" forks the GPU there is.
    device = resolve_device(cfg.device)
    gpus = [int(os.environ.get("LOCAL_RANK", device.index or 0))] if device.type == "cuda" else []
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


def check_call(cfg, callbacks, unknown: dict) -> None:
    """A call of :func:`train` that cannot work, as one ``TypeError`` naming the mistake (``train("fast")``,
    ``train(cfg, num_classes=3)``, ``callbacks=[1]``), before anything is made on disk."""
    from dataclasses import fields

    from .recipes import RECIPES

    names = {f.name for f in fields(TrainConfig)}
    if not isinstance(cfg, TrainConfig):
        hint = (
            f"; for the {cfg!r} recipe: train(get_recipe({cfg!r}))"
            if isinstance(cfg, str) and cfg in RECIPES
            else ""
        )
        raise TypeError(f"train(cfg): the settings are a TrainConfig, got {type(cfg).__name__}{hint}")
    for key in unknown:
        if key in names:
            raise TypeError(f"train(): {key} is a setting; pass TrainConfig(..., {key}=...) as cfg")
        if key in ("num_classes", "classes", "in_chans"):
            raise TypeError(f"train(): no {key}: the classes and channels come from the data set")
        raise TypeError(f"train(): unexpected argument {key!r} (settings go on TrainConfig)")
    if callbacks is not None:
        if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            raise TypeError(
                f"train(callbacks=...): a list of Callback objects, got {type(callbacks).__name__}"
            )
        hooks = [name for name in vars(Callback) if name.startswith("on_")]
        for c in callbacks:
            # a Callback, or any object with the hooks it wants (duck typing, as the trainer calls them)
            if not isinstance(c, Callback) and not any(callable(getattr(c, h, None)) for h in hooks):
                raise TypeError(
                    f"train(callbacks=...): {c!r} is a {type(c).__name__}, not a resdense Callback (subclass "
                    f"resdense.train.Callback, or give it one of {', '.join(hooks)})"
                )


def _train(cfg, *, dataset, resume, force, progress, callbacks, initial_state) -> TrainResult:
    dist = dist_utils.setup(cfg.device)
    plan = None
    try:
        plan = settle(cfg, dataset=dataset, resume=resume, force=force, progress=progress, dist=dist)
        run_callbacks = [
            *default_callbacks(progress=progress, tensorboard=plan.cfg.tensorboard),
            *(callbacks or []),
        ]
        trainer = Trainer(plan)
        ckpt = plan.checkpoint
        if initial_state is not None and ckpt is None:
            unwrap(trainer.model).load_state_dict(initial_state)
            if trainer.ema_model is not None:
                trainer.ema_model.load_state_dict(initial_state)
        if ckpt is not None:
            trainer.load_state(ckpt)
            if dist.rank == 0:
                print(f"resuming {plan.run.path} after epoch {trainer.start_epoch}", flush=True)
        elif dist.rank == 0:
            plan.run.write_config(plan.record())  # the run as settled (amp as auto decided it, ...)
        # CPU training reuses freed activation memory (see freed_memory_kept); glibc's defaults come back after
        with freed_memory_kept(trainer.device.type == "cpu"):
            return trainer.fit(run_callbacks)
    finally:
        if plan is not None:
            plan.run.unlock()
        dist_utils.teardown()
