"""The model library: every network is built by a registered function, see :mod:`resdense.models.registry`."""

from ._contract import ModelConfig, ModelContract
from .d2l import DenseBlock as D2LDenseBlock
from .d2l import Residual, conv_block, d2l_densenet, d2l_resnet18, resnet_block, transition_block
from .densenet import DenseNet
from .registry import create_model, get_model_info, list_models
from .resnet import ResNet

__all__ = [
    "D2LDenseBlock",
    "DenseNet",
    "ModelConfig",
    "ModelContract",
    "ResNet",
    "Residual",
    "conv_block",
    "create_model",
    "d2l_densenet",
    "d2l_resnet18",
    "get_model_info",
    "list_models",
    "resnet_block",
    "transition_block",
]
