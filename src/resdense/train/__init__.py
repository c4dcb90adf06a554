"""Training: settings and recipes, the schedule, the run's data and model, the loop, the run around it.

config (TrainConfig, validate) -> recipes -> schedule -> setup (data and model) -> plan (settle(): the run
settled once, a frozen RunPlan) -> trainer (the loop, reading the plan) -> run (train(): RNG, distributed,
callbacks). Training sits above serving and uses its forward pass.
"""

from .callbacks import Callback
from .config import TrainConfig, validate
from .recipes import RECIPES, get_recipe
from .run import train
from .trainer import Trainer, TrainResult

__all__ = ["RECIPES", "Callback", "TrainConfig", "TrainResult", "Trainer", "get_recipe", "train", "validate"]
