"""The networks of d2l's "Modern CNNs" chapter (sections 8.6 and 8.7), exactly as the book builds them.

``Residual``, ``resnet_block``, ``conv_block``, ``DenseBlock`` and ``transition_block`` keep the book's names
and arguments, in both of its editions: the seed's (``Residual(input_channels, num_channels, ...)``, eager
layers) and the current one (``Residual(num_channels, ...)``, lazy layers that learn their input channels
on the first call). The networks are built with the seed's form, whose layers exist before any input. The two networks are ``nn.Sequential`` subclasses with the book's children in the book's
order, so a state dict saved from the book's ``net`` loads here as it is (``strict=True``) and gives the same
outputs, while the models still keep the resdense contract (``forward_features`` / ``forward_head``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from ._contract import GlobalPool, ModelContract, PretrainedCfg, Stage, new_classifier
from .registry import register_model

# d2l feeds Fashion-MNIST resized to 96x96 and does not normalise it.
D2L_CFG = PretrainedCfg(input_size=(1, 96, 96), mean=(0.0,), std=(1.0,), num_classes=10)


def _edition(input_channels, num_channels) -> tuple[int | None, int]:
    """``(input_channels, num_channels)`` from either edition's call; ``None`` input means lazy layers.

    The current edition drops ``input_channels``: ``f(num_channels)`` where the seed's edition writes
    ``f(input_channels, num_channels)``.
    """
    if num_channels is None:
        if input_channels is None:
            raise TypeError("give num_channels (and, in the seed's edition, input_channels first)")
        return None, input_channels
    return input_channels, num_channels


def _conv(input_channels: int | None, num_channels: int, **kw) -> nn.Module:
    if input_channels is None:
        return nn.LazyConv2d(num_channels, **kw)
    return nn.Conv2d(input_channels, num_channels, **kw)


def _bn(num_channels: int | None) -> nn.Module:
    return nn.LazyBatchNorm2d() if num_channels is None else nn.BatchNorm2d(num_channels)


class Residual(nn.Module):
    """d2l's residual block: two 3x3 conv-BN pairs, an optional 1x1 projection on the shortcut.

    ``Residual(input_channels, num_channels, use_1x1conv=False, strides=1)`` as in the seed's edition, or
    ``Residual(num_channels, use_1x1conv=False, strides=1)`` as in the current one (lazy layers).
    """

    def __init__(
        self,
        input_channels: int | None = None,
        num_channels: int | bool | None = None,
        use_1x1conv: bool | int = False,
        strides: int = 1,
    ):
        super().__init__()
        if isinstance(num_channels, bool):
            # the current edition's positional call, Residual(num_channels, use_1x1conv, strides)
            num_channels, use_1x1conv, strides = (
                None,
                num_channels,
                (strides if isinstance(use_1x1conv, bool) else use_1x1conv),
            )
        input_channels, num_channels = _edition(input_channels, num_channels)
        inner = None if input_channels is None else num_channels  # None: lazy, as the input
        self.conv1 = _conv(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = _conv(inner, num_channels, kernel_size=3, padding=1)
        self.conv3 = (
            _conv(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        )
        self.bn1 = _bn(inner)
        self.bn2 = _bn(inner)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(
    input_channels: int, num_channels: int, num_residuals: int, first_block: bool = False
) -> list[nn.Module]:
    """A stage of ``num_residuals`` blocks; all but the first stage halve height and width up front.

    ``input_channels``, ``num_channels``: the channels in and out; ``first_block``: keep the first block's
    channels and stride (the book's ``b2``).
    """
    blk: list[nn.Module] = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(num_channels, num_channels))
    return blk


class Plain(nn.Module):
    """``Residual`` without the shortcut: the same two conv-BN pairs, ``Y`` alone goes on (no ``+ X``).

    There is no ``use_1x1conv``: the 1x1 conv exists only to fit ``X`` to ``Y`` for the sum, so without a
    shortcut it has nothing to do; the first 3x3 conv alone changes channels and stride.
    """

    def __init__(self, input_channels: int, num_channels: int, strides: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        return F.relu(self.bn2(self.conv2(Y)))


class ResNeXtBlock(nn.Module):
    """The current edition's ResNeXt block (section 8.6): 1x1 conv to ``num_channels * bot_mul`` channels, a
    grouped 3x3 conv (``bot_channels // groups`` groups, as the book's code computes them: ``groups`` is
    each group's width), 1x1 conv back to ``num_channels``, each with BN; an optional 1x1 conv + BN on the
    shortcut. ``ResNeXtBlock(num_channels, groups, bot_mul, use_1x1conv=False, strides=1)`` builds the book's
    lazy layers; ``input_channels=`` (resdense's) builds them for a known input at once."""

    def __init__(
        self,
        num_channels: int,
        groups: int,
        bot_mul: float,
        use_1x1conv: bool = False,
        strides: int = 1,
        *,
        input_channels: int | None = None,
    ):
        super().__init__()
        bot_channels = int(round(num_channels * bot_mul))
        inner = None if input_channels is None else bot_channels  # None: lazy, as the input
        self.conv1 = _conv(input_channels, bot_channels, kernel_size=1, stride=1)
        self.conv2 = _conv(
            inner, bot_channels, kernel_size=3, stride=strides, padding=1, groups=bot_channels // groups
        )
        self.conv3 = _conv(inner, num_channels, kernel_size=1, stride=1)
        self.bn1, self.bn2 = _bn(inner), _bn(inner)
        self.bn3 = _bn(None if input_channels is None else num_channels)
        if use_1x1conv:
            self.conv4 = _conv(input_channels, num_channels, kernel_size=1, stride=strides)
            self.bn4 = _bn(None if input_channels is None else num_channels)
        else:
            self.conv4 = None

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


def plain_block(
    input_channels: int, num_channels: int, num_layers: int, first_block: bool = False
) -> list[nn.Module]:
    """``resnet_block`` with ``Plain`` blocks: the same stage, no shortcuts."""
    blk: list[nn.Module] = []
    for i in range(num_layers):
        if i == 0 and not first_block:
            blk.append(Plain(input_channels, num_channels, strides=2))
        else:
            blk.append(Plain(num_channels, num_channels))
    return blk


def conv_block(input_channels: int, num_channels: int | None = None) -> nn.Sequential:
    """d2l's DenseNet unit: BN -> ReLU -> 3x3 conv (pre-activation order).

    ``conv_block(input_channels, num_channels)`` (seed's edition) or ``conv_block(num_channels)`` (lazy).
    """
    input_channels, num_channels = _edition(input_channels, num_channels)
    return nn.Sequential(
        _bn(input_channels), nn.ReLU(), _conv(input_channels, num_channels, kernel_size=3, padding=1)
    )


class DenseBlock(nn.Module):
    """``num_convs`` conv blocks; each one's output is concatenated to its input along the channels.

    ``DenseBlock(num_convs, input_channels, num_channels)`` (seed's edition) or
    ``DenseBlock(num_convs, num_channels)`` (current edition, lazy layers).
    """

    def __init__(self, num_convs: int, input_channels: int, num_channels: int | None = None):
        super().__init__()
        input_channels, num_channels = _edition(input_channels, num_channels)
        self.net = nn.Sequential(
            *(
                conv_block(num_channels * i + input_channels, num_channels)
                if input_channels is not None
                else conv_block(num_channels)
                for i in range(num_convs)
            )
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        for blk in self.net:
            X = torch.cat((X, blk(X)), dim=1)
        return X


def transition_block(input_channels: int, num_channels: int | None = None) -> nn.Sequential:
    """Shrinks a dense block's output: 1x1 conv to ``num_channels``, then 2x2 average pooling.

    ``transition_block(input_channels, num_channels)`` (seed's edition) or ``transition_block(num_channels)``.
    """
    input_channels, num_channels = _edition(input_channels, num_channels)
    return nn.Sequential(
        _bn(input_channels),
        nn.ReLU(),
        _conv(input_channels, num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )


def _stem(in_chans: int) -> nn.Sequential:
    """The first module ``b1`` shared by both networks: 7x7/2 conv, BN, ReLU, 3x3/2 max pool."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )


class D2LNet(ModelContract, nn.Sequential):
    """The book's ``net = nn.Sequential(...)``; the last three children are always pool, flatten, linear.

    Feature points (``forward_intermediates``, ``feature_info``), resdense's own (timm has not these nets):
    the book's blocks as it builds them, the stem ``b1`` first (after its max pool, reduction 4), named by
    their positions: the ResNet's ``b1``..``b5`` ("0".."4"), the DenseNet's stem, dense blocks and
    transitions ("0".."7"). The DenseNet's final batch norm and ReLU come after the last point (``norm=True``
    applies them to it).
    """

    def __init__(self, *layers: nn.Module, cfg: PretrainedCfg, points: list[tuple[int, int]]):
        super().__init__(*layers)
        n = len(layers)
        self.pretrained_cfg = replace(cfg, first_conv="0.0", classifier=str(n - 1))
        self.point_shapes = points  # (channels, reduction) of each of the first len(points) children

    def stages(self) -> list[Stage]:
        children = list(self)
        return [Stage(str(i), [children[i]], c, r) for i, (c, r) in enumerate(self.point_shapes)]

    def final_layers(self) -> list[nn.Module]:
        return list(self)[len(self.point_shapes) : -3]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pool, flatten, fc = list(self)[-3:]
        x = flatten(pool(x))
        return x if pre_logits else fc(x)

    def get_classifier(self) -> nn.Module:
        return self[-1]

    def _set_classifier(self, head: nn.Module) -> None:
        self[-1] = head

    def _set_global_pool(self, pool: GlobalPool) -> None:
        # the book's pool and flatten children, one GlobalPool in their place (no weights: keys unchanged)
        self[-3], self[-2] = pool, nn.Identity()


# (channels, reduction) after b1..b5 of the book's ResNet-18 (and its plain twin)
RESNET_POINTS = [(64, 4), (64, 4), (128, 8), (256, 16), (512, 32)]


@register_model("d2l", "d2l 8.6")
def d2l_resnet18(*, num_classes: int = 10, in_chans: int = 1) -> D2LNet:
    """d2l's ResNet-18 (section 8.6): 11,178,378 parameters for 1 channel and 10 classes.

    ``num_classes``: the classifier's outputs; ``in_chans``: the input's channels.
    """
    b1 = _stem(in_chans)
    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    return D2LNet(
        b1, b2, b3, b4, b5,
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), new_classifier(512, num_classes),
        cfg=D2L_CFG.for_channels(in_chans).for_classes(num_classes), points=RESNET_POINTS,
    )  # fmt: skip


# (channels, reduction) after the small ResNet-18's stem and its four stages: no stride in the stem, no max pool
SMALL_POINTS = [(64, 1), (64, 1), (128, 2), (256, 4), (512, 8)]


@register_model("d2l", "d2l 13.5 / 14.13")
def d2l_resnet18_small(*, num_classes: int = 10, in_chans: int = 3) -> D2LNet:
    """The book's ``resnet18(num_classes, in_channels)`` for small images (the multi-GPU and CIFAR-10
    chapters): a 3x3/1 stem conv of 64 channels, BN, ReLU, no max pool, then the four stages of ResNet-18,
    global average pooling and a linear layer. 11,176,970 parameters for 3 channels and 10 classes.

    The book adds its layers by name to one ``nn.Sequential`` (``0``-``2``, ``resnet_block1``..``4``,
    ``global_avg_pool``, ``fc``); here the stem is child ``0`` and the stages ``1``..``4`` as in
    ``d2l_resnet18``, so a book state dict loads after renaming (``tests/models/test_d2l_editions.py``).

    Args:
        num_classes: the book's ``num_classes``: outputs of the last linear layer.
        in_chans: the book's ``in_channels``: channels of the input images (3 for CIFAR-10)."""
    stem = nn.Sequential(
        nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(64), nn.ReLU()
    )
    return D2LNet(
        stem,
        nn.Sequential(*resnet_block(64, 64, 2, first_block=True)),
        nn.Sequential(*resnet_block(64, 128, 2)),
        nn.Sequential(*resnet_block(128, 256, 2)),
        nn.Sequential(*resnet_block(256, 512, 2)),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        new_classifier(512, num_classes),
        cfg=replace(D2L_CFG, input_size=(1, 32, 32)).for_channels(in_chans).for_classes(num_classes),
        points=SMALL_POINTS,
    )


@register_model("plain", "d2l 8.6 without shortcuts")
def d2l_plain18(*, num_classes: int = 10, in_chans: int = 1) -> D2LNet:
    """d2l's ResNet-18 without shortcuts: 11,005,450 parameters (the three 1x1 shortcut convs are gone)."""
    b1 = _stem(in_chans)
    b2 = nn.Sequential(*plain_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*plain_block(64, 128, 2))
    b4 = nn.Sequential(*plain_block(128, 256, 2))
    b5 = nn.Sequential(*plain_block(256, 512, 2))
    return D2LNet(
        b1, b2, b3, b4, b5,
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), new_classifier(512, num_classes),
        cfg=D2L_CFG.for_channels(in_chans).for_classes(num_classes), points=RESNET_POINTS,
    )  # fmt: skip


@register_model("d2l", "d2l 8.7")
def d2l_densenet(
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    growth_rate: int = 32,
    num_convs_in_dense_blocks: tuple[int, ...] = (4, 4, 4, 4),
) -> D2LNet:
    """d2l's DenseNet (section 8.7): 758,226 parameters for 1 channel and 10 classes.

    ``num_classes``: the classifier's outputs; ``in_chans``: the input's channels; ``growth_rate``: the
    channels each conv block adds; ``num_convs_in_dense_blocks``: conv blocks per dense block.
    """
    num_channels = 64  # channels entering the next block
    blks: list[nn.Module] = []
    points = [(64, 4)]  # (channels, reduction) after the stem, each block and each transition
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        blks.append(DenseBlock(num_convs, num_channels, growth_rate))
        num_channels += num_convs * growth_rate
        points.append((num_channels, points[-1][1]))
        if i != len(num_convs_in_dense_blocks) - 1:
            # a transition between dense blocks halves the channels
            blks.append(transition_block(num_channels, num_channels // 2))
            num_channels = num_channels // 2
            points.append((num_channels, points[-1][1] * 2))
    return D2LNet(
        _stem(in_chans), *blks, nn.BatchNorm2d(num_channels), nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), new_classifier(num_channels, num_classes),
        cfg=D2L_CFG.for_channels(in_chans).for_classes(num_classes), points=points,
    )  # fmt: skip
