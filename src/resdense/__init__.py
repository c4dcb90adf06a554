"""resdense: residual and densely connected convolutional networks, from the d2l chapter to real software.

The package in layers, bottom to top (docs/architecture.md): the ground (``version``, ``preprocess``,
``modelfile``, ``rundir``, ``plots``, ``utils``), then ``models`` and ``data``, then ``serve``, ``train``, ``studies`` and
the ``cli``. ``create_model`` and ``list_models`` are the front door to the models.
"""

from .models import ModelConfig, create_model, list_models
from .version import __version__

__all__ = [
    "ModelConfig",
    "__version__",
    "create_model",
    "explain",
    "export_hub",
    "list_models",
    "push_to_hub",
    "show_features",
]


def __getattr__(name: str):
    # serving's look inside a model, imported when first asked for (``import resdense`` stays light)
    if name == "explain":
        from .serve.explain import explain

        return explain
    if name == "show_features":
        from .serve.features import show_features

        return show_features
    if name in ("export_hub", "push_to_hub"):  # sharing a run on the Hugging Face Hub (serve/share.py)
        from .serve import share

        return getattr(share, name)
    raise AttributeError(f"module 'resdense' has no attribute {name!r}")
