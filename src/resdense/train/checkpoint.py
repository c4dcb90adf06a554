"""The resumable checkpoint: model, optimizer, epoch, metrics so far, written atomically after every epoch.

Randomness needs no saved state: every random choice of an epoch derives from (seed, epoch), so resuming
from the end of epoch k replays epochs k+1... exactly as the uninterrupted run would have.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..utils.io import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint is either whole or unreadable: say which file, not a traceback
        raise UserError(f"{path}: not a readable resdense checkpoint ({type(e).__name__})") from None
