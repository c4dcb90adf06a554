"""The optimiser a run steps: parameter groups, a learning-rate multiplier for the head, frozen layers.

Fine-tuning (d2l 14.2) trains a pretrained body gently and a new output layer faster (``head_lr_mult``, the
book's 10x), or leaves part of the body alone (``freeze``): ``"backbone"`` trains the classifier only,
``"stages:N"`` freezes the stem and the first N stages. Frozen layers get ``requires_grad=False`` and their
batch norms stay in eval mode for good, so their running statistics are not touched even though the loop
calls ``model.train()`` every epoch.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import UserError

__all__ = [
    "FREEZE_HELP",
    "FrozenBatchNorm2d",
    "freeze",
    "freeze_body",
    "make_optimizer",
    "param_groups",
    "stages",
]

FREEZE_HELP = "none, backbone (train the classifier only) or stages:N (the stem and the first N stages)"


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A batch norm that stays in eval mode: it normalises with its stored statistics and never updates them.

    Same parameters and buffers as ``nn.BatchNorm2d`` (so state dicts are unchanged); only ``train()`` is
    pinned, which is what the loop's ``model.train()`` reaches.
    """

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


def stages(model: nn.Module) -> list[list[nn.Module]]:
    """The model's body as [stem, stage 1, stage 2, ...], each a list of modules (the classifier excluded):
    the model's own ``stage_groups()`` (its feature points' layers, see ``feature_info``)."""
    groups = getattr(model, "stage_groups", None)
    if groups is None:
        raise UserError(
            f"--freeze stages: {type(model).__name__} does not say its stages (no stage_groups())"
        )
    return groups()


def _pin_batch_norms(module: nn.Module) -> None:
    """Every batch norm in ``module`` made a :class:`FrozenBatchNorm2d`, in eval mode."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = FrozenBatchNorm2d  # keeps its tensors; only train() changes
            m.eval()


def _freeze_modules(modules: list[nn.Module]) -> None:
    for mod in modules:
        for p in mod.parameters():
            p.requires_grad_(False)
        _pin_batch_norms(mod)


def freeze_body(model: nn.Module, frozen: bool = True) -> None:
    """Everything but the model's classifier (``get_classifier()``) frozen, its batch norms pinned to eval
    mode; or, ``frozen=False``, all of it trainable again (the staged fine-tune's second stage)."""
    head = set(map(id, model.get_classifier().parameters()))
    for p in model.parameters():
        if id(p) not in head:
            p.requires_grad_(not frozen)
    if frozen:
        _pin_batch_norms(model)  # the head has none
        return
    for m in model.modules():
        if type(m) is FrozenBatchNorm2d:
            m.__class__ = nn.BatchNorm2d


def freeze(model: nn.Module, spec: str) -> int:
    """Freeze part of ``model`` as ``spec`` says (``none``, ``backbone``, ``stages:N``); returns the number of
    parameters left trainable. One-line UserError for a spec that does not parse or fit."""
    spec = (spec or "none").strip().lower()
    if spec == "none":
        pass
    elif spec == "backbone":
        freeze_body(model)
    else:
        m = re.fullmatch(r"stages:(\d+)", spec)
        if not m:
            raise UserError(f"--freeze {spec!r}: expected {FREEZE_HELP}")
        n = int(m.group(1))
        groups = stages(model)
        if n > len(groups) - 1:
            raise UserError(f"--freeze {spec}: the model has {len(groups) - 1} stages")
        _freeze_modules([mod for g in groups[: n + 1] for mod in g])
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_groups(
    model: nn.Module, weight_decay: float, head_lr_mult: float = 1.0, bn_bias_lr_mult: float = 1.0
) -> list[dict]:
    """Trainable parameters in groups: weight decay on weights only (batch-norm scales and biases set scale
    and offset, not complexity); the classifier's groups, and the batch norms' biases (airbench trains them
    at 64x), carry ``lr_mult`` for the loop to apply."""
    get = getattr(model, "get_classifier", None)
    head = set(map(id, get().parameters())) if get is not None and head_lr_mult != 1.0 else set()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bn_bias = {id(m.bias) for m in norms if m.bias is not None} if bn_bias_lr_mult != 1.0 else set()
    buckets: dict[tuple[bool, bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            buckets.setdefault((id(p) in head, p.ndim > 1, id(p) in bn_bias), []).append(p)
    groups = []
    for (is_head, decays, is_bn_bias), params in sorted(
        buckets.items(), key=lambda kv: (kv[0][0], not kv[0][1], kv[0][2])
    ):
        mult = (head_lr_mult if is_head else 1.0) * (bn_bias_lr_mult if is_bn_bias else 1.0)
        groups.append({"params": params, "weight_decay": weight_decay if decays else 0.0, "lr_mult": mult})
    return groups


def make_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser ``cfg`` names (a TrainConfig: optimizer, lr, momentum, weight_decay, head_lr_mult)."""
    groups = param_groups(
        model, cfg.weight_decay, getattr(cfg, "head_lr_mult", 1.0), getattr(cfg, "bn_bias_lr_mult", 1.0)
    )
    if not groups:
        raise UserError("--freeze: nothing is left to train")
    for g in groups:
        g["lr"] = cfg.lr * g["lr_mult"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "nesterov":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum or 0.9, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
