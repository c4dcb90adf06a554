"""Tests of BN fusion, ONNX / TorchScript export, the predictor and ``resdense export``.

Helpers shared by the test modules: small "trained" models saved the way training saves them, with
randomised batch-norm statistics so that folding BN into the convs is not the identity.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from resdense.modelfile import ModelSpec
from resdense.modelfile import write_safetensors as save_trained
from resdense.models import create_model
from resdense.preprocess import Preprocess

PREPROCESS = Preprocess(resize=32, mean=(0.5,), std=(0.25,), in_chans=1)
CLASSES = [f"class{i}" for i in range(10)]

# registry name -> builder options; both are what a real run would store in its spec
MODELS = {
    "resnet20": {"in_chans": 1, "num_classes": 10},
    "densenet_bc_100": {"in_chans": 1, "num_classes": 10, "memory_efficient": True},
}


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def make_trained(folder: Path, name: str, seed: int = 0) -> tuple[nn.Module, ModelSpec, Path]:
    """A run folder ``folder`` holding ``model.safetensors`` for registry model ``name``; returns the
    (eval-mode) model, its spec and the folder."""
    torch.manual_seed(seed)
    options = dict(MODELS[name])
    model = randomize_bn(create_model(name, **options), seed).eval()
    spec = ModelSpec(name, options, PREPROCESS, list(CLASSES))
    folder.mkdir(parents=True, exist_ok=True)
    save_trained(folder / "model.safetensors", model, spec)
    return model, spec, folder


def uint8_images(n: int, size: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g).to(torch.uint8)
