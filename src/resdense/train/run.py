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
