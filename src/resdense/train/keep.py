"""Which weights a run keeps (``--keep last|best``) and when it stops early (``--patience N``), both judged on
the validation split alone: the test set never chooses (it would then no longer measure).

The best weights, their epoch and score and the count of epochs without improvement go into every checkpoint
(:meth:`Keeper.state_dict`), which the run folder writes atomically, so a run killed and resumed keeps and
stops exactly as the uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..record import EpochRecord


class Keeper:
    """The best validation score so far, its epoch (and, for ``keep="best"``, its weights, on the CPU)."""

    def __init__(self, keep: str, patience: int):
        self.keep, self.patience = keep, patience
        self.best_epoch, self.best_score, self.bad_epochs = 0, None, 0
        self.stopped = False
        self.weights: dict[str, torch.Tensor] | None = None

    @classmethod
    def for_run(cls, cfg, val_set) -> Keeper | None:
        """None when the run keeps its last weights and never stops early; refuses a run with no validation
        split (one line)."""
        if cfg.keep == "last" and not cfg.patience:
            return None
        if val_set is None:
            what = "--keep best" if cfg.keep == "best" else "--patience"
            raise UserError(
                f"{what} chooses on a validation split and this run has none: give --val-split N (the test "
                "set never chooses)"
            )
        return cls(cfg.keep, cfg.patience)

    def update(self, model: nn.Module, row: EpochRecord) -> bool:
        """Judge the epoch ``row`` (``model``: the evaluated one); True when the run should stop now."""
        if row.val_acc is None:  # not scored this epoch (--eval-every)
            return False
        if self.best_score is None or row.val_acc > self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = row.val_acc, row.epoch, 0
            if self.keep == "best":
                self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        self.stopped = bool(self.patience) and self.bad_epochs >= self.patience
        return self.stopped

    def restore(self, model: nn.Module) -> None:
        """Put the kept weights into ``model`` (nothing to do when the last ones are kept)."""
        if self.keep == "best" and self.weights is not None:
            model.load_state_dict(self.weights)

    def state_dict(self) -> dict:
        return {
            "keep": self.keep,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
            "weights": self.weights,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best_epoch, self.best_score = int(state["best_epoch"]), state["best_score"]
        self.bad_epochs, self.stopped = int(state["bad_epochs"]), bool(state["stopped"])
        self.weights = state.get("weights")

    def summary(self, last_epoch: int) -> dict:
        """What the run's summary says about the weights it kept, and why."""
        stop = (
            f"; stopped early after epoch {last_epoch}: {self.bad_epochs} scored epochs without a better "
            f"validation accuracy (--patience {self.patience})"
            if self.stopped
            else ""
        )
        if self.keep == "best" and self.weights is not None:
            kept, why = self.best_epoch, f"the best validation accuracy ({self.best_score:.4f}, --keep best)"
        else:
            kept, why = last_epoch, "the last epoch (--keep last)"
        return {
            "kept_epoch": kept,
            "kept_because": why + stop,
            "best_val_epoch": self.best_epoch,
            "best_val_score": self.best_score,
            "stopped_early": self.stopped,
        }
