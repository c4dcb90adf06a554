"""The learning-rate range test (Smith 2017; fastai's ``lr_find``): train for a few iterations while the
learning rate grows exponentially from ``start_lr`` to ``end_lr``, record the smoothed loss, stop once it
diverges, and suggest fastai's ``valley``: a point within the longest stretch over which the loss keeps
falling. The model and the optimizer are put back as they were afterwards; nothing is written to a run
folder.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..modelfile import unwrap
from ..plots import save_figure
from .config import TrainConfig, validate
from .trainer import Trainer


@dataclass(frozen=True)
class LRFind:
    """The sweep: one learning rate, raw loss and smoothed loss per iteration done, and the suggestion."""

    lrs: list[float]
    losses: list[float]  # smoothed (an exponential moving average, debiased)
    raw_losses: list[float]
    valley: float  # the suggested learning rate
    diverged: bool  # stopped early: the smoothed loss passed ``diverge`` times its lowest

    def to_dict(self) -> dict:
        return {"valley": self.valley, "diverged": self.diverged, "lrs": self.lrs, "losses": self.losses}

    def figure(self):
        """The smoothed loss against the learning rate (log axis), the valley marked."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        ax.plot(self.lrs, self.losses)
        i = self.lrs.index(self.valley)
        ax.plot([self.valley], [self.losses[i]], "o", color="C1", label=f"valley: {self.valley:.2e}")
        ax.set(
            xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="learning-rate range test"
        )
        ax.legend()
        return fig


def valley(losses: list[float]) -> int:
    """fastai's ``valley`` (as an index into ``losses``): take the longest stretch over which the loss keeps
    falling (its longest decreasing subsequence), split it in thirds, and pick the point half a third past
    the first third: where the descent is steep, well before the bottom, from which the loss soon rises."""
    n = len(losses)
    longest = [1] * n  # the longest decreasing subsequence ending at i
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[end]:
            end = i
    start = end - longest[end] + 1
    third = (end - start) / 3
    return min(n - 1, start + int(third) + int(third / 2))


def lr_find(
    cfg: TrainConfig,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
    dataset: Any = None,
    plot: str | Path | None = None,
    progress: bool = False,
) -> LRFind:
    """Run the learning-rate range test on the run ``cfg`` describes (its model, data, augmentation,
    optimizer and step options; its learning-rate schedule is replaced by the sweep).

    Args:
        cfg: the training settings (``TrainConfig``); ``cfg.lr`` is not used.
        start_lr: the first learning rate of the sweep.
        end_lr: the last one; the rates between grow exponentially.
        num_it: iterations (batches) of the sweep, across epochs of the training split if it is short.
        beta: the smoothing of the loss, an exponential moving average's factor (fastai's 0.98).
        diverge: stop once the smoothed loss exceeds this times its lowest value (fastai's 4).
        dataset: an already loaded data set (otherwise ``cfg.dataset`` is loaded).
        plot: where to write the figure (a PNG), if anywhere.
        progress: progress bars while the data loads.

    Returns:
        An :class:`LRFind`: the rates, the smoothed and raw losses, the ``valley`` suggestion and whether
        the sweep stopped on divergence. The model and optimizer the sweep trained are restored after it.
    """
    if not 0 < start_lr < end_lr:
        raise UserError(f"--start-lr must be positive and below --end-lr ({end_lr:g}), got {start_lr:g}")
    if num_it < 2:
        raise UserError(f"--num-it must be at least 2, got {num_it}")
    if not 0 <= beta < 1 or diverge <= 1:
        raise UserError("beta must be in [0, 1) and diverge above 1")
    validate(cfg)
    result = range_test(Trainer(cfg, dataset, progress=progress), start_lr, end_lr, num_it, beta, diverge)
    if plot is not None:
        save_figure(result.figure(), plot)
    return result


def range_test(
    trainer: Trainer, start_lr: float, end_lr: float, num_it: int, beta: float = 0.98, diverge: float = 4.0
) -> LRFind:
    """:func:`lr_find`'s sweep on a built :class:`Trainer`, whose model and optimizer (and torch's random
    state) are restored after it."""
    model, opt = unwrap(trainer.model), trainer.optimizer
    saved = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), torch.get_rng_state()
    try:
        lrs, raw, smooth, diverged = _sweep(trainer, start_lr, end_lr, num_it, beta, diverge)
    finally:  # the model and optimizer as they were, whatever happened
        model.load_state_dict(saved[0])
        opt.load_state_dict(saved[1])
        torch.set_rng_state(saved[2])
    if len(smooth) < 2:
        raise UserError(f"lr-find: the loss diverged at once (at lr {lrs[-1]:.2e}); lower --start-lr")
    n = len(smooth)  # a diverged sweep's last point is left out
    return LRFind(lrs[:n], smooth, raw[:n], lrs[valley(smooth)], diverged)


def _sweep(trainer: Trainer, start_lr: float, end_lr: float, num_it: int, beta: float, diverge: float):
    cfg, dev = trainer.cfg, trainer.device
    model, steps = trainer.step_model, trainer.steps
    model.train()
    lrs, raw, smooth = [], [], []
    avg, best, epoch = 0.0, math.inf, 0
    while len(lrs) < num_it:
        gen = torch.Generator(device=dev).manual_seed(cfg.seed + epoch)
        batches = trainer.train_batches(
            cfg.batch_size,
            seed=cfg.seed,
            epoch=epoch,
            rank=trainer.dist.rank,
            world_size=trainer.dist.world_size,
        )
        for xb, yb, *idx in batches:
            i = len(lrs)
            lr = start_lr * (end_lr / start_lr) ** (i / (num_it - 1))
            for group in trainer.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            if steps is None:
                x, target = trainer.augment(xb, gen, epoch), yb
            else:
                x, target = steps.inputs(trainer.augment, xb, yb, idx[0] if idx else None, gen, epoch)
            x = x.contiguous(memory_format=trainer.memory_format)
            trainer.optimizer.zero_grad(set_to_none=True)
            if steps is None:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=trainer.autocast):
                    loss = trainer.loss(model(x), target)
                loss.backward()
            else:
                _, loss = steps.backward(model, x, target, trainer.loss, dev.type, trainer.autocast)
            trainer.optimizer.step()
            value = trainer.dist.all_reduce_sum(loss.detach().float()).item() / trainer.dist.world_size
            avg = beta * avg + (1 - beta) * value
            smoothed = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            raw.append(value)
            if not math.isfinite(smoothed) or smoothed > diverge * best:
                return lrs, raw, smooth, True
            smooth.append(smoothed)
            best = min(best, smoothed)
            if len(lrs) == num_it:
                break
        epoch += 1
    return lrs, raw, smooth, False
