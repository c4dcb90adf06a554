"""The papers' small-image residual nets, built by :class:`~.resnet.ResNet`: He et al. 2015's CIFAR ResNets
(section 4.2: ResNet-20 ... 110) and their plain twins, and He et al. 2016's pre-activation ResNet-18, with
the Fashion-MNIST ResNet-20s resdense ships.
"""

from __future__ import annotations

from .hub import ShippedWeights
from .pretrained_cfg import CIFAR_CFG
from .registry import register_model
from .resnet import BasicBlock, PlainBlock, PreActBlock, ResNet

# --- The papers' small-image models --------------------------------------------------------------------

# ResNet-20s trained on Fashion-MNIST by resdense's own recipes, shipped as package data ("fashion-mnist"
# alone means the first of these that is installed)
FASHION_MNIST = {
    "fashion-mnist:best": ShippedWeights("best", "fashion_mnist_resnet20_best.safetensors"),
    "fashion-mnist:fast": ShippedWeights("fast", "fashion_mnist_resnet20_fast.safetensors"),
}


def cifar_resnet(depth: int, *, plain: bool = False, **kwargs) -> ResNet:
    """He et al. 2015, section 4.2: 6n+2 layers, stages of 16/32/64 channels, option A shortcuts.

    ``plain=True`` drops every shortcut (the paper's plain nets). Option A shortcuts have no parameters,
    so a plain net has exactly as many parameters as its ResNet, and the same state-dict keys.
    """
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2, got {depth}")
    n = (depth - 2) // 6
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("shortcut", "none" if plain else "A")
    kwargs.setdefault("widths", (16, 32, 64))  # the paper's; wider stages make a wide ResNet (WRN-style)
    block = PlainBlock if plain else BasicBlock
    return ResNet(block, [n, n, n], stem="cifar", cfg=CIFAR_CFG, **kwargs)


@register_model("resnet", "He et al. 2015 (CIFAR)", weights=FASHION_MNIST)
def resnet20(**kwargs) -> ResNet:
    return cifar_resnet(20, **kwargs)


@register_model("resnet", "He et al. 2015 (CIFAR)")
def resnet32(**kwargs) -> ResNet:
    return cifar_resnet(32, **kwargs)


@register_model("resnet", "He et al. 2015 (CIFAR)")
def resnet44(**kwargs) -> ResNet:
    return cifar_resnet(44, **kwargs)


@register_model("resnet", "He et al. 2015 (CIFAR)")
def resnet56(**kwargs) -> ResNet:
    return cifar_resnet(56, **kwargs)


@register_model("resnet", "He et al. 2015 (CIFAR)")
def resnet110(**kwargs) -> ResNet:
    return cifar_resnet(110, **kwargs)


@register_model("plain", "He et al. 2015 (CIFAR plain nets)")
def plain20(**kwargs) -> ResNet:
    return cifar_resnet(20, plain=True, **kwargs)


@register_model("plain", "He et al. 2015 (CIFAR plain nets)")
def plain32(**kwargs) -> ResNet:
    return cifar_resnet(32, plain=True, **kwargs)


@register_model("plain", "He et al. 2015 (CIFAR plain nets)")
def plain44(**kwargs) -> ResNet:
    return cifar_resnet(44, plain=True, **kwargs)


@register_model("plain", "He et al. 2015 (CIFAR plain nets)")
def plain56(**kwargs) -> ResNet:
    return cifar_resnet(56, plain=True, **kwargs)


@register_model("plain", "He et al. 2015 (CIFAR plain nets)")
def plain110(**kwargs) -> ResNet:
    return cifar_resnet(110, plain=True, **kwargs)


@register_model("resnet", "He et al. 2016 (pre-activation)")
def preact_resnet18(**kwargs) -> ResNet:
    """He et al. 2016's pre-activation ResNet-18 for 32x32 images (3x3 stem, no max pool)."""
    kwargs.setdefault("num_classes", 10)
    return ResNet(PreActBlock, [2, 2, 2, 2], stem="cifar", cfg=CIFAR_CFG, **kwargs)
