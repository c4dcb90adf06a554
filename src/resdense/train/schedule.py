"""When things happen in a run: the learning rate of each step, the image side of each epoch (progressive
resizing) and which epochs are scored. Pure functions of the settings, so a resumed run replays them."""

from __future__ import annotations

import math

from .config import TrainConfig


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_ep: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = int(cfg.warmup_epochs * steps_per_ep)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total_steps - warmup)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "linear":
        return cfg.lr * (1 - t)
    if cfg.schedule == "step":
        # He et al. 2015 on CIFAR: lr / 10 at 32k and 48k of 64k iterations, i.e. at 1/2 and 3/4 of training
        return cfg.lr * (1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01)
    if cfg.schedule == "onecycle":
        # linear ramp up over the first 20%, then linearly down to zero: a triangle (airbench style)
        peak = 0.2
        return cfg.lr * (t / peak if t < peak else (1 - t) / (1 - peak))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def size_at(cfg: TrainConfig, epoch: int, full: int) -> int:
    """The training side for epoch ``epoch`` (0-based) under progressive resizing; ``full`` when it is off.

    Small images early are cheap (the cost goes with the area) and teach the coarse shapes the first epochs
    learn anyway; the last epochs, and every evaluation, see the full size, so batch norm ends calibrated
    to it."""
    if not cfg.progressive_from or cfg.progressive_from >= full:
        return full
    # epochs 0..ramp grow to the full side; the last epoch is always at the full side (a 1-epoch run: all)
    ramp = min(round(cfg.progressive_until * cfg.epochs), cfg.epochs) - 1
    if ramp <= 0:
        return full
    return round(cfg.progressive_from + (full - cfg.progressive_from) * min(1.0, epoch / ramp))


def evaluates_at(cfg: TrainConfig, epoch: int, full: int) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a test (and validation) score: always the last; the
    others every ``eval_every`` epochs, unless they trained on downscaled images. Those are skipped because
    their batch-norm statistics come from the smaller images, so a full-size score describes a model nobody
    uses, while each scoring costs a share of an epoch (benchmarks/RESULTS.md, section 9)."""
    if epoch + 1 == cfg.epochs:
        return True
    if not cfg.eval_every or (epoch + 1) % cfg.eval_every:
        return False
    return size_at(cfg, epoch, full) == full
