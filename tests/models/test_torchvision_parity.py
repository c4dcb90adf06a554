"""Every ImageNet model is torchvision's network: its state dict loads with ``strict=True`` and gives the
same outputs. torchvision is a test dependency; if it is missing this module must fail, not skip."""

import pytest
import torch
import torchvision

from resdense.models import create_model, list_models

IMAGENET_MODELS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
]
# the deep ones run at 32x32 to keep the suite fast; their last stage then sees 1x1 maps, which is still
# a full check of every weight
SMALL_INPUT = {"resnet152", "resnext101_32x8d", "wide_resnet101_2", "densenet161", "densenet201"}


def test_every_torchvision_name_is_registered():
    assert set(IMAGENET_MODELS) <= set(list_models())
    for name in IMAGENET_MODELS:
        assert hasattr(torchvision.models, name), name


def _randomize_bn_stats(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Fresh models have mean 0 / var 1 running stats and unit BN weights; make them non-trivial so
    that a BN applied to the wrong tensor, or its buffers loaded into the wrong layer, shows up."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


@pytest.mark.parametrize("num_classes", [1000, 10], ids=["1000", "10"])
@pytest.mark.parametrize("name", IMAGENET_MODELS)
@torch.no_grad()
def test_torchvision_weights_load_and_outputs_match(name, num_classes):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    ref = getattr(torchvision.models, name)(weights=None, num_classes=num_classes).eval()
    _randomize_bn_stats(ref, gen)
    ours = create_model(name, num_classes=num_classes).eval()

    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(ref_sd) == list(our_sd), "parameter/buffer names or order differ from torchvision"
    ours.load_state_dict(ref_sd, strict=True)

    size = 32 if name in SMALL_INPUT else 64
    x = torch.randn(1, 3, size, size, generator=gen)
    y_ref, y = ref(x), ours(x)
    assert y.shape == (1, num_classes)
    scale = y_ref.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5 * max(1.0, scale))
    # the features are torchvision's too (before the pooling and the classifier)
    feats = ours.forward_features(x)
    assert feats.shape[1] == ours.num_features
