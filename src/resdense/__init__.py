"""resdense: residual and densely connected convolutional networks, from the d2l chapter to real software."""

from .models import ModelConfig, create_model, list_models

__version__ = "0.1.0"

__all__ = ["ModelConfig", "__version__", "create_model", "list_models"]
