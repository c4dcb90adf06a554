"""The identity study's core: deepening a ResNet with zero-scaled residual blocks keeps its function exactly."""

import copy

import pytest
import torch
from torch import nn

from resdense.models import create_model
from resdense.models.resnet import BasicBlock, PlainBlock
from resdense.studies import deepen


def trained_like(name: str, seed: int = 0) -> nn.Module:
    """A net with non-trivial weights and batch-norm statistics everywhere, as after training."""
    torch.manual_seed(seed)
    model = create_model(name, in_chans=1, widths=(8, 16, 32))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_deepened_resnet_computes_exactly_the_same_function():
    shallow = trained_like("resnet20")
    deep = deepen(shallow, create_model("resnet32", in_chans=1, widths=(8, 16, 32))).eval()
    assert all(len(getattr(deep, f"layer{i}")) == 5 for i in (1, 2, 3))
    # the shallow net's blocks keep their places; the new ones (last two of each stage) have zero scale
    for i in (1, 2, 3):
        stage = getattr(deep, f"layer{i}")
        assert all(stage[j].bn2.weight.all() for j in range(3))
        assert all(not stage[j].bn2.weight.any() and not stage[j].bn2.bias.any() for j in (3, 4))
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        a, b = shallow(x), deep(x)
    # Exact, no tolerance: the new branch is 0 * finite = 0 exactly, x + 0 == x and relu(x) == x for the
    # non-negative x a block receives, so no operation rounds; a tolerance would let a wrong deepening
    # (e.g. a new block whose input can be negative) pass.
    assert torch.equal(a, b)


def test_the_check_can_fail():
    shallow = trained_like("resnet20")
    deep = deepen(shallow, create_model("resnet32", in_chans=1, widths=(8, 16, 32)))
    nn.init.constant_(deep.layer2[4].bn2.weight, 1e-3)  # a new block that is almost, not exactly, zero
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert not torch.equal(shallow(x), deep.eval()(x))


def test_deepened_plain_net_is_not_the_same_function():
    shallow = trained_like("plain20")
    torch.manual_seed(1)
    deep = deepen(shallow, create_model("plain32", in_chans=1, widths=(8, 16, 32))).eval()
    assert sum(isinstance(m, PlainBlock) for m in deep.modules()) == 15
    fresh = [deep.layer1[3], deep.layer3[4]]
    assert all(b.bn2.weight.all() for b in fresh)  # new plain blocks keep their fresh initialisation
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert not torch.equal(shallow(x), deep(x))


def test_deepen_keeps_the_shallow_net_untouched_and_refuses_misfits():
    shallow = trained_like("resnet20")
    before = copy.deepcopy(shallow.state_dict())
    deepen(shallow, create_model("resnet32", in_chans=1, widths=(8, 16, 32)))
    assert all(torch.equal(before[k], v) for k, v in shallow.state_dict().items())
    with pytest.raises(ValueError, match="deepen"):
        deepen(shallow, create_model("resnet32", in_chans=1))  # other widths
    assert isinstance(shallow.layer1[0], BasicBlock)
