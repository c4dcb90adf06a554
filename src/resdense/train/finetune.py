"""A staged fine-tune (fastai's ``fine_tune``): the first ``freeze_epochs`` epochs train the classifier
alone on a frozen body (its batch norms in eval mode), then the whole network trains at
``unfreeze_lr_mult`` times the learning rate, so the new head settles before it can disturb the pretrained
body. The stage is a function of the epoch, set at the start of each, so a resumed run is in the same one.
"""

from __future__ import annotations

from torch import nn

from .optim import freeze_body

__all__ = ["set_stage"]


def set_stage(model: nn.Module, cfg, epoch: int) -> float:
    """Freeze or unfreeze ``model``'s body for ``epoch``; the learning-rate multiplier of that stage."""
    if not getattr(cfg, "freeze_epochs", 0):
        return 1.0
    frozen = epoch < cfg.freeze_epochs
    freeze_body(model, frozen)
    return 1.0 if frozen else cfg.unfreeze_lr_mult
