"""``fuse_bn``: the same outputs with fewer batch norms, for every kind of block in the library."""

import pytest
import torch
from torch import nn

from resdense.models import DenseNet, Residual, ResNet, create_model
from resdense.models.d2l import _stem as d2l_stem
from resdense.models.resnet import Bottleneck, PreActBlock
from resdense.serve.fuse import count_batchnorms, find_conv_bn_pairs, fuse_bn

from . import randomize_bn

# (builder, input channels, BNs before, BNs left after fusion)
CASES = {
    # CIFAR ResNet: every BN follows a conv (option A shortcuts have no BN)
    "resnet20": (lambda: create_model("resnet20", in_chans=1), 1, 19, 0),
    # torchvision-style bottlenecks with Sequential(conv, bn) projection shortcuts and the 7x7 stem
    "bottleneck": (lambda: ResNet(Bottleneck, [1, 1], widths=(8, 16), num_classes=10), 3, 9, 0),
    # pre-activation: only each block's conv1 -> bn2 folds; bn1 and final_norm precede a ReLU/conv
    "preact": (lambda: ResNet(PreActBlock, [1, 1], widths=(8, 16), stem="cifar", num_classes=10), 3, 5, 3),
    # d2l Residual (convs with bias, conv3 projection) and the Sequential(conv, BN, ReLU, pool) stem, as
    # d2l_resnet18 puts them together, but narrower
    "d2l_residual": (
        lambda: nn.Sequential(d2l_stem(1), Residual(64, 64), Residual(64, 16, use_1x1conv=True, strides=2)),
        1,
        5,
        0,
    ),
    # d2l DenseNet: only the stem's BN follows a conv; the conv_block / transition BNs are pre-activation
    "d2l_densenet": (
        lambda: create_model("d2l_densenet", growth_rate=8, num_convs_in_dense_blocks=(2, 2)),
        1,
        7,
        6,
    ),
    # DenseNet, ImageNet stem: conv0/norm0 and each layer's conv1 -> norm2 fold; norm1, transitions, norm3
    # stay
    "densenet": (lambda: DenseNet(8, (2, 2), 16, num_classes=10), 3, 11, 6),
    # memory-efficient DenseNet-BC (checkpointing) with the CIFAR stem: the 48 conv1 -> norm2 pairs fold
    "densenet_bc_100_me": (
        lambda: create_model("densenet_bc_100", in_chans=1, memory_efficient=True),
        1,
        99,
        51,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fuse_bn_same_outputs_fewer_batchnorms(case):
    build, chans, before, after = CASES[case]
    torch.manual_seed(0)
    model = randomize_bn(build()).eval()
    x = torch.randn(3, chans, 16, 16)
    fused = fuse_bn(model, x[:1])
    assert count_batchnorms(model) == before
    assert count_batchnorms(fused) == after
    assert not fused.training
    with torch.no_grad():
        ref, out = model(x), fused(x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_fuse_bn_leaves_the_original_alone_and_needs_no_example():
    torch.manual_seed(0)
    model = randomize_bn(create_model("resnet20", in_chans=1)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_bn(model)  # example input from default_cfg, eval mode inside
    assert model.training
    assert count_batchnorms(model) == 19
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    # a conv without bias gets one holding the BN shift
    assert model.conv1.bias is None and fused.conv1.bias is not None
    assert isinstance(fused.bn1, nn.Identity)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model.eval()(x), atol=1e-4, rtol=1e-4)


class SharedConvOutput(nn.Module):
    """conv output read by a BN *and* by the residual sum: folding would change the sum, so it must not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y + self.bn2(self.conv2(y))


def test_a_conv_output_read_twice_is_not_folded():
    model = randomize_bn(SharedConvOutput()).eval()
    x = torch.randn(2, 3, 8, 8)
    assert find_conv_bn_pairs(model, x) == [("conv2", "bn2")]
    fused = fuse_bn(model, x)
    assert isinstance(fused.bn, nn.BatchNorm2d) and isinstance(fused.bn2, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)


def test_fused_memory_efficient_densenet_runs_with_grad():
    # checkpointing replays BN by its statistics; the fused copy must not take that path any more
    model = randomize_bn(create_model("densenet_bc_100", in_chans=1, memory_efficient=True)).eval()
    fused = fuse_bn(model, torch.randn(1, 1, 16, 16))
    x = torch.randn(2, 1, 16, 16, requires_grad=True)
    fused(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
