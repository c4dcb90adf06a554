"""Training: recipes, the loop, checkpoints and run folders."""

from .engine import TrainResult, train
from .recipes import RECIPES, TrainConfig, get_recipe

__all__ = ["RECIPES", "TrainConfig", "TrainResult", "get_recipe", "train"]
