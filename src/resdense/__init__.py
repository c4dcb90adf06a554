"""resdense: residual and densely connected convolutional networks, from the d2l chapter to real software.

The package in layers, bottom to top (docs/architecture.md): the ground (``preprocess``, ``modelfile``,
``rundir``, ``plots``, ``utils``), then ``models`` and ``data``, then ``serve``, ``train``, ``studies`` and
the ``cli``. ``create_model`` and ``list_models`` are the front door to the models.
"""

from .models import ModelConfig, create_model, list_models

__version__ = "0.1.0"

__all__ = ["ModelConfig", "__version__", "create_model", "list_models"]
