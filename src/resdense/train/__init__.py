"""Training: recipes, the loop, checkpoints and run folders."""

from .callbacks import Callback
from .engine import TrainResult, train
from .recipes import RECIPES, TrainConfig, get_recipe

__all__ = ["Callback", "RECIPES", "TrainConfig", "TrainResult", "get_recipe", "train"]
