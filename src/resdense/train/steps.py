"""What a training step does beyond the plain one, each part off by default: the keyed augmentations and
MixUp/CutMix (data/augment.py, data/mix.py), gradient accumulation and gradient clipping.

The trainer asks :func:`step_options` once; with every option off it gets None and runs its plain step,
unchanged, so a run without these options pays nothing for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data.augment import BatchAugment
from ..data.keyed import image_keys
from ..data.mix import Mix


@dataclass(frozen=True)
class StepOptions:
    mix: Mix | None
    keyed: bool  # the batches carry their images' indices (the keyed draws need them)
    accum_steps: int
    clip_grad: float
    seed: int

    def inputs(
        self,
        augment: BatchAugment,
        xb: torch.Tensor,
        yb: torch.Tensor,
        indices: torch.Tensor | None,
        generator: torch.Generator,
        epoch: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch and its targets: the labels, or MixUp/CutMix's soft targets (N, K)."""
        x = (
            augment.keyed_call(xb, indices, generator, epoch)
            if augment.keyed
            else augment(xb, generator, epoch)
        )
        if self.mix is None:
            return x, yb
        return self.mix(x, yb, image_keys(self.seed, epoch, indices.to(x.device)))

    def backward(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        loss_fn: Callable,
        device_type: str,
        bf16: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the batch's mean loss into the parameters, in ``accum_steps`` micro-batches (each
        micro-batch's mean loss weighted by its share of the batch, so the sum is the batch's mean); the
        logits and the batch's loss come back for the running figures. Then the clipping, if any."""
        n = x.shape[0]
        logits, loss = [], torch.zeros((), device=x.device)
        parts = list(zip(x.chunk(self.accum_steps), target.chunk(self.accum_steps)))
        for i, (xs, ts) in enumerate(parts):
            # DDP: all-reduce the gradients once, with the last micro-batch
            quiet = (
                model.no_sync()
                if i + 1 < len(parts) and hasattr(model, "no_sync")
                else contextlib.nullcontext()
            )
            with quiet:
                with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                    out = model(xs)
                    part = loss_fn(out, ts) * (xs.shape[0] / n)
                part.backward()
            logits.append(out.detach())
            loss = loss + part.detach()
        if self.clip_grad > 0:
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], self.clip_grad)
        return torch.cat(logits), loss


def step_options(cfg, augment: BatchAugment, num_classes: int) -> StepOptions | None:
    """The run's step options, or None when every one is off (the plain step)."""
    mix = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mix = Mix(cfg.mixup, cfg.cutmix, cfg.mixup_switch_prob, num_classes, cfg.label_smoothing)
    keyed = augment.keyed or mix is not None
    if not keyed and cfg.accum_steps == 1 and cfg.clip_grad == 0:
        return None
    return StepOptions(mix, keyed, cfg.accum_steps, cfg.clip_grad, cfg.seed)
