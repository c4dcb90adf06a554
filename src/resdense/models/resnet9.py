"""ResNet-9: a short, wide residual net for small images, after David Page's "How to train your ResNet"
(myrtle.ai, 2018; the DAWNBench CIFAR-10 record, 94% in 26 s on a V100), the network airbench also starts from.

A prep convolution, then three stages: each a 3x3 convolution (batch norm, activation) and a 2x2 max pool,
with a residual pair of convolutions after the first and the third stage; a global max pool and a linear
classifier. Written from the post's description for this library's contract; widths 64/128/256/512 as
Page's (``widths`` changes them: at 28x28, Page's widths cost 274 M MACs an image, 8.9x a ResNet-20's 31 M, and
(32, 64, 128, 256) 69 M, 2.2x). Page also scales the logits by 1/8: here that is the training option
``--logit-scale 0.125``, so the model stays a plain classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._contract import GlobalPool, ModelContract, PretrainedCfg, Stage, new_classifier
from .pretrained_cfg import CIFAR_CFG
from .registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "celu": nn.CELU}


def conv_bn(cin: int, cout: int, act: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), ACTIVATIONS[act]()
    )


class Residual(nn.Module):
    """x + f(x), f two conv-bn-activation layers at the same width."""

    def __init__(self, width: int, act: str):
        super().__init__()
        self.body = nn.Sequential(conv_bn(width, width, act), conv_bn(width, width, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(ModelContract, nn.Module):
    """Feature points (resdense's own; timm has no ResNet-9): the prep conv's output (``act``, reduction 1),
    then each stage ``layer1``..``layer3`` (reductions 2, 4, 8)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        act: str = "relu",
        cfg: PretrainedCfg | None = None,
    ):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths: the prep conv's and three stages', 4 numbers, got {list(widths)}")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
        w0, w1, w2, w3 = widths
        # named as the ResNets' stem and stages are, so --freeze stages:N finds them
        self.conv1 = nn.Conv2d(in_chans, w0, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.act = ACTIVATIONS[act]()
        self.layer1 = nn.Sequential(conv_bn(w0, w1, act), nn.MaxPool2d(2), Residual(w1, act))
        self.layer2 = nn.Sequential(conv_bn(w1, w2, act), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(conv_bn(w2, w3, act), nn.MaxPool2d(2), Residual(w3, act))
        self.num_stages = 3
        self.global_pool = GlobalPool("max")
        self.fc = new_classifier(w3, num_classes)
        self.point_shapes = [(w0, 1), (w1, 2), (w2, 4), (w3, 8)]
        self.init_cfg(cfg, in_chans, num_classes, first_conv="conv1", classifier="fc")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> list[Stage]:
        layers = [[self.conv1, self.bn1, self.act], [self.layer1], [self.layer2], [self.layer3]]
        names = ["act", "layer1", "layer2", "layer3"]
        return [Stage(n, m, c, r) for n, m, (c, r) in zip(names, layers, self.point_shapes)]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def _set_classifier(self, head: nn.Module) -> None:
        self.fc = head


@register_model("resnet", "Page 2018, How to train your ResNet (DAWNBench ResNet-9)")
def resnet9(**kwargs) -> ResNet9:
    kwargs.setdefault("cfg", CIFAR_CFG)
    return ResNet9(**kwargs)
