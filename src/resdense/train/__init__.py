"""Training: settings and recipes, the schedule, the run's data and model, the loop, the run around it.

settings (one setting's declaration) -> config (TrainConfig, validate, settings files) -> recipes (and
load_config) -> schedule -> setup (data and model) -> plan (settle(): the run settled once, a frozen
RunPlan) -> trainer (the loop, reading the plan) -> run (train(): RNG, distributed, callbacks). Training
sits above serving and uses its forward pass.
"""

from .callbacks import Callback
from .config import TrainConfig, validate
from .lr_find import LRFind, lr_find
from .recipes import RECIPES, get_recipe, load_config
from .run import train
from .trainer import Trainer, TrainResult

__all__ = [
    "LRFind",
    "RECIPES",
    "Callback",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "get_recipe",
    "load_config",
    "lr_find",
    "train",
    "validate",
]
