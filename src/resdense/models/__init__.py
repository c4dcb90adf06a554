"""The model library: every network is built by a registered function (:mod:`resdense.models.registry`),
registered beside its builder in its family's file (d2l.py, resnet.py, resnet9.py, densenet.py) with its weight table."""

# importing a family registers its builders, in this order (`resdense list` shows them so)
from . import d2l  # noqa: F401

# isort: split
from . import resnet  # noqa: F401

# isort: split
from . import resnet9  # noqa: F401

# isort: split
from . import densenet  # noqa: F401

# isort: split
from ._contract import ModelConfig, ModelContract, PretrainedCfg
from .d2l import DenseBlock as D2LDenseBlock
from .d2l import Residual, conv_block, d2l_densenet, d2l_resnet18, resnet_block, transition_block
from .densenet import DenseNet
from .registry import create_model, get_model_info, list_models, register_model
from .resnet import ResNet

__all__ = [
    "D2LDenseBlock",
    "DenseNet",
    "ModelConfig",
    "ModelContract",
    "PretrainedCfg",
    "ResNet",
    "Residual",
    "conv_block",
    "create_model",
    "d2l_densenet",
    "d2l_resnet18",
    "get_model_info",
    "list_models",
    "register_model",
    "resnet_block",
    "transition_block",
]
