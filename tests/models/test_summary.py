"""``summarize``: d2l's shape walkthrough, parameter counts and multiply-accumulates."""

import json

import pytest
import torch
from torch import nn

from resdense.models import create_model, d2l_densenet, d2l_resnet18
from resdense.models.summary import InputTooSmallError, Summary, count_macs, count_params, summarize

# the shapes d2l prints for one 1x224x224 image through its ResNet-18
D2L_RESNET_SHAPES = [
    (64, 56, 56),
    (64, 56, 56),
    (128, 28, 28),
    (256, 14, 14),
    (512, 7, 7),
    (512, 1, 1),
    (512,),
    (10,),
]


def test_d2l_resnet18_walkthrough():
    s = summarize(d2l_resnet18(), (1, 224, 224))
    assert isinstance(s, Summary)
    assert [tuple(r.output_shape) for r in s.layers] == D2L_RESNET_SHAPES
    assert [r.name for r in s.layers] == [str(i) for i in range(8)]
    assert [r.type for r in s.layers] == ["Sequential"] * 5 + ["AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert s.total_params == s.trainable_params == 11_178_378
    assert sum(r.params for r in s.layers) == s.total_params
    assert s.input_size == (1, 224, 224)
    # the 10-way classifier: 512 * 10 multiply-adds
    assert s.layers[-1].macs == 5120
    assert s.layers[5].macs == s.layers[6].macs == 0


def test_d2l_densenet_walkthrough():
    s = summarize(d2l_densenet(), (1, 96, 96))
    assert s.total_params == 758_226
    shapes = [tuple(r.output_shape) for r in s.layers]
    # stem, then dense blocks (+128 channels) and transitions (halve channels and size), as in the book
    assert shapes[:8] == [
        (64, 24, 24),
        (192, 24, 24),
        (96, 12, 12),
        (224, 12, 12),
        (112, 6, 6),
        (240, 6, 6),
        (120, 3, 3),
        (248, 3, 3),
    ]
    assert shapes[-1] == (10,)


def test_default_input_size_is_the_models_own():
    assert summarize(d2l_resnet18()).input_size == (1, 96, 96)
    assert summarize(create_model("resnet20")).input_size == (3, 32, 32)


def test_row_params_sum_to_the_total_at_depth_1():
    s = summarize(create_model("resnet18"), (3, 224, 224))
    assert sum(r.params for r in s.layers) == s.total_params == count_params(create_model("resnet18"))
    # at depth 1 every multiply-add happens inside some listed child
    assert sum(r.macs for r in s.layers) == s.macs


# torchvision's published per-image GFLOPS (which are multiply-accumulates) at 224x224
PUBLISHED_GMACS = {"resnet18": 1.81, "resnet50": 4.09, "densenet121": 2.83}


@pytest.mark.parametrize("name", PUBLISHED_GMACS)
def test_macs_match_the_published_counts(name):
    macs = count_macs(create_model(name), (3, 224, 224))
    assert macs / 1e9 == pytest.approx(PUBLISHED_GMACS[name], rel=0.02)


def test_macs_of_a_single_conv_by_hand():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=4))
    s = summarize(conv, (3, 16, 16))
    assert [r.macs for r in s.layers] == [16 * 16 * 8 * 3 * 9, 16 * 16 * 8 * 2 * 9]
    assert s.macs == sum(r.macs for r in s.layers)
    assert s.model == "Sequential"


def test_macs_scale_with_the_input_area():
    model = create_model("resnet20")
    assert count_macs(model, (3, 64, 64)) == pytest.approx(4 * count_macs(model, (3, 32, 32)), rel=1e-3)


def test_input_too_small():
    with pytest.raises(InputTooSmallError, match="too small") as e:
        summarize(d2l_densenet(), (1, 28, 28))
    assert "(1, 28, 28)" in str(e.value)
    assert isinstance(e.value, ValueError)
    assert len(str(e.value).splitlines()) == 1
    # 32x32 is enough
    assert summarize(d2l_densenet(), (1, 32, 32)).layers[-1].output_shape == (10,)


def test_wrong_channel_count_is_not_reported_as_too_small():
    with pytest.raises(ValueError, match="3 input channels") as e:
        summarize(create_model("resnet18"), (1, 64, 64))
    assert not isinstance(e.value, InputTooSmallError)


def test_summarize_leaves_the_model_as_it_was():
    model = d2l_resnet18().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summarize(model, (1, 64, 64))
    assert model.training
    assert not model._forward_hooks and not model._forward_pre_hooks
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    model.eval()
    summarize(model, (1, 64, 64))
    assert not model.training


def test_depth_2_lists_deeper_modules():
    model = create_model("resnet18")
    s1 = summarize(model, (3, 64, 64), depth=1)
    s2 = summarize(model, (3, 64, 64), depth=2)
    names = [r.name for r in s2.layers]
    assert "layer1.0" in names and "layer4.1" in names
    assert "layer1" not in names
    assert "conv1" in names and "fc" in names  # leaves above depth 2 are still listed
    assert len(s2.layers) > len(s1.layers)
    assert sum(r.params for r in s2.layers) == s2.total_params
    assert s2.macs == s1.macs
    row = next(r for r in s2.layers if r.name == "layer2.0")
    assert row.type == "BasicBlock" and tuple(row.output_shape) == (128, 8, 8)
    with pytest.raises(ValueError):
        summarize(model, (3, 64, 64), depth=0)


def test_table_and_json():
    s = summarize(d2l_resnet18(), (1, 224, 224), name="d2l_resnet18")
    table = s.table()
    assert table.splitlines()[0].startswith("d2l_resnet18")
    for shape in ["(64, 56, 56)", "(128, 28, 28)", "(256, 14, 14)", "(512, 7, 7)", "(512)", "(10)"]:
        assert shape in table
    assert "11,178,378" in table
    d = json.loads(json.dumps(s.to_json()))
    assert d["model"] == "d2l_resnet18"
    assert d["input_size"] == [1, 224, 224]
    assert d["total_params"] == 11_178_378
    assert [tuple(r["output_shape"]) for r in d["layers"]] == D2L_RESNET_SHAPES
    assert set(d["layers"][0]) >= {"name", "type", "output_shape", "params", "macs"}


@pytest.mark.parametrize("name", ["d2l_densenet", "d2l_resnet18", "densenet121", "resnet20"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_every_depth_accounts_for_every_parameter(name, depth):
    """``inspect d2l_densenet --depth 2`` dropped the four DenseBlocks (80,274 of 758,226 parameters):
    ``DenseBlock`` loops over ``self.net`` without calling it, so a row for ``net`` never saw an input."""
    model = create_model(name)
    s = summarize(model, depth=depth)
    assert sum(r.params for r in s.layers) == s.total_params == count_params(model)
