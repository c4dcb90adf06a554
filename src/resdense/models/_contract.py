"""The contract every resdense model keeps, whatever its family.

Like timm's models, each network splits into a body (``forward_features``: image -> feature map) and a head
(``forward_head``: feature map -> logits), can swap its classifier (``reset_classifier``) and carries a
``default_cfg`` that says what input it expects. Training, inspection and export rely on these alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelConfig:
    """What a model expects as input: (channels, height, width) and per-channel mean/std."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    extra: dict = field(default_factory=dict)

    def for_channels(self, in_chans: int) -> ModelConfig:
        """The same config for ``in_chans`` input channels (means/stds averaged when they no longer fit)."""
        if in_chans == self.input_size[0]:
            return self
        mean, std = self.mean, self.std
        if len(mean) != in_chans:
            mean = (sum(mean) / len(mean),) * in_chans
            std = (sum(std) / len(std),) * in_chans
        return replace(self, input_size=(in_chans, *self.input_size[1:]), mean=mean, std=std)


class ModelContract:
    """Mixin giving ``forward`` in terms of ``forward_features`` and ``forward_head``."""

    default_cfg: ModelConfig

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        return self.get_classifier().in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def new_classifier(in_features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or an identity when ``num_classes == 0`` (feature extractor, as in timm)."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    if num_classes == 0:
        head = nn.Identity()
        head.in_features = in_features  # keeps num_features answerable
        return head
    return nn.Linear(in_features, num_classes)
