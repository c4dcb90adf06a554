"""The papers' small-image models: He et al. 2015's CIFAR ResNets, He et al. 2016's pre-activation ResNet
and Huang et al. 2017's DenseNet-BC, plus the memory-efficient (checkpointed) DenseNet."""

import pytest
import torch
from torch import nn

from resdense.models import create_model
from resdense.models.resnet import BasicBlock, PadShortcut, PreActBlock


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# He et al. 2015, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M
CIFAR_RESNETS = {
    "resnet20": (269_722, 3),
    "resnet32": (464_154, 5),
    "resnet44": (658_586, 7),
    "resnet56": (853_018, 9),
    "resnet110": (1_727_962, 18),
}


@pytest.mark.parametrize("name", CIFAR_RESNETS)
def test_cifar_resnet_parameter_counts(name):
    expected, n = CIFAR_RESNETS[name]
    model = create_model(name)
    assert n_params(model) == expected
    # 6n+2 weighted layers: the stem conv, 3 stages of n two-conv blocks, the classifier
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 6 * n + 2 == int(name.removeprefix("resnet"))
    assert all(len(getattr(model, f"layer{i}")) == n for i in (1, 2, 3))
    assert not hasattr(model, "layer4")


@pytest.mark.parametrize("name", [*CIFAR_RESNETS, "preact_resnet18", "densenet_bc_100"])
def test_cifar_models_map_32x32_to_10_classes(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert model.default_cfg.input_size == (3, 32, 32)
    assert model.default_cfg.num_classes == 10
    with torch.no_grad():
        y = model(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()


def test_resnet20_feature_map_and_stages():
    model = create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 64, 8, 8)
        x = model.relu(model.bn1(model.conv1(x)))
        assert x.shape == (1, 16, 32, 32)
        for stage, shape in zip((model.layer1, model.layer2, model.layer3), [(16, 32), (32, 16), (64, 8)]):
            x = stage(x)
            assert x.shape == (1, shape[0], shape[1], shape[1])
    assert model.num_features == 64


def test_option_a_shortcut_has_no_parameters_and_pads_with_zeros():
    model = create_model("resnet20")
    shortcuts = [
        b.downsample for b in model.modules() if isinstance(b, BasicBlock) and b.downsample is not None
    ]
    assert len(shortcuts) == 2  # entering stage 2 and stage 3
    assert all(isinstance(s, PadShortcut) for s in shortcuts)
    assert all(n_params(s) == 0 for s in shortcuts)
    assert not any(m.kernel_size == (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d))

    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(stride=2, extra_channels=16)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])  # the identity, in the middle
    assert not y[:, :8].any() and not y[:, 24:].any()  # zeros on both sides


def test_cifar_resnet_option_b_uses_projections():
    model = create_model("resnet20", shortcut="B")
    assert n_params(model) > CIFAR_RESNETS["resnet20"][0]
    assert not any(isinstance(m, PadShortcut) for m in model.modules())
    assert create_model("resnet20", shortcut="B")(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_cifar_resnet_rejects_depths_other_than_6n_plus_2():
    from resdense.models.resnet_cifar import cifar_resnet

    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(21)


def test_preact_resnet18():
    model = create_model("preact_resnet18")
    assert n_params(model) == 11_172_170  # ~11.17M
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    assert len(blocks) == 8
    # pre-activation: the stem is a bare conv, and a final BN-ReLU closes the body
    assert isinstance(model.bn1, nn.Identity)
    assert isinstance(model.final_norm, nn.BatchNorm2d)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)


def test_preact_block_computes_the_papers_unit():
    """x + conv2(relu(bn2(conv1(relu(bn1(x)))))), with no activation after the sum."""
    torch.manual_seed(0)
    blk = PreActBlock(8, 8).train()
    x = torch.randn(4, 8, 6, 6)
    expected = x + blk.conv2(torch.relu(blk.bn2(blk.conv1(torch.relu(blk.bn1(x))))))
    torch.testing.assert_close(blk(x), expected)
    assert (blk(x) < 0).any()  # the output is not rectified


def test_densenet_bc_100():
    model = create_model("densenet_bc_100")
    assert n_params(model) == 769_162  # the paper's 0.8M
    assert round(n_params(model) / 1e6, 1) == 0.8
    blocks = [m for n, m in model.features.named_children() if n.startswith("denseblock")]
    assert [len(b) for b in blocks] == [16, 16, 16]  # (100 - 4) / 6 bottleneck layers per block
    # growth rate 12, 2k initial features, compression 0.5
    assert model.features.conv0.out_channels == 24
    assert model.num_features == 342
    assert model.features.transition1.conv.out_channels == (24 + 16 * 12) // 2
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 342, 8, 8)


# --- memory-efficient DenseNet --------------------------------------------------------------------------


def _bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize(
    ("name", "size"), [("densenet121", 32), ("densenet_bc_100", 32)], ids=["densenet121", "densenet_bc_100"]
)
def test_memory_efficient_densenet_matches_the_plain_one(name, size):
    torch.manual_seed(0)
    plain = create_model(name, num_classes=10)
    efficient = create_model(name, num_classes=10, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict(), strict=True)
    assert any(getattr(m, "memory_efficient", False) for m in efficient.modules())
    before = {k: v.clone() for k, v in _bn_buffers(plain).items()}

    x = torch.randn(2, 3, size, size)
    target = torch.tensor([1, 7])
    plain.train()
    efficient.train()
    losses = []
    for model in (plain, efficient):
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0])

    for (k, p), (_, q) in zip(plain.named_parameters(), efficient.named_parameters()):
        assert p.grad is not None and q.grad is not None, k
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=f"gradient of {k} differs")

    # one training step updates every running statistic exactly once, in both (no double update in the
    # recomputation of the checkpointed bottleneck)
    plain_bn, eff_bn = _bn_buffers(plain), _bn_buffers(efficient)
    for k, v in plain_bn.items():
        torch.testing.assert_close(eff_bn[k], v, rtol=1e-5, atol=1e-6, msg=f"{k} differs after one step")
        if k.endswith("num_batches_tracked"):
            assert v.item() == before[k].item() + 1, k
    assert any(not torch.equal(v, before[k]) for k, v in plain_bn.items() if k.endswith("running_mean"))

    # the eval-mode outputs agree too, and an eval forward needs no gradients (plain path)
    plain.eval()
    efficient.eval()
    with torch.no_grad():
        torch.testing.assert_close(efficient(x), plain(x), rtol=1e-4, atol=1e-5)


def test_memory_efficient_densenet_replays_dropout():
    """With dropout, the recomputation in the backward pass must use the forward pass's masks."""
    torch.manual_seed(0)
    plain = create_model("densenet_bc_100", drop_rate=0.2).train()
    efficient = create_model("densenet_bc_100", drop_rate=0.2, memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for model in (plain, efficient):
        torch.manual_seed(1)
        out = model(x)
        out.square().sum().backward()
        outs.append(out.detach())
    torch.testing.assert_close(outs[1], outs[0])
    for (k, p), (_, q) in zip(plain.named_parameters(), efficient.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=f"gradient of {k} differs")


def _bytes_saved_for_backward(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return total


def test_memory_efficient_densenet_saves_less_for_backward():
    x = torch.randn(2, 3, 32, 32)
    plain = _bytes_saved_for_backward(create_model("densenet_bc_100").train(), x)
    efficient = _bytes_saved_for_backward(create_model("densenet_bc_100", memory_efficient=True).train(), x)
    assert efficient < 0.5 * plain
    # without gradients there is nothing to save, and the plain path is taken
    model = create_model("densenet_bc_100", memory_efficient=True).eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10)
