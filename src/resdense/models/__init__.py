"""The model library: every network is built by a registered function (:mod:`resdense.models.registry`),
registered beside its builder in its family's file (d2l.py, resnet.py, resnet_cifar.py, resnet9.py,
densenet.py) with its weight table.

The package's layers, bottom up (timm's order, no cycle): ``registry``; ``pretrained_cfg`` (how to feed a
model), ``_contract`` (the model contract) and the families; ``filecheck`` (whether weights fit); ``hub`` /
``hf_hub`` / ``pretrained`` (the weight sources); ``builder`` (``create_model``: builds and loads)."""

# importing a family registers its builders, in this order (`resdense list` shows them so)
from . import d2l  # noqa: F401

# isort: split
from . import resnet  # noqa: F401

# isort: split
from . import resnet_cifar  # noqa: F401

# isort: split
from . import resnet9  # noqa: F401

# isort: split
from . import densenet  # noqa: F401

# isort: split
from ._contract import FeatureInfo, FeatureListNet, ModelConfig, ModelContract, PretrainedCfg, first_conv
from .builder import create_model
from .d2l import DenseBlock as D2LDenseBlock
from .d2l import (
    Residual,
    ResNeXtBlock,
    conv_block,
    d2l_densenet,
    d2l_resnet18,
    d2l_resnet18_small,
    resnet_block,
    transition_block,
)
from .densenet import DenseNet
from .registry import get_model_info, is_model, list_models, model_entries, register_model
from .resnet import ResNet

__all__ = [
    "D2LDenseBlock",
    "DenseNet",
    "FeatureInfo",
    "FeatureListNet",
    "ModelConfig",
    "ModelContract",
    "PretrainedCfg",
    "ResNet",
    "ResNeXtBlock",
    "Residual",
    "conv_block",
    "create_model",
    "d2l_densenet",
    "d2l_resnet18",
    "d2l_resnet18_small",
    "first_conv",
    "get_model_info",
    "is_model",
    "list_models",
    "model_entries",
    "register_model",
    "resnet_block",
    "transition_block",
]
