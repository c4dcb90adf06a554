"""The plain networks: the CIFAR ResNets and d2l's ResNet-18 with every shortcut removed."""

import operator

import pytest
import torch
from torch import fx, nn

from resdense.models import create_model, list_models
from resdense.models.d2l import Plain, Residual
from resdense.models.resnet import PlainBlock

# the CIFAR ResNets' option A shortcuts have no parameters, so the plain nets have exactly as many
# (He et al. 2015, Table 6 and Fig. 6 compare plain and residual nets of equal size)
CIFAR = {"20": 269_722, "32": 464_154, "44": 658_586, "56": 853_018, "110": 1_727_962}


def additions(model: nn.Module) -> list[fx.Node]:
    """Every addition in the traced forward pass (torch.fx traces through the blocks' own code)."""
    graph = fx.symbolic_trace(model.eval()).graph
    functions, methods = (operator.add, operator.iadd, torch.add), ("add", "add_")
    return [
        n
        for n in graph.nodes
        if (n.op == "call_function" and n.target in functions)
        or (n.op == "call_method" and n.target in methods)
    ]


def test_plain_names_are_registered():
    assert set(list_models("plain*")) == {f"plain{d}" for d in CIFAR}
    assert "d2l_plain18" in list_models(family="plain")


@pytest.mark.parametrize("depth", list(CIFAR))
def test_cifar_plain_nets_match_their_resnets(depth):
    plain, res = create_model(f"plain{depth}"), create_model(f"resnet{depth}")
    assert sum(p.numel() for p in plain.parameters()) == CIFAR[depth]
    assert sum(p.numel() for p in res.parameters()) == CIFAR[depth]
    # the same layers under the same names: a ResNet's weights load into its plain twin as they are
    plain.load_state_dict(res.state_dict(), strict=True)
    weighted = [m for m in plain.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weighted) == int(depth)
    blocks = [m for m in plain.modules() if isinstance(m, PlainBlock)]
    assert len(blocks) == (int(depth) - 2) // 2
    assert all(b.downsample is None for b in blocks)


@pytest.mark.parametrize("depth", ["20", "56"])
def test_cifar_plain_nets_add_nothing(depth):
    assert additions(create_model(f"plain{depth}")) == []
    # the check can fail: the ResNet of the same depth adds its input once per block
    assert len(additions(create_model(f"resnet{depth}"))) == (int(depth) - 2) // 2


def test_plain_output_shapes():
    x = torch.randn(2, 1, 28, 28)
    assert create_model("plain20", in_chans=1).eval()(x).shape == (2, 10)
    assert create_model("d2l_plain18").eval()(torch.randn(2, 1, 96, 96)).shape == (2, 10)


def test_d2l_plain18_is_resnet18_without_shortcuts():
    plain, res = create_model("d2l_plain18"), create_model("d2l_resnet18")
    # d2l's three 1x1 shortcut convs (64->128, 128->256, 256->512) only fit X to Y for the sum: gone
    shortcut_params = sum(
        p.numel()
        for m in res.modules()
        if isinstance(m, Residual) and m.conv3 is not None
        for p in m.conv3.parameters()
    )
    assert shortcut_params == (64 * 128 + 128) + (128 * 256 + 256) + (256 * 512 + 512)
    assert sum(p.numel() for p in plain.parameters()) == 11_178_378 - shortcut_params == 11_005_450
    # every other weight has the same name and shape
    res_sd = {k: v.shape for k, v in res.state_dict().items() if ".conv3." not in k}
    assert {k: v.shape for k, v in plain.state_dict().items()} == res_sd
    assert sum(isinstance(m, Plain) for m in plain.modules()) == 8
    assert additions(plain) == []
    assert len(additions(res)) == 8


def test_plain_nets_refuse_zero_init_residual():
    with pytest.raises(TypeError, match="plain20: zero_init_residual needs residual blocks"):
        create_model("plain20", zero_init_residual=True)
