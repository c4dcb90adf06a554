"""Densely connected networks: DenseNet-121/161/169/201 (Huang et al. 2017) and the paper's DenseNet-BC for
32x32 images.

The structure is d2l's (``DenseBlock`` of conv blocks, ``transition_block`` between them) with the paper's
"BC" refinements: each conv block is a bottleneck (BN-ReLU-1x1 conv to ``bn_size * growth_rate`` channels,
then BN-ReLU-3x3 conv to ``growth_rate``) and each transition halves the channels. Module names follow
torchvision, so its state dicts load with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ._contract import GlobalPool, ModelContract, PretrainedCfg, Stage, new_classifier
from .hub import torchvision_table
from .pretrained_cfg import CIFAR_CFG
from .registry import register_model


class DenseLayer(nn.Module):
    """One bottleneck conv block; takes the list of all earlier feature maps, returns ``growth_rate`` new ones."""

    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float,
        memory_efficient: bool,
    ):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient
        self._replaying = False

    def bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        """BN-ReLU-1x1 conv of the concatenated inputs (kept for torchvision-style callers)."""
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def layer(self, *features: torch.Tensor, replay: bool = False) -> torch.Tensor:
        """The whole layer: concatenate, BN-ReLU-1x1 conv, BN-ReLU-3x3 conv, dropout."""
        out = self.conv1(self.relu1(self._norm(self.norm1, torch.cat(features, 1), replay)))
        out = self.conv2(self.relu2(self._norm(self.norm2, out, replay)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out

    @staticmethod
    def _norm(bn: nn.BatchNorm2d, x: torch.Tensor, replay: bool) -> torch.Tensor:
        if not replay:
            return bn(x)
        # The backward pass replays the layer: the same batch statistics as in the forward pass, but the
        # running averages must not be updated a second time (momentum 0 leaves them as they are).
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, 0.0, bn.eps)

    def _checkpointed(self, *features: torch.Tensor) -> torch.Tensor:
        replay, self._replaying = self._replaying, True
        return self.layer(*features, replay=replay)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and any(f.requires_grad for f in features):
            # The concatenation and the activations computed from it grow quadratically with depth;
            # keeping only each layer's growth_rate new channels and recomputing the rest in the backward
            # pass is what makes deep DenseNets fit (Pleiss et al. 2017). Dropout masks are replayed too
            # (checkpoint restores the RNG state).
            self._replaying = False
            return checkpoint(self._checkpointed, *features, use_reentrant=False)
        return self.layer(*features)


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers, each fed the concatenation of the block input and all earlier outputs."""

    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ):
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(
                num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """d2l's ``transition_block`` without the conv bias: BN, ReLU, 1x1 conv, 2x2 average pool."""

    def __init__(self, num_input_features: int, num_output_features: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(ModelContract, nn.Module):
    """Stem, dense blocks joined by compressing transitions, final BN-ReLU, global pool, linear classifier.

    ``stem="imagenet"`` is the 7x7/2 conv, BN, ReLU and 3x3/2 max pool; ``stem="cifar"`` a single 3x3 conv.
    ``compression`` is the paper's theta (0.5 for the BC models).

    Feature points (``forward_intermediates``, ``feature_info``), timm's DenseNet's: the stem's output before
    its max pool (``features.relu0``; the CIFAR stem: ``features.conv0``), each dense block but the last
    (before its transition), and the final batch norm with its ReLU (``features.norm5``, what
    ``forward_features`` returns). For the ImageNet models: five points at reductions 2, 4, 8, 16, 32, equal to
    timm's outputs on the same weights. A transition runs with the stage after its point, and is frozen
    (``--freeze stages:N``) with the block before it, as timm groups them.

    ``growth_rate``: the channels each dense layer adds (k); ``block_config``: dense layers per block;
    ``num_init_features``: the stem's channels; ``bn_size``: the bottleneck's width in multiples of
    ``growth_rate``; ``drop_rate``: dropout after every dense layer; ``num_classes``: the classifier's
    outputs (0: a feature extractor); ``in_chans``: the input's channels; ``memory_efficient``: recompute
    the concatenations in the backward pass (under half the memory, the same outputs); ``cfg``: how to
    feed the model (default: the family's).
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        *,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        memory_efficient: bool = False,
        stem: str = "imagenet",
        cfg: PretrainedCfg | None = None,
    ):
        super().__init__()
        if stem == "imagenet":
            layers = [
                ("conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        elif stem == "cifar":
            layers = [("conv0", nn.Conv2d(in_chans, num_init_features, 3, padding=1, bias=False))]
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.features = nn.Sequential(OrderedDict(layers))
        num_features = num_init_features
        # the points' widths and reductions (timm's): the stem (before its pool), each block but the last,
        # the final norm; the ImageNet stem reduces 2x, its pool 2x more, each transition 2x
        reduction = 2 if stem == "imagenet" else 1
        self.point_shapes = [(num_init_features, reduction)]
        reduction *= 2 if stem == "imagenet" else 1
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            self.point_shapes.append((num_features, reduction))
            reduction *= 2
            if i != len(block_config) - 1:
                out_features = int(num_features * compression)
                self.features.add_module(f"transition{i + 1}", Transition(num_features, out_features))
                num_features = out_features
        self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(num_features))
        self.final_act = nn.ReLU()  # part of the last point, as timm's norm5 is a batch norm with its ReLU
        self.global_pool = GlobalPool("avg")
        self.classifier = new_classifier(num_features, num_classes)
        self.init_cfg(cfg, in_chans, num_classes, first_conv="features.conv0", classifier="classifier")

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def stages(self) -> list[Stage]:
        named = self.features._modules
        imagenet = "pool0" in named
        stem = ["conv0", "norm0", "relu0"] if imagenet else ["conv0"]
        (c, r), *rest = self.point_shapes
        out = [Stage(f"features.{stem[-1]}", [named[n] for n in stem], c, r)]
        pending = ["pool0"] if imagenet else []  # what runs after a point and before the next block
        blocks = [n for n in named if n.startswith("denseblock")]
        for b, (chs, reduction) in zip(blocks, rest):
            layers, lead = [named[n] for n in [*pending, b]], len(pending)
            if b == blocks[-1]:  # the last point: the final batch norm and its ReLU
                norm = f"norm{len(blocks) + 1}"
                out.append(
                    Stage(f"features.{norm}", [*layers, named[norm], self.final_act], chs, reduction, lead)
                )
            else:
                out.append(Stage(f"features.{b}", layers, chs, reduction, lead))
            pending = [f"transition{b[len('denseblock') :]}"]
        return out

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each dense layer in the backward pass (the ``memory_efficient`` option, per layer, as
        timm's DenseNet does); the outputs are the same."""
        for m in self.features.modules():
            if isinstance(m, DenseLayer):
                m.memory_efficient = enable

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def _set_classifier(self, head: nn.Module) -> None:
        self.classifier = head

    def cam_layer(self) -> str:  # the last dense block (the last point is its normalised output)
        return [f"features.{n}" for n in self.features._modules if n.startswith("denseblock")][-1]


# torchvision's ImageNet weights for each builder below (file, published top-1)
TORCHVISION = {t["model"]: torchvision_table(**t) for t in [
    dict(model="densenet121", v1=("densenet121-a639ec97.pth", 74.434)),
    dict(model="densenet161", v1=("densenet161-8d451a50.pth", 77.138)),
    dict(model="densenet169", v1=("densenet169-b2777c0a.pth", 75.6)),
    dict(model="densenet201", v1=("densenet201-c1103571.pth", 76.896)),
]}  # fmt: skip


@register_model("densenet", "torchvision", weights=TORCHVISION["densenet121"])
def densenet121(**kwargs) -> DenseNet:
    return DenseNet(32, (6, 12, 24, 16), 64, **kwargs)


@register_model("densenet", "torchvision", weights=TORCHVISION["densenet161"])
def densenet161(**kwargs) -> DenseNet:
    return DenseNet(48, (6, 12, 36, 24), 96, **kwargs)


@register_model("densenet", "torchvision", weights=TORCHVISION["densenet169"])
def densenet169(**kwargs) -> DenseNet:
    return DenseNet(32, (6, 12, 32, 32), 64, **kwargs)


@register_model("densenet", "torchvision", weights=TORCHVISION["densenet201"])
def densenet201(**kwargs) -> DenseNet:
    return DenseNet(32, (6, 12, 48, 32), 64, **kwargs)


def cifar_densenet_bc(depth: int, growth_rate: int = 12, **kwargs) -> DenseNet:
    """Huang et al. 2017's DenseNet-BC for 32x32 images: three blocks of (depth - 4) / 6 bottleneck layers
    (two convs each), a 2k-channel stem, transitions that halve the channels."""
    if (depth - 4) % 6:
        raise ValueError(f"a DenseNet-BC has depth 6n+4, got {depth}")
    n = (depth - 4) // 6
    kwargs.setdefault("num_classes", 10)
    return DenseNet(growth_rate, (n, n, n), 2 * growth_rate, stem="cifar", cfg=CIFAR_CFG, **kwargs)


@register_model("densenet", "Huang et al. 2017 (CIFAR, BC, k=12)")
def densenet_bc_40(**kwargs) -> DenseNet:
    """DenseNet-BC (L=40, k=12): three blocks of 6 bottleneck layers; the small end of the family."""
    return cifar_densenet_bc(40, **kwargs)


@register_model("densenet", "Huang et al. 2017 (CIFAR, BC, k=12)")
def densenet_bc_64(**kwargs) -> DenseNet:
    """DenseNet-BC (L=64, k=12): three blocks of 10 bottleneck layers."""
    return cifar_densenet_bc(64, **kwargs)


@register_model("densenet", "Huang et al. 2017 (CIFAR, BC, k=12)")
def densenet_bc_100(**kwargs) -> DenseNet:
    """Huang et al. 2017's DenseNet-BC (L=100, k=12) for 32x32 images: three blocks of 16 bottleneck layers."""
    return cifar_densenet_bc(100, **kwargs)
