"""Residual networks: ResNet-18..152, ResNeXt, Wide ResNet (He et al. 2015; Xie et al. 2017; Zagoruyko and
Komodakis 2016); the papers' CIFAR ResNets and the pre-activation ResNet, built by the same class, are
registered in ``resnet_cifar.py``.

One class, ``ResNet``, builds them all. For the ImageNet models the module names follow torchvision, so its
state dicts load with ``strict=True``. The block is d2l's ``Residual`` grown up: the same two-branch sum,
with a bottleneck variant for the deep nets and a pre-activation variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ._contract import GlobalPool, ModelContract, PretrainedCfg, Stage, new_classifier
from .hub import torchvision_table
from .registry import register_model


def conv3x3(
    in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes,
        out_planes,
        3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm, plus the shortcut: d2l's ``Residual`` without conv biases."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class PlainBlock(BasicBlock):
    """``BasicBlock`` without its shortcut: the papers' plain counterpart (He et al. 2015, Fig. 3 middle).

    The same two conv-BN pairs and the same parameters; only the ``+ identity`` is gone, so a stage's first
    block changes width and stride through its first conv alone.
    """

    def zero_init_last(self) -> None:
        # a TypeError, like any option a builder does not take: `resdense train` reports it in one line
        raise TypeError("zero_init_residual needs residual blocks: a plain block would output zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, wider for Wide ResNet), 1x1 expand; stride on the 3x3 (v1.5)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class PreActBlock(nn.Module):
    """He et al. 2016: BN -> ReLU -> conv, twice; the shortcut carries the un-normalised signal."""

    expansion = 1
    preact = True

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # a projection shortcut sees the pre-activated input, as in the paper's Fig. 4(e)
        identity = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + identity


class PadShortcut(nn.Module):
    """The CIFAR paper's option A shortcut: subsample, then pad the new channels with zeros (no parameters)."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))


class ResNet(ModelContract, nn.Module):
    """Stem, stages of residual blocks, global average pool, linear classifier.

    ``stem="imagenet"`` is the 7x7/2 conv and 3x3/2 max pool of the ImageNet models (d2l's ``b1``, without
    conv bias); ``stem="cifar"`` is a single 3x3 conv for 32x32 images. ``shortcut="A"`` uses parameter-free
    zero-padding shortcuts (the CIFAR paper), ``"B"`` 1x1 projections (torchvision), ``"none"`` no shortcut
    at all (for ``PlainBlock``: the plain networks).

    Feature points (``forward_intermediates``, ``feature_info``): the stem's output before its max pool
    (``relu``; a pre-activation net: its bare ``conv1``), then each stage ``layer1``... For the ImageNet
    models these are timm's ResNet's five points (reductions 2, 4, 8, 16, 32) and equal to timm's outputs on
    the same weights; the CIFAR nets (3x3 stem, no pool) have four, at reductions 1, 1, 2, 4 (resdense's own:
    timm has no such ResNets). A pre-activation net's last batch norm and ReLU come after the last point
    (``norm=True`` applies them to it).

    ``block``: the residual block class; ``layers``: blocks per stage; ``num_classes``: the classifier's
    outputs (0: a feature extractor); ``in_chans``: the input's channels; ``widths``: each stage's
    channels; ``groups``, ``width_per_group``: ResNeXt's cardinality and width (Wide ResNet: a larger
    ``width_per_group``); ``zero_init_residual``: start each block's last batch norm at zero;
    ``drop_rate``: dropout before the classifier; ``cfg``: how to feed the model (default: the family's).
    """

    def __init__(
        self,
        block: type[BasicBlock | PlainBlock | Bottleneck | PreActBlock],
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "imagenet",
        shortcut: str = "B",
        groups: int = 1,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
        cfg: PretrainedCfg | None = None,
    ):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if shortcut not in ("A", "B", "none"):
            raise ValueError(f"shortcut must be 'A', 'B' or 'none', got {shortcut!r}")
        if (shortcut == "none") != (block is PlainBlock):
            raise ValueError("shortcut='none' goes with PlainBlock, and PlainBlock with shortcut='none'")
        if len(widths) != len(layers):
            raise ValueError("widths and layers must have the same length")
        self.groups = groups
        self.base_width = width_per_group
        self.shortcut = shortcut
        self.drop_rate = drop_rate
        self.preact = getattr(block, "preact", False)
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(in_chans, self.inplanes)
        # A pre-activation net normalises inside its blocks, so its stem is the bare conv.
        self.bn1 = nn.Identity() if self.preact else nn.BatchNorm2d(self.inplanes)
        self.relu = nn.Identity() if self.preact else nn.ReLU(inplace=True)
        self.maxpool = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        )
        for i, (width, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, width, n, stride=1 if i == 0 else 2))
        self.num_stages = len(layers)
        self.final_norm = nn.BatchNorm2d(self.inplanes) if self.preact else nn.Identity()
        self.final_act = nn.ReLU() if self.preact else nn.Identity()
        self.global_pool = GlobalPool("avg")
        # the points' widths and reductions: the stem's, then each stage's (a stride of 2 from the second on)
        first = 2 if stem == "imagenet" else 1
        reductions = [first] + [first * (2 if stem == "imagenet" else 1) * 2**i for i in range(len(layers))]
        outs = [widths[0]] + [w * block.expansion for w in widths]
        self.point_shapes = list(zip(outs, reductions))
        self.fc = new_classifier(self.inplanes, num_classes)
        self.init_cfg(cfg, in_chans, num_classes, first_conv="conv1", classifier="fc")

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # each block then starts as the identity, which helps large-batch training (Goyal et al. 2017)
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out = planes * block.expansion
        if self.shortcut != "none" and (stride != 1 or self.inplanes != out):
            if self.shortcut == "A":
                downsample = PadShortcut(stride, out - self.inplanes)
            elif self.preact:
                downsample = nn.Sequential(conv1x1(self.inplanes, out, stride))
            else:
                downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = out
        layers += [
            block(out, planes, groups=self.groups, base_width=self.base_width) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def stages(self) -> list[Stage]:
        (c, r), *rest = self.point_shapes
        stem = "conv1" if self.preact else "relu"
        out = [Stage(stem, [self.conv1, self.bn1, self.relu], c, r, after=[self.maxpool])]
        return out + [
            Stage(f"layer{i + 1}", [getattr(self, f"layer{i + 1}")], c, r) for i, (c, r) in enumerate(rest)
        ]

    def final_layers(self) -> list[nn.Module]:  # (none but a pre-activation net's: no identity calls)
        return [self.final_norm, self.final_act] if self.preact else []

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def _set_classifier(self, head: nn.Module) -> None:
        self.fc = head

    def cam_layer(self) -> str:  # a pre-activation net normalises its last stage once more
        return "final_norm" if self.preact else f"layer{self.num_stages}"


# --- ImageNet models (torchvision names and state dicts) ---------------------------------------------

# torchvision's ImageNet weights for each builder below (file, published top-1; V2 where there is one)
TORCHVISION = {t["model"]: torchvision_table(**t) for t in [
    dict(model="resnet18", v1=("resnet18-f37072fd.pth", 69.758)),
    dict(model="resnet34", v1=("resnet34-b627a593.pth", 73.314)),
    dict(model="resnet50", v1=("resnet50-0676ba61.pth", 76.13), v2=("resnet50-11ad3fa6.pth", 80.858)),
    dict(model="resnet101", v1=("resnet101-63fe2227.pth", 77.374), v2=("resnet101-cd907fc2.pth", 81.886)),
    dict(model="resnet152", v1=("resnet152-394f9c45.pth", 78.312), v2=("resnet152-f82ba261.pth", 82.284)),
    dict(model="resnext50_32x4d", v1=("resnext50_32x4d-7cdf4587.pth", 77.618), v2=("resnext50_32x4d-1a0047aa.pth", 81.198)),
    dict(model="resnext101_32x8d", v1=("resnext101_32x8d-8ba56ff5.pth", 79.312), v2=("resnext101_32x8d-110c445d.pth", 82.834)),
    dict(model="wide_resnet50_2", v1=("wide_resnet50_2-95faca4d.pth", 78.468), v2=("wide_resnet50_2-9ba9bcbe.pth", 81.602)),
    dict(model="wide_resnet101_2", v1=("wide_resnet101_2-32ee1156.pth", 78.848), v2=("wide_resnet101_2-d733dc28.pth", 82.51)),
]}  # fmt: skip


@register_model("resnet", "torchvision", weights=TORCHVISION["resnet18"])
def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["resnet34"])
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["resnet50"])
def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["resnet101"])
def resnet101(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["resnet152"])
def resnet152(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["resnext50_32x4d"])
def resnext50_32x4d(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["resnext101_32x8d"])
def resnext101_32x8d(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["wide_resnet50_2"])
def wide_resnet50_2(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=128, **kwargs)


@register_model("resnet", "torchvision", weights=TORCHVISION["wide_resnet101_2"])
def wide_resnet101_2(**kwargs) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], width_per_group=128, **kwargs)
